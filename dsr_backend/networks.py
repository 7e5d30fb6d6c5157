"""The space-time SDF architectures a DSR model can use, chosen by the type of its configuration.

``mlp`` is the paper's network (:class:`~dsr_backend.mlp.SpaceTimeSDF`); ``kplanes`` the fast factorised
one (:class:`~dsr_backend.kplanes.KPlanesSDF`, or with ``members`` > 1 the mean of several,
:class:`~dsr_backend.kplanes.KPlanesEnsemble`). All take (x, t, protein) and offer ``sdf_and_gradient``,
and the loss finds their ``latents`` (the ensemble's in its ``members``), so training, checkpoints and
queries do not care which one they hold.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence, Union

from torch import nn

from .errors import InvalidInputError
from .kplanes import KPlanesConfig, build_kplanes
from .mlp import ModelConfig, SpaceTimeSDF

NetworkConfig = Union[ModelConfig, KPlanesConfig]

ARCHITECTURES: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "mlp": (ModelConfig, SpaceTimeSDF), "kplanes": (KPlanesConfig, build_kplanes)}
"""Per architecture: its configuration class and what builds a network from such a configuration."""


def architecture_of(config: NetworkConfig) -> str:
    """The name of the architecture a configuration describes."""
    for name, (config_type, _) in ARCHITECTURES.items():
        if isinstance(config, config_type):
            return name
    raise InvalidInputError(f"not a network configuration: {type(config).__name__}")


def build_network(config: NetworkConfig) -> nn.Module:
    """A freshly initialised network for ``config``."""
    return ARCHITECTURES[architecture_of(config)][1](config)


def fit_to_series(config: NetworkConfig, model_times: Sequence[float]) -> NetworkConfig:
    """``config`` with the settings that depend on the training data filled in (K-Planes time nodes at the
    model times of the frames)."""
    return config.for_times(model_times) if isinstance(config, KPlanesConfig) else config


def network_config_to_dict(config: NetworkConfig) -> dict[str, Any]:
    """Plain values, with the architecture's name under ``"architecture"``."""
    return {"architecture": architecture_of(config), **dataclasses.asdict(config)}


def network_config_from_dict(data: dict[str, Any]) -> NetworkConfig:
    """Inverse of :func:`network_config_to_dict` (no ``"architecture"`` means the paper's MLP)."""
    data = dict(data)
    name = data.pop("architecture", "mlp")
    if name not in ARCHITECTURES:
        raise InvalidInputError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    config_type = ARCHITECTURES[name][0]
    unknown = set(data) - {field.name for field in dataclasses.fields(config_type)}
    if unknown:
        raise InvalidInputError(f"unknown {name} settings: {sorted(unknown)}")
    return config_type(**data)
