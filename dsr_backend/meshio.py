"""Triangle mesh files: binary PLY (with per-vertex normals and one scalar) and Wavefront OBJ.

Coordinates, normals and values are stored as float32 and read back as float32; faces are read
back as int64. Every write is atomic: the file appears complete or not at all.
"""
from __future__ import annotations

import logging
import os
from typing import IO

import numpy as np

from .atomic import atomic_write
from .errors import InvalidInputError

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".ply", ".obj")

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_RESERVED_VERTEX_PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha")


# ----------------------------------------------------------------------------- validation

def _check_vertices(vertices: np.ndarray) -> np.ndarray:
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InvalidInputError(f"vertices must have shape (V, 3); got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.number):
        raise InvalidInputError(f"vertices must be numeric; got dtype {vertices.dtype}")
    if not np.isfinite(vertices).all():
        bad = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise InvalidInputError(f"vertices must be finite; vertex {bad} is {vertices[bad].tolist()}")
    return vertices.astype(np.float32)


def _check_faces(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise InvalidInputError(f"faces must have shape (F, 3) (triangles); got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise InvalidInputError(f"faces must hold integer vertex indices; got dtype {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= n_vertices):
        raise InvalidInputError(f"face indices must lie in [0, {n_vertices - 1}] for {n_vertices} vertices; "
                                f"got indices from {int(faces.min())} to {int(faces.max())}")
    return faces.astype(np.int32)


def _check_per_vertex(array: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        expected = "(V, 3)" if len(shape) == 2 else "(V,)"
        raise InvalidInputError(f"{name} must have shape {expected} = {shape} to match the vertices; "
                                f"got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise InvalidInputError(f"{name} must be finite numbers")
    return array.astype(np.float32)


def _check_value_name(value_name: str) -> str:
    if not value_name or not value_name.isascii() or any(c.isspace() for c in value_name):
        raise InvalidInputError(f"value_name must be a non-empty ASCII word without spaces; got {value_name!r}")
    if value_name in _RESERVED_VERTEX_PROPERTIES:
        raise InvalidInputError(f"value_name must not be one of {', '.join(_RESERVED_VERTEX_PROPERTIES)}; "
                                f"got {value_name!r}")
    return value_name


# ----------------------------------------------------------------------------- PLY

def _ply_vertex_dtype(has_normals: bool, value_name: str | None) -> np.dtype:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if has_normals:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if value_name is not None:
        fields.append((value_name, "<f4"))
    return np.dtype(fields)


def _ply_header(vertex_dtype: np.dtype, n_vertices: int, n_faces: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment written by pymol-dsr",
             f"element vertex {n_vertices}"]
    lines += [f"property float {name}" for name in vertex_dtype.names]
    lines += [f"element face {n_faces}", "property list uchar int vertex_indices", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def _write_ply_payload(handle: IO[bytes], vertices: np.ndarray, faces: np.ndarray,
                       normals: np.ndarray | None, values: np.ndarray | None, value_name: str) -> None:
    vertex_dtype = _ply_vertex_dtype(normals is not None, value_name if values is not None else None)
    vertex_rows = np.empty(len(vertices), dtype=vertex_dtype)
    for axis, name in enumerate("xyz"):
        vertex_rows[name] = vertices[:, axis]
    if normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            vertex_rows[name] = normals[:, axis]
    if values is not None:
        vertex_rows[value_name] = values
    face_rows = np.empty(len(faces), dtype=np.dtype([("count", "u1"), ("indices", "<i4", (3,))]))
    face_rows["count"] = 3
    face_rows["indices"] = faces
    handle.write(_ply_header(vertex_dtype, len(vertices), len(faces)))
    handle.write(vertex_rows.tobytes())
    handle.write(face_rows.tobytes())


def write_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              normals: np.ndarray | None = None, values: np.ndarray | None = None,
              value_name: str = "value") -> None:
    """Write a triangle mesh as binary little-endian PLY, atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file; its directory must exist.
    vertices : (V, 3) array
        Finite vertex positions (stored as float32).
    faces : (F, 3) integer array
        Vertex indices of each triangle, in ``[0, V)``.
    normals : (V, 3) array, optional
        Per-vertex normals, stored as ``nx ny nz``.
    values : (V,) array, optional
        One finite scalar per vertex, stored as the vertex property ``value_name``.
    value_name : str
        PLY property name of ``values``.
    """
    vertices = _check_vertices(vertices)
    faces = _check_faces(faces, len(vertices))
    if normals is not None:
        normals = _check_per_vertex(normals, "normals", vertices.shape)
    if values is not None:
        values = _check_per_vertex(values, "values", (len(vertices),))
        value_name = _check_value_name(value_name)
    atomic_write(path, lambda handle: _write_ply_payload(handle, vertices, faces, normals, values, value_name))
    logger.info("wrote %s (%d vertices, %d faces)", os.fspath(path), len(vertices), len(faces))


def _parse_ply_header(handle: IO[bytes], path: str) -> tuple[str, list[dict]]:
    """Read the header; return the format and the elements as ``{name, count, properties}``."""
    if handle.readline().strip() != b"ply":
        raise InvalidInputError(f"{path} is not a PLY file (its first line is not 'ply')")
    fmt, elements = None, []
    while True:
        raw = handle.readline()
        if not raw:
            raise InvalidInputError(f"{path}: PLY header has no 'end_header' line")
        words = raw.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _PLY_FORMATS:
                raise InvalidInputError(f"{path}: unsupported PLY format line {raw.strip()!r}; "
                                        f"expected one of {', '.join(_PLY_FORMATS)}")
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append({"name": words[1], "count": int(words[2]), "properties": []})
        elif words[0] == "property" and elements:
            elements[-1]["properties"].append(_parse_ply_property(words, path))
        else:
            raise InvalidInputError(f"{path}: unexpected PLY header line {raw.strip()!r}")
    if fmt is None:
        raise InvalidInputError(f"{path}: PLY header has no 'format' line")
    return fmt, elements


def _parse_ply_property(words: list[str], path: str) -> tuple[str, str, str | None]:
    """Parse a property line into (name, dtype, count dtype or None for a scalar).

    ``property TYPE NAME`` is a scalar; ``property list COUNT_TYPE TYPE NAME`` a list.
    """
    if len(words) == 3 and words[1] in _PLY_TYPES:
        return words[2], _PLY_TYPES[words[1]], None
    if len(words) == 5 and words[1] == "list" and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
        return words[4], _PLY_TYPES[words[3]], _PLY_TYPES[words[2]]
    raise InvalidInputError(f"{path}: cannot parse PLY property line {' '.join(words)!r}")


def _read_binary_element(handle: IO[bytes], element: dict, order: str, path: str) -> np.ndarray:
    """Read one element block; list properties must hold exactly three items (triangles)."""
    fields = []
    for name, dtype, count_dtype in element["properties"]:
        if count_dtype is None:
            fields.append((name, order + dtype))
        else:
            fields += [(f"{name}__count", order + count_dtype), (name, order + dtype, (3,))]
    dtype = np.dtype(fields)
    data = handle.read(dtype.itemsize * element["count"])
    if len(data) != dtype.itemsize * element["count"]:
        raise InvalidInputError(f"{path}: file ends inside element '{element['name']}' "
                                f"(expected {element['count']} rows)")
    rows = np.frombuffer(data, dtype=dtype)
    for name, _, count_dtype in element["properties"]:
        if count_dtype is not None and (rows[f"{name}__count"] != 3).any():
            raise InvalidInputError(f"{path}: only triangle meshes are supported; "
                                    f"element '{element['name']}' has lists that are not of length 3")
    return rows


def _read_ascii_element(lines: list[bytes], element: dict, path: str) -> dict[str, np.ndarray]:
    """Parse one element's text rows (list properties must hold three items) into columns."""
    widths = [1 if count_dtype is None else 4 for _, _, count_dtype in element["properties"]]
    if len(lines) != element["count"]:
        raise InvalidInputError(f"{path}: file ends inside element '{element['name']}' "
                                f"(expected {element['count']} rows, found {len(lines)})")
    try:
        table = np.array([line.split() for line in lines], dtype=np.float64).reshape(len(lines), sum(widths))
    except ValueError:
        raise InvalidInputError(f"{path}: rows of element '{element['name']}' must each hold {sum(widths)} "
                                "numbers (only triangle meshes are supported)") from None
    columns, start = {}, 0
    for (name, dtype, count_dtype), width in zip(element["properties"], widths):
        if count_dtype is None:
            columns[name] = table[:, start].astype(dtype)
        else:
            if (table[:, start] != 3).any():
                raise InvalidInputError(f"{path}: only triangle meshes are supported; "
                                        f"element '{element['name']}' has lists that are not of length 3")
            columns[name] = table[:, start + 1:start + 4].astype(dtype)
        start += width
    return columns


def _read_ply_elements(path: str) -> dict[str, dict[str, np.ndarray]]:
    with open(path, "rb") as handle:
        fmt, elements = _parse_ply_header(handle, path)
        if fmt == "ascii":
            lines = [line for line in handle.read().splitlines() if line.strip()]
            blocks, start = {}, 0
            for element in elements:
                blocks[element["name"]] = _read_ascii_element(lines[start:start + element["count"]], element, path)
                start += element["count"]
            return blocks
        order = _PLY_FORMATS[fmt]
        blocks = {}
        for element in elements:
            rows = _read_binary_element(handle, element, order, path)
            blocks[element["name"]] = {name: rows[name] for name, _, _ in element["properties"]}
        return blocks


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Read a triangle mesh from an ASCII or binary PLY file.

    Returns
    -------
    dict
        ``vertices`` (V, 3) float32 and ``faces`` (F, 3) int64; ``normals`` (V, 3) float32 when the
        vertices have ``nx ny nz``; ``values`` (V,) float32 and ``value_name`` when the vertices have
        another scalar property (the first one other than x y z, normals and colours).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidInputError(f"no such PLY file: {path}")
    blocks = _read_ply_elements(path)
    vertex = blocks.get("vertex")
    if vertex is None or not all(axis in vertex for axis in "xyz"):
        raise InvalidInputError(f"{path}: PLY file has no vertex element with x, y, z properties")
    mesh: dict[str, np.ndarray | str] = {
        "vertices": np.stack([vertex[axis] for axis in "xyz"], axis=1).astype(np.float32)}
    face = blocks.get("face", {})
    index_name = next((name for name in ("vertex_indices", "vertex_index") if name in face), None)
    if face and index_name is None:
        raise InvalidInputError(f"{path}: PLY face element has no 'vertex_indices' list")
    faces = face[index_name].astype(np.int64) if index_name else np.empty((0, 3), dtype=np.int64)
    mesh["faces"] = _check_faces(faces, len(mesh["vertices"])).astype(np.int64)
    if all(name in vertex for name in ("nx", "ny", "nz")):
        mesh["normals"] = np.stack([vertex[name] for name in ("nx", "ny", "nz")], axis=1).astype(np.float32)
    value_name = next((name for name in vertex if name not in _RESERVED_VERTEX_PROPERTIES), None)
    if value_name is not None:
        mesh["values"] = np.asarray(vertex[value_name], dtype=np.float32)
        mesh["value_name"] = value_name
    return mesh


# ----------------------------------------------------------------------------- OBJ

def _write_obj_payload(handle: IO[bytes], vertices: np.ndarray, faces: np.ndarray,
                       normals: np.ndarray | None) -> None:
    handle.write(b"# written by pymol-dsr\n")
    np.savetxt(handle, vertices, fmt="v %.9g %.9g %.9g")
    if normals is not None:
        np.savetxt(handle, normals, fmt="vn %.9g %.9g %.9g")
        corners = np.repeat(faces + 1, 2, axis=1)
        np.savetxt(handle, corners, fmt="f %d//%d %d//%d %d//%d")
    else:
        np.savetxt(handle, faces + 1, fmt="f %d %d %d")


def write_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
              normals: np.ndarray | None = None) -> None:
    """Write a triangle mesh as Wavefront OBJ, atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file; its directory must exist.
    vertices : (V, 3) array
        Finite vertex positions (written with float32 precision).
    faces : (F, 3) integer array
        Vertex indices of each triangle, in ``[0, V)`` (written 1-based).
    normals : (V, 3) array, optional
        Per-vertex normals; normal ``i`` belongs to vertex ``i`` (faces reference both as ``i//i``).
    """
    vertices = _check_vertices(vertices)
    faces = _check_faces(faces, len(vertices))
    if normals is not None:
        normals = _check_per_vertex(normals, "normals", vertices.shape)
    atomic_write(path, lambda handle: _write_obj_payload(handle, vertices, faces, normals))
    logger.info("wrote %s (%d vertices, %d faces)", os.fspath(path), len(vertices), len(faces))


def _obj_index(token: str, count: int, path: str, line_number: int) -> int:
    """1-based (or negative, relative) OBJ index -> 0-based index."""
    index = int(token)
    if index == 0 or abs(index) > count:
        raise InvalidInputError(f"{path}:{line_number}: OBJ index {token} is outside 1..{count} "
                                f"(or -1..-{count}) for the records read so far")
    return index - 1 if index > 0 else count + index


def read_obj(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``v``, ``vn`` and ``f`` records of a Wavefront OBJ file; polygons are fan-triangulated.

    Returns
    -------
    dict
        ``vertices`` (V, 3) float32, ``faces`` (F, 3) int64 and, when the file has ``vn`` records,
        ``normals`` (V, 3) float32: taken as is when there is one per vertex, otherwise gathered
        from the faces' ``v//vn`` references.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidInputError(f"no such OBJ file: {path}")
    positions, normal_rows, triangles, corner_normals = [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            words = line.split()
            if not words:
                continue
            try:
                if words[0] == "v":
                    positions.append([float(w) for w in words[1:4]])
                elif words[0] == "vn":
                    normal_rows.append([float(w) for w in words[1:4]])
                elif words[0] == "f":
                    corners = [corner.split("/") for corner in words[1:]]
                    if len(corners) < 3:
                        raise InvalidInputError(f"{path}:{line_number}: a face needs at least 3 vertices")
                    ids = [_obj_index(c[0], len(positions), path, line_number) for c in corners]
                    for k in range(1, len(ids) - 1):
                        triangles.append([ids[0], ids[k], ids[k + 1]])
                    corner_normals += [(vid, _obj_index(c[2], len(normal_rows), path, line_number))
                                       for vid, c in zip(ids, corners) if len(c) == 3 and c[2]]
            except InvalidInputError:
                raise
            except ValueError:
                raise InvalidInputError(f"{path}:{line_number}: cannot parse {line.strip()!r}") from None
    vertices = np.array(positions, dtype=np.float32).reshape(-1, 3)
    faces = _check_faces(np.array(triangles, dtype=np.int64).reshape(-1, 3), len(vertices)).astype(np.int64)
    mesh = {"vertices": vertices, "faces": faces}
    if normal_rows:
        table = np.array(normal_rows, dtype=np.float32).reshape(-1, 3)
        if len(table) == len(vertices):
            mesh["normals"] = table
        else:
            normals = np.zeros_like(vertices)
            for vertex_id, normal_id in corner_normals:
                normals[vertex_id] = table[normal_id]
            mesh["normals"] = normals
    return mesh


# ----------------------------------------------------------------------------- dispatch

def write_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
               normals: np.ndarray | None = None, values: np.ndarray | None = None,
               value_name: str = "value") -> None:
    """Write a mesh as PLY or OBJ by the suffix of ``path`` (OBJ has no place for ``values``; they are dropped)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".ply":
        write_ply(path, vertices, faces, normals=normals, values=values, value_name=value_name)
    elif suffix == ".obj":
        if values is not None:
            logger.warning("OBJ files cannot store per-vertex values; %s is written without them",
                           os.fspath(path))
        write_obj(path, vertices, faces, normals=normals)
    else:
        raise InvalidInputError(f"unsupported mesh file suffix {suffix or '(none)'!r} for {os.fspath(path)}; "
                                f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
