"""Per-PyMOL-instance plugin state: the chosen backend, training tasks and the current model."""
from __future__ import annotations

import atexit
import threading

from pymol import CmdException, cmd

from .backend import Backend, embedded_backend
from .remote import RemoteBackend
from .training import TrainTask

BACKEND_KINDS = ("embedded", "thread", "subprocess", "remote")


class Session:
    """What the plugin remembers for one PyMOL instance."""

    def __init__(self) -> None:
        self.kind, self.python, self.url = "embedded", "", ""
        self._token = ""                    # of the remote backend; never shown
        self.current = ""                   # model used when a command names none
        self.tasks: dict[str, TrainTask] = {}
        self._backend: Backend | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ backend
    def backend(self) -> Backend:
        """The backend, started on first use."""
        with self._lock:
            if self._backend is None:
                self._backend = (RemoteBackend(self.url, self._token) if self.kind == "remote"
                                 else embedded_backend(self.kind, self.python))
                atexit.register(self._backend.close)
            return self._backend

    @property
    def started(self) -> bool:
        return self._backend is not None

    def set_backend(self, kind: str, python: str = "", url: str = "", token: str = "") -> Backend:
        """Switch backends (models of an embedded one are dropped; a remote one keeps its jobs and models);
        refused while a training of this session runs, and nothing changes when the new one cannot start. ``remote`` needs the server's ``url`` and ``token``."""
        if kind not in BACKEND_KINDS:
            raise CmdException(f"unknown backend '{kind}'; choose one of {', '.join(BACKEND_KINDS)}")
        if kind == "remote" and not url:
            raise CmdException("the remote backend needs the server's address: dsr_backend url=http://host:8765")
        running = [task.name for task in self.tasks.values() if task.running]
        if running:
            raise CmdException(f"'{running[0]}' is still training; dsr_wait or dsr_cancel it first")
        # start the new backend first: if it cannot start (a wrong token, no server), nothing has changed
        new = RemoteBackend(url, token) if kind == "remote" else embedded_backend(kind, python)
        with self._lock:
            old, self._backend = self._backend, new
            self.kind, self.python, self.url, self._token = kind, python, url, token
        atexit.register(new.close)
        if old is not None:
            atexit.unregister(old.close)
            old.close()
        self.tasks.clear()
        self.current = ""
        return new

    # ------------------------------------------------------------------ tasks and models
    def add_task(self, task: TrainTask) -> None:
        running = self.tasks.get(task.name)
        if running is not None and running.running:
            raise CmdException(f"model '{task.name}' is already training; dsr_cancel it or choose another name")
        self.tasks[task.name] = task
        self.current = task.name

    def task(self, name: str = "") -> TrainTask:
        """The latest task of a model (default: the running one, else the current model's)."""
        if not name:
            running = [task for task in self.tasks.values() if task.running]
            name = running[-1].name if running else self.current
        if name and name not in self.tasks and self.kind == "remote":
            self._follow_server_job(name)
        if name not in self.tasks:
            where = " or on the server" if self.kind == "remote" else ""
            raise CmdException(f"no training of '{name}' in this session{where}" if name else "no training yet")
        return self.tasks[name]

    def _follow_server_job(self, name: str) -> None:
        """Follow the server's queued or running job of model ``name`` (submitted by another session)."""
        active = [job for job in self.backend().jobs() if job["name"] == name and job["state"] in ("queued", "running")]
        if active:
            self.tasks[name] = TrainTask.following(self.backend(), active[-1])

    def model_info(self, name: str = "") -> dict:
        """Information on a model ready for queries (while it trains, its training's current state, with
        ``training``: ``step`` and ``total``); a one-line error if there is none yet."""
        name = name or self.current
        if not name:
            raise CmdException("no trained model: train one with dsr_train or load one with dsr_load")
        task = self.tasks.get(name)
        known = {info["name"]: info for info in self.backend().models()}
        if name in known:
            return known[name]
        if task is not None and task.running:
            raise CmdException(f"model '{name}' has nothing to show before its training starts ({task.outcome()}); "
                               "try again in a moment, or wait with dsr_wait")
        if task is not None:
            raise CmdException(task.outcome())
        raise CmdException(f"no DSR model named '{name}' (models: {', '.join(known) or 'none'})")


SESSION_ATTRIBUTE = "_pymol_dsr_session"


def session_for(_self=cmd) -> Session:
    """The session of the PyMOL instance ``_self`` belongs to (kept on the instance, so it lives as long)."""
    instance = _self._pymol  # the pymol module, or a weak proxy of a pymol2.PyMOL instance
    session = instance.__dict__.get(SESSION_ATTRIBUTE)  # not getattr: pymol2.PyMOL falls back to the module
    if session is None:
        session = Session()
        setattr(instance, SESSION_ATTRIBUTE, session)
    return session
