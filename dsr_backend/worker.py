"""``python -m dsr_backend.worker``: the engine's operations for a plugin in another Python, as JSON lines.

Over stdin/stdout:

- request  ``{"id": 3, "op": "surfaces", "args": {...}, "arrays": "/tmp/x.npz" or null}``; the arrays of
  the file (a flat ``.npz``) are passed as the ``arrays`` argument; the worker deletes the file;
- response ``{"id": 3, "ok": true, "result": ..., "arrays": path or null}``, where every array in the
  result is replaced by ``{"$array": key}`` and stored under ``key`` in the ``.npz`` file (the client
  deletes it), or ``{"id": 3, "ok": false, "error": "one-line message", "type": "InvalidInputError"}``;
- event    ``{"event": "job", "job": {...}}`` whenever a job's progress changes (at most a few per
  second), and ``{"event": "ready", ...}`` once at start.

``op`` is one of :data:`dsr_backend.engine.OPERATIONS`; the arrays are described in :mod:`dsr_backend.engine`.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import traceback
from typing import Any, Callable

import numpy as np

from .engine import OPERATIONS, Engine
from .errors import DSRError, InvalidInputError

logger = logging.getLogger(__name__)


def _pack(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` with every array moved into ``arrays`` and replaced by ``{"$array": key}``."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"$array": key}
    if isinstance(value, dict):
        return {k: _pack(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _answer(engine: Engine, request: dict, send: Callable[[dict], None]) -> None:
    reply: dict[str, Any] = {"id": request.get("id")}
    try:
        op = request.get("op")
        if op not in OPERATIONS:
            raise InvalidInputError(f"unknown operation {op!r}")
        args = dict(request.get("args") or {})
        if request.get("arrays"):
            with np.load(request["arrays"], allow_pickle=False) as data:
                args["arrays"] = {key: data[key] for key in data.files}
            os.unlink(request["arrays"])
        arrays: dict[str, np.ndarray] = {}
        reply.update(ok=True, result=_pack(getattr(engine, op)(**args), arrays), arrays=None)
        if arrays:
            fd, path = tempfile.mkstemp(prefix="dsr-reply-", suffix=".npz")
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            reply["arrays"] = path
    except Exception as error:  # every failure goes back to the client as a one-line message
        if not isinstance(error, DSRError):
            logger.error("operation %s failed:\n%s", request.get("op"), traceback.format_exc())
        reply = {"id": request.get("id"), "ok": False, "error": str(error) or type(error).__name__,
                 "type": type(error).__name__}
    send(reply)


def main() -> None:
    """Serve one plugin session over stdin/stdout until stdin closes."""
    logging.basicConfig(level=logging.WARNING, format="dsr worker: %(message)s")
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the protocol
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def send(message: dict) -> None:
        with lock:
            channel.write(json.dumps(message) + "\n")
            channel.flush()

    engine = Engine(on_update=lambda job: send({"event": "job", "job": job}))
    send({"event": "ready", **engine.describe()})
    for line in sys.stdin:
        if line.strip():
            threading.Thread(target=_answer, args=(engine, json.loads(line), send), daemon=True).start()
    engine.close()


if __name__ == "__main__":
    main()
