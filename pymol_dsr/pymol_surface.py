"""PyMOL's own molecular surface as oriented points, computed in a private headless PyMOL instance.

The user's session is never touched: each state's atoms (a chempy model) are loaded into a separate
``pymol2.PyMOL`` instance that shows nothing but their surface, which ``get_mtl_obj`` exports. The
export is in camera space, ``camera = (x - origin) R + (cx, cy, 0)`` for row vectors, with R the first
nine numbers of ``get_view`` as a row-major 3x3 matrix, cx, cy the next two and origin numbers 12-14;
:func:`camera_to_model` inverts it.
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence

import numpy as np

Progress = Callable[[int, int], None]


def parse_obj(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and vertex normals (``v`` and ``vn`` lines, one normal per vertex) of an OBJ string."""
    lines = text.splitlines()
    vertices = _rows(line[2:] for line in lines if line.startswith("v "))
    normals = _rows(line[3:] for line in lines if line.startswith("vn "))
    if len(vertices) != len(normals):
        raise ValueError(f"the OBJ export has {len(vertices)} vertices but {len(normals)} normals")
    return vertices, normals


def _rows(fields) -> np.ndarray:
    return np.array(" ".join(fields).split(), dtype=np.float64).reshape(-1, 3)


def camera_to_model(points: np.ndarray, normals: np.ndarray, view: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Undo the camera transform of an export made with ``view`` (the 18 numbers of ``get_view``)."""
    view = np.asarray(view, dtype=np.float64)
    rotation = view[:9].reshape(3, 3)
    shift = np.array([view[9], view[10], 0.0])
    return (points - shift) @ rotation.T + view[12:15], normals @ rotation.T


def oriented_points(points: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique points (float32) with unit normals; the triangle soup repeats shared vertices."""
    _, first = np.unique(np.round(points, 4), axis=0, return_index=True)
    first.sort()
    lengths = np.linalg.norm(normals[first], axis=1, keepdims=True)
    keep = lengths[:, 0] > 1e-6
    return (points[first][keep].astype(np.float32), (normals[first] / np.maximum(lengths, 1e-12))[keep]
            .astype(np.float32))


_INSTANCE_LOCK = threading.Lock()


def pymol_surfaces(models: Sequence, quality: int = 0, progress: Progress | None = None,
                   cancel: threading.Event | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """PyMOL's surface of each chempy model (one per state) as (points, normals) in Å.

    Parameters
    ----------
    models : chempy models from ``cmd.get_model(selection, state)``.
    quality : PyMOL's ``surface_quality`` (0 is PyMOL's default; 1 is finer and ~8x slower).
    progress : called as ``progress(done, total)`` after each state.
    cancel : stops after the current state when set; the states done so far are returned.
    """
    import pymol2  # a second PyMOL instance: only for surface=pymol

    surfaces = []
    with _INSTANCE_LOCK:  # one private instance at a time keeps memory bounded
        instance = pymol2.PyMOL()
        instance.start()
        try:
            private = instance.cmd
            private.set("surface_quality", int(quality))
            for index, model in enumerate(models):
                if cancel is not None and cancel.is_set():
                    break
                private.delete("all")
                private.load_model(model, "frame")
                private.show_as("surface", "frame")
                _, obj = private.get_mtl_obj()
                points, normals = camera_to_model(*parse_obj(obj), private.get_view())
                surfaces.append(oriented_points(points, normals))
                if progress is not None:
                    progress(index + 1, len(models))
        finally:
            instance.stop()
    return surfaces
