"""The paper's metrics on analytic shapes with known values: spheres (concentric, offset) and a box."""
import numpy as np
import pytest

from dsr_backend import neighbours
from dsr_backend.errors import InvalidInputError
from dsr_backend.metrics import (EmptySurfaceError, Shape, compare, grid_mesh, grid_nodes, iou, mesh_occupancy,
                                 nearest_neighbours, oriented_point_occupancy, signed_distance_grid)
from dsr_backend.neighbours import search_method
from dsr_backend.synthetic import fibonacci_sphere

RES = 48          # evaluation grid nodes per axis (the paper's 128 is the default; small keeps tests fast)
SAMPLES = 40_000  # Chamfer samples per surface


def sphere_grid(center, radius, resolution=RES):
    nodes = grid_nodes(resolution)
    return (np.linalg.norm(nodes - np.asarray(center), axis=1) - radius).reshape((resolution,) * 3)


def sphere_shape(center, radius, mesh_resolution=81):
    """A marching-cubes sphere mesh (finer than the evaluation grid, nodes not aligned with it), exact normals."""
    vertices, faces, _ = grid_mesh(sphere_grid(center, radius, mesh_resolution))
    normals = (vertices - np.asarray(center)) / radius
    return Shape.from_mesh(vertices, faces, normals, RES, SAMPLES, seed=1)


def box_mesh(half):
    """An axis-aligned cube [-half, half]^3, each face with its own four vertices (exact face normals)."""
    vertices, faces, normals = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = [a for a in range(3) if a != axis]
            base = len(vertices)
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                corner = np.zeros(3)
                corner[axis], corner[u], corner[v] = sign * half, du * half, dv * half
                vertices.append(corner)
                normals.append(np.eye(3)[axis] * sign)
            quad = [(0, 1, 2), (0, 2, 3)]
            for tri in quad:
                tri = [base + i for i in tri]
                a, b, c = np.asarray(vertices)[tri]
                if np.dot(np.cross(b - a, c - a), normals[-1]) < 0:
                    tri = tri[::-1]
                faces.append(tri)
    return np.asarray(vertices), np.asarray(faces), np.asarray(normals)


def test_parity_occupancy_matches_the_analytic_inside():
    center, radius = np.array([0.1, -0.05, 0.02]), 0.55
    shape = sphere_shape(center, radius)
    exact = sphere_grid(center, radius) < 0
    assert (shape.occupancy != exact).mean() < 0.003
    vertices, faces, _ = box_mesh(0.5)
    box = mesh_occupancy(vertices, faces, RES)
    np.testing.assert_array_equal(box, (np.abs(grid_nodes(RES)) < 0.5).all(axis=1).reshape((RES,) * 3))


def test_concentric_spheres():
    inner, outer = sphere_shape([0, 0, 0], 0.4), sphere_shape([0, 0, 0], 0.6)
    metrics = compare(inner, outer)
    assert metrics["iou"] == pytest.approx((0.4 / 0.6) ** 3, abs=0.02)
    assert metrics["chamfer"] == pytest.approx(2 * 0.2 ** 2, rel=0.02)  # the sum of both directions
    assert metrics["chamfer_l1"] == pytest.approx(0.2, rel=0.01)
    assert metrics["nc"] > 0.999 and metrics["nc_symmetric"] > 0.999
    itself = compare(outer, outer)
    assert itself["iou"] == 1.0 and itself["nc"] == pytest.approx(1.0) and itself["chamfer"] < 1e-4


def test_offset_spheres_against_quadrature():
    r, d = 0.5, 0.3
    a, b = np.array([-d / 2, 0, 0]), np.array([d / 2, 0, 0])
    metrics = compare(sphere_shape(a, r), sphere_shape(b, r))
    lens = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    sphere = 4 / 3 * np.pi * r ** 3
    assert metrics["iou"] == pytest.approx(lens / (2 * sphere - lens), abs=0.02)
    directions = fibonacci_sphere(200_000)
    on_a = a + r * directions                       # by symmetry both directed terms are equal
    gap = np.linalg.norm(on_a - b, axis=1) - r
    assert metrics["chamfer"] == pytest.approx(2 * (gap ** 2).mean(), rel=0.03)
    assert metrics["chamfer_l1"] == pytest.approx(np.abs(gap).mean(), rel=0.03)
    nearest_normal = (on_a - b) / np.linalg.norm(on_a - b, axis=1, keepdims=True)
    expected_nc = np.abs((directions * nearest_normal).sum(axis=1)).mean()
    assert metrics["nc"] == pytest.approx(expected_nc, abs=0.005)
    assert metrics["nc_symmetric"] == pytest.approx(expected_nc, abs=0.005)


def test_box_against_a_larger_box():
    small, large = 0.4, 0.5
    shapes = [Shape.from_mesh(*box_mesh(h), RES, SAMPLES) for h in (small, large)]
    metrics = compare(*shapes)
    nodes = grid_nodes(RES)
    inside = [(np.abs(nodes) < h).all(axis=1) for h in (small, large)]
    assert metrics["iou"] == pytest.approx(inside[0].sum() / inside[1].sum(), abs=1e-9)
    # small -> large: every point is (large - small) from the parallel face; large -> small: quadrature on a face
    u = np.linspace(-large, large, 801)
    uu, vv = np.meshgrid(u, u)
    gap2 = (large - small) ** 2 + np.maximum(np.abs(uu) - small, 0) ** 2 + np.maximum(np.abs(vv) - small, 0) ** 2
    assert metrics["chamfer"] == pytest.approx((large - small) ** 2 + gap2.mean(), rel=0.02)


def test_oriented_points_and_signed_distance_grid_reproduce_the_sphere():
    center, radius = np.array([0.05, 0.1, -0.1]), 0.5
    directions = fibonacci_sphere(20_000)
    points = Shape.from_points(center + radius * directions, directions, RES)
    exact = sphere_grid(center, radius)
    assert (points.occupancy != (exact < 0)).mean() < 0.002
    np.testing.assert_array_equal(oriented_point_occupancy(points.vertices, points.normals, RES), points.occupancy)
    sdf = signed_distance_grid(sphere_shape(center, radius))
    near = np.abs(exact) < 3 * 2 / (RES - 1)
    assert np.abs(sdf - exact)[near].max() < 0.01          # accurate in the band the zero set depends on
    assert np.abs(sdf).max() <= 8 * 2 / (RES - 1) + 1e-6   # truncated beyond it
    floor = compare(Shape.from_sdf_grid(sdf, samples=SAMPLES), sphere_shape(center, radius))
    assert floor["iou"] > 0.99 and floor["nc"] > 0.999 and floor["chamfer"] < 1e-4


@pytest.mark.parametrize("method", ["keops", "torch"])
def test_nearest_neighbours_match_kdtree(method):
    if method == "keops":
        pytest.importorskip("pykeops")
    rng = np.random.default_rng(0)
    points, queries = rng.normal(size=(400, 3)), rng.normal(size=(300, 3))
    d_searched, i_searched = nearest_neighbours(queries, points, method=method)
    d_tree, i_tree = nearest_neighbours(queries, points, method="kdtree")
    np.testing.assert_allclose(d_searched, d_tree, atol=1e-5)
    np.testing.assert_array_equal(i_searched, i_tree)


def test_auto_search_falls_back_to_brute_force_without_pykeops(monkeypatch):
    assert search_method("auto", "cpu") == "kdtree"
    monkeypatch.setattr(neighbours, "find_spec", lambda name: None)
    assert search_method("auto", "cuda") == "torch"
    assert search_method("auto", "cuda", without_keops="kdtree") == "kdtree"
    with pytest.raises(InvalidInputError, match="method must be one of auto, keops, kdtree, torch"):
        search_method("brute", "cpu")


def test_empty_surfaces_are_errors_not_numbers():
    with pytest.raises(EmptySurfaceError, match="no triangles"):
        Shape.from_mesh(np.zeros((0, 3)), np.zeros((0, 3), int), np.zeros((0, 3)), RES, 100)
    with pytest.raises(EmptySurfaceError, match="positive everywhere"):
        Shape.from_sdf_grid(np.ones((RES,) * 3, np.float32), samples=100, what="the model's surface at t=0.5")
    with pytest.raises(EmptySurfaceError, match="zero area"):
        Shape.from_mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]), np.ones((3, 3)), RES, 100)
    with pytest.raises(EmptySurfaceError, match="no points"):
        Shape.from_points(np.zeros((0, 3)), np.zeros((0, 3)), RES)
    empty = np.zeros((RES,) * 3, bool)
    with pytest.raises(EmptySurfaceError, match="undefined"):
        iou(empty, empty)
