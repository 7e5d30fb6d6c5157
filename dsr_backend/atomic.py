"""Writing a file so that readers see the old file or the whole new one, never half of one."""
from __future__ import annotations

import os
import secrets
from typing import IO, Callable

from .errors import InvalidInputError


def temporary_name(path: str) -> str:
    """A fresh hidden name beside ``path`` for writing it (``.NAME.XXXXXXXXXXXX.tmp``)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


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
