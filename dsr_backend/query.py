"""Surfaces from a trained model: SDF grids, marching cubes, vertex normals and normal speed."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage import measure

from .errors import InvalidInputError, ResourceLimitError
from .limits import check_query
from .narrow_band import narrow_band_grid
from .series import check_finite_t
from .threads import flushing_denormals
from .trained import TrainedModel

logger = logging.getLogger(__name__)

MIN_RESOLUTION = 8
BYTES_PER_GRID_POINT = 4 * 6  # the float32 grid plus marching-cubes work arrays, measured roughly
MIN_COMPONENT = 0.01
"""Default smallest inside piece a surface keeps, as a fraction of the volume of its largest piece."""


@dataclass
class Mesh:
    """A triangle mesh in Å with unit vertex normals and optional per-vertex values."""

    vertices: np.ndarray   # (V, 3) float32
    faces: np.ndarray      # (F, 3) int64, counter-clockwise seen from outside
    normals: np.ndarray    # (V, 3) float32, outward (the SDF grid's gradient at the vertex)
    t: float
    level: float
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


def available_memory_bytes() -> int:
    """Memory the system reports as available (Linux), or 8 GiB where it cannot tell."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_resolution(resolution: int, max_bytes: int | None = None) -> int:
    """Validate a grid resolution against the minimum and the memory it would need (before allocating)."""
    resolution = int(resolution)
    if resolution < MIN_RESOLUTION:
        raise InvalidInputError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    limit = max_bytes if max_bytes is not None else available_memory_bytes() // 2
    needed = resolution ** 3 * BYTES_PER_GRID_POINT
    if needed > limit:
        largest = int((limit / BYTES_PER_GRID_POINT) ** (1 / 3))
        raise ResourceLimitError(f"resolution {resolution} needs about {needed / 2**30:.1f} GiB, more than the "
                                 f"{limit / 2**30:.1f} GiB allowed; use a resolution of at most {largest}")
    return resolution


def unit_grid_axis(resolution: int) -> np.ndarray:
    """Coordinates of the grid nodes along one axis of the unit cube [-1, 1]."""
    return np.linspace(-1.0, 1.0, resolution)


@flushing_denormals
def sdf_grid(model: TrainedModel, t: float, resolution: int = 128, protein: int | str = 0,
             chunk: int = 65536, max_bytes: int | None = None) -> np.ndarray:
    """SDF in Å on a ``resolution``^3 grid over the series box (the unit cube), axes ordered x, y, z."""
    (t_value,) = check_finite_t(t)
    check_query([t_value], [0.0], resolution)
    resolution = check_resolution(resolution, max_bytes)
    axis = torch.as_tensor(unit_grid_axis(resolution), dtype=torch.float32, device=model.device)
    index = model.protein_index(protein)
    model_t = float(model.time_map.fraction_to_model(t_value))
    evaluate = model.node_sdf(axis, model_t, index, chunk)
    grid = np.empty(resolution ** 3, dtype=np.float32)
    nodes = torch.arange(resolution, device=model.device)
    yz = torch.stack(torch.meshgrid(nodes, nodes, indexing="ij"), dim=-1).reshape(-1, 2)
    plane = resolution * resolution
    rows_per_chunk = max(1, chunk // plane)
    for start in range(0, resolution, rows_per_chunk):
        xs = nodes[start:start + rows_per_chunk]
        block = torch.cat([xs.repeat_interleave(plane)[:, None], yz.repeat(len(xs), 1)], dim=1)
        grid[start * plane:(start + len(xs)) * plane] = evaluate(block).float().cpu().numpy()
    return grid.reshape(resolution, resolution, resolution) * np.float32(model.normalization.scale)


@flushing_denormals
def narrow_band_sdf_grid(model: TrainedModel, t: float, levels: Sequence[float] | float = 0.0,
                         resolution: int = 128, protein: int | str = 0, chunk: int = 65536,
                         max_bytes: int | None = None) -> tuple[np.ndarray, int]:
    """Like :func:`sdf_grid`, but exact only near ``levels`` (Å), evaluated coarse to fine.

    Away from the levels the values are trilinear interpolations from coarser grids, with the right sign,
    so marching cubes at any of ``levels`` gives the same mesh as on the dense grid
    (see :mod:`dsr_backend.narrow_band`).

    Returns
    -------
    grid : SDF in Å, axes x, y, z.
    evaluations : the number of points the network was evaluated at (``resolution**3`` for a dense grid).
    """
    resolution = check_resolution(resolution, max_bytes)
    (t_value,) = check_finite_t(t)
    unit_levels = _finite_levels(levels) / model.normalization.scale
    model_t = float(model.time_map.fraction_to_model(t_value))
    grid, evaluations = narrow_band_grid(model, model_t, model.protein_index(protein), resolution, unit_levels, chunk)
    return grid * np.float32(model.normalization.scale), evaluations


def _finite_levels(levels: Sequence[float] | float) -> np.ndarray:
    values = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise InvalidInputError(f"levels must be finite numbers, got {values.tolist()}")
    return values


@flushing_denormals
def vertex_speed(model: TrainedModel, vertices: np.ndarray, t: float, protein: int = 0,
                 chunk: int = 65536) -> np.ndarray:
    """The normal speed ``-f_t / |grad f|`` at ``vertices`` in Å, in Å per unit of t (one trained range);
    positive where the surface moves outward."""
    unit = torch.as_tensor(model.normalization.to_unit(vertices), dtype=torch.float32, device=model.device)
    model_t = float(model.time_map.fraction_to_model(t))
    speeds = []
    with torch.no_grad():
        for block in torch.split(unit, chunk):
            times = torch.full((len(block),), model_t, device=model.device)
            proteins = torch.full((len(block),), protein, dtype=torch.long, device=model.device)
            out = model.network.sdf_and_gradient(block, times, proteins, with_time=True)
            rate = out.grad_t * model.time_map.model_time_scale() * model.normalization.scale
            speeds.append(-rate / out.grad_x.norm(dim=1).clamp(min=1e-12))
    return torch.cat(speeds).cpu().numpy().astype(np.float32) if speeds else np.zeros(0, np.float32)


def check_min_component(fraction: float) -> float:
    """``fraction`` as a float if it is a valid smallest-piece fraction in [0, 1]."""
    value = float(fraction)
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"min_component is a fraction of the largest piece's volume in [0, 1], got {fraction}")
    return value


def drop_small_components(grid: np.ndarray, level: float = 0.0, min_fraction: float = MIN_COMPONENT) -> np.ndarray:
    """``grid`` without the inside pieces smaller than ``min_fraction`` of the largest one.

    The pieces are the connected sets of nodes below ``level`` (26-neighbourhood, so a speck touching
    the body even at a corner stays). The nodes of a dropped piece are mirrored about ``level``, so
    marching cubes leaves out the floating specks a trained field can have while the rest of the grid
    is unchanged. Cavities (pieces outside) are kept. ``min_fraction`` 0 returns ``grid`` itself.
    """
    if check_min_component(min_fraction) == 0.0:
        return grid
    labels, count = ndimage.label(grid < level, structure=np.ones((3, 3, 3), bool))
    if count < 2:
        return grid
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    small = sizes < min_fraction * sizes.max()
    small[0] = False
    drop = small[labels]
    cleaned = grid.copy()
    cleaned[drop] = 2.0 * level - grid[drop]
    return cleaned


def mesh_from_grid(grid: np.ndarray, model: TrainedModel,
                   level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marching cubes of an SDF grid (Å) at ``level`` Å: vertices in Å, faces wound outward, and outward
    unit vertex normals from the grid's gradient."""
    if not grid.min() <= level <= grid.max():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32)
    vertices, faces, normals = unit_marching_cubes(grid, level)
    return model.normalization.to_angstrom(vertices).astype(np.float32), faces, normals.astype(np.float32)


def unit_marching_cubes(grid: np.ndarray, level: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marching cubes of a grid over [-1, 1]^3 at ``level``: unit-frame vertices, faces wound
    counter-clockwise seen from outside (where the field is larger), and outward unit normals."""
    step = 2.0 / (len(grid) - 1)
    vertices, faces, normals, _ = measure.marching_cubes(grid, level=level, spacing=(step,) * 3,
                                                         gradient_direction="descent")
    return vertices - 1.0, faces.astype(np.int64), -normals  # "descent" normals point inward


@flushing_denormals
def extract_surfaces(model: TrainedModel, ts: Sequence[float] | float = 0.5,
                     levels: Sequence[float] | float = 0.0, resolution: int = 128, protein: int | str = 0,
                     with_speed: bool = False, max_bytes: int | None = None,
                     narrow_band: bool = True, min_component: float = MIN_COMPONENT) -> list[list[Mesh]]:
    """Level sets of the model at several times.

    Parameters
    ----------
    model : a trained model.
    ts : fraction(s) of the trained range (0 first trained time, 1 last; outside [0, 1] extrapolates).
    levels : SDF value(s) in Å; 0 is the surface, positive levels lie outside.
    resolution : grid nodes per axis over the series box.
    protein : index or name of the protein whose surface to extract.
    with_speed : add ``values["speed"]``, the normal speed in Å per unit t.
    narrow_band : evaluate the network coarse to fine near the levels only (same mesh, a fraction of the
        evaluations); False evaluates every grid node.
    min_component : leave out inside pieces smaller than this fraction of the largest one (floating
        specks, see :func:`drop_small_components`); 0 keeps every piece.

    Returns
    -------
    ``meshes[i][j]`` is the surface at ``ts[i]`` and ``levels[j]``; a level the field never reaches gives
    an empty mesh.
    """
    times = check_finite_t(ts)
    level_values = _finite_levels(levels)
    check_query(times, level_values, resolution)
    index = model.protein_index(protein)
    check_resolution(resolution, max_bytes)
    check_min_component(min_component)
    result = []
    for t in times:
        if narrow_band:
            grid, _ = narrow_band_sdf_grid(model, t, level_values, resolution, index, max_bytes=max_bytes)
        else:
            grid = sdf_grid(model, t, resolution, index, max_bytes=max_bytes)
        row = []
        for level in level_values:
            vertices, faces, normals = mesh_from_grid(drop_small_components(grid, level, min_component), model,
                                                      float(level))
            if len(faces) == 0:
                logger.warning("level %.3g Å is not reached at t=%.3g (SDF range %.3g..%.3g Å)",
                               level, t, grid.min(), grid.max())
            values = {"speed": vertex_speed(model, vertices, t, index)} if with_speed else {}
            row.append(Mesh(vertices, faces, normals, float(t), float(level), values))
        result.append(row)
    return result


def extract_surface(model: TrainedModel, t: float = 0.5, level: float = 0.0, resolution: int = 128,
                    protein: int | str = 0, with_speed: bool = False, max_bytes: int | None = None,
                    narrow_band: bool = True, min_component: float = MIN_COMPONENT) -> Mesh:
    """The level set at one time; see :func:`extract_surfaces`."""
    return extract_surfaces(model, [t], [level], resolution, protein, with_speed, max_bytes, narrow_band,
                            min_component)[0][0]
