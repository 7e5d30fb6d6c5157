"""Helpers for comparing learned shapes with known ones."""
import numpy as np


def grid_iou(sdf_a: np.ndarray, sdf_b: np.ndarray) -> float:
    """Volumetric IoU of the negative (inside) parts of two SDF grids of the same shape."""
    inside_a, inside_b = sdf_a < 0, sdf_b < 0
    return float((inside_a & inside_b).sum() / (inside_a | inside_b).sum())
