"""Round trips, validation and atomicity of dsr_backend.meshio."""
import os

import numpy as np
import pytest

from dsr_backend import meshio
from dsr_backend.errors import InvalidInputError
from dsr_backend.meshio import read_obj, read_ply, write_mesh, write_obj, write_ply


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit icosahedron: 12 float32 vertices, 20 outward-wound triangles."""
    phi = (1.0 + 5.0 ** 0.5) / 2.0
    vertices = np.array([[-1, phi, 0], [1, phi, 0], [-1, -phi, 0], [1, -phi, 0],
                         [0, -1, phi], [0, 1, phi], [0, -1, -phi], [0, 1, -phi],
                         [phi, 0, -1], [phi, 0, 1], [-phi, 0, -1], [-phi, 0, 1]], dtype=np.float64)
    vertices /= np.linalg.norm(vertices, axis=1, keepdims=True)
    faces = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
                      [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
                      [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                      [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    return vertices.astype(np.float32), faces


@pytest.fixture
def mesh():
    vertices, faces = icosahedron()
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    values = np.linspace(-2.5, 7.25, len(vertices)).astype(np.float32)
    return vertices, faces, normals, values


def test_icosahedron_is_closed_and_outward(mesh):
    vertices, faces, _, _ = mesh
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    assert (np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) > 0).all()


def test_ply_round_trip(tmp_path, mesh):
    vertices, faces, normals, values = mesh
    path = tmp_path / "mesh.ply"
    write_ply(path, vertices, faces, normals=normals, values=values, value_name="speed")
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    back = read_ply(path)
    np.testing.assert_array_equal(back["vertices"], vertices)
    np.testing.assert_array_equal(back["faces"], faces)
    np.testing.assert_array_equal(back["normals"], normals)
    np.testing.assert_array_equal(back["values"], values)
    assert back["value_name"] == "speed"
    assert back["vertices"].dtype == np.float32 and back["faces"].dtype == np.int64


def test_ply_without_optional_arrays(tmp_path, mesh):
    vertices, faces, _, _ = mesh
    write_ply(tmp_path / "bare.ply", vertices, faces)
    back = read_ply(tmp_path / "bare.ply")
    assert set(back) == {"vertices", "faces"}
    np.testing.assert_array_equal(back["faces"], faces)


def test_ply_float64_input_is_stored_as_float32(tmp_path, mesh):
    vertices, faces, _, _ = mesh
    write_ply(tmp_path / "m.ply", vertices.astype(np.float64) + 1e-9, faces.astype(np.int32))
    np.testing.assert_array_equal(read_ply(tmp_path / "m.ply")["vertices"],
                                  (vertices.astype(np.float64) + 1e-9).astype(np.float32))


def test_read_ascii_ply(tmp_path):
    text = ("ply\nformat ascii 1.0\ncomment hand made\nelement vertex 4\n"
            "property float x\nproperty float y\nproperty float z\nproperty uchar red\n"
            "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
            "0 0 0 255\n1 0 0 0\n0 1 0 0\n0 0 1 9\n3 0 1 2\n3 0 2 3\n")
    (tmp_path / "a.ply").write_text(text)
    back = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(back["vertices"], [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(back["faces"], [[0, 1, 2], [0, 2, 3]])
    assert "values" not in back and "normals" not in back


def test_read_ply_rejects_quads_and_bad_files(tmp_path):
    quad = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
            "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    (tmp_path / "quad.ply").write_text(quad)
    with pytest.raises(InvalidInputError, match="only triangle meshes"):
        read_ply(tmp_path / "quad.ply")
    (tmp_path / "nope.ply").write_text("solid cube\n")
    with pytest.raises(InvalidInputError, match="not a PLY file"):
        read_ply(tmp_path / "nope.ply")
    with pytest.raises(InvalidInputError, match="no such PLY file"):
        read_ply(tmp_path / "missing.ply")


def test_read_truncated_binary_ply(tmp_path, mesh):
    vertices, faces, _, _ = mesh
    path = tmp_path / "cut.ply"
    write_ply(path, vertices, faces)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InvalidInputError, match="file ends inside element 'face'"):
        read_ply(path)


def test_obj_round_trip(tmp_path, mesh):
    vertices, faces, normals, _ = mesh
    write_obj(tmp_path / "mesh.obj", vertices, faces, normals=normals)
    back = read_obj(tmp_path / "mesh.obj")
    np.testing.assert_array_equal(back["vertices"], vertices)
    np.testing.assert_array_equal(back["faces"], faces)
    np.testing.assert_array_equal(back["normals"], normals)
    write_obj(tmp_path / "bare.obj", vertices, faces)
    back = read_obj(tmp_path / "bare.obj")
    assert set(back) == {"vertices", "faces"}
    np.testing.assert_array_equal(back["faces"], faces)


def test_read_obj_polygons_negative_indices_and_shared_normals(tmp_path):
    text = ("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n"
            "f 1/1/1 2/1/1 3/1/1 4/1/1\nf -4 -3 -1\n")
    (tmp_path / "q.obj").write_text(text)
    back = read_obj(tmp_path / "q.obj")
    np.testing.assert_array_equal(back["faces"], [[0, 1, 2], [0, 2, 3], [0, 1, 3]])
    np.testing.assert_array_equal(back["normals"], np.tile([0, 0, 1], (4, 1)))


def test_read_obj_bad_index(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
    with pytest.raises(InvalidInputError, match=r"bad.obj:4: OBJ index 7 is outside 1..3"):
        read_obj(tmp_path / "bad.obj")


def test_write_mesh_dispatches_by_suffix(tmp_path, mesh):
    vertices, faces, normals, values = mesh
    write_mesh(tmp_path / "a.PLY", vertices, faces, normals=normals, values=values)
    assert read_ply(tmp_path / "a.PLY")["value_name"] == "value"
    write_mesh(tmp_path / "a.obj", vertices, faces, normals=normals, values=values)
    np.testing.assert_array_equal(read_obj(tmp_path / "a.obj")["normals"], normals)
    with pytest.raises(InvalidInputError, match=r"unsupported mesh file suffix '\.stl'.*supported: \.ply, \.obj"):
        write_mesh(tmp_path / "a.stl", vertices, faces)
    assert not (tmp_path / "a.stl").exists()


@pytest.mark.parametrize("writer", [write_ply, write_obj])
def test_bad_input_is_rejected(tmp_path, mesh, writer):
    vertices, faces, normals, _ = mesh
    path = tmp_path / "bad.mesh"
    with pytest.raises(InvalidInputError, match=r"vertices must have shape \(V, 3\); got \(12, 2\)"):
        writer(path, vertices[:, :2], faces)
    nan = vertices.copy()
    nan[4, 1] = np.nan
    with pytest.raises(InvalidInputError, match="vertices must be finite; vertex 4"):
        writer(path, nan, faces)
    with pytest.raises(InvalidInputError, match=r"faces must have shape \(F, 3\) \(triangles\); got \(20, 4\)"):
        writer(path, vertices, np.hstack([faces, faces[:, :1]]))
    with pytest.raises(InvalidInputError, match="faces must hold integer vertex indices; got dtype float64"):
        writer(path, vertices, faces.astype(np.float64))
    with pytest.raises(InvalidInputError, match=r"face indices must lie in \[0, 11\] for 12 vertices; got indices from 0 to 12"):
        writer(path, vertices, np.vstack([faces, [[0, 1, 12]]]))
    with pytest.raises(InvalidInputError, match=r"face indices must lie in \[0, 11\].*from -1 to 11"):
        writer(path, vertices, np.vstack([faces, [[0, 1, -1]]]))
    with pytest.raises(InvalidInputError, match=r"normals must have shape \(V, 3\) = \(12, 3\).*got \(11, 3\)"):
        writer(path, vertices, faces, normals=normals[:11])
    assert not path.exists()


def test_bad_values_are_rejected(tmp_path, mesh):
    vertices, faces, _, values = mesh
    with pytest.raises(InvalidInputError, match=r"values must have shape \(V,\) = \(12,\).*got \(12, 1\)"):
        write_ply(tmp_path / "v.ply", vertices, faces, values=values[:, None])
    with pytest.raises(InvalidInputError, match="values must be finite"):
        write_ply(tmp_path / "v.ply", vertices, faces, values=np.full(12, np.inf))
    with pytest.raises(InvalidInputError, match="value_name must be a non-empty ASCII word"):
        write_ply(tmp_path / "v.ply", vertices, faces, values=values, value_name="my value")
    with pytest.raises(InvalidInputError, match="value_name must not be one of x, y, z"):
        write_ply(tmp_path / "v.ply", vertices, faces, values=values, value_name="nx")
    with pytest.raises(InvalidInputError, match="directory .* does not exist"):
        write_ply(tmp_path / "no" / "v.ply", vertices, faces)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("writer, payload", [(write_ply, "_write_ply_payload"), (write_obj, "_write_obj_payload")])
def test_failed_write_leaves_no_file_and_keeps_old_one(tmp_path, mesh, monkeypatch, writer, payload):
    vertices, faces, _, _ = mesh

    def explode(handle, *args):
        handle.write(b"half a mesh")
        raise OSError("disk full")

    monkeypatch.setattr(meshio, payload, explode)
    with pytest.raises(OSError, match="disk full"):
        writer(tmp_path / "new.mesh", vertices, faces)
    assert os.listdir(tmp_path) == []

    existing = tmp_path / "old.mesh"
    existing.write_bytes(b"previous content")
    with pytest.raises(OSError, match="disk full"):
        writer(existing, vertices, faces)
    assert existing.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["old.mesh"]


def test_a_million_vertex_ply_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(1_000_000, 3)).astype(np.float32)
    faces = rng.integers(0, len(vertices), size=(2_000_000, 3))
    write_ply(tmp_path / "big.ply", vertices, faces, normals=vertices, values=vertices[:, 0])
    back = read_ply(tmp_path / "big.ply")
    np.testing.assert_array_equal(back["faces"], faces)
    np.testing.assert_array_equal(back["values"], vertices[:, 0])
