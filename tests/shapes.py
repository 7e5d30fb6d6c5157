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
