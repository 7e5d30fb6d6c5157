"""Helpers for comparing learned shapes with known ones."""
import numpy as np

from dsr_backend.query import unit_grid_axis


def grid_iou(sdf_a: np.ndarray, sdf_b: np.ndarray) -> float:
    """Volumetric IoU of the negative (inside) parts of two SDF grids of the same shape."""
    inside_a, inside_b = sdf_a < 0, sdf_b < 0
    return float((inside_a & inside_b).sum() / (inside_a | inside_b).sum())


def analytic_grid(model, sphere, state, resolution):
    """The analytic SDF of ``sphere`` at ``state`` on the query grid of ``model`` (R, R, R)."""
    axis = unit_grid_axis(resolution)
    nodes = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return sphere.sdf(model.normalization.to_angstrom(nodes), state).reshape((resolution,) * 3)


def box(size=(2.0, 3.0, 4.0)) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (8, 3) and outward triangles (12, 3) of a box with one corner at the origin."""
    corners = np.array([[x, y, z] for x in (0, size[0]) for y in (0, size[1]) for z in (0, size[2])], dtype=float)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return corners, faces
