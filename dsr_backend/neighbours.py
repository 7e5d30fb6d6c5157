"""Nearest-neighbour search among points: pykeops on CUDA, scipy's cKDTree on CPU (the faster on each), and
a chunked brute-force search in torch for CUDA machines where pykeops is not installed."""
from __future__ import annotations

from importlib.util import find_spec

import torch

from .errors import InvalidInputError

METHODS = ("auto", "keops", "kdtree", "torch")
BRUTE_FORCE_PAIRS = 1 << 27
"""Query-point pairs per chunk of the brute-force search (512 MiB of float32 distances)."""
EXACT = "donot_use_mm_for_euclid_dist"  # differences, not |x|^2 - 2xy + |y|^2: no cancellation, no TF32


def search_method(method: str, device: str | torch.device) -> str:
    """``method`` with "auto" resolved for ``device``: on CUDA "keops", or "torch" where pykeops is not
    installed; "kdtree" elsewhere."""
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        if torch.device(device).type != "cuda":
            return "kdtree"
        return "keops" if find_spec("pykeops") is not None else "torch"
    return method


def nearest(queries: torch.Tensor, points: torch.Tensor, k: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` nearest points by "keops" or "torch"."""
    return keops_nearest(queries, points, k) if method == "keops" else torch_nearest(queries, points, k)


def torch_nearest(queries: torch.Tensor, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` points nearest to each query, by brute force
    over chunks of queries."""
    rows = max(1, BRUTE_FORCE_PAIRS // max(len(points), 1))
    squared, index = [], []
    for chunk in torch.split(queries, rows):
        values, where = torch.cdist(chunk, points, compute_mode=EXACT).topk(k, dim=1, largest=False)
        squared.append(values.square())
        index.append(where)
    return torch.cat(squared), torch.cat(index)


def keops_nearest(queries: torch.Tensor, points: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances and indices, each (Q, k), of the ``k`` points nearest to each query, by pykeops."""
    from pykeops.torch import LazyTensor

    rows = LazyTensor(queries[:, None, :].contiguous())
    cols = LazyTensor(points[None, :, :].contiguous())
    squared, index = ((rows - cols) ** 2).sum(-1).Kmin_argKmin(k, dim=1)
    return squared.clamp(min=0), index
