"""Surface metrics of the paper (section 3.3): volumetric IoU, Chamfer distance and normal consistency.

Conventions (the authors', written out in docs/evaluation.md): shapes live in the normalised [-1, 1]^3 frame of a
series; IoU compares occupancy on a ``resolution``^3 grid of nodes over [-1, 1]^3 (128^3 by default);
Chamfer is the sum of the two directed means of *squared* nearest-neighbour distances between
area-uniform samples (300k per surface by default); NC takes every ground-truth vertex to its nearest
predicted vertex and averages ``|n_gt . n_pred|``. The symmetric variants are ONet's: Chamfer-L1 (the
paper's eq. 6-7, unsquared distances) and NC averaged over both directions on the samples.

Nearest neighbours: scipy's cKDTree on CPU, pykeops on CUDA (cKDTree too where pykeops is missing).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from .errors import InvalidInputError
from .neighbours import nearest, search_method
from .query import unit_grid_axis, unit_marching_cubes

RESOLUTION = 128
SAMPLES = 300_000
TRUNCATION_CELLS = 8.0  # signed distance grids are exact up to this many grid cells from the surface
_RAY_JITTER = np.array([1.234567e-3, 3.141593e-3, 2.718282e-3])  # cells; keeps parity rays off mesh edges
METRIC_NAMES = ("iou", "chamfer", "nc", "chamfer_l1", "nc_symmetric")


class EmptySurfaceError(InvalidInputError):
    """A surface to be scored has no triangles (or no points); it has no metric."""


def grid_axis(resolution: int = RESOLUTION) -> np.ndarray:
    """Node coordinates along one axis of the evaluation grid over [-1, 1]."""
    if resolution < 2:
        raise InvalidInputError(f"the evaluation grid needs at least 2 nodes per axis, got {resolution}")
    return unit_grid_axis(resolution)


def grid_nodes(resolution: int = RESOLUTION) -> np.ndarray:
    """All nodes of the evaluation grid, (R^3, 3), x-major like :func:`dsr_backend.query.sdf_grid`."""
    axis = grid_axis(resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)


def _check_mesh(vertices: np.ndarray, faces: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0:
        raise EmptySurfaceError(f"{what} is empty (no triangles): it has no IoU, Chamfer or NC")
    return vertices, faces


def mesh_occupancy(vertices: np.ndarray, faces: np.ndarray, resolution: int = RESOLUTION) -> np.ndarray:
    """Inside test of a closed triangle mesh (unit frame) at the nodes of the evaluation grid.

    Ray parity along x, y and z with a majority vote, so that a ray grazing an edge or passing through a
    small hole does not flip a whole line of nodes. Returns a (R, R, R) bool array, axes x, y, z.
    """
    vertices, faces = _check_mesh(vertices, faces, "the mesh")
    spacing = 2.0 / (resolution - 1)
    triangles = (vertices[faces] + 1.0) / spacing  # in cells, node (0, 0, 0) at the origin
    votes = sum(_parity(triangles, resolution, axis).astype(np.uint8) for axis in range(3))
    return votes >= 2


def _parity(triangles: np.ndarray, resolution: int, axis: int) -> np.ndarray:
    """Nodes with an odd number of mesh crossings on the ray from -inf along ``axis``."""
    u, v = [a for a in range(3) if a != axis]
    shift = _RAY_JITTER[[u, v]]
    low = np.ceil(triangles[:, :, [u, v]].min(axis=1) - shift).astype(np.int64)
    high = np.floor(triangles[:, :, [u, v]].max(axis=1) - shift).astype(np.int64)
    low, high = np.maximum(low, 0), np.minimum(high, resolution - 1)
    width = np.maximum(high - low + 1, 0)
    count = width[:, 0] * width[:, 1]
    owner = np.repeat(np.arange(len(triangles)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    columns = np.maximum(width[owner, 1], 1)
    iu, iv = low[owner, 0] + local // columns, low[owner, 1] + local % columns
    hit, depth = _ray_crossings(triangles[owner], iu + shift[0], iv + shift[1], u, v, axis)
    iu, iv, depth = iu[hit], iv[hit], depth[hit]
    slot = np.clip(np.ceil(depth).astype(np.int64), 0, resolution)  # first node past the crossing
    counts = np.bincount((iu * resolution + iv) * (resolution + 1) + slot, minlength=resolution ** 2 * (resolution + 1))
    inside = np.cumsum(counts.reshape(resolution, resolution, resolution + 1), axis=2)[:, :, :-1] % 2 == 1
    return np.transpose(inside, np.argsort([u, v, axis]))


def _ray_crossings(tri: np.ndarray, pu: np.ndarray, pv: np.ndarray, u: int, v: int, axis: int):
    """Whether the line (pu, pv, .) crosses each triangle, and where along ``axis``."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (b[:, u] - a[:, u]) * (c[:, v] - a[:, v]) - (c[:, u] - a[:, u]) * (b[:, v] - a[:, v])
    safe = np.where(det == 0, 1.0, det)
    w1 = ((pu - a[:, u]) * (c[:, v] - a[:, v]) - (c[:, u] - a[:, u]) * (pv - a[:, v])) / safe
    w2 = ((b[:, u] - a[:, u]) * (pv - a[:, v]) - (pu - a[:, u]) * (b[:, v] - a[:, v])) / safe
    w0 = 1.0 - w1 - w2
    hit = (det != 0) & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    return hit, w0 * a[:, axis] + w1 * b[:, axis] + w2 * c[:, axis]


def oriented_point_occupancy(points: np.ndarray, normals: np.ndarray, resolution: int = RESOLUTION) -> np.ndarray:
    """Inside test from oriented points alone: a node is inside when it lies behind its nearest point's
    tangent plane, ``(x - p) . n < 0``. Good for dense points of a smooth closed surface."""
    nodes = grid_nodes(resolution)
    _, nearest = cKDTree(points).query(nodes, workers=_workers())
    side = np.einsum("ij,ij->i", nodes - points[nearest], normals[nearest])
    return (side < 0).reshape(resolution, resolution, resolution)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, count: int = SAMPLES,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` area-uniform points on a triangle mesh and their unit normals (vertex normals interpolated)."""
    vertices, faces = _check_mesh(vertices, faces, "the mesh")
    rng = np.random.default_rng(seed)
    corners = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if not area.sum() > 0:
        raise EmptySurfaceError("the mesh has zero area: it has no IoU, Chamfer or NC")
    chosen = np.minimum(np.searchsorted(np.cumsum(area) / area.sum(), rng.random(count)), len(faces) - 1)
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    points = np.einsum("ij,ijk->ik", weights, corners[chosen])
    sample_normals = np.einsum("ij,ijk->ik", weights, np.asarray(normals, dtype=np.float64)[faces[chosen]])
    return points, _unit(sample_normals)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _workers() -> int:
    return max(1, torch.get_num_threads())


@dataclass
class Shape:
    """A surface prepared for scoring, in the unit frame.

    Attributes
    ----------
    occupancy : (R, R, R) bool, inside at the evaluation grid nodes.
    vertices, normals : (V, 3) mesh vertices (or oriented points) and unit outward normals, for NC.
    samples, sample_normals : (S, 3) area-uniform samples and their normals, for Chamfer and symmetric NC.
    """

    occupancy: np.ndarray
    vertices: np.ndarray
    normals: np.ndarray
    samples: np.ndarray
    sample_normals: np.ndarray
    _trees: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_mesh(cls, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, resolution: int = RESOLUTION,
                  samples: int = SAMPLES, seed: int = 0) -> "Shape":
        """A closed triangle mesh with vertex normals; inside by ray parity."""
        samples_xyz, samples_n = sample_surface(vertices, faces, normals, samples, seed)
        return cls(mesh_occupancy(vertices, faces, resolution), np.asarray(vertices, np.float64),
                   _unit(np.asarray(normals, np.float64)), samples_xyz, samples_n)

    @classmethod
    def from_points(cls, points: np.ndarray, normals: np.ndarray, resolution: int = RESOLUTION) -> "Shape":
        """Oriented points without a mesh: the points are the samples, inside by the nearest tangent plane."""
        points, normals = np.asarray(points, np.float64), _unit(np.asarray(normals, np.float64))
        if len(points) == 0:
            raise EmptySurfaceError("the surface has no points: it has no IoU, Chamfer or NC")
        return cls(oriented_point_occupancy(points, normals, resolution), points, normals, points, normals)

    @classmethod
    def from_sdf_grid(cls, grid: np.ndarray, samples: int = SAMPLES, seed: int = 0,
                      what: str = "the surface") -> "Shape":
        """The zero level set of a signed distance grid on the evaluation nodes (negative inside), with the
        marching-cubes vertex normals (the grid's gradient)."""
        vertices, faces, normals = grid_mesh(grid, what)
        samples_xyz, samples_n = sample_surface(vertices, faces, normals, samples, seed)
        return cls(grid < 0, vertices, _unit(np.asarray(normals, np.float64)), samples_xyz, samples_n)

    def tree(self, which: str) -> cKDTree:
        """k-d tree of ``vertices`` or ``samples``, built once."""
        if which not in self._trees:
            self._trees[which] = cKDTree(getattr(self, which))
        return self._trees[which]

    def nearest(self, queries: np.ndarray, which: str, device: str | torch.device = "cpu",
                method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """:func:`nearest_neighbours` of ``queries`` among this shape's ``vertices`` or ``samples``."""
        cpu = method == "kdtree" or (method == "auto" and torch.device(device).type != "cuda")
        return nearest_neighbours(queries, getattr(self, which), device, method,
                                  self.tree(which) if cpu else None)


def grid_mesh(grid: np.ndarray, what: str = "the surface") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marching cubes of the zero level of an SDF grid on the evaluation nodes: unit-frame vertices, faces
    wound counter-clockwise from outside, and outward unit normals from the grid gradient."""
    if not grid.min() < 0 < grid.max():
        raise EmptySurfaceError(f"{what} is empty: its signed distance is {'positive' if grid.min() >= 0 else 'negative'}"
                                f" everywhere on the grid (range {grid.min():.3g} .. {grid.max():.3g})")
    return unit_marching_cubes(grid, 0.0)


def signed_distance_grid(shape: Shape, resolution: int | None = None,
                         truncation_cells: float = TRUNCATION_CELLS) -> np.ndarray:
    """Truncated signed distance of a shape on the evaluation nodes (unit frame, negative inside).

    The magnitude is the distance to the nearest sample, or to its tangent plane within two cells of the
    surface (second-order accurate there); the sign is the shape's occupancy. Beyond ``truncation_cells``
    cells the value is +-truncation.
    """
    resolution = resolution or len(shape.occupancy)
    cell = 2.0 / (resolution - 1)
    limit = truncation_cells * cell
    nodes = grid_nodes(resolution)
    distance, nearest = shape.tree("samples").query(nodes, distance_upper_bound=limit, workers=_workers())
    close = np.isfinite(distance)
    magnitude = np.full(len(nodes), limit)
    magnitude[close] = distance[close]
    plane = close & (distance < 2 * cell)
    offsets = nodes[plane] - shape.samples[nearest[plane]]
    magnitude[plane] = np.abs(np.einsum("ij,ij->i", offsets, shape.sample_normals[nearest[plane]]))
    sign = np.where(shape.occupancy.reshape(-1), -1.0, 1.0)
    return (sign * magnitude).reshape(resolution, resolution, resolution).astype(np.float32)


def nearest_neighbours(queries: np.ndarray, points: np.ndarray, device: str | torch.device = "cpu",
                       method: str = "auto", tree: cKDTree | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each query point to its nearest point of ``points``, and that point's index.

    ``method`` "auto" uses pykeops on CUDA and cKDTree (``tree`` if given) on CPU, and on CUDA without
    pykeops (a brute force over the paper's 300k samples would cost more); "keops", "torch" and "kdtree"
    force one.
    """
    method = search_method(method, device, without_keops="kdtree")
    if method == "kdtree":
        return (tree if tree is not None else cKDTree(points)).query(queries, workers=_workers())
    x = torch.as_tensor(np.asarray(queries, np.float32), device=device)
    y = torch.as_tensor(np.asarray(points, np.float32), device=device)
    squared, index = nearest(x, y, 1, method)
    return squared.sqrt().view(-1).cpu().numpy().astype(np.float64), index.view(-1).cpu().numpy()


def iou(inside_a: np.ndarray, inside_b: np.ndarray) -> float:
    """|A and B| / |A or B| of two occupancy grids; an empty union is an error, not a number."""
    if inside_a.shape != inside_b.shape:
        raise InvalidInputError(f"occupancy grids differ in shape: {inside_a.shape} and {inside_b.shape}")
    union = np.logical_or(inside_a, inside_b).sum()
    if union == 0:
        raise EmptySurfaceError("both shapes are empty on the evaluation grid: IoU is undefined")
    return float(np.logical_and(inside_a, inside_b).sum() / union)


def compare(predicted: Shape, reference: Shape, device: str | torch.device = "cpu",
            method: str = "auto") -> dict[str, float]:
    """All metrics of ``predicted`` against ``reference`` (names in :data:`METRIC_NAMES`); ``device`` and
    ``method`` choose the nearest-neighbour search (see :func:`nearest_neighbours`)."""
    pred_to_ref, pred_index = reference.nearest(predicted.samples, "samples", device, method)
    ref_to_pred, ref_index = predicted.nearest(reference.samples, "samples", device, method)
    _, vertex_index = predicted.nearest(reference.vertices, "vertices", device, method)
    forward = np.abs(np.einsum("ij,ij->i", predicted.sample_normals, reference.sample_normals[pred_index])).mean()
    backward = np.abs(np.einsum("ij,ij->i", reference.sample_normals, predicted.sample_normals[ref_index])).mean()
    return dict(
        iou=iou(predicted.occupancy, reference.occupancy),
        chamfer=float((pred_to_ref ** 2).mean() + (ref_to_pred ** 2).mean()),
        nc=float(np.abs(np.einsum("ij,ij->i", reference.normals, predicted.normals[vertex_index])).mean()),
        chamfer_l1=float(0.5 * (pred_to_ref.mean() + ref_to_pred.mean())),
        nc_symmetric=float(0.5 * (forward + backward)))
