"""Training configuration and named presets."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .checkpoint import STORAGES
from .errors import InvalidInputError
from .kplanes import KPlanesConfig
from .mlp import ModelConfig
from .networks import NetworkConfig, network_config_from_dict, network_config_to_dict

PRECISIONS = ("fp32", "tf32", "bf16")
MAX_MINUTES = 7 * 24 * 60.0
"""The longest time budget a training takes (a week)."""
LR_SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults are the paper's (section 3.2, authors' code).

    An epoch is as many steps as draw every frame once at ``frames_per_step`` frames per step (0: all frames
    in every step, so one step per epoch); the run's total is rounded up. ``steps`` overrides ``epochs`` when positive. ``minutes`` > 0 trains for
    that wall time instead: the trainer sizes the run (and its learning-rate schedule) to the budget from the
    pace of its steps (:class:`~dsr_backend.train.TimeBudget`).
    """

    preset: str = "paper"
    model: NetworkConfig = field(default_factory=ModelConfig)
    batch_size: int = 16384           # surface points per step (IGR)
    frames_per_step: int = 1          # the authors train on one frame per step
    epochs: int = 4000
    steps: int = 0
    minutes: float = 0.0              # > 0: train for this wall time, the steps sized to it as the run goes
    lr: float = 1e-4
    lr_decay_epochs: int = 200        # halve the learning rate every 200 epochs
    lr_decay_factor: float = 0.5
    lr_schedule: str = "step"          # "step": the above; "cosine": from lr down to zero over the whole run
    normal_weight: float = 1.0        # tau
    eikonal_weight: float = 0.1       # lambda
    latent_weight: float = 1e-3       # alpha
    time_smoothness: float = 0.0      # weight of the K-Planes time smoothness penalty
    distance_weight: float = 0.0      # weight of the signed distance term near the surface (0: IGR only)
    knn: int = 50                     # sigma of D: distance to the 50th nearest neighbour
    deep_spread: float = 0.0          # > 0: every second sample of D near the surface spread this many sigmas
    knn_subsample: int = 1            # > 1: sigma estimated among 1 in this many points (knn / this neighbours)
    global_fraction: float = 0.125    # share of uniform points in D (IGR)
    precision: str = "fp32"           # "fp32", "tf32" (CUDA matrix products in TF32) or "bf16" (MLP in bfloat16)
    compile: bool = False             # torch.compile the loss (eager where compiling fails)
    seed: int = 0
    checkpoint_every: int = 1000
    storage: str = "float32"          # weights of the model file: float32 or float16 (deflated, ~40 % of the size)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch_size", "epochs", "lr_decay_epochs"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps < 0 or self.frames_per_step < 0 or self.checkpoint_every < 0:
            raise InvalidInputError("steps, frames_per_step and checkpoint_every must not be negative")
        if not 0 <= self.minutes <= MAX_MINUTES:
            raise InvalidInputError(f"minutes must be positive and at most {MAX_MINUTES:g} (a week), got {self.minutes}")
        if self.minutes and self.steps:
            raise InvalidInputError("give a number of steps or a time budget in minutes, not both")
        if self.knn < 1 or self.knn_subsample < 1:
            raise InvalidInputError("knn and knn_subsample must be at least 1")
        if min(self.distance_weight, self.time_smoothness, self.deep_spread) < 0:
            raise InvalidInputError("distance_weight, time_smoothness and deep_spread must not be negative")
        if self.time_smoothness and not isinstance(self.model, KPlanesConfig):
            raise InvalidInputError("time_smoothness applies to the K-Planes (fast) model only")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be positive, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InvalidInputError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.storage not in STORAGES:
            raise InvalidInputError(f"storage must be one of {', '.join(STORAGES)}, got {self.storage!r}")

    def steps_per_epoch(self, num_frames: int) -> float:
        """Steps that draw as many frames as the series has (``frames_per_step`` at a time)."""
        per_step = self.frames_per_step or num_frames
        return num_frames / min(per_step, num_frames)

    def total_steps(self, num_frames: int) -> int:
        return self.steps if self.steps > 0 else math.ceil(self.epochs * self.steps_per_epoch(num_frames))

    def decay_every_steps(self, num_frames: int) -> int:
        return max(1, round(self.lr_decay_epochs * self.steps_per_epoch(num_frames)))

    def lr_factor(self, step: int, total_steps: int, num_frames: int) -> float:
        """The learning rate after ``step`` of ``total_steps`` steps, as a fraction of ``lr``."""
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
        return self.lr_decay_factor ** (step // self.decay_every_steps(num_frames))

    def with_members(self, members: int) -> "TrainConfig":
        """This configuration with its K-Planes model the mean of ``members`` models (``KPlanesConfig.members``).

        Raises :class:`InvalidInputError` for fewer than one member or several of an MLP model.
        """
        if not isinstance(self.model, KPlanesConfig):
            if members == 1:
                return self
            raise InvalidInputError(f"members apply to the K-Planes model (preset fast) only, not to preset {self.preset}")
        try:
            return dataclasses.replace(self, model=dataclasses.replace(self.model, members=members))
        except ValueError as error:
            raise InvalidInputError(str(error)) from None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "model": network_config_to_dict(self.model)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        data["model"] = network_config_from_dict(data.get("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInputError(f"unknown training settings: {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's model and schedule (8 x 512, latent 192), for a GPU.
    "paper": {},
    # A CPU-sized model for interactive use and the quick start.
    "small": dict(model=ModelConfig(hidden=128, layers=6, skip_layer=3, latent_dim=32, init_radius=0.6),
                  batch_size=4096, frames_per_step=0, epochs=1500, lr=1e-3, lr_decay_epochs=500),
    # K-Planes features (planes of 20, 40 and 80 nodes a side) + a 2 x 64 MLP (dsr_backend.kplanes): the fast
    # model for CPUs and GPUs alike.
    # Besides the IGR terms it fits the signed distance to the surface near it and, through samples spread
    # six times wider, deep inside the molecule (where it would otherwise form false cavities); its gradient is
    # computed in closed form and the loss compiled, and 1,500 epochs with the learning rate falling from 2e-2
    # to zero on a cosine (chosen on DIMS; docs/results.md). A step draws the frames of 40 time nodes: 1,500
    # steps up to 40 states; beyond, more steps of the same cost (row-sparse), so every state trains as much.
    "fast": dict(model=KPlanesConfig(), batch_size=4096, frames_per_step=40, epochs=1500, lr=2e-2,
                 lr_schedule="cosine", time_smoothness=1e-3, distance_weight=1.0, deep_spread=6.0, knn_subsample=10,
                 compile=True, storage="float16"),
    # The smallest useful model, for tests.
    "tiny": dict(model=ModelConfig(hidden=64, layers=4, skip_layer=2, latent_dim=8, init_radius=0.6),
                 batch_size=2048, frames_per_step=0, epochs=400, lr=2e-3, lr_decay_epochs=200),
}


DEFAULT_PRESET = "fast"
"""The preset of a training that names none (the CLI, PyMOL, the worker, the service)."""

QUALITIES = {"quick": 1, "best": 4}
"""How many times longer than the preset's own schedule a quality trains: its steps and the interval at
which the learning rate halves."""


def preset(name: str, num_proteins: int = 1, quality: str = "quick", **overrides: Any) -> TrainConfig:
    """The named preset at ``quality`` with ``overrides`` applied; ``num_proteins`` sets the number of
    latent codes.

    ``quality`` "quick" is the preset as it stands; "best" trains four times as long (:data:`QUALITIES`).
    """
    if name not in PRESETS:
        raise InvalidInputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if quality not in QUALITIES:
        raise InvalidInputError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITIES)}")
    settings = dict(PRESETS[name])
    for key in ("epochs", "lr_decay_epochs"):
        settings[key] = QUALITIES[quality] * settings.get(key, getattr(TrainConfig, key))
    settings.update(overrides)
    model = settings.pop("model", ModelConfig())
    model = dataclasses.replace(model, num_proteins=num_proteins)
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise InvalidInputError(f"unknown training settings: {sorted(unknown)}")
    return TrainConfig(preset=name, model=model, **settings)
