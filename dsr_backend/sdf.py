"""The result type every space-time SDF network returns from ``sdf_and_gradient``."""
from __future__ import annotations

from typing import NamedTuple

import torch


class SDFWithGradient(NamedTuple):
    """Value of f, its spatial gradient (None where not asked for), and its derivative in model time (None
    where not asked for)."""

    sdf: torch.Tensor                  # (B,)
    grad_x: torch.Tensor | None        # (B, 3)
    grad_t: torch.Tensor | None        # (B,)
