"""Nearest-neighbour search among points: pykeops on CUDA, scipy's cKDTree on CPU (the faster on each), and
a chunked brute-force search in torch for small searches on CUDA machines where pykeops is not installed."""
from __future__ import annotations

from importlib.util import find_spec

import torch

from .errors import InvalidInputError

METHODS = ("auto", "keops", "kdtree", "torch")
BRUTE_FORCE_PAIRS = 1 << 24
"""Query-point pairs per chunk of the brute-force search (256 MiB of float32 coordinate differences)."""


def search_method(method: str, device: str | torch.device, without_keops: str = "torch") -> str:
    """``method`` with "auto" resolved for ``device``: on CUDA "keops", or ``without_keops`` where pykeops is
    not installed; "kdtree" elsewhere."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        if torch.device(device).type != "cuda":
            return "kdtree"
        return "keops" if find_spec("pykeops") is not None else without_keops
    return method


def nearest(queries: torch.Tensor, points: torch.Tensor, k: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` nearest points by "keops" or "torch"."""
    return keops_nearest(queries, points, k) if method == "keops" else torch_nearest(queries, points, k)


def torch_nearest(queries: torch.Tensor, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` points nearest to each query, by brute force
    over chunks of queries (coordinate differences, exact where ``|x|^2 - 2 x.y + |y|^2`` would cancel)."""
    rows = max(1, BRUTE_FORCE_PAIRS // max(len(points), 1))
    squared, index = [], []
    for chunk in torch.split(queries, rows):
        values, where = (chunk[:, None, :] - points[None]).square().sum(dim=2).topk(k, dim=1, largest=False)
        squared.append(values)
        index.append(where)
    return torch.cat(squared), torch.cat(index)


def keops_nearest(queries: torch.Tensor, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` points nearest to each query, by pykeops."""
    from pykeops.torch import LazyTensor  # optional at run time; importing it starts its compiler set-up

    rows = LazyTensor(queries[:, None, :].contiguous())
    cols = LazyTensor(points[None, :, :].contiguous())
    squared, index = ((rows - cols) ** 2).sum(-1).Kmin_argKmin(k, dim=1)
    return squared.clamp(min=0), index
