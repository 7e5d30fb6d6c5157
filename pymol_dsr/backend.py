"""The one interface between the plugin and a DSR backend, and the embedded implementations.

Every backend offers the methods of :class:`Backend` with plain dicts, lists and numpy arrays, so the
commands never care where training runs. Embedded backends:

- in-process: ``dsr_backend.engine.Engine`` in PyMOL's own Python (torch imported on first use), training
  in a daemon thread;
- subprocess: ``<python> -m dsr_backend.worker`` of another Python that has torch, spoken to in JSON
  lines over stdin/stdout with arrays in temporary ``.npz`` files (see :mod:`dsr_backend.worker`).
"""
from __future__ import annotations

import collections
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Protocol

import numpy as np
from pymol import CmdException

PYTHON_VARIABLE = "PYMOL_DSR_PYTHON"
"""Environment variable naming a Python with torch and dsr_backend, used when PyMOL's Python lacks them."""

START_TIMEOUT = 300.0  # seconds a worker may take to import torch and say it is ready


def source_folder() -> str:
    """The pymol-dsr source folder this plugin was loaded from (it holds setup.py and dsr_backend/), or ''
    when the plugin was installed on its own (the Plugin Manager archive)."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = all(os.path.exists(os.path.join(folder, part)) for part in ("setup.py", "dsr_backend"))
    return folder if found else ""


def install_hint() -> str:
    """The exact commands that make a backend available."""
    folder = source_folder() or "/path/to/pymol-dsr"
    return (f'DSR needs torch and dsr_backend: install them into PyMOL\'s Python with '
            f'"{sys.executable}" -m pip install torch "{folder}" (the pymol-dsr source folder), or name a '
            f'Python that has them with "dsr_backend subprocess, python=/path/to/python" or the '
            f'{PYTHON_VARIABLE} environment variable')


class Backend(Protocol):
    """What the plugin needs from a backend. Job and model records are plain dicts."""

    label: str  # where it runs, in words

    def describe(self) -> dict: ...
    def submit_train(self, settings: dict, arrays: dict[str, np.ndarray]) -> str: ...
    def job(self, job_id: str) -> dict: ...
    def jobs(self) -> list[dict]: ...
    def cancel(self, job_id: str) -> dict: ...
    def wait(self, job_id: str, timeout: float | None = None) -> dict: ...
    def models(self) -> list[dict]: ...
    def model_info(self, name: str) -> dict: ...
    def save_model(self, name: str, path: str) -> dict: ...
    def load_model(self, path: str, name: str, device: str = "") -> dict: ...
    def delete_model(self, name: str) -> dict: ...
    def surfaces(self, model: str, ts: list[float], levels: list[float], resolution: int = 64,
                 protein: int | str = 0, with_speed: bool = False,
                 min_component: float | None = None) -> list[list[dict]]: ...
    def sdf_grid(self, model: str, t: float, resolution: int = 64, protein: int | str = 0) -> dict: ...
    def evaluate(self, model: str, arrays: dict[str, np.ndarray], train_times: list[float], protein: int | str = 0,
                 resolution: int = 128, samples: int = 300_000, baselines: bool = True,
                 frames: list[int] | None = None, all_times: list[float] | None = None) -> dict: ...
    def close(self) -> None: ...


OPERATIONS = tuple(name for name in vars(Backend) if not name.startswith("_") and callable(vars(Backend)[name])
                   and name != "close")
"""The operations every backend offers (the engine's, :data:`dsr_backend.engine.OPERATIONS`)."""


def torch_in_pymol() -> bool:
    """Whether PyMOL's Python can import torch and dsr_backend (checked without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "dsr_backend"))


class InProcessBackend:
    """``dsr_backend.engine.Engine`` in PyMOL's own Python; the engine's errors
    (``dsr_backend.errors.DSRError``) reach PyMOL as one-line ``CmdException`` messages."""

    def __init__(self) -> None:
        if not torch_in_pymol():
            raise CmdException(install_hint())
        # torch comes with the engine: only once an in-process backend is chosen, never at plugin import
        from dsr_backend.engine import Engine
        from dsr_backend.errors import DSRError

        self._engine, self._errors = Engine(), DSRError
        self.label = f"in-process (a thread of PyMOL's Python, {sys.executable})"

    def __getattr__(self, name: str):
        method = getattr(self._engine, name)

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except self._errors as error:
                raise CmdException(str(error)) from None

        return call


def embedded_backend(kind: str = "embedded", python: str = "") -> Backend:
    """An embedded backend: ``thread`` (in-process), ``subprocess`` (``python`` or $PYMOL_DSR_PYTHON), or
    ``embedded``: in-process when PyMOL's Python has torch, else the subprocess of $PYMOL_DSR_PYTHON."""
    python = python or os.environ.get(PYTHON_VARIABLE, "")
    if kind == "thread" or (kind == "embedded" and torch_in_pymol()):
        return InProcessBackend()
    if kind in ("subprocess", "embedded") and python:
        return SubprocessBackend(python)
    if kind in ("subprocess", "embedded"):
        raise CmdException(install_hint())
    raise CmdException(f"unknown backend '{kind}'; choose embedded, thread or subprocess")


class _Pending:
    """One request waiting for its reply."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: dict = {}


class SubprocessBackend:
    """A ``dsr_backend.worker`` process of another Python, spoken to in JSON lines."""

    def __init__(self, python: str, env: dict[str, str] | None = None):
        self.python = python
        self.label = f"subprocess ({python})"
        try:
            self._process = subprocess.Popen(
                [python, "-m", "dsr_backend.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        except OSError as error:
            raise CmdException(f"cannot run the Python '{python}' for the DSR backend: {error}") from None
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._jobs: dict[str, dict] = {}
        self._ready = _Pending()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=8)
        threading.Thread(target=self._read_replies, daemon=True, name="dsr-worker-replies").start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True, name="dsr-worker-stderr")
        self._stderr_reader.start()
        if not self._ready.done.wait(START_TIMEOUT) or self._ready.reply.get("event") != "ready":
            self.close()
            self._stderr_reader.join(5)
            reason = self._stderr_tail[-1] if self._stderr_tail else "no reply"
            raise CmdException(f"the DSR backend did not start in '{python}' ({reason}); {install_hint()}")
        self.info = self._ready.reply

    def _read_replies(self) -> None:
        for line in self._process.stdout:
            message = json.loads(line)
            if message.get("event") == "ready":
                self._ready.reply = message
                self._ready.done.set()
            elif message.get("event") == "job":
                with self._lock:
                    self._jobs[message["job"]["id"]] = message["job"]
            else:
                with self._lock:
                    pending = self._pending.pop(message.get("id"), None)
                if pending is not None:
                    pending.reply = message
                    pending.done.set()
        self._fail_pending()

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr_tail.append(line.rstrip())
            sys.stderr.write(line)

    def _fail_pending(self) -> None:
        self._process.wait()
        reason = f"the DSR backend process exited (code {self._process.returncode})"
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for request in pending + [self._ready]:
            request.reply = request.reply or {"ok": False, "error": reason}
            request.done.set()

    def _call(self, op: str, arrays: dict[str, np.ndarray] | None = None, **args: Any) -> Any:
        pending = _Pending()
        message: dict[str, Any] = {"op": op, "args": args, "arrays": None}
        if arrays:
            fd, message["arrays"] = tempfile.mkstemp(prefix="dsr-request-", suffix=".npz")
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
        with self._lock:
            if self._process.poll() is not None:
                raise CmdException(f"the DSR backend process has exited (code {self._process.returncode}); "
                                   "choose the backend again with dsr_backend")
            self._next_id += 1
            message["id"] = self._next_id
            self._pending[self._next_id] = pending
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        pending.done.wait()
        reply = pending.reply
        if not reply.get("ok"):
            raise CmdException(reply.get("error", "the DSR backend failed"))
        return _unpack(reply["result"], _read_arrays(reply.get("arrays")))

    def __getattr__(self, name: str):
        """The operation ``name`` of :class:`Backend`, sent to the worker with its arguments bound by name."""
        if name not in OPERATIONS:
            raise AttributeError(name)
        signature = inspect.signature(getattr(Backend, name))

        def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = {key: _plain(value) for key, value in list(bound.arguments.items())[1:]}
            return self._call(name, arrays=arguments.pop("arrays", None), **arguments)

        return call

    def job(self, job_id: str) -> dict:
        """The latest job event the worker sent, else the job asked for."""
        with self._lock:
            latest = self._jobs.get(job_id)
        return latest if latest is not None else self._call("job", job_id=job_id)

    def close(self) -> None:
        """End the worker (it cancels its jobs and deletes its files)."""
        if self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _plain(value: Any) -> Any:
    """An argument as JSON carries it: numpy numbers and vectors as Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def _read_arrays(path: str | None) -> dict[str, np.ndarray]:
    if not path:
        return {}
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    os.unlink(path)
    return arrays


def _unpack(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Put the arrays of a reply back where the worker's ``{"$array": key}`` markers are."""
    if isinstance(value, dict):
        if set(value) == {"$array"}:
            return arrays[value["$array"]]
        return {key: _unpack(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_unpack(item, arrays) for item in value]
    return value
