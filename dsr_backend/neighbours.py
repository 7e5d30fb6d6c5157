"""Nearest-neighbour search among points: pykeops on CUDA, scipy's cKDTree on CPU (the faster on each)."""
from __future__ import annotations

import torch

from .errors import InvalidInputError

METHODS = ("auto", "keops", "kdtree")


def search_method(method: str, device: str | torch.device) -> str:
    """``method`` with "auto" resolved for ``device``: "keops" on CUDA, "kdtree" elsewhere."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be 'auto', 'keops' or 'kdtree', got {method!r}")
    if method == "auto":
        return "keops" if torch.device(device).type == "cuda" else "kdtree"
    return method


def keops_nearest(queries: torch.Tensor, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` points nearest to each query, by pykeops."""
    from pykeops.torch import LazyTensor

    rows = LazyTensor(queries[:, None, :].contiguous())
    cols = LazyTensor(points[None, :, :].contiguous())
    squared, index = ((rows - cols) ** 2).sum(-1).Kmin_argKmin(k, dim=1)
    return squared.clamp(min=0), index
