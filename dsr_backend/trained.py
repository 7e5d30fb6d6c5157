"""A trained DSR model together with the maps that put it in Ångström and trajectory time."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .checkpoint import read_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, InvalidInputError
from .networks import build_network
from .series import Normalization, TimeMap, box_and_time_problem, check_finite_t
from .threads import flushing_denormals


MAX_PARAMETERS = 200_000_000
"""The most parameters a checkpoint may declare (the paper's model has 1.8 M, fast 4.3 M at 40 states)."""


def checked_contents(state: dict[str, Any], path: str = "the checkpoint") -> TrainConfig:
    """Validate what a checkpoint holds besides its format (see :func:`read_checkpoint`): types, shapes,
    finite values, a sane box and time map, and a declared network that matches the weights and stays
    within :data:`MAX_PARAMETERS`, checked before anything is allocated. Returns its configuration."""
    def damaged(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is damaged: {what}")

    try:
        config = TrainConfig.from_dict(state["config"])
    except (TypeError, ValueError, KeyError, AttributeError, InvalidInputError) as error:
        raise damaged(f"its configuration cannot be read ({error})") from None
    norm, times, names = state["normalization"], state["time_map"], state["protein_names"]
    try:
        center, scale = [float(c) for c in norm["center"]], float(norm["scale"])
        start, stop = float(times["start"]), float(times["stop"])
    except (TypeError, ValueError, KeyError, IndexError):
        raise damaged("its normalization or time map is not numbers") from None
    problem = box_and_time_problem(center, scale, start, stop)
    if problem:
        raise damaged(f"its {problem}")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise damaged("its protein names are not a list of names")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise damaged("its step count is not a whole number")
    if not isinstance(state.get("metadata", {}), dict):
        raise damaged("its metadata is not a dictionary")
    given = sum(int(v.numel()) for v in state["model_state"].values() if isinstance(v, torch.Tensor))
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated for the declared network
            declared = sum(int(v.numel()) for v in build_network(config.model).state_dict().values())
    except (TypeError, ValueError, RuntimeError, InvalidInputError) as error:
        raise damaged(f"it declares a network that cannot be built ({error})") from None
    if declared > MAX_PARAMETERS or declared != given:
        raise damaged(f"it declares a network of {declared:,} parameters but holds {given:,} "
                      f"(at most {MAX_PARAMETERS:,})")
    return config


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or "auto": CUDA when available, else CPU; otherwise the named device, checked."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    return device


@dataclass
class TrainedModel:
    """A network with its normalisation (Å <-> unit frame), time map and protein names."""

    network: torch.nn.Module  # SpaceTimeSDF or KPlanesSDF (see dsr_backend.networks)
    normalization: Normalization
    time_map: TimeMap
    protein_names: list[str]
    config: TrainConfig
    step: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device, label: str = "the checkpoint") -> "TrainedModel":
        """Build from a checkpoint dictionary (its contents validated here, see :func:`checked_contents`);
        ``label`` names it in messages."""
        config = checked_contents(state, label)
        try:
            network = build_network(config.model)
            network.load_state_dict(state["model_state"])
        except (TypeError, ValueError, RuntimeError, KeyError) as error:
            raise CheckpointError(f"checkpoint does not match the DSR model: {error}") from None
        norm, times = state["normalization"], state["time_map"]
        return cls(network=network.to(device).eval(),
                   normalization=Normalization(tuple(float(c) for c in norm["center"]), float(norm["scale"])),
                   time_map=TimeMap(float(times["start"]), float(times["stop"])),
                   protein_names=list(state["protein_names"]), config=config, step=int(state["step"]),
                   metadata=dict(state.get("metadata", {})))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None,
             label: str | None = None) -> "TrainedModel":
        """Load a checkpoint file for queries (on CUDA when available unless ``device`` says otherwise);
        ``label`` names it in messages (default: its path)."""
        device = resolve_device(device)
        label = label or os.fspath(path)
        return cls.from_state(read_checkpoint(path, map_location=device, label=label), device, label)

    def protein_index(self, protein: int | str = 0) -> int:
        """Index of a protein given by index or name."""
        if isinstance(protein, str) and not protein.lstrip("-").isdigit():
            if protein not in self.protein_names:
                raise InvalidInputError(
                    f"unknown protein {protein!r}; this model knows {', '.join(self.protein_names)}")
            return self.protein_names.index(protein)
        index = int(protein)
        if not 0 <= index < len(self.protein_names):
            raise InvalidInputError(f"protein index {index} out of range 0..{len(self.protein_names) - 1}")
        return index

    @flushing_denormals
    def sdf(self, points: np.ndarray, t: float, protein: int | str = 0, chunk: int = 65536) -> np.ndarray:
        """Signed distance in Å at ``points`` (P, 3) in Å, at fraction ``t`` of the trained range."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise InvalidInputError(f"points must have shape (P, 3), got {points.shape}")
        (t_value,) = check_finite_t(t)
        unit = torch.as_tensor(self.normalization.to_unit(points), dtype=torch.float32, device=self.device)
        model_t = float(self.time_map.fraction_to_model(t_value))
        values = self.unit_sdf(unit, model_t, self.protein_index(protein), chunk)
        return values.cpu().numpy().astype(np.float64) * self.normalization.scale

    def node_sdf(self, axis: torch.Tensor, model_t: float, protein: int,
                 chunk: int = 65536) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function from (P, 3) integer indices of nodes of the grid ``axis``^3 (unit cube) to the network's
        output there: the network's own ``node_function`` where it has one (K-Planes), else :meth:`unit_sdf`."""
        make = getattr(self.network, "node_function", None)
        function = make(axis, model_t, protein) if make is not None else None
        if function is not None:
            return function
        return lambda index: self.unit_sdf(axis[index], model_t, protein, chunk)

    def unit_sdf(self, unit_points: torch.Tensor, model_t: float, protein: int, chunk: int = 65536) -> torch.Tensor:
        """The network's output (unit-cube frame) at (P, 3) unit-cube points, model time and protein index."""
        values = []
        with torch.no_grad():
            for block in torch.split(unit_points, chunk):
                times = torch.full((len(block),), model_t, device=self.device)
                proteins = torch.full((len(block),), protein, dtype=torch.long, device=self.device)
                values.append(self.network(block, times, proteins))
        return torch.cat(values) if values else unit_points.new_zeros(0)
