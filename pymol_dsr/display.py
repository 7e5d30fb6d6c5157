"""Meshes and SDF grids from the backend as PyMOL objects: CGO triangles or lines, maps + isosurfaces."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from chempy.brick import Brick
from pymol import cgo, cmd

WHITE = np.array([1.0, 1.0, 1.0])
RED = np.array([0.85, 0.1, 0.1])
BLUE = np.array([0.1, 0.25, 0.9])
SPEED_PERCENTILE = 99.0  # the speed colour scale ends at this percentile of |speed| (robust to outliers)


def level_colors(levels: Sequence[float]) -> list[np.ndarray]:
    """Fig. 4a-style colours: positive levels red, zero white, negative blue, paler nearer zero."""
    largest = max((abs(level) for level in levels), default=0.0) or 1.0
    return [ramp(level / largest) for level in levels]


def ramp(value: np.ndarray | float) -> np.ndarray:
    """Blue-white-red colours of values in [-1, 1] (clipped): (..., 3)."""
    value = np.clip(np.asarray(value, dtype=np.float64), -1.0, 1.0)[..., None]
    return WHITE + np.where(value > 0, value * (RED - WHITE), -value * (BLUE - WHITE))


def speed_scale(speeds: Sequence[np.ndarray]) -> float:
    """A symmetric colour scale for normal speeds: the 99th percentile of |speed| over all meshes."""
    values = np.concatenate([np.abs(s) for s in speeds if len(s)]) if any(len(s) for s in speeds) else []
    return float(np.percentile(values, SPEED_PERCENTILE)) if len(values) and np.any(values) else 1.0


def triangles_cgo(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray,
                  colors: np.ndarray | None) -> np.ndarray:
    """CGO of a triangle mesh with per-vertex normals and colours (V, 3), or without colours (the object's
    colour then applies); float32."""
    corners = faces.reshape(-1)
    return _wrap(cgo.TRIANGLES, _corners(corners, colors, (cgo.NORMAL, normals), (cgo.VERTEX, vertices)))


def lines_cgo(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> np.ndarray:
    """CGO of the edges of a triangle mesh (each edge once) with per-vertex colours or none; float32."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    ends = np.unique(edges, axis=0).reshape(-1) if len(edges) else np.zeros(0, dtype=np.int64)
    return _wrap(cgo.LINES, _corners(ends, colors, (cgo.VERTEX, vertices)))


def _corners(indices: np.ndarray, colors: np.ndarray | None, *parts: tuple[float, np.ndarray]) -> np.ndarray:
    """Rows of CGO operations, one row per index: COLOR (when colours are given) and each (op, values)."""
    parts = ((cgo.COLOR, colors),) + parts if colors is not None else parts
    block = np.empty((len(indices), 4 * len(parts)), dtype=np.float32)
    for k, (operation, values) in enumerate(parts):
        block[:, 4 * k], block[:, 4 * k + 1:4 * k + 4] = operation, values[indices]
    return block


def _wrap(mode: float, block: np.ndarray) -> np.ndarray:
    return np.concatenate([[cgo.BEGIN, mode], block.reshape(-1), [cgo.END]]).astype(np.float32)


def mesh_cgo(mesh: dict, colors: np.ndarray | None, style: str) -> np.ndarray:
    """CGO of one backend mesh dict (``vertices``, ``faces``, ``normals``) as ``cgo`` triangles or ``mesh`` lines."""
    if style == "mesh":
        return lines_cgo(mesh["vertices"], mesh["faces"], colors)
    return triangles_cgo(mesh["vertices"], mesh["faces"], mesh["normals"], colors)


def load_cgo_states(name: str, objects: Sequence[np.ndarray], states: Sequence[int], _self=cmd) -> None:
    """Replace object ``name`` by a CGO with ``objects[i]`` in state ``states[i]``."""
    _self.delete(name)
    for data, state in zip(objects, states):
        _self.load_cgo(data.tolist(), name, state=int(state))  # a list: numpy input is left out of sessions


def load_sdf_maps(name: str, grids: Sequence[dict], states: Sequence[int], _self=cmd) -> None:
    """Replace map object ``name`` by the SDF grids (``grid`` x-major, ``origin``, ``spacing`` in Å)."""
    _self.delete(name)
    for grid, state in zip(grids, states):
        brick = Brick.from_numpy(grid["grid"], [grid["spacing"]] * 3, grid["origin"])
        _self.load_brick(brick, name, state=int(state))


def hex_color(rgb: np.ndarray) -> str:
    """A PyMOL colour string ``0xRRGGBB``."""
    red, green, blue = (int(round(255 * float(c))) for c in np.clip(rgb, 0, 1))
    return f"0x{red:02x}{green:02x}{blue:02x}"
