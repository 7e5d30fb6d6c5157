"""The service's bearer token: created once into a private file, compared in constant time."""
from __future__ import annotations

import hmac
import os
import secrets
import stat

from ..errors import InvalidInputError

MIN_TOKEN_LENGTH = 16


def load_or_create_token(path: str) -> tuple[str, bool]:
    """The token stored in ``path``, or a new random one written there (mode 0600); returns (token, created).

    Raises
    ------
    InvalidInputError
        If the file is readable by other users or holds a token shorter than 16 characters.
    """
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token, True


def _read_token(path: str) -> str:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInputError(f"the token file {path} is accessible by other users (mode "
                                f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}")
    with open(path, encoding="ascii") as handle:
        token = handle.read().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidInputError(f"the token in {path} is shorter than {MIN_TOKEN_LENGTH} characters")
    return token


def token_matches(given: str | None, token: str) -> bool:
    """Whether ``given`` equals ``token``, in time independent of where they differ."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
