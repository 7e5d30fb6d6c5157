"""The service's jobs and models: a persistent queue over :class:`dsr_backend.engine.Engine`.

Every job and model is a row in SQLite (:class:`~.store.Store`); a job's files lie in
``DATA_DIR/jobs/<id>/``: ``input.npz`` (the validated upload), ``series.npz``, ``checkpoint.pt`` and
``checkpoint.resume.pt`` (written by the engine); once a job's end is recorded only a finished job's
``checkpoint.pt`` (its model) stays. Jobs
wait in the queue until a device has a free slot. A job that was running when the service stopped (SIGKILL
included) is queued again at the next start and resumes from its last checkpoint, unless a cancel had been
asked for. One service at a time holds a data directory (``DATA_DIR/serve.lock``).
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from .. import __version__
from ..atomic import temporary_target
from ..checkpoint import resume_path
from ..errors import DSRError, InvalidInputError
from ..trained import TrainedModel
from ..engine import Engine
from ..limits import check_query
from . import uploads
from .store import Store

logger = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
MAX_QUERY_MESHES = 256
"""Most meshes (times x levels) one surface query may return."""


class NotFoundError(DSRError, LookupError):
    """No job or model of that id or name."""


class ConflictError(DSRError):
    """The request clashes with a job in progress."""


@dataclass
class ServiceConfig:
    """Settings of one service.

    Parameters
    ----------
    data_dir : where the database and the artifacts live.
    devices : the torch devices jobs train on, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"]``.
    jobs_per_device : concurrent training jobs on each device; more wait in the queue.
    checkpoint_every : steps between checkpoints (what a restart may have to redo).
    max_upload_bytes : the size cap of one upload (uncompressed for ``.npz``).
    max_resolution : the largest grid of a surface query.
    max_queries : surface queries answered at the same time (the rest wait).
    """

    data_dir: str
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    jobs_per_device: int = 1
    checkpoint_every: int = 100
    max_upload_bytes: int = 256 * 1024 * 1024
    max_resolution: int = 256
    max_queries: int = 2


@dataclass
class _Run:
    """One run of a job in this process (a resumed job has several runs over its life)."""

    engine_id: str
    device: str
    seconds_before: float
    resumed: bool
    started: float = field(default_factory=time.time)
    training_seen: bool = False     # whether a progress report of this run's training has come in


def make_private(data_dir: str) -> None:
    """Make the data folder's contents its owner's alone (folders 700, files 600) whatever modes they were
    made with, and delete what interrupted writes left behind (``.upload-*`` files and
    :func:`~dsr_backend.atomic.temporary_name` files)."""
    for folder, folders, files in os.walk(data_dir):
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            if name.startswith(".upload-") or temporary_target(name) is not None:
                os.unlink(path)
            else:
                os.chmod(path, 0o600)


class JobService:
    """Training jobs and models of the HTTP service, persistent across restarts."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self._jobs_dir = os.path.join(config.data_dir, "jobs")
        self._models_dir = os.path.join(config.data_dir, "models")
        for folder in (self._jobs_dir, self._models_dir):
            os.makedirs(folder, exist_ok=True)
        make_private(config.data_dir)
        self._data_lock = FileLock(os.path.join(config.data_dir, "serve.lock"))
        try:
            self._data_lock.acquire(timeout=0)
        except Timeout:
            raise ConflictError(f"another dsr serve is using the data directory {config.data_dir}; stop it "
                                "or give this one another --data-dir") from None
        self.store = Store(os.path.join(config.data_dir, "dsr.sqlite3"))
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}          # job id -> its run in this process
        self._job_of: dict[str, str] = {}         # engine job id -> job id
        self._loaded: dict[str, str] = {}         # model name -> checkpoint path the engine holds
        self._queries = threading.Semaphore(config.max_queries)
        self._closing = False
        self.engine = Engine(on_update=self._on_update)
        for job in self.store.jobs("running"):
            if job["cancel_requested"]:
                logger.info("job %s (%s) was cancelled before the service stopped", job["id"], job["name"])
                self.store.update_job(job["id"], state="cancelled", eta=None, finished=time.time())
                self._discard_files(job["id"], cancelled=True)
                continue
            logger.info("job %s (%s) was running when the service stopped: queued to resume", job["id"], job["name"])
            self.store.update_job(job["id"], state="queued", phase="queued", eta=None)
        self._schedule()

    # ------------------------------------------------------------------ jobs
    def describe(self) -> dict[str, Any]:
        """The engine's facts (torch, CUDA, presets) and the service's settings."""
        return dict(self.engine.describe(), version=__version__, devices=list(self.config.devices),
                    jobs_per_device=self.config.jobs_per_device, max_upload_bytes=self.config.max_upload_bytes,
                    max_resolution=self.config.max_resolution)

    def submit(self, data: bytes) -> dict[str, Any]:
        """Validate an upload (see :func:`.uploads.training_upload`), queue the job and return its record."""
        settings, arrays = uploads.training_upload(data, self.config.max_upload_bytes)
        requested = self._requested_device(settings["device"])
        job_id = secrets.token_urlsafe(16)
        job_dir = self._job_dir(job_id)
        os.makedirs(job_dir)
        try:
            np.savez(os.path.join(job_dir, "input.npz"), **arrays)
            with self._lock:
                self._check_name_free(settings["name"])
                self.store.add_job(dict(id=job_id, name=settings["name"], state="queued", phase="queued",
                                        device=requested, settings=settings,
                                        created=time.time()))
        except BaseException:  # a refused or failed submission leaves nothing on disk
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        with self._lock:
            self._schedule()
        return self.job(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        """The public record of one job: state, phase, step, total, loss, ETA (s), metrics, times."""
        record = self.store.job(job_id)
        if record is None:
            raise NotFoundError(f"no job with id {job_id!r}")
        return _public(record)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job, oldest first."""
        return [_public(record) for record in self.store.jobs()]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once, or a running one after its current step."""
        with self._lock:
            record = self.job(job_id)
            if record["state"] == "queued":
                self.store.update_job(job_id, state="cancelled", phase="queued", finished=time.time(), eta=None)
                self._remove(os.path.join(self._job_dir(job_id), "input.npz"))
            elif job_id in self._runs:
                # recorded first: a service stopped before the run ends must not resume the job
                self.store.update_job(job_id, cancel_requested=1)
                self.engine.cancel(self._runs[job_id].engine_id)
        return self.job(job_id)

    def _check_name_free(self, name: str) -> None:
        if any(job["name"] == name for job in self.store.jobs(*ACTIVE)):
            raise ConflictError(f"model '{name}' is already queued or training; cancel that job first")

    def _requested_device(self, device: str) -> str:
        if device in ("", "auto"):
            return ""
        wanted = "cuda:0" if device == "cuda" else device
        if wanted not in self.config.devices:
            raise InvalidInputError(f"this server trains on {', '.join(self.config.devices)}; ask for one of "
                                    "those or leave the device empty")
        return wanted

    def _job_dir(self, job_id: str) -> str:
        return os.path.join(self._jobs_dir, job_id)

    def _free_device(self, requested: str) -> str | None:
        busy = [run.device for run in self._runs.values()]
        for device in ([requested] if requested else self.config.devices):
            if busy.count(device) < self.config.jobs_per_device:
                return device
        return None

    def _schedule(self) -> None:
        """Start queued jobs, oldest first, while devices have free slots."""
        with self._lock:
            if self._closing:
                return
            for record in self.store.jobs("queued"):
                device = self._free_device(record["device"])
                if device is not None:
                    self._start(record, device)

    def _start(self, record: dict[str, Any], device: str) -> None:
        job_id, job_dir = record["id"], self._job_dir(record["id"])
        checkpoint = os.path.join(job_dir, "checkpoint.pt")
        try:
            with np.load(os.path.join(job_dir, "input.npz"), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            settings = dict(record["settings"], device=device, checkpoint_every=self.config.checkpoint_every)
            engine_id = self.engine.submit_train(settings, arrays, job_dir=job_dir)
        except (DSRError, OSError, ValueError) as error:
            self.store.update_job(job_id, state="failed", error=str(error), finished=time.time())
            return
        self._runs[job_id] = _Run(engine_id, device, record["seconds"], os.path.isfile(resume_path(checkpoint)))
        self._job_of[engine_id] = job_id
        self.store.update_job(job_id, state="running", phase="starting", device=device,
                              started=record["started"] or time.time(), runs=record["runs"] + 1)

    def _on_update(self, snapshot: dict) -> None:
        """Progress of an engine job (called from its thread): into the database; at the end, the model."""
        if self._closing:
            return
        with self._lock:
            job_id = self._job_of.get(snapshot["id"])
            run = self._runs.get(job_id) if job_id else None
            if run is None:
                return
            fields = dict(phase=snapshot["phase"], step=snapshot["step"], total=snapshot["total"],
                          loss=snapshot["loss"], seconds=run.seconds_before + snapshot["seconds"])
            if snapshot["phase"] == "training" and not run.training_seen:
                run.training_seen = True
                if run.resumed:
                    fields["resumed_from"] = snapshot["step"]
            fields.update({key: snapshot[key] for key in ("rate", "eta") if key in snapshot})
            if snapshot["state"] == "running":
                self.store.update_job(job_id, **fields)
                return
            if snapshot["state"] == "done":
                try:
                    self._store_model(snapshot["name"], job_id)
                except Exception as error:  # a job must end with a state, whatever failed
                    logger.exception("storing the model of job %s failed", job_id)
                    snapshot = dict(snapshot, state="failed", error=f"storing the model failed: {error}")
            fields.update(state=snapshot["state"], error=snapshot["error"], eta=None, finished=time.time())
            self.store.update_job(job_id, **fields)
            del self._runs[job_id], self._job_of[snapshot["id"]]
        self._discard_files(job_id, cancelled=snapshot["state"] == "cancelled")
        self._schedule()

    def _discard_files(self, job_id: str, cancelled: bool) -> None:
        """Remove what an ended job will not read again: its inputs, and a cancelled job's checkpoint."""
        leftovers = ["input.npz", "series.npz", "checkpoint.resume.pt"] + (["checkpoint.pt"] if cancelled else [])
        for leftover in leftovers:
            self._remove(os.path.join(self._job_dir(job_id), leftover))

    @staticmethod
    def _remove(path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)

    # ------------------------------------------------------------------ models
    def _store_model(self, name: str, job_id: str) -> None:
        path = os.path.join(self._job_dir(job_id), "checkpoint.pt")
        self._put_model(name, path, self.engine.model_info(name), job_id)

    def _put_model(self, name: str, path: str, info: dict[str, Any], job_id: str | None) -> None:
        """Record (under the lock) the engine's model ``name`` as ``path``; the checkpoint it replaces goes."""
        previous = self.store.model(name)
        self.store.put_model(name, path, info, job_id, time.time())
        self._loaded[name] = path
        if previous is not None and previous["path"] != path:
            self._remove(previous["path"])

    def delete_model(self, name: str) -> dict[str, Any]:
        """Forget model ``name`` and delete its checkpoint (the record of the job that trained it stays)."""
        with self._lock:
            record = self._model(name)
            self.store.delete_model(name)
            if self._loaded.pop(name, None) is not None:
                self.engine.delete_model(name)
            self._remove(record["path"])
        return dict(name=name)

    def models(self) -> list[dict[str, Any]]:
        """Information on every model (name, proteins, time range, preset, steps, loss, metadata); a model
        still training is described as its training stands, with ``training`` (step, total)."""
        training = {info["name"]: info for info in self.engine.models() if "training" in info}
        stored = [training.pop(record["name"], record["info"]) for record in self.store.models()]
        return stored + list(training.values())

    def model_info(self, name: str) -> dict[str, Any]:
        info = self._training_info(name)
        return info if info is not None else self._model(name)["info"]

    def _training_info(self, name: str) -> dict[str, Any] | None:
        """The engine's description of model ``name`` while a job trains it (queries read that state)."""
        try:
            info = self.engine.model_info(name)
        except InvalidInputError:
            return None
        return info if "training" in info else None

    def _model(self, name: str) -> dict[str, Any]:
        record = self.store.model(name)
        if record is None:
            known = ", ".join(model["name"] for model in self.store.models()) or "none"
            raise NotFoundError(f"no DSR model named '{name}' (models: {known})")
        return record

    def checkpoint_path(self, name: str) -> str:
        """The checkpoint file of a model (to send to a client)."""
        path = self._model(name)["path"]
        if not os.path.isfile(path):
            raise NotFoundError(f"the checkpoint of model '{name}' is missing from the service's data folder; "
                                "delete the model and upload or train it again")
        return path

    def upload_model(self, name: str, data: bytes) -> dict[str, Any]:
        """Store an uploaded checkpoint as model ``name`` (read with ``weights_only=True``, never unpickled)."""
        uploads.check_name(name)
        fd, path = tempfile.mkstemp(dir=self._models_dir, prefix=".upload-", suffix=".pt")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            TrainedModel.load(path, device="cpu", label="the uploaded checkpoint")
            with self._lock:
                self._check_name_free(name)
                final = os.path.join(self._models_dir, f"{secrets.token_urlsafe(16)}.pt")
                os.replace(path, final)
                info = self.engine.load_model(final, name, self.config.devices[0])
                self._put_model(name, final, info, None)
        finally:
            self._remove(path)
        return info

    def _ready(self, name: str) -> str:
        """Make sure the engine holds the current checkpoint of ``name`` (loaded after a restart), unless a job
        trains it (the engine then answers from the training)."""
        if self._training_info(name) is not None:
            return name
        path = self.checkpoint_path(name)
        with self._lock:
            if self._loaded.get(name) != path:
                self.engine.load_model(path, name, self.config.devices[0])
                self._loaded[name] = path
        return name

    def surfaces(self, name: str, ts: list[float], levels: list[float], resolution: int, protein: int | str,
                 with_speed: bool, min_component: float | None = None) -> list[list[dict]]:
        """Meshes of model ``name`` at every t and level (see :meth:`Engine.surfaces`)."""
        self._check_query(ts, levels, resolution)
        name = self._ready(name)
        with self._queries:
            return self.engine.surfaces(name, ts, levels, resolution, protein, with_speed, min_component)

    def sdf_grid(self, name: str, t: float, resolution: int, protein: int | str) -> dict:
        """The SDF on a grid over the series box (see :meth:`Engine.sdf_grid`)."""
        self._check_query([t], [0.0], resolution)
        name = self._ready(name)
        with self._queries:
            return self.engine.sdf_grid(name, t, resolution, protein)

    def evaluate(self, name: str, data: bytes) -> dict[str, Any]:
        """Score model ``name`` against uploaded reference atoms (see :func:`.uploads.evaluation_upload`
        and :meth:`Engine.evaluate`): ``summary``, ``frames``, ``table``."""
        settings, arrays = uploads.evaluation_upload(data, self.config.max_upload_bytes, self.config.max_resolution)
        name = self._ready(name)
        with self._queries:
            return _json_safe(self.engine.evaluate(name, arrays, **settings))

    def _check_query(self, ts: list[float], levels: list[float], resolution: int) -> None:
        check_query(ts, levels, resolution, self.config.max_resolution)
        if len(ts) * len(levels) > MAX_QUERY_MESHES:
            raise InvalidInputError(f"ask for at most {MAX_QUERY_MESHES} meshes (times x levels) per query; "
                                    "split the request")

    def close(self) -> None:
        """Stop: running jobs write a checkpoint and stay 'running' in the database, to resume at next start."""
        with self._lock:
            self._closing = True
        self.engine.close()
        self.store.close()
        self._data_lock.release()


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A job record as clients see it (the stored settings reduced to what was asked for)."""
    settings = record["settings"]
    public = {key: record[key] for key in ("id", "name", "state", "phase", "step", "total", "loss", "eta",
                                           "error", "device", "created", "started", "finished", "seconds",
                                           "runs", "resumed_from")}
    public["cancelling"] = bool(record["cancel_requested"]) and record["state"] == "running"
    public.update(preset=settings["preset"], steps=settings["steps"], members=settings.get("members", 0),
                  protein_names=settings["protein_names"],
                  metrics=dict(loss=record["loss"], steps_per_second=record["rate"]))
    return public


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a frame without a model surface) as None, for JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
