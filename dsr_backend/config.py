"""Training configuration and named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInputError
from .kplanes import KPlanesConfig
from .model import ModelConfig
from .networks import NetworkConfig, network_config_from_dict, network_config_to_dict

PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults are the paper's (section 3.2, authors' code).

    An epoch is one pass over the frames at ``frames_per_step`` frames per step (0: all frames in every
    step, so one step per epoch). ``steps`` overrides ``epochs`` when positive.
    """

    preset: str = "paper"
    model: NetworkConfig = field(default_factory=ModelConfig)
    batch_size: int = 16384           # surface points per step (IGR)
    frames_per_step: int = 1          # the authors train on one frame per step
    epochs: int = 4000
    steps: int = 0
    lr: float = 1e-4
    lr_decay_epochs: int = 200        # halve the learning rate every 200 epochs
    lr_decay_factor: float = 0.5
    normal_weight: float = 1.0        # tau
    eikonal_weight: float = 0.1       # lambda
    latent_weight: float = 1e-3       # alpha
    time_smoothness: float = 0.0      # weight of the K-Planes time smoothness penalty
    space_smoothness: float = 0.0     # weight of the K-Planes space smoothness penalty
    distance_weight: float = 0.0      # weight of the signed distance term near the surface (0: IGR only)
    knn: int = 50                     # sigma of D: distance to the 50th nearest neighbour
    global_fraction: float = 0.125    # share of uniform points in D (IGR)
    precision: str = "fp32"           # "fp32", "tf32" (CUDA matrix products in TF32) or "bf16" (MLP in bfloat16)
    compile: bool = False             # torch.compile the loss (MLP presets, whose gradient is one fused node)
    seed: int = 0
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch_size", "epochs", "lr_decay_epochs"):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.steps < 0 or self.frames_per_step < 0 or self.checkpoint_every < 0:
            raise InvalidInputError("steps, frames_per_step and checkpoint_every must not be negative")
        if min(self.distance_weight, self.time_smoothness, self.space_smoothness) < 0:
            raise InvalidInputError("distance_weight, time_smoothness and space_smoothness must not be negative")
        if (self.time_smoothness or self.space_smoothness) and not isinstance(self.model, KPlanesConfig):
            raise InvalidInputError("time_smoothness and space_smoothness apply to the K-Planes (fast) model only")
        if self.compile and isinstance(self.model, KPlanesConfig):
            raise InvalidInputError("compile works with the MLP presets only: torch.compile cannot compile the "
                                    "double backward that the K-Planes model's eikonal term goes through")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be positive, got {self.lr}")

    def steps_per_epoch(self, num_frames: int) -> int:
        per_step = self.frames_per_step or num_frames
        return -(-num_frames // min(per_step, num_frames))

    def total_steps(self, num_frames: int) -> int:
        return self.steps if self.steps > 0 else self.epochs * self.steps_per_epoch(num_frames)

    def decay_every_steps(self, num_frames: int) -> int:
        return self.lr_decay_epochs * self.steps_per_epoch(num_frames)

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
    # K-Planes features + a 2 x 64 MLP (dsr_backend.kplanes): the fast model for CPUs and GPUs alike.
    # Besides the IGR terms it fits the signed distance to the surface near it; between frames its
    # features are a blend of their values at the four nearest nodes (time_blend, time_spread) and it
    # trains 6,000 steps (both chosen on held-out DIMS frames; the first 3,000 already pass the paper).
    "fast": dict(model=KPlanesConfig(features=64, time_spread=0.5, time_blend="products"), batch_size=4096,
                 frames_per_step=0, epochs=6000, lr=1e-2, lr_decay_epochs=1000, time_smoothness=1e-3,
                 distance_weight=1.0),
    # The smallest useful model, for tests.
    "tiny": dict(model=ModelConfig(hidden=64, layers=4, skip_layer=2, latent_dim=8, init_radius=0.6),
                 batch_size=2048, frames_per_step=0, epochs=400, lr=2e-3, lr_decay_epochs=200),
}


DEFAULT_PRESET = "fast"
"""The preset of a training that names none (PyMOL, the worker, the service)."""


def preset(name: str, num_proteins: int = 1, **overrides: Any) -> TrainConfig:
    """The named preset with ``overrides`` applied; ``num_proteins`` sets the number of latent codes."""
    if name not in PRESETS:
        raise InvalidInputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    settings = {**PRESETS[name], **overrides}
    model = settings.pop("model", ModelConfig())
    model = dataclasses.replace(model, num_proteins=num_proteins)
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise InvalidInputError(f"unknown training settings: {sorted(unknown)}")
    return TrainConfig(preset=name, model=model, **settings)
