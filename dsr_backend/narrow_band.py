"""Coarse-to-fine (narrow band) SDF grids: the network is evaluated only near the level sets asked for.

The grid is refined by halving its step: first every node of a coarse grid is evaluated; at each finer
step, the nodes of the coarse blocks that may hold a level crossing are evaluated, and the others are
interpolated trilinearly from the coarse nodes. A block may hold a crossing when some corner is within
``LIPSCHITZ * half its diagonal`` of a level: a signed distance function changes by at most its
Lipschitz constant (1 for an exact SDF; the learned one is kept near 1 by the eikonal term) per unit of
distance. Blocks judged far keep the sign of their corners, so no spurious crossings appear, and every cell
that marching cubes reads a crossing from has exact values at its corners.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .trained import TrainedModel

LIPSCHITZ = 2.0
"""Bound assumed on |grad f| when deciding that a block cannot hold a crossing (a safety factor of 2)."""

COARSEST_CELLS = 8
"""The coarsest grid has at least this many cells per axis."""


def coarsest_step(resolution: int) -> int:
    """Largest power-of-two step (in fine cells) whose grid still has :data:`COARSEST_CELLS` cells per axis."""
    step = 1
    while (resolution - 1) // (2 * step) >= COARSEST_CELLS:
        step *= 2
    return step


def narrow_band_grid(model: TrainedModel, model_t: float, protein: int, resolution: int,
                     unit_levels: Sequence[float], chunk: int = 65536) -> tuple[np.ndarray, int]:
    """SDF in the unit-cube frame on a ``resolution``^3 grid over [-1, 1]^3, exact near ``unit_levels``.

    Parameters
    ----------
    model : the trained model.
    model_t : time in the model's frame.
    protein : protein index.
    resolution : grid nodes per axis.
    unit_levels : levels, in the unit-cube frame, near which the values must be exact.
    chunk : points per network call.

    Returns
    -------
    grid : (resolution,)*3 float32, axes x, y, z.
    evaluations : the number of points the network was evaluated at.
    """
    step = coarsest_step(resolution)
    cells = math.ceil((resolution - 1) / step) * step  # the padded grid extends past +1 to align the steps
    spacing = 2.0 / (resolution - 1)
    levels = torch.as_tensor(list(unit_levels), dtype=torch.float32, device=model.device)

    evaluate = model.node_sdf(torch.arange(cells + 1, device=model.device) * spacing - 1.0, model_t, protein, chunk)
    axis = torch.arange(0, cells + 1, step, device=model.device)
    coarse = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    values = evaluate(coarse).reshape((len(axis),) * 3)
    exact = torch.ones_like(values, dtype=torch.bool)
    evaluations = coarse.shape[0]
    while step > 1:
        near = _blocks_near(values, levels, LIPSCHITZ * step * spacing * math.sqrt(3.0) / 2.0)
        values = _upsample(values)
        exact = _upsample_exact(exact)
        step //= 2
        todo = _block_nodes(near) & ~exact
        index = torch.nonzero(todo)
        values[todo] = evaluate(index * step)
        exact |= todo
        evaluations += len(index)
    grid = values[:resolution, :resolution, :resolution]
    return grid.float().cpu().numpy(), evaluations


def _blocks_near(values: torch.Tensor, levels: torch.Tensor, margin: float) -> torch.Tensor:
    """(C-1)^3 mask of the blocks between grid nodes with a corner within ``margin`` of a level."""
    distance = (values[None] - levels[:, None, None, None]).abs().amin(dim=0)
    closest = -F.max_pool3d(-distance[None, None], kernel_size=2, stride=1)[0, 0]
    return closest < margin


def _upsample(values: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a C^3 node grid onto the (2C-1)^3 grid of half its step."""
    size = 2 * values.shape[0] - 1
    return F.interpolate(values[None, None], size=(size,) * 3, mode="trilinear", align_corners=True)[0, 0]


def _upsample_exact(exact: torch.Tensor) -> torch.Tensor:
    """The half-step mask of exact nodes: the coarse nodes that were exact, nothing in between."""
    size = 2 * exact.shape[0] - 1
    fine = torch.zeros((size,) * 3, dtype=torch.bool, device=exact.device)
    fine[::2, ::2, ::2] = exact
    return fine


def _block_nodes(near: torch.Tensor) -> torch.Tensor:
    """The half-step grid nodes that lie in (or on the boundary of) a near block."""
    blocks = near.shape[0]
    inside = near.repeat_interleave(2, 0).repeat_interleave(2, 1).repeat_interleave(2, 2)  # (2B)^3: node -> its block
    nodes = torch.zeros((2 * blocks + 1,) * 3, dtype=torch.bool, device=near.device)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                nodes[dx:dx + 2 * blocks, dy:dy + 2 * blocks, dz:dz + 2 * blocks] |= inside
    return nodes
