"""Training a DSR model on a surface series: seeded, checkpointed, resumable, cancellable."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .atomic import remove_orphans
from .checkpoint import (ROW_OPTIMIZER_KEY, is_resume_checkpoint, model_only, read_checkpoint, resume_path,
                         save_checkpoint, unpacked)
from .config import TrainConfig
from .errors import InvalidInputError, ResourceLimitError, TrainingDivergedError
from .kplanes import TimeRows
from .loss import igr_loss
from .networks import build_network, fit_to_series
from .query import available_memory_bytes
from .row_adam import RowAdam
from .sampling import BYTES_PER_TRAINING_POINT, Batch, SeriesSampler, kept_sizes
from .series import SurfaceSeries
from .threads import training_threads
from .trained import TrainedModel, resolve_device

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict[str, float]], None]
HISTORY_EVERY = 10  # steps between the loss records kept in the history (and the checkpoint)
MIN_COMPILED_STEPS = 200
"""Fewest steps left for which ``config.compile`` compiles the loss: compiling takes seconds (a minute the
first time on a machine), which a shorter run does not earn back."""


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    model: TrainedModel
    steps_done: int
    total_steps: int
    cancelled: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    last_record: dict[str, float] | None = None

    @property
    def final_loss(self) -> float:
        """Loss of the last step taken (NaN when no step was taken)."""
        return self.last_record["loss"] if self.last_record else math.nan


class Trainer:
    """Holds the network, optimiser, schedule and random state of one training run.

    A K-Planes model whose steps draw fewer time nodes than it has (``frames_per_step``) trains row-sparse:
    each step differentiates copies of the drawn nodes' rows of the space-time planes and a :class:`RowAdam`
    updates those rows alone, so the cost of a step does not grow with the number of nodes.
    """

    ROW_SPARSE = True
    """Whether this trainer trains the space-time planes row-sparse where the sampler allows it."""

    def __init__(self, series: SurfaceSeries, config: TrainConfig, device: str | torch.device | None = None,
                 metadata: dict[str, Any] | None = None):
        if config.model.num_proteins != series.num_proteins:
            raise InvalidInputError(f"the configuration has {config.model.num_proteins} latent codes but the "
                                    f"series has {series.num_proteins} proteins")
        config = dataclasses.replace(config, model=fit_to_series(config.model, series.model_times()))
        self.series, self.config = series, config
        self.device = resolve_device(device)
        self.metadata = dict(metadata or {})
        if series.time_map.is_static:
            logger.info("the series has a single time point: the model is static")
        torch.manual_seed(config.seed)
        self.network = build_network(config.model).to(self.device)
        check_training_memory(series, self.network)
        node_times = getattr(config.model, "node_times", None)
        self.sampler = SeriesSampler(series, config.batch_size, config.frames_per_step, config.knn,
                                     config.global_fraction, self.device, distances=config.distance_weight > 0,
                                     knn_subsample=config.knn_subsample, deep_spread=config.deep_spread,
                                     node_times=None if node_times is None else np.asarray(node_times))
        # a step that draws some time nodes trains copies of their rows (TimeRows), updated by a RowAdam
        time_planes = [plane for model in self.models() for plane in getattr(model, "time_planes", [])]
        self.row_optimizer = RowAdam(time_planes) if self.sampler.row_sparse and self.ROW_SPARSE else None
        rowwise = {id(plane) for plane in time_planes} if self.row_optimizer else set()
        # fused: one pass over each parameter a step (on a CPU the plain Adam step takes a tenth of a fast step)
        self.optimizer = torch.optim.Adam([parameter for parameter in self.network.parameters()
                                           if id(parameter) not in rowwise], lr=config.lr, fused=True)
        self.total_steps = config.total_steps(series.num_frames)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(  # of the step alone, over the total as it stands
            self.optimizer, lambda step: config.lr_factor(step, self.total_steps, series.num_frames))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        compiled = config.compile and self.total_steps >= MIN_COMPILED_STEPS
        self.loss_function = torch.compile(igr_loss, dynamic=False) if compiled else igr_loss
        self._time_rows: list[TimeRows] = []
        self._weights_lock = threading.Lock()
        self.exact_resume = True  # False after :meth:`resume` from a model file without optimiser state
        self._prefetch = BatchPrefetch(self.sampler, self.generator) if self.device.type == "cpu" else None
        self.step = 0
        self.seconds = 0.0  # wall time spent in :meth:`run` over the whole run, resumes included
        self.history: list[dict[str, float]] = []
        self.last_record: dict[str, float] | None = None

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything needed to query the model or continue training exactly."""
        norm, times = self.series.normalization, self.series.time_map
        return {
            "config": self.config.to_dict(), "model_state": self.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.scheduler.state_dict(),
            **({ROW_OPTIMIZER_KEY: self.row_optimizer.state_dict()} if self.row_optimizer else {}),
            "generator_state": self._prefetch.generator_state() if self._prefetch else self.generator.get_state(),
            "step": self.step, "total_steps": self.total_steps, "seconds": self.seconds,
            "normalization": {"center": list(norm.center), "scale": norm.scale},
            "time_map": {"start": times.start, "stop": times.stop},
            "protein_names": list(self.series.protein_names), "metadata": self.metadata,
            "history": self.history,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` and the resume checkpoint beside it (:func:`resume_path`)."""
        state = self.state()
        try:
            save_checkpoint(resume_path(path), state)
            save_checkpoint(path, model_only(state, self.config.storage))
        except OSError as error:  # a full disk or a folder gone: the files written before stay whole
            raise InvalidInputError(f"cannot write the checkpoint {path} at step {self.step}: "
                                    f"{error.strerror or error}") from None

    @classmethod
    def resume(cls, path: str | os.PathLike, series: SurfaceSeries, device: str | torch.device | None = None,
               steps: int = 0) -> "Trainer":
        """Continue the run of the model file ``path`` on the same ``series``; ``steps`` > 0 sets a new total.

        From its resume checkpoint (or ``path`` itself when it is one) the run goes on exactly as if it had
        not stopped. A model file alone (a finished run keeps no resume checkpoint) goes on from its weights
        with a fresh optimiser, at the learning rate of its step; ``exact_resume`` then says False.
        """
        device = resolve_device(device)
        if os.path.isfile(resume_path(path)):
            path = resume_path(path)
        state = read_checkpoint(path, map_location=device)
        config = TrainConfig.from_dict(state["config"])
        if steps > 0:
            config = dataclasses.replace(config, minutes=0.0)
        norm = state["normalization"]
        if (list(series.protein_names) != list(state["protein_names"])
                or abs(series.normalization.scale - float(norm["scale"])) > 1e-6 * float(norm["scale"])):
            raise InvalidInputError(f"{path} was trained on a different surface series")
        trainer = cls(series, config, device, metadata=state.get("metadata"))
        trainer.network.load_state_dict(state["model_state"])
        trainer.step = int(state["step"])
        trainer.seconds = float(state.get("seconds", 0.0))
        trainer.exact_resume = is_resume_checkpoint(state)
        trainer.total_steps = steps if steps > 0 else int(state["total_steps"])
        if trainer.exact_resume:
            trainer.optimizer.load_state_dict(state["optimizer_state"])
            if trainer.row_optimizer is not None:
                trainer.row_optimizer.load_state_dict(state[ROW_OPTIMIZER_KEY])
            trainer.generator.set_state(state["generator_state"].cpu())
        else:
            trainer.generator.manual_seed(config.seed + trainer.step)  # not the batches it already drew
        trainer.scheduler.last_epoch = trainer.step  # the schedule is a function of the step
        trainer.follow_schedule()
        trainer.history = list(state.get("history", []))
        return trainer

    def follow_schedule(self) -> None:
        """Set the learning rate to the schedule's at the current step and total (after a resume, or when a
        time budget resizes the run)."""
        rate = self.config.lr * self.config.lr_factor(self.step, self.total_steps, self.series.num_frames)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def snapshot(self) -> TrainedModel:
        """The model as it stands, safe to call from another thread while the training runs (a copy of the
        weights taken between two optimiser steps)."""
        with self._weights_lock:
            state = model_only({**self.state(), "model_state": {name: value.detach().clone() for name, value
                                                                in self.network.state_dict().items()}})
        return TrainedModel.from_state(state, self.device)

    # ------------------------------------------------------------------ training
    def models(self) -> list[torch.nn.Module]:
        """The network's members where it is an ensemble, else the network itself."""
        return list(getattr(self.network, "members", [self.network]))

    def batch_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the next batch, to differentiate, and the detached values to report ("loss" first)."""
        batch = self._prefetch.next() if self._prefetch else self.sampler.sample(self.generator)
        arguments = (self.network, batch, self.config.normal_weight, self.config.eikonal_weight,
                     self.config.latent_weight)
        settings = dict(dtype=self.compute_dtype, smoothness_weight=self.config.time_smoothness,
                        distance_weight=self.config.distance_weight)
        if self.row_optimizer is not None:
            self._time_rows = [TimeRows.of(model, batch.node_rows) for model in self.models()]
            ensemble = hasattr(self.network, "members")  # the loss takes one set of rows per member
            settings["time_rows"] = self._time_rows if ensemble else self._time_rows[0]
        try:
            loss, terms = self.loss_function(*arguments, **settings)
        except Exception as error:  # torch.compile fails where no compiler works: train without it
            if self.loss_function is igr_loss:
                raise
            logger.warning("torch.compile failed, training without it: %s", str(error).strip().splitlines()[0])
            self.loss_function = igr_loss
            loss, terms = igr_loss(*arguments, **settings)
        return loss, {"loss": loss.detach(), **terms}

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the network's matrix products (``config.precision``)."""
        return torch.bfloat16 if self.config.precision == "bf16" else torch.float32

    def train_step(self) -> dict[str, float]:
        """One optimiser step; raises :class:`TrainingDivergedError` on a non-finite loss."""
        with cuda_matmul_precision(self.device, self.config.precision):
            loss, reported = self.batch_loss()
            if not torch.isfinite(reported["loss"]):
                raise TrainingDivergedError(
                    f"the loss became {reported['loss'].item()} at step {self.step + 1}; the model was not saved. "
                    "Try a lower learning rate (--lr) or check the input surfaces.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with self._weights_lock:
            self.optimizer.step()
            if self.row_optimizer is not None:
                self.row_optimizer.step(self._time_rows[0].rows, [copy.grad for rows in self._time_rows
                                                                  for copy in rows.planes],
                                        self.optimizer.param_groups[0]["lr"])
        self.scheduler.step()
        self.step += 1
        record = {"step": self.step, **{k: v.item() for k, v in reported.items()}}
        if self.step % HISTORY_EVERY == 0 or self.step == self.total_steps:
            self.history.append(record)
        self.last_record = record
        return record

    def run(self, checkpoint: str | os.PathLike | None = None, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> TrainResult:
        """Train until ``total_steps`` or until ``cancel`` is set.

        The model ``checkpoint`` and its resume checkpoint are written every ``config.checkpoint_every``
        steps, at the end and on cancellation; the resume checkpoint is removed when the run completes. A
        diverged run raises before anything broken is written. With a time budget (``config.minutes``) the
        total is sized after every step to end the run when the budget, counted over the whole run (earlier
        runs included), is spent (:class:`TimeBudget`).
        """
        started = time.perf_counter()
        seconds_before = self.seconds
        budget = TimeBudget(60.0 * self.config.minutes, self.step) if self.config.minutes else None
        cancelled = False
        if checkpoint is not None:
            for path in (checkpoint, resume_path(checkpoint)):
                remove_orphans(path)
        self.network.train()
        with training_threads(self.device):
            while self.step < self.total_steps:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                record = self.train_step()
                self.seconds = seconds_before + time.perf_counter() - started
                if budget is not None:
                    total = budget.total_steps(self.step, self.total_steps, self.seconds)
                    if total != self.total_steps:
                        self.total_steps = total
                        self.follow_schedule()
                if checkpoint and self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                    self.save(checkpoint)
                if progress is not None:
                    progress(self.step, self.total_steps, record)
        if self._prefetch:
            self._prefetch.reset()
        self.seconds = seconds_before + time.perf_counter() - started
        if checkpoint:
            self.save(checkpoint)
            if not cancelled:  # every process of a distributed run gets here; one of them removes it
                with contextlib.suppress(FileNotFoundError):
                    os.remove(resume_path(checkpoint))
        self.network.eval()
        model = TrainedModel.from_state(unpacked(model_only(self.state(), self.config.storage)), self.device)
        return TrainResult(model=model, steps_done=self.step, total_steps=self.total_steps, cancelled=cancelled,
                           seconds=time.perf_counter() - started, history=self.history,
                           last_record=self.last_record)


class StepPace:
    """The mean time of the steps of a run, counted from the end of its first :attr:`WARMUP_STEPS` (those
    compile the loss, and would make the pace too slow); None until a step past them is recorded."""

    WARMUP_STEPS = 3

    def __init__(self, step: int):
        self._warm_step = step + self.WARMUP_STEPS
        self._warm_seconds: float | None = None
        self.seconds_per_step: float | None = None

    def record(self, step: int, seconds: float) -> None:
        """Step ``step`` ended ``seconds`` into the run (on any clock that does not go back)."""
        if step == self._warm_step:
            self._warm_seconds = seconds
        elif self._warm_seconds is not None and step > self._warm_step:
            self.seconds_per_step = (seconds - self._warm_seconds) / (step - self._warm_step)


class TimeBudget:
    """Sizes a run to a wall-time budget from the pace of its steps.

    After each step the run's total becomes the steps done plus as many as the time left holds at the
    :class:`StepPace` of this call of :meth:`Trainer.run`; until that is known it stays as it was. Once the
    budget is spent, the total is the steps done.
    """

    def __init__(self, seconds: float, step: int):
        self.seconds = seconds
        self._pace = StepPace(step)

    def total_steps(self, step: int, total: int, elapsed: float) -> int:
        """The run's total after ``step``, ``elapsed`` seconds of training into it (resumes included);
        ``total`` until the pace is known."""
        left = self.seconds - elapsed
        if left <= 0:
            return step
        self._pace.record(step, elapsed)
        if self._pace.seconds_per_step is None:
            return total
        return step + int(left / self._pace.seconds_per_step)


def check_training_memory(series: SurfaceSeries, network: torch.nn.Module) -> None:
    """Refuse a training whose sampler and optimiser would need more memory than the machine has available
    (saying how much), before they allocate it."""
    points = int(kept_sizes(series.frame_sizes()).sum())
    parameters = sum(parameter.numel() for parameter in network.parameters())
    needed = points * BYTES_PER_TRAINING_POINT + parameters * 4 * 4  # weights, gradients, two Adam moments
    available = available_memory_bytes()
    if needed > available:
        raise ResourceLimitError(
            f"training on {series.num_frames} frames needs about {needed / 2 ** 30:.1f} GiB ({points:,} surface "
            f"points, {parameters:,} parameters) but {available / 2 ** 30:.1f} GiB are available; train on fewer "
            "states or free memory")


class BatchPrefetch:
    """Draws the next batch in a background thread while a step runs on the current one (on a CPU the
    nearest-point searches of a batch cost a fifth of a fast step).

    The batches come in the order the sampler would draw them one after the other, and
    :meth:`generator_state` is the random state before the batch drawn ahead, so a checkpoint resumes exactly.
    """

    def __init__(self, sampler: SeriesSampler, generator: torch.Generator):
        self.sampler, self.generator = sampler, generator
        self._executor: ThreadPoolExecutor | None = None
        self._ahead: Future | None = None
        self._state_before: torch.Tensor | None = None

    def next(self) -> Batch:
        """The next batch; the one after it is drawn in the background."""
        batch = self._ahead.result() if self._ahead is not None else self.sampler.sample(self.generator)
        self._state_before = self.generator.get_state()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsr-batches")
        self._ahead = self._executor.submit(self.sampler.sample, self.generator)
        return batch

    def generator_state(self) -> torch.Tensor:
        """The random state that draws the next batch :meth:`next` returns."""
        return self._state_before if self._ahead is not None else self.generator.get_state()

    def reset(self) -> None:
        """Forget the batch drawn ahead, put the generator back to before it and end the background thread
        (after a resume or at the end of a run)."""
        if self._ahead is not None:
            self._ahead.result()
            self.generator.set_state(self._state_before)
            self._ahead = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


@contextlib.contextmanager
def cuda_matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """Float32 matrix products on CUDA in TF32 inside the block for ``precision`` "tf32", in float32 for the
    others (``TrainConfig.precision``); a no-op on other devices."""
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def train(series: SurfaceSeries, config: TrainConfig, checkpoint: str | os.PathLike | None = None,
          device: str | torch.device | None = None, progress: ProgressCallback | None = None,
          cancel: threading.Event | None = None, metadata: dict[str, Any] | None = None) -> TrainResult:
    """Train a DSR model on ``series`` and return it (and write ``checkpoint`` if given).

    Parameters
    ----------
    series : the oriented surface points per frame.
    config : e.g. ``preset("paper", num_proteins=series.num_proteins)``.
    checkpoint : file written every ``config.checkpoint_every`` steps and at the end.
    device : "cpu", "cuda", or None for CUDA when available.
    progress : called as ``progress(step, total_steps, record)`` after every step.
    cancel : set it from another thread to stop after the current step (a checkpoint is still written).
    metadata : JSON-like facts stored in the checkpoint (object name, states, surface settings).
    """
    return Trainer(series, config, device, metadata).run(checkpoint, progress, cancel)


if __name__ == "__main__":  # the torchrun entry point moved; say where
    sys.exit("this module is library code: run 'torchrun --nproc-per-node N -m dsr_backend.train_command ARGS' "
             "or 'dsr train --nproc N ARGS'")
