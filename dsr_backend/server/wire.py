"""Arrays on the wire: flat ``.npz`` bytes (``numpy.savez``), meshes packed with per-mesh counts.

A surface query answers one ``.npz`` with ``t`` (T,), ``level`` (L,), ``vertex_counts`` and
``face_counts`` (T, L), and the meshes one after another: ``vertices`` (V, 3) Å, ``normals`` (V, 3),
``faces`` (F, 3) indexing each mesh's own vertices, and ``speed`` (V,) when asked for.
"""
from __future__ import annotations

import io

import numpy as np

MESH_ARRAYS = ("vertices", "normals", "faces")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def pack_surfaces(rows: list[list[dict]]) -> bytes:
    """Meshes ``rows[i][j]`` (time i, level j, at least one of each; dicts of :meth:`Engine.surfaces`) as
    one ``.npz``."""
    meshes = [mesh for row in rows for mesh in row]
    keys = MESH_ARRAYS + (("speed",) if "speed" in meshes[0] else ())
    shape = (len(rows), len(rows[0]))
    arrays = {key: np.concatenate([mesh[key] for mesh in meshes]) for key in keys}
    arrays.update(t=np.array([row[0]["t"] for row in rows]), level=np.array([mesh["level"] for mesh in rows[0]]),
                  vertex_counts=np.array([len(m["vertices"]) for m in meshes], dtype=np.int64).reshape(shape),
                  face_counts=np.array([len(m["faces"]) for m in meshes], dtype=np.int64).reshape(shape))
    return npz_bytes(arrays)
