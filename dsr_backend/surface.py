"""Solvent-excluded surface (SES) of a set of atoms, computed with torch on CPU or CUDA.

Method
------
The probe-accessible region ``A`` is the complement of the union of the expanded spheres of radius
``r_i + probe``; its boundary is the solvent-accessible surface (SAS). The SES is the set of points at
distance exactly ``probe`` from ``A``, and for ``probe = 0`` it is the van der Waals surface.

1. On a regular grid, ``s(x) = min_i |x - c_i| - (r_i + probe)`` and its arg-min atom are splatted
   atom by atom (torch).
2. Grid points near the SAS (``|s| <= spacing * sqrt(3) / 2``) are projected exactly onto the SAS:
   onto the nearest expanded sphere; onto the intersection circle with a second sphere when that
   projection is buried in it; onto the three-sphere vertex when the circle point is buried in a
   third one. This gives dense, exact SAS samples, each tagged with its feature (sphere, circle, vertex).
   The SAS vertices (points on three spheres) near each sample are added explicitly.
3. Inside the expanded-sphere union, the SES field is ``probe - d(x)`` with ``d`` the distance to the
   nearest SAS sample; outside the union it is ``probe + s(x)``. Negative values are inside.
4. Marching cubes (scikit-image) extracts the zero level set. Each vertex then gets its exact closest
   SAS point ``y`` (the probe centre): the vertex is projected again onto the SAS from its nearest
   samples, checking the spheres they know, and the closest valid result is kept. The vertex moves onto
   the probe sphere around ``y``, and its outward normal is the unit vector from it toward ``y``.

Interior cavities in which the probe fits are kept: their surface belongs to the SES, as in the
classical definition, and its normals point into the cavity (toward the solvent). Features finer than a
grid cell (a cavity barely larger than the probe, a neck a probe barely passes) may be missed or merged.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from .errors import InvalidInputError, ResourceLimitError
from .series import MAX_COORDINATE
from .threads import cpu_workers, single_thread

logger = logging.getLogger(__name__)

DEFAULT_PROBE = 1.4
"""Solvent probe radius in Å (water), PyMOL's default ``solvent_radius``."""
MAX_PROBE = 10.0
"""Largest probe radius in Å that a training accepts."""
DEFAULT_SPACING = 0.45
"""Default grid spacing in Å: against PyMOL's quality-1 surface of AdK it gives IoU 0.984 and NC 0.980."""

MAX_GRID_POINTS = 200_000_000
"""Largest grid (number of points) :func:`solvent_excluded_surface` allocates; it needs about 25 bytes per point."""

_SPHERE, _CIRCLE, _VERTEX = 0, 1, 2
_BURIED_TOL = 1e-4     # Å a point may lie inside another sphere and still count as on the SAS
_KD_NEIGHBOURS = 40    # atoms a k-d tree query first returns around each SAS candidate point
_NEIGHBOURS = 16       # of those, spheres kept per point (the ones whose surface is nearest)
_SAMPLE_SHIFT = 1.5    # cells a grid point may move when projected onto the SAS
_SAMPLE_BAND = 0.5 * math.sqrt(3.0)  # cells: grid points this close to the SAS are projected onto it
_NEARBY_MARGIN = 1.0   # cells: a sample remembers spheres this close, to check projections this close to it
_NEARBY = 8           # other spheres remembered per SAS sample, to check points moved near it
_CANDIDATES = 2       # nearest SAS samples whose features are examined for a closest SAS point
_SPLAT_MARGIN = 1.2    # cells beyond each expanded sphere where s must be exact (> _SAMPLE_BAND, field band)
_COORD_BITS = 26       # resolution bits of the packed (distance, atom) splat keys

Device = Union[str, torch.device]


@dataclass
class Surface:
    """Oriented surface samples, and optionally the triangle mesh they come from.

    Attributes
    ----------
    points : (M, 3) float32
        Points on the surface, in Å.
    normals : (M, 3) float32
        Outward unit normals at ``points``.
    vertices : (V, 3) float32, optional
        Mesh vertices in Å (the same points as ``points``), when a mesh was asked for.
    faces : (F, 3) int64, optional
        Triangles indexing ``vertices``, counter-clockwise seen from outside.
    """

    points: np.ndarray
    normals: np.ndarray
    vertices: Optional[np.ndarray] = None
    faces: Optional[np.ndarray] = None


@dataclass
class _Grid:
    origin: torch.Tensor   # (3,) float32, position of grid index (0, 0, 0)
    shape: tuple[int, int, int]
    spacing: float

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    def positions(self, flat_index: torch.Tensor) -> torch.Tensor:
        """Å positions of grid points given by flat (C-order) indices."""
        ny, nz = self.shape[1], self.shape[2]
        ijk = torch.stack([flat_index // (ny * nz), (flat_index // nz) % ny, flat_index % nz], dim=1)
        return ijk.to(self.origin.dtype) * self.spacing + self.origin


@dataclass
class _SasSamples:
    points: torch.Tensor   # (S, 3) exact points of the SAS
    kind: torch.Tensor     # (S,) _SPHERE, _CIRCLE or _VERTEX
    atoms: torch.Tensor    # (S, 3) expanded spheres the point lies on (-1 where unused)
    nearby: torch.Tensor   # (S, _NEARBY) other spheres passing within _NEARBY_MARGIN cells (-1 padded)
    complete: torch.Tensor  # (S,) bool, ``nearby`` lists all such spheres


def solvent_excluded_surface(coords, radii, probe: float = DEFAULT_PROBE, spacing: float = DEFAULT_SPACING,
                             mesh: bool = False, device: Optional[Device] = None) -> Surface:
    """Solvent-excluded (molecular) surface of atoms, as oriented points and optionally a mesh.

    Parameters
    ----------
    coords : (N, 3) array or tensor
        Atom centres in Å.
    radii : (N,) array or tensor
        Atom van der Waals radii in Å (see :func:`dsr_backend.radii.vdw_radii`).
    probe : float
        Solvent probe radius in Å; 0 gives the van der Waals surface.
    spacing : float
        Grid spacing in Å; points come out at about this spacing.
    mesh : bool
        Also return the marching-cubes triangle mesh (``vertices``, ``faces``).
    device : str or torch.device, optional
        Where the dense arithmetic runs; default: the device of ``coords`` if it is a tensor, else CPU.

    Returns
    -------
    Surface
        Points on the SES with outward unit normals (float32, CPU numpy). Surfaces of interior
        cavities the probe fits in are included.

    Raises
    ------
    InvalidInputError
        Bad shapes, non-finite or non-positive values, ``probe < 0``, ``spacing <= 0``, or a spacing
        too coarse to resolve any surface.
    ResourceLimitError
        The grid would exceed :data:`MAX_GRID_POINTS` points.

    Notes
    -----
    Nearest-neighbour queries (scipy k-d trees, ``torch.get_num_threads()`` workers) and marching cubes
    (scikit-image) run on the CPU whatever the device; with ``mesh=True``, ``vertices`` is ``points``.
    """
    centres, atom_radii = _validate(coords, radii, probe, spacing, device)
    probe, spacing = float(probe), float(spacing)
    expanded = atom_radii + probe
    grid = _make_grid(centres, expanded, spacing)
    logger.debug("SES grid %s (%d points) for %d atoms", grid.shape, grid.size, len(centres))
    sas_value, owner = _splat_sas(grid, centres, expanded)
    samples = _sas_samples(grid, sas_value, owner, centres, expanded)
    if len(samples.points) == 0:
        raise InvalidInputError(_too_coarse(spacing, atom_radii))
    tree = cKDTree(samples.points.cpu().numpy())
    field = _ses_field(grid, sas_value, tree, probe)
    vertices, faces = _marching_cubes(field, grid)
    if len(faces) == 0:
        raise InvalidInputError(_too_coarse(spacing, atom_radii))
    points, normals = _project_vertices(vertices.to(centres.device), samples, tree, centres, expanded, probe,
                                        spacing)
    points_np = points.cpu().numpy().astype(np.float32)
    normals_np = normals.cpu().numpy().astype(np.float32)
    if not mesh:
        return Surface(points=points_np, normals=normals_np)
    return Surface(points=points_np, normals=normals_np, vertices=points_np, faces=faces)


def solvent_excluded_surfaces(coords: Sequence, radii: Sequence, device: Optional[Device] = None,
                              done: Optional[Callable[[int], bool]] = None,
                              **options) -> Optional[list[Surface]]:
    """:func:`solvent_excluded_surface` of many frames (``coords[k]`` with ``radii[k]``), in order.

    On the CPU the frames are computed side by side, one thread each on every core this process may use
    (several frames on one-thread workers are faster than one frame on many threads, and stay fast beside
    another busy process); on CUDA one after the other. ``done(count)`` is called as frames finish (from
    the caller's thread) and returns True to cancel: frames not started are dropped and None is returned.
    ``options`` go to :func:`solvent_excluded_surface`.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if len(coords) != len(radii):
        raise InvalidInputError(f"got {len(coords)} frames of coordinates but {len(radii)} of radii")

    def one(frame: int) -> Surface:
        with single_thread() if device.type == "cpu" else contextlib.nullcontext():
            return solvent_excluded_surface(coords[frame], radii[frame], device=device, **options)

    workers = cpu_workers() if device.type == "cpu" else 1
    surfaces: list[Surface] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsr-surfaces") as pool:
        futures = [pool.submit(one, frame) for frame in range(len(coords))]
        try:
            for future in futures:
                surfaces.append(future.result())
                if done is not None and done(len(surfaces)):
                    return None
        finally:
            for future in futures:
                future.cancel()
    release_free_memory()
    return surfaces


def release_free_memory() -> None:
    """Hand back to the system the memory the C allocator keeps from freed blocks (glibc's ``malloc_trim``).

    Each surface worker thread frees its grids into an allocator arena of its own, which glibc keeps: after the
    surfaces of many frames that is several hundred MB the process holds but does not use, on top of which a
    training would then allocate. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _too_coarse(spacing: float, radii: torch.Tensor) -> str:
    return (f"spacing {spacing:g} Å is too coarse to resolve the surface of atoms with radii "
            f"{float(radii.min()):g}-{float(radii.max()):g} Å; use a smaller spacing")


def _validate(coords, radii, probe, spacing, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float32 tensors (N, 3) and (N,) on the working device."""
    if device is None:
        device = coords.device if isinstance(coords, torch.Tensor) else torch.device("cpu")
    centres = _as_tensor(coords, "coords", device)
    atom_radii = _as_tensor(radii, "radii", device)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise InvalidInputError(f"coords must have shape (N, 3); got {tuple(centres.shape)}")
    if atom_radii.ndim != 1:
        raise InvalidInputError(f"radii must have shape (N,); got {tuple(atom_radii.shape)}")
    if len(centres) != len(atom_radii):
        raise InvalidInputError(f"coords and radii must have the same length; got {len(centres)} atoms "
                                f"and {len(atom_radii)} radii")
    if len(centres) == 0:
        raise InvalidInputError("coords must hold at least one atom; got 0 atoms")
    if not bool(torch.isfinite(centres).all()):
        raise InvalidInputError("coords must be finite; got NaN or infinite values")
    if float(centres.abs().max()) > MAX_COORDINATE:
        raise InvalidInputError(f"coords must lie within ±{MAX_COORDINATE:g} Å; got {float(centres.abs().max()):.3g}")
    if not bool(torch.isfinite(atom_radii).all()):
        raise InvalidInputError("radii must be finite; got NaN or infinite values")
    if not bool((atom_radii > 0).all()):
        raise InvalidInputError(f"radii must be positive; got minimum {float(atom_radii.min()):g}")
    _check_scalar(probe, "probe", allow_zero=True)
    _check_scalar(spacing, "spacing", allow_zero=False)
    return centres, atom_radii


def _as_tensor(values, name: str, device: Device) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{name} must be a numeric array or tensor; got {type(values).__name__} "
                                f"({error})") from None
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise InvalidInputError(f"{name} must be numeric; got dtype {tensor.dtype}")
    return tensor.to(device=device, dtype=torch.float32)


def _check_scalar(value, name: str, allow_zero: bool) -> None:
    bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be {bound}; got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {bound}; got {value!r}")


def _make_grid(centres: torch.Tensor, expanded: torch.Tensor, spacing: float) -> _Grid:
    """Grid holding every atom's splat cube (see :func:`_splat_sas`) with a spare cell, after a size check."""
    margin = (_splat_half_width(expanded, spacing) + 1) * spacing
    low = centres.min(dim=0).values - margin
    high = centres.max(dim=0).values + margin
    counts = torch.ceil((high - low) / spacing).to(torch.int64) + 1
    shape = tuple(int(n) for n in counts.tolist())
    total = shape[0] * shape[1] * shape[2]
    if total > MAX_GRID_POINTS:
        extent = (high - low).tolist()
        raise ResourceLimitError(
            f"the SES grid would have {total:.3g} points ({shape[0]} x {shape[1]} x {shape[2]} for a "
            f"{extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} Å box at spacing {spacing:g} Å), above the "
            f"limit of {MAX_GRID_POINTS:.3g}; use a larger spacing or fewer atoms")
    return _Grid(origin=low, shape=shape, spacing=spacing)


def _splat_half_width(expanded: torch.Tensor, spacing: float) -> int:
    """Half width, in cells, of the cube each atom writes.

    It covers the ball of radius ``R + _SPLAT_MARGIN`` cells, so ``s`` is exact wherever ``s`` is below
    ``_SPLAT_MARGIN`` cells (all the SAS sampling and the field's band use).
    """
    return int(math.ceil(float(expanded.max()) / spacing + _SPLAT_MARGIN))


def _splat_sas(grid: _Grid, centres: torch.Tensor, expanded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``s(x) = min_i |x - c_i| - R_i`` on the grid, and the arg-min atom (int32, -1 beyond every sphere's reach).

    Each atom writes the cube of grid points around it; the minimum and its atom are found together by
    a scatter-min over int64 keys packing the quantised distance (high bits) with the atom index.
    """
    device = centres.device
    h = grid.spacing
    half = _splat_half_width(expanded, h)
    reach = half * h
    steps = torch.arange(-half, half + 1, device=device)
    atom_bits = max(1, int(len(centres) - 1).bit_length())
    quantum = 2.0 * reach / (1 << _COORD_BITS)
    base = torch.round((centres - grid.origin) / h).to(torch.int64)
    offset = base.to(torch.float32) * h + grid.origin - centres
    strides = torch.tensor([grid.shape[1] * grid.shape[2], grid.shape[2], 1], device=device)
    cube_index = (steps[:, None, None] * strides[0] + steps[None, :, None] * strides[1]
                  + steps[None, None, :] * strides[2]).reshape(-1)
    base_index = (base * strides).sum(dim=1)
    keys = torch.full((grid.size,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    cube = len(cube_index)
    chunk = max(1, 4_000_000 // cube)
    for start in range(0, len(centres), chunk):
        atoms = torch.arange(start, min(start + chunk, len(centres)), device=device)
        axis = offset[atoms, :, None] + steps.to(torch.float32) * h
        square = axis * axis
        dist2 = square[:, 0, :, None, None] + square[:, 1, None, :, None] + square[:, 2, None, None, :]
        value = dist2.reshape(len(atoms), -1).sqrt_().sub_(expanded[atoms, None]).clamp_(max=reach)
        packed = ((value + reach) / quantum).to(torch.int64).bitwise_left_shift_(atom_bits).add_(atoms[:, None])
        keys.scatter_reduce_(0, (base_index[atoms, None] + cube_index).reshape(-1), packed.reshape(-1), "amin")
    unset = keys == torch.iinfo(torch.int64).max
    sas_value = (keys >> atom_bits).to(torch.float32).mul_(quantum).sub_(reach).masked_fill_(unset, reach)
    owner = (keys & ((1 << atom_bits) - 1)).to(torch.int32).masked_fill_(unset, -1)
    return sas_value, owner


def _sas_samples(grid: _Grid, sas_value: torch.Tensor, owner: torch.Tensor, centres: torch.Tensor,
                 expanded: torch.Tensor) -> _SasSamples:
    """Exact SAS points: grid points within half a cell diagonal of the SAS, projected onto it.

    Projections that move more than ``_SAMPLE_SHIFT`` cells, or beyond where the point's sphere list is
    complete, are dropped; each sample remembers the other spheres passing within ``_NEARBY_MARGIN`` cells
    of it.
    """
    h = grid.spacing
    near = torch.nonzero((sas_value.abs() <= _SAMPLE_BAND * h) & (owner >= 0)).squeeze(1)
    x = grid.positions(near)
    first = owner[near].long()
    neighbours, limit = _atom_neighbours(x, centres, expanded, (_SAMPLE_SHIFT + _NEARBY_MARGIN) * h)
    points, kind, atoms = _project_to_sas(x, first, neighbours, centres, expanded)
    shift = (points - x).norm(dim=1)
    keep = (kind >= 0) & (shift <= _SAMPLE_SHIFT * h) & (shift < limit)
    points, kind, atoms, neighbours = points[keep], kind[keep], atoms[keep], neighbours[keep]
    nearby, complete = _nearby_spheres(points, atoms, neighbours, centres, expanded, _NEARBY_MARGIN * h)
    complete &= limit[keep] - shift[keep] >= _NEARBY_MARGIN * h
    samples = _SasSamples(points=points, kind=kind, atoms=atoms, nearby=nearby, complete=complete)
    samples = _with_vertices(samples, centres, expanded, _NEARBY_MARGIN * h)
    logger.debug("SAS samples: %d from %d candidate grid points", len(samples.points), len(near))
    return samples


def _with_vertices(samples: _SasSamples, centres: torch.Tensor, expanded: torch.Tensor,
                   margin: float) -> _SasSamples:
    """Add the SAS vertices (points on three spheres) lying within ``margin`` of a sample.

    Grid projections rarely hit these isolated points exactly, yet they are the closest SAS points to the
    reentrant spherical patches of the SES. Each sample's first sphere is crossed with every pair of its
    other spheres (its second one and the nearby ones).
    """
    others = torch.cat([samples.atoms[:, 1:2], samples.nearby], dim=1)
    others = torch.where(samples.complete[:, None], others, -1)
    column_a, column_b = torch.triu_indices(others.shape[1], others.shape[1], offset=1, device=others.device)
    second, third = others[:, column_a].reshape(-1), others[:, column_b].reshape(-1)
    source = torch.arange(len(others), device=others.device).repeat_interleave(len(column_a))
    valid = (second >= 0) & (third >= 0)
    source, second, third = source[valid], second[valid], third[valid]
    first = samples.atoms[source, 0]
    circle = _Circle.of(centres[first], expanded[first], centres[second], expanded[second])
    pair, exists = circle.crossings(centres[third], expanded[third])
    points = pair.reshape(-1, 3)
    source = source.repeat_interleave(2)
    close = exists.repeat_interleave(2) & ((points - samples.points[source]).norm(dim=1) <= margin)
    points, source = points[close], source[close]
    atoms = torch.stack([first, second, third], dim=1).repeat_interleave(2, dim=0)[close]
    spheres = torch.cat([samples.atoms[source], samples.nearby[source]], dim=1)
    depth, _ = _deepest(points, spheres, list(atoms.unbind(dim=1)), centres, expanded)
    points, atoms = points[depth <= _BURIED_TOL], atoms[depth <= _BURIED_TOL]
    _, unique = np.unique(np.round(points.cpu().numpy() / 1e-4).astype(np.int64), axis=0, return_index=True)
    unique = torch.from_numpy(unique).to(points.device)
    points, atoms = points[unique], atoms[unique]
    count = len(points)
    return _SasSamples(
        points=torch.cat([samples.points, points]),
        kind=torch.cat([samples.kind, torch.full((count,), _VERTEX, dtype=samples.kind.dtype, device=points.device)]),
        atoms=torch.cat([samples.atoms, atoms]),
        nearby=torch.cat([samples.nearby, samples.nearby.new_full((count, samples.nearby.shape[1]), -1)]),
        complete=torch.cat([samples.complete, samples.complete.new_zeros(count)]))


def _nearby_spheres(points: torch.Tensor, atoms: torch.Tensor, neighbours: torch.Tensor, centres: torch.Tensor,
                    expanded: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spheres other than the feature's whose surface passes within ``margin`` of each sample.

    Returns (S, _NEARBY) indices, -1 padded, and whether the list holds all of them.
    """
    safe = neighbours.clamp(min=0)
    gap = (points[:, None, :] - centres[safe]).norm(dim=2) - expanded[safe]
    ignored = (neighbours < 0) | (neighbours[:, :, None] == atoms[:, None, :]).any(dim=2) | (gap >= margin)
    gap = gap.masked_fill(ignored, math.inf)
    width = min(_NEARBY + 1, gap.shape[1])
    order = gap.topk(width, dim=1, largest=False)
    close = torch.isfinite(order.values)
    nearby = torch.where(close, safe.gather(1, order.indices), -1)[:, :_NEARBY]
    complete = ~close[:, _NEARBY] if width > _NEARBY else torch.ones_like(close[:, 0])
    return nearby, complete


def _atom_neighbours(x: torch.Tensor, centres: torch.Tensor, expanded: torch.Tensor,
                     gap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spheres nearest the surface at each point: (B, _NEIGHBOURS) indices by increasing ``|x - c| - R``.

    Returns the indices (-1 padded) and, per point, the ``limit`` (at most ``gap``) such that every sphere
    with ``|x - c| - R < limit`` is listed.
    """
    tree = cKDTree(centres.cpu().numpy())
    query = x.cpu().numpy()
    radii = expanded.cpu().numpy()
    radius = float(radii.max()) + gap
    count = min(_KD_NEIGHBOURS, len(centres))
    dist, index = tree.query(query, k=count, distance_upper_bound=radius, workers=torch.get_num_threads())
    dist, index = dist.reshape(len(query), count), index.reshape(len(query), count)
    full = np.nonzero(np.isfinite(dist[:, -1]))[0]
    if len(full) and count < len(centres):
        dist, index = _widen(tree, query, full, radius, dist, index)
    found = np.isfinite(dist)
    index = np.where(found, index, 0)
    surface_gap = torch.from_numpy(np.where(found, dist - radii[index], np.inf)).to(x.device)
    index = torch.from_numpy(index).to(x.device)
    width = min(_NEIGHBOURS, index.shape[1])
    order = surface_gap.topk(min(width + 1, index.shape[1]), dim=1, largest=False)
    if width < index.shape[1]:
        limit = order.values[:, width].clamp(max=gap).to(x.dtype)
    else:
        limit = torch.full((len(x),), gap, dtype=x.dtype, device=x.device)
    close = order.values[:, :width] < gap
    return torch.where(close, index.gather(1, order.indices[:, :width]), -1), limit


def _widen(tree: cKDTree, query: np.ndarray, rows: np.ndarray, radius: float, dist: np.ndarray,
           index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complete the k-d tree's k-nearest lists of ``rows`` (which hit k) with every atom within ``radius``."""
    more = tree.query_ball_point(query[rows], radius, workers=torch.get_num_threads())
    width = max(len(found) for found in more)
    dist = np.pad(dist, ((0, 0), (0, width - dist.shape[1])), constant_values=np.inf)
    index = np.pad(index, ((0, 0), (0, width - index.shape[1])), constant_values=0)
    for row, found in zip(rows, more):
        index[row, :len(found)] = found
        dist[row, :len(found)] = np.linalg.norm(tree.data[found] - query[row], axis=1)
    return dist, index


def _deepest(y: torch.Tensor, neighbours: torch.Tensor, exclude: list[torch.Tensor], centres: torch.Tensor,
             expanded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest depth ``R_m - |y - c_m|`` of ``y`` inside a neighbour sphere not excluded, and that sphere."""
    safe = neighbours.clamp(min=0)
    depth = expanded[safe] - (y[:, None, :] - centres[safe]).norm(dim=2)
    ignored = neighbours < 0
    for atom in exclude:
        ignored |= neighbours == atom[:, None]
    depth = depth.masked_fill(ignored, -math.inf)
    best, column = depth.max(dim=1)
    return best, safe.gather(1, column[:, None]).squeeze(1)


def _project_to_sas(x: torch.Tensor, first: torch.Tensor, neighbours: torch.Tensor, centres: torch.Tensor,
                    expanded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project points onto the SAS: sphere ``first``, else a circle, else a vertex.

    Returns the points, their feature kind (-1 where no projection is on the SAS) and the (B, 3)
    spheres of the feature (-1 padded).
    """
    count = len(x)
    kind = torch.full((count,), -1, dtype=torch.int64, device=x.device)
    atoms = torch.full((count, 3), -1, dtype=torch.int64, device=x.device)
    atoms[:, 0] = first
    points = _onto_sphere(x, centres[first], expanded[first])
    depth, second = _deepest(points, neighbours, [first], centres, expanded)
    kind[depth <= _BURIED_TOL] = _SPHERE
    todo = torch.nonzero(kind < 0).squeeze(1)
    atoms[todo, 1] = second[todo]
    circle = _Circle.of(centres[first[todo]], expanded[first[todo]], centres[second[todo]], expanded[second[todo]])
    on_circle = circle.nearest(x[todo])
    depth, third = _deepest(on_circle, neighbours[todo], [first[todo], second[todo]], centres, expanded)
    ok = circle.exists & (depth <= _BURIED_TOL)
    points[todo] = on_circle
    kind[todo[ok]] = _CIRCLE
    rest = ~ok & circle.exists
    todo, circle, third = todo[rest], circle.subset(rest), third[rest]
    atoms[todo, 2] = third
    pair, exists = circle.crossings(centres[third], expanded[third])
    vertex = _nearer(pair, x[todo])
    depth, _ = _deepest(vertex, neighbours[todo], [atoms[todo, 0], atoms[todo, 1], third], centres, expanded)
    points[todo] = vertex
    kind[todo[exists & (depth <= _BURIED_TOL)]] = _VERTEX
    return points, kind, atoms


def _onto_sphere(x: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    return centre + radius[:, None] * _unit(x - centre)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)


@dataclass
class _Circle:
    """Intersection circles of pairs of spheres (batched)."""

    centre: torch.Tensor   # (B, 3)
    normal: torch.Tensor   # (B, 3) unit, from the first sphere to the second
    radius: torch.Tensor   # (B,), 0 where the spheres do not intersect
    exists: torch.Tensor   # (B,) bool

    @staticmethod
    def of(c1: torch.Tensor, r1: torch.Tensor, c2: torch.Tensor, r2: torch.Tensor) -> "_Circle":
        between = c2 - c1
        length = between.norm(dim=1).clamp(min=1e-12)
        along = (length * length + r1 * r1 - r2 * r2) / (2.0 * length)
        radius2 = r1 * r1 - along * along
        normal = between / length[:, None]
        return _Circle(centre=c1 + along[:, None] * normal, normal=normal, radius=radius2.clamp(min=0).sqrt(),
                       exists=radius2 > 0)

    def subset(self, mask: torch.Tensor) -> "_Circle":
        return _Circle(self.centre[mask], self.normal[mask], self.radius[mask], self.exists[mask])

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Closest circle points to ``x``."""
        rel = x - self.centre
        planar = rel - (rel * self.normal).sum(dim=1, keepdim=True) * self.normal
        fallback = torch.linalg.cross(self.normal, _least_aligned_axis(self.normal), dim=1)
        small = planar.norm(dim=1, keepdim=True) < 1e-6
        return self.centre + self.radius[:, None] * _unit(torch.where(small, fallback, planar))

    def crossings(self, centre: torch.Tensor, radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two points (B, 2, 3) where each circle crosses a sphere, and whether they exist."""
        toward = centre - self.centre
        planar = toward - (toward * self.normal).sum(dim=1, keepdim=True) * self.normal
        reach = planar.norm(dim=1)
        first = planar / reach.clamp(min=1e-12)[:, None]
        second = torch.linalg.cross(self.normal, first, dim=1)
        cosine = ((toward * toward).sum(dim=1) + self.radius ** 2 - radius * radius) / (
            2.0 * (self.radius * reach).clamp(min=1e-12))
        exists = self.exists & (reach > 1e-6) & (cosine.abs() <= 1.0)
        cosine = cosine.clamp(-1.0, 1.0)
        sine = (1.0 - cosine * cosine).sqrt()
        base = self.centre + (self.radius * cosine)[:, None] * first
        side = (self.radius * sine)[:, None] * second
        return torch.stack([base + side, base - side], dim=1), exists


def _nearer(pair: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Of each pair of points (B, 2, 3), the one nearer ``x``."""
    choice = (pair - x[:, None, :]).norm(dim=2).argmin(dim=1)
    return pair[torch.arange(len(x), device=x.device), choice]


def _least_aligned_axis(v: torch.Tensor) -> torch.Tensor:
    """Per row, the coordinate axis least aligned with ``v``."""
    return torch.nn.functional.one_hot(v.abs().argmin(dim=1), 3).to(v.dtype)


def _nearest_samples(tree: cKDTree, x: torch.Tensor) -> torch.Tensor:
    """(B, _CANDIDATES) indices of the SAS samples nearest each point (the nearest repeated if too few)."""
    dist, index = tree.query(x.cpu().numpy(), k=_CANDIDATES, workers=torch.get_num_threads())
    dist, index = dist.reshape(len(x), -1), index.reshape(len(x), -1)
    return torch.from_numpy(np.where(np.isfinite(dist), index, index[:, :1])).to(x.device)


def _nearest_sas_points(x: torch.Tensor, nearest: torch.Tensor, samples: _SasSamples, centres: torch.Tensor,
                        expanded: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest SAS point to each ``x`` among its nearest samples and exact projections made near them.

    ``nearest`` (B, k) indexes the samples nearest each point. From each sample, ``x`` is projected onto
    the SAS as in :func:`_project_to_sas`, starting from the sample's first sphere and checking the spheres
    the sample knows (those within ``margin`` of it); a projection farther than ``margin`` from its sample
    falls back to the sample. Returns the points and their feature spheres (B, 3).
    """
    rows = torch.arange(len(x), device=x.device)
    best_points, best_atoms = [x.new_zeros((0, 3))], [nearest.new_zeros((0, 3))]
    for chunk in torch.split(rows, 16384):
        points, atoms = _nearest_sas_chunk(x[chunk], nearest[chunk], samples, centres, expanded, margin)
        best_points.append(points)
        best_atoms.append(atoms)
    return torch.cat(best_points), torch.cat(best_atoms)


def _nearest_sas_chunk(x, nearest, samples, centres, expanded, margin):
    count, k = nearest.shape
    flat = nearest.reshape(-1)
    sample, sample_atoms = samples.points[flat], samples.atoms[flat]
    origin = x.repeat_interleave(k, dim=0)
    spheres = torch.cat([sample_atoms, samples.nearby[flat]], dim=1)
    exact, kind, atoms = _project_to_sas(origin, sample_atoms[:, 0], spheres, centres, expanded)
    ok = (kind >= 0) & samples.complete[flat] & ((exact - sample).norm(dim=1) <= margin)
    exact = torch.where(ok[:, None], exact, sample).reshape(count, k, 3)
    atoms = torch.where(ok[:, None], atoms, sample_atoms).reshape(count, k, 3)
    best = (exact - x[:, None, :]).norm(dim=2).argmin(dim=1)
    pick = torch.arange(count, device=x.device)
    return exact[pick, best], atoms[pick, best]


def _ses_field(grid: _Grid, sas_value: torch.Tensor, tree: cKDTree, probe: float) -> np.ndarray:
    """SES level-set function on the grid, negative inside.

    Inside the expanded-sphere union it is ``probe - d`` with ``d`` the distance to the nearest SAS sample;
    outside it is ``probe + s``. Values are exact only within ``band`` of zero, where marching cubes reads
    them: points with ``d > probe + band`` (``d >= -s`` rules most out without a query) get ``-band``.
    """
    band = 1.1 * grid.spacing
    inside = sas_value < 0
    field = torch.where(inside, torch.full_like(sas_value, -band), sas_value + probe)
    candidates = torch.nonzero(inside & (sas_value >= -(probe + band))).squeeze(1)
    dist, _ = tree.query(grid.positions(candidates).cpu().numpy(), distance_upper_bound=probe + band,
                         workers=torch.get_num_threads())
    found = np.isfinite(dist)
    field[candidates[torch.from_numpy(found).to(field.device)]] = torch.from_numpy(
        probe - dist[found]).to(device=field.device, dtype=field.dtype)
    return field.reshape(grid.shape).cpu().numpy()


def _marching_cubes(field: np.ndarray, grid: _Grid) -> tuple[torch.Tensor, np.ndarray]:
    """Zero level set of ``field`` as vertices in Å (float32 tensor) and int64 faces wound outward."""
    h = grid.spacing
    if not field.min() < 0.0 < field.max():
        return torch.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    vertices, faces, _, _ = marching_cubes(field, level=0.0, spacing=(h, h, h), gradient_direction="descent",
                                           allow_degenerate=False)
    vertices = torch.from_numpy(vertices.astype(np.float32)) + grid.origin.cpu()
    return vertices, faces.astype(np.int64)


def _project_vertices(v: torch.Tensor, samples: _SasSamples, tree: cKDTree, centres: torch.Tensor,
                      expanded: torch.Tensor, probe: float, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Move vertices exactly onto the SES and give their outward normals.

    Each vertex goes onto the probe sphere around its closest SAS point ``y`` (the probe centre), and its
    normal points toward ``y``. For ``probe = 0``, and for a probe smaller than the grid spacing where the
    vertex may lie on the outer side of ``y``, it goes along the SAS normal at ``y`` instead.
    """
    nearest = _nearest_samples(tree, v)
    centre, atoms = _nearest_sas_points(v, nearest, samples, centres, expanded, _NEARBY_MARGIN * spacing)
    direction = _unit(v - centre)
    sas_normal = _feature_normal(centre, atoms, centres, expanded)
    outward = (probe < spacing) & ((direction * sas_normal).sum(dim=1) >= 0)
    outward |= ((v - centre).norm(dim=1) < 1e-6) | (probe == 0)
    direction = torch.where(outward[:, None], -sas_normal, direction)
    return centre + probe * direction, -direction


def _feature_normal(y: torch.Tensor, atoms: torch.Tensor, centres: torch.Tensor,
                    expanded: torch.Tensor) -> torch.Tensor:
    """Outward SAS normal at feature points: the mean of the radial directions of their spheres."""
    safe = atoms.clamp(min=0)
    radial = (y[:, None, :] - centres[safe]) / expanded[safe][:, :, None]
    return _unit((radial * (atoms >= 0)[:, :, None]).sum(dim=1))
