"""Writing a file so that readers see the old file or the whole new one, never half of one."""
from __future__ import annotations

import os
import re
import secrets
from typing import IO, Callable

from .errors import InvalidInputError


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")


def remove_orphans(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that interrupted writes of ``path`` left beside it; return their names."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    removed = []
    for entry in os.listdir(directory) if os.path.isdir(directory) else []:
        if temporary_target(entry) == name:
            try:
                os.unlink(os.path.join(directory, entry))
                removed.append(entry)
            except OSError:  # gone already, or not ours to remove: nothing to clean
                pass
    return removed


def temporary_target(name: str) -> str | None:
    """The file name a :func:`temporary_name` was made for, or None when ``name`` is not such a name."""
    match = _TEMPORARY.match(name)
    return match.group("name") if match else None


def temporary_name(path: str) -> str:
    """A fresh hidden name beside ``path`` for writing it: a dot, the file's name, 12 random hex digits, ``.tmp``."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output that cannot be written: a missing or read-only folder, or a folder
    where a file is meant."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise InvalidInputError(f"cannot write {path}: it is a folder")
    if not os.path.isdir(directory):
        raise InvalidInputError(f"cannot write {path}: folder {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InvalidInputError(f"cannot write {path}: permission denied")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, flush it to disk, then move it into place.

    The file gets the mode the user's umask gives new files. On any failure the temporary file is
    removed and ``path`` is left as it was.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise InvalidInputError(f"cannot write {path}: directory {directory} does not exist")
    tmp = temporary_name(path)
    try:
        with open(tmp, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
