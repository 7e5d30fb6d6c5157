"""Helpers of the SES benchmark: PyMOL OBJ export parsing, welding, normal consistency and Chamfer in Å
(occupancy IoU comes from :mod:`dsr_backend.metrics`)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


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
