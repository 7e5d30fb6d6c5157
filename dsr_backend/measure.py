"""Sizes of learned surfaces over time: area and enclosed volume (``dsr measure``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .query import extract_surfaces
from .trained import TrainedModel


def area_and_volume(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Area and enclosed volume of a closed, consistently oriented triangle mesh (divergence theorem)."""
    a, b, c = (np.asarray(vertices, dtype=np.float64)[faces[:, k]] for k in range(3))
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    return float(area), float(abs((a * np.cross(b, c)).sum()) / 6.0)


def surface_sizes(model: TrainedModel, ts: Sequence[float], resolution: int = 64,
                  protein: int | str = 0) -> list[tuple[float, float, float, float]]:
    """(t, model time, area Å², volume Å³) of the zero level set at each of ``ts``."""
    meshes = extract_surfaces(model, list(ts), [0.0], resolution, protein)
    rows = []
    for (mesh,) in meshes:
        area, volume = area_and_volume(mesh.vertices, mesh.faces)
        rows.append((mesh.t, float(model.time_map.fraction_to_time(mesh.t)), area, volume))
    return rows
