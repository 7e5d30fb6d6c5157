import numpy as np
import pytest

from dsr_backend import InvalidInputError, ResourceLimitError, extract_surface, extract_surfaces, sdf_grid
from dsr_backend.query import mesh_from_grid, narrow_band_sdf_grid


@pytest.fixture(scope="module")
def model(trained_sphere):
    return trained_sphere[0].model


def test_surface_lies_on_the_analytic_sphere_with_outward_normals(model, sphere):
    state = 6.0
    mesh = extract_surface(model, t=float(model.time_map.time_to_fraction(state)), resolution=48)
    assert len(mesh.faces) > 1000
    assert np.abs(sphere.sdf(mesh.vertices, state)).mean() < 0.3  # Å, on a 12 Å sphere
    radial = mesh.vertices - sphere.center(state)
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert np.mean(np.sum(radial * mesh.normals, axis=1)) > 0.97
    corners = mesh.vertices[mesh.faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    agreement = np.sum(face_normals * mesh.normals[mesh.faces].mean(axis=1), axis=1)
    assert np.mean(agreement > 0) > 0.99  # triangles wound counter-clockwise seen from outside


def test_several_times_and_levels(model, sphere):
    meshes = extract_surfaces(model, [0.0, 0.5, 1.0], levels=[-1.0, 0.0, 2.0], resolution=40)
    assert [len(row) for row in meshes] == [3, 3, 3]
    for row in meshes:
        radii = [np.linalg.norm(m.vertices - m.vertices.mean(axis=0), axis=1).mean() for m in row]
        assert radii[0] < radii[1] < radii[2]
        assert radii[2] - radii[1] == pytest.approx(2.0, abs=0.5)  # an SDF: level sets 2 Å apart
    assert [row[1].t for row in meshes] == [0.0, 0.5, 1.0]


def test_extrapolation_past_the_last_frame(model, sphere):
    # trained on states 1..9 (radius 10 -> 13 Å); t = 1.25 is state 11
    mesh = extract_surface(model, t=1.25, resolution=48)
    last = extract_surface(model, t=1.0, resolution=48)
    radius = np.linalg.norm(mesh.vertices - mesh.vertices.mean(axis=0), axis=1).mean()
    radius_last = np.linalg.norm(last.vertices - last.vertices.mean(axis=0), axis=1).mean()
    assert radius > radius_last
    assert np.abs(sphere.sdf(mesh.vertices, 11.0)).mean() < 1.0


def test_normal_speed_of_a_moving_growing_sphere(model, sphere):
    # per unit t: the radius grows 3 Å and the centre moves 6 Å along x, so v_n = 3 + 6 n_x
    mesh = extract_surface(model, t=0.5, resolution=48, with_speed=True)
    expected = 3.0 + 6.0 * mesh.normals[:, 0]
    speed = mesh.values["speed"]
    assert speed.shape == (len(mesh.vertices),)
    assert np.median(np.abs(speed - expected)) < 1.0
    assert np.corrcoef(speed, expected)[0, 1] > 0.9


def test_level_never_reached_gives_empty_mesh(model):
    mesh = extract_surface(model, t=0.5, level=500.0, resolution=16)
    assert mesh.is_empty and mesh.vertices.shape == (0, 3)


def test_grid_is_in_angstrom(model, sphere):
    grid = sdf_grid(model, 0.5, resolution=17)
    centre_value = grid[8, 8, 8]  # the unit-cube centre
    expected = sphere.sdf(np.array([model.normalization.center]), 5.0)[0]
    assert centre_value == pytest.approx(expected, abs=2.0)


def test_bad_queries_rejected(model):
    with pytest.raises(InvalidInputError, match="t must be finite"):
        extract_surface(model, t=float("nan"))
    with pytest.raises(InvalidInputError, match="t must be finite"):
        extract_surfaces(model, [0.2, float("inf")])
    with pytest.raises(InvalidInputError, match=r"resolution must lie in \[8, 512\], got 4"):
        extract_surface(model, resolution=4)
    with pytest.raises(ResourceLimitError, match="use a resolution of at most"):
        extract_surface(model, resolution=512, max_bytes=100 << 20)
    with pytest.raises(InvalidInputError, match="levels must be finite"):
        extract_surfaces(model, 0.5, levels=[float("nan")])
    with pytest.raises(InvalidInputError, match="unknown protein 'lysozyme'"):
        extract_surface(model, protein="lysozyme")


@pytest.mark.parametrize("resolution, levels", [(65, [0.0]), (80, [-1.5, 0.0, 2.0])])
def test_narrow_band_gives_the_dense_mesh_with_fewer_evaluations(model, resolution, levels):
    dense = sdf_grid(model, 0.3, resolution)
    banded, evaluations = narrow_band_sdf_grid(model, 0.3, levels, resolution)
    assert evaluations < 0.5 * resolution ** 3
    assert np.array_equal(np.sign(banded), np.sign(dense))
    for level in levels:
        dense_vertices, dense_faces, dense_normals = mesh_from_grid(dense, model, level)
        band_vertices, band_faces, band_normals = mesh_from_grid(banded, model, level)
        assert len(dense_faces) > 500
        assert np.array_equal(band_faces, dense_faces)
        assert np.abs(band_vertices - dense_vertices).max() < 1e-2  # Å: float noise of batched evaluation
        # the normals read the grid one node beyond the crossing cells, which the band also evaluates
        assert np.sum(band_normals * dense_normals, axis=1).min() > 0.999


def test_narrow_band_is_the_default_and_can_be_turned_off(model):
    banded = extract_surface(model, t=0.7, resolution=40)
    dense = extract_surface(model, t=0.7, resolution=40, narrow_band=False)
    assert np.array_equal(banded.faces, dense.faces)
    assert np.abs(banded.vertices - dense.vertices).max() < 1e-2
