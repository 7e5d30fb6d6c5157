"""Training a DSR model on a surface series: seeded, checkpointed, resumable, cancellable."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, InvalidInputError, TrainingDivergedError
from .loss import igr_loss
from .networks import build_network, fit_to_series
from .sampling import SeriesSampler
from .series import SurfaceSeries
from .trained import TrainedModel, resolve_device

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict[str, float]], None]
HISTORY_EVERY = 10  # steps between the loss records kept in the history (and the checkpoint)


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
    """Holds the network, optimiser, schedule and random state of one training run."""

    def __init__(self, series: SurfaceSeries, config: TrainConfig, device: str | torch.device | None = None,
                 metadata: dict[str, Any] | None = None):
        if config.model.num_proteins != series.num_proteins:
            raise InvalidInputError(f"the configuration has {config.model.num_proteins} latent codes but the "
                                    f"series has {series.num_proteins} proteins")
        num_times = len(set(series.model_times().tolist()))
        config = dataclasses.replace(config, model=fit_to_series(config.model, num_times))
        self.series, self.config = series, config
        self.device = resolve_device(device)
        self.metadata = dict(metadata or {})
        if series.time_map.is_static:
            logger.info("the series has a single time point: the model is static")
        torch.manual_seed(config.seed)
        self.network = build_network(config.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.decay_every_steps(series.num_frames), gamma=config.lr_decay_factor)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.loss_function = torch.compile(igr_loss) if config.compile else igr_loss
        self.sampler = SeriesSampler(series, config.batch_size, config.frames_per_step, config.knn,
                                     config.global_fraction, self.device, distances=config.distance_weight > 0)
        self.step = 0
        self.total_steps = config.total_steps(series.num_frames)
        self.history: list[dict[str, float]] = []
        self.last_record: dict[str, float] | None = None

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything needed to query the model or continue training exactly."""
        norm, times = self.series.normalization, self.series.time_map
        return {
            "config": self.config.to_dict(), "model_state": self.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.scheduler.state_dict(),
            "generator_state": self.generator.get_state(), "step": self.step, "total_steps": self.total_steps,
            "normalization": {"center": list(norm.center), "scale": norm.scale},
            "time_map": {"start": times.start, "stop": times.stop},
            "protein_names": list(self.series.protein_names), "metadata": self.metadata,
            "history": self.history,
        }

    def save(self, path: str | os.PathLike) -> None:
        save_checkpoint(path, self.state())

    @classmethod
    def resume(cls, path: str | os.PathLike, series: SurfaceSeries, device: str | torch.device | None = None,
               steps: int = 0) -> "Trainer":
        """Continue the run saved in ``path`` on the same ``series``; ``steps`` > 0 sets a new total."""
        device = resolve_device(device)
        state = read_checkpoint(path, map_location=device)
        if "optimizer_state" not in state:
            raise CheckpointError(f"{path} holds no optimiser state and cannot be resumed")
        config = TrainConfig.from_dict(state["config"])
        norm = state["normalization"]
        if (list(series.protein_names) != list(state["protein_names"])
                or abs(series.normalization.scale - float(norm["scale"])) > 1e-6 * float(norm["scale"])):
            raise InvalidInputError(f"{path} was trained on a different surface series")
        trainer = cls(series, config, device, metadata=state.get("metadata"))
        trainer.network.load_state_dict(state["model_state"])
        trainer.optimizer.load_state_dict(state["optimizer_state"])
        trainer.scheduler.load_state_dict(state["scheduler_state"])
        trainer.generator.set_state(state["generator_state"].cpu())
        trainer.step = int(state["step"])
        trainer.history = list(state.get("history", []))
        trainer.total_steps = steps if steps > 0 else int(state["total_steps"])
        return trainer

    # ------------------------------------------------------------------ training
    def batch_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the next batch, to differentiate, and the detached values to report ("loss" first)."""
        batch = self.sampler.sample(self.generator)
        loss, terms = self.loss_function(self.network, batch, self.config.normal_weight,
                                         self.config.eikonal_weight, self.config.latent_weight,
                                         dtype=self.compute_dtype, smoothness_weight=self.config.time_smoothness,
                                         distance_weight=self.config.distance_weight,
                                         space_smoothness_weight=self.config.space_smoothness)
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
        self.optimizer.step()
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

        A checkpoint is written every ``config.checkpoint_every`` steps, at the end and on cancellation;
        a diverged run raises before anything broken is written.
        """
        started = time.perf_counter()
        cancelled = False
        self.network.train()
        while self.step < self.total_steps:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            record = self.train_step()
            if checkpoint and self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save(checkpoint)
            if progress is not None:
                progress(self.step, self.total_steps, record)
        if checkpoint:
            self.save(checkpoint)
        self.network.eval()
        model = TrainedModel.from_state(self.state(), self.device)
        return TrainResult(model=model, steps_done=self.step, total_steps=self.total_steps, cancelled=cancelled,
                           seconds=time.perf_counter() - started, history=self.history,
                           last_record=self.last_record)


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


if __name__ == "__main__":  # ``torchrun --nproc-per-node N -m dsr_backend.train ...``
    from .distributed import main

    raise SystemExit(main())
