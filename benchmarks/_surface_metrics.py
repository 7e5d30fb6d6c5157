"""Surface comparison metrics for the SES benchmark: occupancy IoU, normal consistency, Chamfer distance."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_RAY_JITTER = np.array([0.1234567, 0.3141593, 0.2718282])  # grid offset in cells, keeps rays off mesh edges


def parse_obj(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, per-vertex normals and triangles of Wavefront OBJ text (``f a//n b//n c//n`` lines)."""
    vertices, normals, faces = [], [], []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "v":
            vertices.append([float(value) for value in fields[1:4]])
        elif fields[0] == "vn":
            normals.append([float(value) for value in fields[1:4]])
        elif fields[0] == "f":
            faces.append([int(field.split("/")[0]) - 1 for field in fields[1:4]])
    return (np.array(vertices, dtype=np.float64).reshape(-1, 3), np.array(normals, dtype=np.float64).reshape(-1, 3),
            np.array(faces, dtype=np.int64).reshape(-1, 3))


def weld(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
         tolerance: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Merge vertices closer than ``tolerance`` (a triangle soup becomes an indexed mesh).

    Returns the unique vertices, re-indexed faces without degenerate triangles, and the normal of the
    first merged vertex of each group (when ``normals`` is given).
    """
    keys = np.round(vertices / tolerance).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return vertices[first], faces[keep], None if normals is None else normals[first]


def occupancy_grid(lower: np.ndarray, upper: np.ndarray, spacing: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Origin and shape of a grid covering the box [lower, upper], offset off-lattice by a fixed jitter."""
    origin = np.asarray(lower, dtype=np.float64) - spacing * (1.0 - _RAY_JITTER)
    shape = tuple(int(n) for n in np.ceil((np.asarray(upper) - origin) / spacing).astype(int) + 2)
    return origin, shape


def occupancy(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, shape: tuple[int, int, int],
              spacing: float) -> np.ndarray:
    """Inside test of a closed triangle mesh on a grid: ray parity along x, y and z, majority vote.

    The vote keeps isolated parity errors (rays grazing a small hole or an edge) from spreading.
    """
    votes = sum(_parity(vertices, faces, origin, shape, spacing, axis).astype(np.uint8) for axis in range(3))
    return votes >= 2


def _parity(vertices, faces, origin, shape, spacing, axis: int) -> np.ndarray:
    """Inside test by counting mesh crossings of grid lines parallel to ``axis``."""
    u, v = [a for a in range(3) if a != axis]
    tri = (vertices[faces] - origin) / spacing                       # (F, 3, 3) in cell units
    low = np.ceil(tri[:, :, [u, v]].min(axis=1)).astype(np.int64)
    high = np.floor(tri[:, :, [u, v]].max(axis=1)).astype(np.int64)
    width = np.maximum(high - low + 1, 0)
    count = width[:, 0] * width[:, 1]
    owner = np.repeat(np.arange(len(tri)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    iu = low[owner, 0] + local // np.maximum(width[owner, 1], 1)
    iv = low[owner, 1] + local % np.maximum(width[owner, 1], 1)
    hit, depth = _ray_hits(tri[owner], iu.astype(np.float64), iv.astype(np.float64), u, v, axis)
    iu, iv, depth = iu[hit], iv[hit], depth[hit]
    valid = (iu >= 0) & (iu < shape[u]) & (iv >= 0) & (iv < shape[v])
    iu, iv, depth = iu[valid], iv[valid], depth[valid]
    slot = np.clip(np.ceil(depth).astype(np.int64), 0, shape[axis])
    counts = np.bincount((iu * shape[v] + iv) * (shape[axis] + 1) + slot,
                         minlength=shape[u] * shape[v] * (shape[axis] + 1))
    inside = (np.cumsum(counts.reshape(shape[u], shape[v], shape[axis] + 1), axis=2)[:, :, :-1] % 2).astype(bool)
    order = np.argsort([u, v, axis])
    return np.transpose(inside, order)


def _ray_hits(tri, pu, pv, u, v, axis):
    """Whether the line (pu, pv, t) crosses each triangle, and the crossing coordinate t."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (b[:, u] - a[:, u]) * (c[:, v] - a[:, v]) - (c[:, u] - a[:, u]) * (b[:, v] - a[:, v])
    safe = np.where(det == 0, 1.0, det)
    w1 = ((pu - a[:, u]) * (c[:, v] - a[:, v]) - (c[:, u] - a[:, u]) * (pv - a[:, v])) / safe
    w2 = ((b[:, u] - a[:, u]) * (pv - a[:, v]) - (pu - a[:, u]) * (b[:, v] - a[:, v])) / safe
    w0 = 1.0 - w1 - w2
    hit = (det != 0) & (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    return hit, w0 * a[:, axis] + w1 * b[:, axis] + w2 * c[:, axis]


def iou(inside_a: np.ndarray, inside_b: np.ndarray) -> float:
    """Intersection over union of two boolean occupancy grids."""
    return float(np.logical_and(inside_a, inside_b).sum() / max(np.logical_or(inside_a, inside_b).sum(), 1))


def normal_consistency(gt_points: np.ndarray, gt_normals: np.ndarray, points: np.ndarray,
                       normals: np.ndarray) -> float:
    """Mean ``|n_gt . n|`` over ground-truth points, ``n`` the normal of the nearest predicted point."""
    _, nearest = cKDTree(points).query(gt_points, workers=-1)
    gt_unit = gt_normals / np.linalg.norm(gt_normals, axis=1, keepdims=True)
    unit = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    return float(np.abs((gt_unit * unit[nearest]).sum(axis=1)).mean())


def chamfer(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """Mean of the two directed mean squared nearest-neighbour distances (units of the input, squared)."""
    a_to_b, _ = cKDTree(points_b).query(points_a, workers=-1)
    b_to_a, _ = cKDTree(points_a).query(points_b, workers=-1)
    return float(0.5 * ((a_to_b ** 2).mean() + (b_to_a ** 2).mean()))


def unit_cube_scale(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and scale mapping ``points`` into [-1, 1]^3 as ``(x - centre) / scale``.

    The centre is the middle of the bounding box, the scale 1.1 x half its largest extent.
    """
    lower, upper = points.min(axis=0), points.max(axis=0)
    return 0.5 * (lower + upper), 1.1 * 0.5 * float((upper - lower).max())
