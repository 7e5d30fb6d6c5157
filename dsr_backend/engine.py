"""The DSR engine behind every transport: training jobs and trained models, with plain dicts and arrays.

:class:`Engine` holds one session's jobs and models. Its operations, named in :data:`OPERATIONS`, are
what every transport offers: in-process in PyMOL's own Python, :mod:`dsr_backend.worker` (JSON lines over
stdin/stdout), and the HTTP service (:mod:`dsr_backend.server`). An operation's positional-or-keyword
parameters are its arguments on every transport; keyword-only ones are local to in-process callers.

Training data arrive as flat arrays: ``times`` (K,), ``proteins`` (K,), ``sizes`` (K,) and either
``coords`` (sum of sizes, 3) + ``radii`` (sum of sizes,) for solvent-excluded surfaces computed here, or
``points`` + ``normals`` for surfaces computed elsewhere (PyMOL's own surface).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import __version__
from .atomic import atomic_write, check_writable
from .checkpoint import resume_path
from .config import DEFAULT_PRESET, PRESETS, QUALITIES, TrainConfig, preset
from .errors import DSRError, InvalidInputError
from .evaluate import ReferenceFrames, evaluate
from .kplanes import KPlanesConfig
from .query import MIN_COMPONENT, extract_surfaces, sdf_grid
from .report import markdown_table
from .series import SurfaceSeries
from .surface import DEFAULT_PROBE, MAX_PROBE, solvent_excluded_surfaces
from .train import StepPace, Trainer
from .trained import TrainedModel, resolve_device

logger = logging.getLogger(__name__)

OPERATIONS = ("describe", "submit_train", "job", "jobs", "cancel", "wait", "models", "model_info",
              "save_model", "load_model", "delete_model", "surfaces", "sdf_grid", "evaluate")
"""The operations of :class:`Engine` that every transport offers, by method name."""

UPDATE_INTERVAL = 0.25  # seconds between job events sent while a job runs
FINISHED = ("done", "failed", "cancelled")

JobCallback = Callable[[dict], None]


@dataclass
class _Job:
    """Bookkeeping of one training job; :meth:`snapshot` is what callers see."""

    id: str
    name: str
    state: str = "running"          # running, done, failed, cancelled
    phase: str = "surfaces"         # surfaces, training
    step: int = 0
    total: int = 0
    loss: float | None = None
    error: str = ""
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    reported: float = 0.0           # time.monotonic() of the last event sent
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    pace: StepPace | None = None    # pace of the training steps; the rate and the ETA come from it
    trainer: Trainer | None = None  # while training: what a query of the unfinished model reads
    preview: tuple[int, TrainedModel] | None = None  # the last snapshot taken of it, and its step

    def training_model(self) -> TrainedModel | None:
        """The model as its training stands (a snapshot, taken again when the training has moved on), or
        None when the job is not training."""
        trainer = self.trainer
        if trainer is None or self.state != "running":
            return None
        if self.preview is None or self.preview[0] != trainer.step:
            step = trainer.step
            self.preview = (step, trainer.snapshot())
        return self.preview[1]

    def snapshot(self) -> dict:
        now = time.time()
        seconds = self.seconds if self.state in FINISHED else now - self.started
        snapshot = dict(id=self.id, name=self.name, state=self.state, phase=self.phase, step=self.step,
                        total=self.total, loss=self.loss, error=self.error, seconds=round(seconds, 3))
        seconds_per_step = self.pace.seconds_per_step if self.pace is not None else None
        if seconds_per_step:
            snapshot["rate"] = 1.0 / seconds_per_step
            if self.state == "running":
                snapshot["eta"] = round((self.total - self.step) * seconds_per_step, 1)
        return snapshot

    def start_training(self, step: int, total: int) -> None:
        """Enter the training phase at ``step`` of ``total``; the rate and the ETA wait for the
        :class:`~dsr_backend.train.StepPace` of the steps after the warm-up."""
        self.phase, self.step, self.total = "training", step, total
        self.pace = StepPace(step)

    def advance(self, step: int, total: int, loss: float) -> None:
        """Record a training step reported by the trainer."""
        self.step, self.total, self.loss = step, total, loss
        self.pace.record(step, time.time())


@dataclass
class _Stored:
    model: TrainedModel
    path: str
    loss: float | None = None


def _split(arrays: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    sizes = np.asarray(arrays["sizes"], dtype=np.int64)
    values = np.asarray(arrays[key])
    if sizes.sum() != len(values):
        raise InvalidInputError(f"'{key}' has {len(values)} rows but the frame sizes add up to {sizes.sum()}")
    return np.split(values, np.cumsum(sizes)[:-1])


def training_config(settings: dict, num_proteins: int = 1) -> TrainConfig:
    """The training configuration of a job's ``settings``: the preset at its ``quality`` with ``steps``,
    ``minutes`` and ``checkpoint_every`` applied where positive and ``members`` where not 0 (see
    :meth:`Engine.submit_train`)."""
    overrides: dict = {key: int(settings[key]) for key in ("steps", "checkpoint_every") if int(settings.get(key) or 0) > 0}
    if settings.get("minutes"):
        overrides["minutes"] = float(settings["minutes"])
    config = preset(str(settings.get("preset") or DEFAULT_PRESET), num_proteins=num_proteins,
                    quality=str(settings.get("quality") or "quick"), **overrides)
    members = int(settings.get("members") or 0)
    return config.with_members(members) if members else config


WORKDIR_PREFIX = "pymol-dsr-"
"""Each engine's private folder in the temporary directory is ``pymol-dsr-<pid>-<random>``."""


def remove_stale_workdirs() -> list[str]:
    """Delete the work folders of engines whose process is gone (killed sessions and services)."""
    removed = []
    root = tempfile.gettempdir()
    for entry in os.listdir(root):
        head, _, rest = entry.partition(WORKDIR_PREFIX)
        pid = rest.split("-", 1)[0]
        path = os.path.join(root, entry)
        if head or not pid.isdigit() or not os.path.isdir(path) or os.stat(path).st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(entry)
        except PermissionError:  # alive, another user's process
            pass
    return removed


class Engine:
    """Training jobs and trained models of one plugin session.

    Parameters
    ----------
    on_update : called with a job snapshot when a job's progress changes (from the job's thread).
    """

    def __init__(self, on_update: JobCallback | None = None):
        self._on_update = on_update
        remove_stale_workdirs()
        self._workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._models: dict[str, _Stored] = {}

    # ------------------------------------------------------------------ jobs
    def describe(self) -> dict:
        """Where this engine runs, its presets and those that take ``members``."""
        return dict(python=sys.executable, version=__version__, torch=torch.__version__,
                    cuda=torch.cuda.is_available(), pid=os.getpid(), presets=list(PRESETS), qualities=list(QUALITIES),
                    member_presets=[name for name in PRESETS if isinstance(preset(name).model, KPlanesConfig)])

    def submit_train(self, settings: dict, arrays: dict[str, np.ndarray], *, job_dir: str = "") -> str:
        """Start training in a daemon thread and return the job id.

        ``settings``: ``name``, ``preset``, ``quality`` (quick or best), ``steps`` (0: the preset's),
        ``minutes`` (a time budget instead of steps; 0: none),
        ``members`` (0: the preset's; fast preset), ``checkpoint_every`` (0: the preset's), ``device`` ("" or "auto": CUDA when available),
        ``protein_names``, ``metadata``, ``probe`` (Å, for surfaces computed here; default 1.4).
        ``arrays``: see the module docstring. ``job_dir``: a folder of the caller's for the job's
        ``series.npz`` and ``checkpoint.pt``, kept on cancel; when they exist the job reuses the series and
        resumes the checkpoint. Default: files of the engine's own, deleted on cancel.
        """
        name = str(settings.get("name") or "")
        if not name:
            raise InvalidInputError("a training job needs a model name")
        training_config(settings)  # unknown presets, members and devices fail here, not later
        probe = settings.get("probe", DEFAULT_PROBE)
        if not isinstance(probe, (int, float)) or not 0 <= probe <= MAX_PROBE:
            raise InvalidInputError(f"probe must be a radius in Å from 0 to {MAX_PROBE:g}, got {probe!r}")
        resolve_device(settings.get("device") or None)
        with self._lock:
            if any(job.name == name and job.state == "running" for job in self._jobs.values()):
                raise InvalidInputError(f"model '{name}' is already training; cancel that job first")
            job = _Job(id=uuid.uuid4().hex[:12], name=name)
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, dict(settings), dict(arrays), job_dir), daemon=True,
                         name=f"dsr-train-{name}").start()
        return job.id

    def job(self, job_id: str) -> dict:
        """Snapshot of one job."""
        return self._job(job_id).snapshot()

    def jobs(self) -> list[dict]:
        """Snapshots of every job of this session, oldest first."""
        with self._lock:
            return [job.snapshot() for job in self._jobs.values()]

    def cancel(self, job_id: str) -> dict:
        """Ask a job to stop after its current step; returns its snapshot."""
        job = self._job(job_id)
        job.cancel.set()
        return job.snapshot()

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Block until the job ends or ``timeout`` seconds pass; returns its snapshot."""
        job = self._job(job_id)
        job.finished.wait(timeout)
        return job.snapshot()

    def _job(self, job_id: str) -> _Job:
        with self._lock:
            if job_id not in self._jobs:
                raise InvalidInputError(f"no training job with id {job_id!r}")
            return self._jobs[job_id]

    def _update(self, job: _Job, force: bool = False) -> None:
        now = time.monotonic()
        if self._on_update is None or (not force and now - job.reported < UPDATE_INTERVAL):
            return
        job.reported = now
        self._on_update(job.snapshot())

    def _run(self, job: _Job, settings: dict, arrays: dict[str, np.ndarray], job_dir: str) -> None:
        try:
            device = resolve_device(settings.get("device") or None)
            series_file = os.path.join(job_dir, "series.npz") if job_dir else ""
            if series_file and os.path.isfile(series_file):
                series = SurfaceSeries.load(series_file)
            else:
                series = self._series(job, settings, arrays, device)
                if series is not None and series_file:
                    series.save(series_file)
            if series is not None and not job.cancel.is_set():
                self._train(job, settings, series, device, job_dir)
            if job.cancel.is_set() and job.state == "running":
                job.state = "cancelled"
        except DSRError as error:
            job.state, job.error = "failed", str(error)
        except Exception as error:  # the job thread must report every failure, not die silently
            logger.error("training job %s failed:\n%s", job.name, traceback.format_exc())
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
        finally:
            job.seconds = time.time() - job.started
            job.finished.set()
            self._update(job, force=True)

    def _series(self, job: _Job, settings: dict, arrays: dict[str, np.ndarray], device) -> SurfaceSeries | None:
        """The surface series of a job's frames (computing SES where atoms were sent); None if cancelled."""
        times = np.asarray(arrays["times"], dtype=np.float64)
        job.total = len(times)
        if "coords" in arrays:
            def done(count: int) -> bool:
                job.step = count
                self._update(job)
                return job.cancel.is_set()

            surfaces = solvent_excluded_surfaces(_split(arrays, "coords"), _split(arrays, "radii"), device, done,
                                                 probe=float(settings.get("probe", DEFAULT_PROBE)))
            if surfaces is None:
                return None
            points, normals = [s.points for s in surfaces], [s.normals for s in surfaces]
        else:
            points, normals = _split(arrays, "points"), _split(arrays, "normals")
        names = settings.get("protein_names") or ["protein"]
        return SurfaceSeries(points, normals, times, proteins=arrays.get("proteins"), protein_names=names)

    def _train(self, job: _Job, settings: dict, series: SurfaceSeries, device, job_dir: str) -> None:
        path = os.path.join(job_dir or self._workdir, "checkpoint.pt" if job_dir else f"{job.id}.pt")
        if os.path.isfile(resume_path(path)):
            trainer = Trainer.resume(path, series, device)
        else:
            config = training_config(settings, series.num_proteins)
            trainer = Trainer(series, config, device, metadata=settings.get("metadata"))
        job.start_training(trainer.step, trainer.total_steps)
        job.trainer = trainer
        self._update(job, force=True)

        def progress(step: int, total: int, record: dict) -> None:
            job.advance(step, total, float(record["loss"]))
            self._update(job)

        try:
            result = trainer.run(checkpoint=path, progress=progress, cancel=job.cancel)
        finally:
            job.trainer = job.preview = None
        if result.cancelled:
            if not job_dir:
                for leftover in (path, resume_path(path)):
                    os.unlink(leftover)
            return
        self._put_model(job.name, _Stored(result.model, path, result.final_loss))
        job.state = "done"

    # ------------------------------------------------------------------ models
    def models(self) -> list[dict]:
        """Information on every stored model, then on every model still training (see :meth:`model_info`)."""
        with self._lock:
            names = list(self._models)
            training = [job.name for job in self._jobs.values() if job.trainer is not None and job.name not in names]
        return [self.model_info(name) for name in names + training]

    def model_info(self, name: str) -> dict:
        """Name, protein names, trained time range, preset, architecture, steps, loss and metadata of a model.

        While a model of that name trains, the training's current state, with ``training``: ``step`` and
        ``total`` (the queries of that name read the same state).
        """
        job = self._training_job(name)
        if job is not None:
            model, loss, training = job.training_model(), job.loss, dict(step=job.step, total=job.total)
        else:
            stored = self._stored(name)
            model, loss, training = stored.model, stored.loss, None
        info = dict(name=name, protein_names=list(model.protein_names),
                    time_range=[model.time_map.start, model.time_map.stop], static=model.time_map.is_static,
                    preset=model.config.preset, architecture=model.config.model.describe(), step=model.step,
                    loss=loss, device=str(model.device), metadata=model.metadata)
        return info if training is None else dict(info, training=training)

    def _training_job(self, name: str) -> _Job | None:
        """The running job that trains model ``name``, once it has a model to show."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.name == name and job.trainer is not None]
        return jobs[-1] if jobs else None

    def _query_model(self, name: str) -> TrainedModel:
        """What queries of model ``name`` read: the training's current state while it trains, else the
        stored model."""
        job = self._training_job(name)
        model = job.training_model() if job is not None else None
        return model if model is not None else self._stored(name).model

    def _stored(self, name: str) -> _Stored:
        with self._lock:
            if name not in self._models:
                known = ", ".join(self._models) or "none"
                raise InvalidInputError(f"no DSR model named '{name}' (models: {known})")
            return self._models[name]

    def save_model(self, name: str, path: str) -> dict:
        """Write a model's checkpoint to ``path``."""
        job = self._training_job(name)
        if job is not None:
            raise InvalidInputError(f"model '{name}' is still training (step {job.step} of {job.total}); save it "
                                    "when the training ends")
        stored = self._stored(name)
        path = os.path.abspath(os.path.expanduser(path))
        if os.path.abspath(stored.path) == path:
            return dict(name=name, path=path)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            check_writable(path)
            with open(stored.path, "rb") as source:
                atomic_write(path, lambda handle: shutil.copyfileobj(source, handle))
        except OSError as error:
            raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from None
        return dict(name=name, path=path)

    def load_model(self, path: str, name: str, device: str = "") -> dict:
        """Read a checkpoint and store it as ``name`` (a private copy, so the file may change later)."""
        path = os.path.abspath(os.path.expanduser(path))
        model = TrainedModel.load(path, device=device or None)
        copy = os.path.join(self._workdir, f"loaded-{uuid.uuid4().hex[:12]}.pt")
        shutil.copyfile(path, copy)
        self._put_model(name, _Stored(model, copy))
        return self.model_info(name)

    def delete_model(self, name: str) -> dict:
        """Forget model ``name`` (and delete the engine's own copy of its checkpoint)."""
        self._stored(name)  # an unknown name fails with the list of models
        with self._lock:
            stored = self._models.pop(name, None)
        if stored is not None:
            self._discard(stored)
        return dict(name=name)

    def _put_model(self, name: str, stored: _Stored) -> None:
        """Store a model as ``name``, dropping the one it replaces."""
        with self._lock:
            previous = self._models.get(name)
            self._models[name] = stored
        if previous is not None and previous.path != stored.path:
            self._discard(previous)

    def _discard(self, stored: _Stored) -> None:
        """Delete a dropped model's checkpoint when it is one of the engine's files (callers keep theirs)."""
        if os.path.dirname(os.path.abspath(stored.path)) == self._workdir and os.path.isfile(stored.path):
            os.unlink(stored.path)

    # ------------------------------------------------------------------ queries
    def surfaces(self, model: str, ts: list[float], levels: list[float], resolution: int = 64,
                 protein: int | str = 0, with_speed: bool = False,
                 min_component: float | None = None) -> list[list[dict]]:
        """Level sets at several times: ``result[i][j]`` is a dict ``t``, ``level``, ``vertices`` (V, 3) Å,
        ``faces`` (F, 3), ``normals`` (V, 3) and, with ``with_speed``, ``speed`` (V,) Å per unit t.
        ``min_component`` (None: the library's default) drops floating specks, see ``extract_surfaces``."""
        meshes = extract_surfaces(self._query_model(model), list(ts), list(levels), int(resolution), protein,
                                  bool(with_speed),
                                  min_component=MIN_COMPONENT if min_component is None else min_component)
        return [[dict(t=m.t, level=m.level, vertices=m.vertices, faces=m.faces, normals=m.normals, **m.values)
                 for m in row] for row in meshes]

    def sdf_grid(self, model: str, t: float, resolution: int = 64, protein: int | str = 0) -> dict:
        """The SDF (Å) on a grid over the series box: ``grid`` (R, R, R) x-major, ``origin`` Å, ``spacing`` Å."""
        trained = self._query_model(model)
        grid = sdf_grid(trained, float(t), int(resolution), protein)
        origin = trained.normalization.to_angstrom(np.full((1, 3), -1.0))[0]
        spacing = 2.0 * trained.normalization.scale / (len(grid) - 1)
        return dict(grid=grid, origin=[float(v) for v in origin], spacing=float(spacing))

    def evaluate(self, model: str, arrays: dict[str, np.ndarray], train_times: list[float], protein: int | str = 0,
                 resolution: int = 128, samples: int = 300_000, baselines: bool = True,
                 frames: list[int] | None = None, all_times: list[float] | None = None) -> dict:
        """Score a model against reference atoms (``times`` (K,), ``coords`` (K, N, 3) Å, ``radii`` (N,)) by the
        paper's protocols (:mod:`dsr_backend.evaluate`) on ``frames`` (indices; default all; the baselines
        need the training frames among the atoms; future frames are counted among ``all_times``, default
        ``times``): ``summary``, ``frames``, and ``table`` in markdown."""
        reference = ReferenceFrames.from_atoms(arrays["coords"], arrays["radii"], arrays["times"])
        chosen = range(len(reference)) if frames is None else [int(i) for i in frames]
        result = evaluate(self._stored(model).model, reference, chosen, train_times, protein,
                          bool(baselines), resolution=int(resolution), samples=int(samples), all_times=all_times)
        return dict(result.to_dict(), table=markdown_table(result))

    def close(self) -> None:
        """Cancel running jobs and delete this session's files."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            job.finished.wait(30)
        shutil.rmtree(self._workdir, ignore_errors=True)
