"""A training task: the atoms collected by ``dsr_train`` -> (PyMOL surfaces) -> a backend job -> feedback.

The same :meth:`TrainTask.run` serves scripts (called in the caller's thread, blocking) and the GUI
(:meth:`TrainTask.start` runs it in a daemon thread). It never calls the user's ``cmd``: the chempy
models of ``surface=pymol`` are taken before it starts, and their surfaces are made in a private PyMOL.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from pymol import CmdException

from .atoms import AtomFrames
from .backend import Backend
from .pymol_surface import pymol_surfaces

FINISHED = ("done", "failed", "cancelled")
POLL_SECONDS = 0.5
PREVIEW_SECONDS = 5.0  # at most one preview update this often
REPORT_EVERY = 0.1  # feedback line every 10 % of the training steps

Report = Callable[[str], None]

DEFAULT_PROBE = 1.4  # Å, the engine's default probe radius


def atom_arrays(frames: Sequence[AtomFrames]) -> dict[str, np.ndarray]:
    """The flat training arrays (``times``, ``proteins``, ``sizes``, ``coords``, ``radii``) of atom frames;
    each object is one protein, each of its states one frame at time = state number."""
    times, proteins, sizes, coords, radii = [], [], [], [], []
    for protein, frame in enumerate(frames):
        for index, state in enumerate(frame.states):
            times.append(float(state))
            proteins.append(protein)
            sizes.append(len(frame.radii))
            coords.append(frame.coords[index])
            radii.append(frame.radii)
    return dict(times=np.array(times), proteins=np.array(proteins, dtype=np.int64),
                sizes=np.array(sizes, dtype=np.int64), coords=np.concatenate(coords).astype(np.float32),
                radii=np.concatenate(radii).astype(np.float32))


def train_settings(name: str, frames: Sequence[AtomFrames], selection: str, surface: str, preset: str,
                   steps: int, device: str, members: int = 1, quality: str = "quick", probe: float = 1.4,
                   minutes: float = 0.0) -> dict:
    """The backend's training settings, with what the checkpoint should remember about the PyMOL side.
    ``members``, ``quality``, ``probe`` and ``minutes`` go only where they differ from the default, so that
    servers older than those settings take the rest."""
    objects = [frame.object for frame in frames]
    several: dict = {"members": members} if members > 1 else {}
    if minutes:
        several["minutes"] = minutes
    if quality != "quick":
        several["quality"] = quality
    if probe != DEFAULT_PROBE and surface == "ses":
        several["probe"] = probe
    return dict(name=name, preset=preset, steps=steps, **several, device=device, protein_names=objects,
                metadata=dict(source="pymol_dsr", selection=selection, surface=surface, objects=objects,
                              states={frame.object: frame.states for frame in frames},
                              **({"probe": probe} if surface == "ses" else {})))


def point_arrays(arrays: dict[str, np.ndarray], surfaces: Sequence[tuple[np.ndarray, np.ndarray]]) \
        -> dict[str, np.ndarray]:
    """Training arrays with precomputed surfaces (``points``, ``normals``) in place of the atoms."""
    return dict(times=arrays["times"], proteins=arrays["proteins"],
                sizes=np.array([len(points) for points, _ in surfaces], dtype=np.int64),
                points=np.concatenate([points for points, _ in surfaces]),
                normals=np.concatenate([normals for _, normals in surfaces]))


def progress_line(job: dict) -> str:
    """One line on a job: phase, percentage, steps, loss, time so far and left."""
    step, total = job.get("step", 0), job.get("total", 0)
    if job.get("state") == "queued":
        return f"{job['name']}: waiting in the server's queue"
    if job.get("phase") != "training":
        return f"{job['name']}: {job.get('phase', 'surfaces')} {step}/{total} states"
    line = f"{job['name']}: training {100 * step / max(total, 1):.0f}% ({step}/{total} steps)"
    if job.get("loss") is not None:
        line += f", loss {job['loss']:.4g}"
    line += f", {duration(job.get('seconds', 0.0))}"
    if job.get("eta") is not None and step < total:
        line += f", about {duration(job['eta'])} left"
    return line


def duration(seconds: float) -> str:
    """A time as people say it: "45 s", "12 min", "1 h 57 min"."""
    if seconds < 99.5:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@dataclass
class TrainTask:
    """One ``dsr_train`` call, followed from submission to the stored model.

    Parameters
    ----------
    backend : where the job runs.
    settings : the backend's training settings (``name``, ``preset``, ``steps``, ``device``, ...).
    arrays : atom arrays from :func:`atom_arrays`.
    chempy_models : with ``surface=pymol``, one chempy model per frame (in frame order), made into PyMOL
        surfaces before submission; None for the backend's solvent-excluded surface.
    quality : PyMOL's ``surface_quality`` for ``surface=pymol``.
    report : where feedback lines go (``print`` by default; None: no feedback).
    preview : called while the model trains, at most every :data:`PREVIEW_SECONDS` and only when it has
        moved on (e.g. to show its surface as it stands); set it before or after the start.
    """

    backend: Backend
    settings: dict
    arrays: dict[str, np.ndarray]
    chempy_models: list | None = None
    quality: int = 0
    report: Report | None = print
    preview: Callable[[], None] | None = None
    job_id: str = field(default="", init=False)
    _status: dict = field(init=False)
    _started: float = field(default_factory=time.time, init=False)
    _cancel: threading.Event = field(default_factory=threading.Event, init=False)
    _finished: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        phase = "PyMOL surfaces" if self.chempy_models is not None else "surfaces"
        self._status = dict(name=self.name, state="running", phase=phase, step=0, total=len(self.arrays["times"]),
                            loss=None, error="", seconds=0.0)

    @property
    def name(self) -> str:
        return self.settings["name"]

    @classmethod
    def following(cls, backend: Backend, job: dict, report: Report | None = print) -> "TrainTask":
        """A started task that follows a job submitted elsewhere (e.g. by an earlier session to a server)."""
        task = cls(backend, dict(name=job["name"]), dict(times=np.zeros(0)), report=report)
        task.job_id, task._status = job["id"], dict(job)
        task._in_thread(lambda: task._until_end(task._follow))
        return task

    def start(self) -> None:
        """Run in a daemon thread and report the outcome there."""
        self._in_thread(self.run)

    def _in_thread(self, run: Callable[[], dict]) -> None:
        threading.Thread(target=lambda: self._say(self.outcome(run())), daemon=True,
                         name=f"dsr-task-{self.name}").start()

    def run(self) -> dict:
        """Prepare, submit and follow the job to its end; returns the final status."""
        def submit_and_follow() -> None:
            arrays = self._prepared_arrays()
            if not self._cancel.is_set():
                self.job_id = self.backend.submit_train(self.settings, arrays)
                self._follow()

        return self._until_end(submit_and_follow)

    def _until_end(self, work: Callable[[], None]) -> dict:
        """Run ``work``; whatever happens the task ends with a state. Returns the final status."""
        try:
            work()
            if self._cancel.is_set() and self._status["state"] == "running":
                self._status.update(state="cancelled", seconds=time.time() - self._started)
        except Exception as error:  # the task must end with a status, whatever failed
            message = error.message if isinstance(error, CmdException) else str(error)
            self._status.update(state="failed", error=message or type(error).__name__)
        finally:
            self._finished.set()
        return self.status()

    def _prepared_arrays(self) -> dict[str, np.ndarray]:
        if self.chempy_models is None:
            self._say(f"{self.name}: {len(self.arrays['times'])} states, solvent-excluded surfaces on the backend")
            return self.arrays
        self._say(f"{self.name}: PyMOL surfaces of {len(self.chempy_models)} states")

        def progress(done: int, total: int) -> None:
            self._status.update(step=done, total=total, seconds=time.time() - self._started)

        surfaces = pymol_surfaces(self.chempy_models, self.quality, progress, self._cancel)
        return point_arrays(self.arrays, surfaces)

    def _follow(self) -> None:
        reported, previewed = -1, (0, 0.0)
        while True:
            if self._cancel.is_set():  # also covers a cancel that came while the job was being submitted
                self.backend.cancel(self.job_id)
            job = self.backend.wait(self.job_id, POLL_SECONDS)
            self._status = dict(job)
            training = job["phase"] == "training" and job["state"] == "running"
            if training and job["total"] and (job.get("eta") is not None or job["step"] >= job["total"]):
                tenth = int(job["step"] / job["total"] / REPORT_EVERY)
                if tenth > reported:  # the first line once the pace is known: it says how long to wait
                    reported = tenth
                    self._say(progress_line(job))
            if (training and self.preview is not None and job["step"] > previewed[0]
                    and time.time() - previewed[1] >= PREVIEW_SECONDS):
                previewed = (job["step"], time.time())
                self._show_preview()
            if job["state"] in FINISHED:
                return

    def _show_preview(self) -> None:
        """Call the preview; a failure is said once and ends the previews, not the training."""
        try:
            self.preview()
        except Exception as error:  # the preview is a view of the training, never a reason to stop it
            self.preview = None
            message = error.message if isinstance(error, CmdException) else str(error)
            self._say(f"{self.name}: preview stopped: {message or type(error).__name__}")

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(f" dsr_train: {line}")

    def status(self) -> dict:
        """The latest status: ``state`` (running, done, failed, cancelled), ``phase``, ``step``, ``total``,
        ``loss``, ``seconds``, ``error``."""
        return dict(self._status)

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    def fraction(self) -> float:
        """Progress of the current phase in [0, 1]."""
        status = self._status
        return min(1.0, status["step"] / status["total"]) if status.get("total") else 0.0

    def cancel(self) -> None:
        """Stop after the current state or step; no model is stored (the running task passes it on)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the task ends (or ``timeout`` seconds); returns the status."""
        self._finished.wait(timeout)
        return self.status()

    def outcome(self, status: dict | None = None) -> str:
        """A one-line summary of how the task ended (or how far it is)."""
        status = status or self._status
        if status["state"] == "done":
            loss = f", loss {status['loss']:.4g}" if status.get("loss") is not None else ""
            return (f"model '{self.name}' trained in {status['seconds']:.0f} s ({status['total']} steps{loss}); "
                    f"show it with: dsr_surface t=0.5, model={self.name}")
        if status["state"] == "cancelled":
            return (f"training of '{self.name}' was cancelled at {status['phase']} {status['step']}/"
                    f"{status['total']}; no model was stored")
        if status["state"] == "failed":
            return f"training of '{self.name}' failed: {status['error']}"
        return progress_line(status)
