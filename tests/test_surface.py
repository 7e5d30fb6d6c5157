"""dsr_backend.surface (solvent-excluded surface) on analytic cases, and dsr_backend.radii against PyMOL."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from dsr_backend.errors import InvalidInputError, ResourceLimitError
from dsr_backend.radii import DEFAULT_RADIUS, vdw_radii
from dsr_backend.surface import Surface, solvent_excluded_surface

TOL = 0.05  # Å


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def gap_to_spheres(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Per point, the smallest ``|x - c| - r`` over the spheres (0 on the union's boundary)."""
    return (np.linalg.norm(points[:, None, :] - centres[None], axis=2) - radii).min(axis=1)


def fibonacci_sphere(count: int, radius: float) -> np.ndarray:
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5 ** 0.5) * index
    return radius * np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar),
                              np.cos(polar)], axis=1)


@pytest.fixture(scope="module")
def two_atoms():
    """Two 1.7 Å atoms 3.6 Å apart with a 1.4 Å probe: a toroidal reentrant band joins them."""
    centres = np.array([[0.0, 0.0, 0.0], [3.6, 0.0, 0.0]])
    radii = np.array([1.7, 1.7])
    return centres, radii, solvent_excluded_surface(centres, radii, probe=1.4, spacing=0.4, mesh=True)


@pytest.mark.parametrize("radius, probe", [(1.7, 1.4), (1.2, 0.0), (2.0, 3.0)])
def test_one_atom_is_its_vdw_sphere(radius, probe):
    centre = np.array([[1.0, -2.0, 0.5]])
    surface = solvent_excluded_surface(centre, np.array([radius]), probe=probe)
    offset = surface.points - centre
    distance = np.linalg.norm(offset, axis=1)
    assert isinstance(surface, Surface) and surface.vertices is None and surface.faces is None
    assert surface.points.dtype == np.float32 and surface.normals.dtype == np.float32
    assert len(surface.points) > 50
    assert np.abs(distance - radius).max() < TOL
    assert np.abs(np.linalg.norm(surface.normals, axis=1) - 1.0).max() < 1e-4
    assert angles_deg(surface.normals, offset).max() < 2.0


def test_points_are_about_spacing_apart():
    surface = solvent_excluded_surface(np.zeros((1, 3)), np.array([3.0]), probe=1.4, spacing=0.5)
    nearest = np.sort(np.linalg.norm(surface.points[:, None] - surface.points[None], axis=2), axis=1)[:, 1]
    assert 0.15 < np.median(nearest) < 0.5
    area_per_point = 4 * np.pi * 3.0 ** 2 / len(surface.points)
    assert 0.05 < area_per_point < 0.25


def test_probe_zero_gives_union_of_vdw_spheres():
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 0.5, 0.0]])
    radii = np.array([1.5, 1.2])
    surface = solvent_excluded_surface(centres, radii, probe=0.0, spacing=0.3)
    assert np.abs(gap_to_spheres(surface.points, centres, radii)).max() < TOL
    owner = np.argmin(np.linalg.norm(surface.points[:, None] - centres[None], axis=2) - radii, axis=1)
    radial = surface.points - centres[owner]
    away_from_crease = np.abs(np.linalg.norm(surface.points - centres[1 - owner], axis=1) - radii[1 - owner]) > 0.2
    assert angles_deg(surface.normals[away_from_crease], radial[away_from_crease]).max() < 2.0


def test_two_atoms_have_a_toroidal_reentrant_band(two_atoms):
    centres, radii, surface = two_atoms
    probe = 1.4
    distance = np.linalg.norm(surface.points[:, None] - centres[None], axis=2)
    assert (distance.min(axis=1) >= radii[0] - 1e-3).all()            # never inside an atom
    reentrant = (distance > radii[0] + TOL).all(axis=1)
    assert reentrant.sum() > 20
    x = surface.points[reentrant]
    assert ((x[:, 0] > 0.0) & (x[:, 0] < 3.6)).all()                  # in the saddle between the atoms
    # probe centres touching both atoms: the circle x = 1.8, radius sqrt(3.1^2 - 1.8^2) around the x axis
    ring = np.sqrt((radii[0] + probe) ** 2 - 1.8 ** 2)
    rho = np.linalg.norm(x[:, 1:], axis=1)
    assert np.abs(np.hypot(x[:, 0] - 1.8, rho - ring) - probe).max() < TOL
    centre_of_probe = np.stack([np.full(len(x), 1.8), ring * x[:, 1] / rho, ring * x[:, 2] / rho], axis=1)
    assert angles_deg(surface.normals[reentrant], centre_of_probe - x).max() < 2.0
    assert (rho < ring).all()                                         # the band lies inside the ring


def test_mesh_is_closed_consistent_and_outward(two_atoms):
    _, _, surface = two_atoms
    vertices, faces = surface.vertices, surface.faces
    assert vertices.dtype == np.float32 and faces.dtype == np.int64 and faces.shape[1] == 3
    np.testing.assert_array_equal(vertices, surface.points)
    assert faces.min() >= 0 and faces.max() < len(vertices)
    assert len(np.unique(faces)) == len(vertices)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses == 2).all()                                          # closed, manifold edges
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    assert len(np.unique(directed, axis=0)) == len(directed)          # consistently wound
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    assert volume > 2 * 4 / 3 * np.pi * 1.7 ** 3                     # outward: positive, beyond two balls
    face_normals = np.cross(b - a, c - a)
    assert (np.einsum("ij,ij->i", face_normals, surface.normals[faces].mean(axis=1)) > 0).mean() > 0.99


def test_interior_cavity_keeps_its_surface():
    shell_radius, radius, probe = 6.0, 1.7, 1.4
    centres = fibonacci_sphere(260, shell_radius)  # ~1.3 Å apart: no probe passes between them
    surface = solvent_excluded_surface(centres, np.full(len(centres), radius), probe=probe, spacing=0.5)
    distance = np.linalg.norm(surface.points, axis=1)
    inner = distance < shell_radius - 1.0
    outer = distance > shell_radius + 1.0
    assert inner.sum() > 100 and outer.sum() > 100
    assert np.abs(distance[inner] - (shell_radius - radius)).max() < 0.3
    radial = surface.points / distance[:, None]
    inward = (surface.normals[inner] * radial[inner]).sum(axis=1)
    outward = (surface.normals[outer] * radial[outer]).sum(axis=1)
    assert (inward < 0).all() and inward.mean() < -0.9                  # facing into the cavity
    assert (outward > 0).all() and outward.mean() > 0.9


def test_tensor_input_and_device():
    centres = torch.tensor([[0.0, 0.0, 0.0], [2.5, 0.0, 0.0]], dtype=torch.float64)
    radii = torch.tensor([1.5, 1.5])
    from_tensor = solvent_excluded_surface(centres, radii, device="cpu")
    from_numpy = solvent_excluded_surface(centres.numpy(), radii.numpy())
    np.testing.assert_allclose(from_tensor.points, from_numpy.points, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(60, 3))
    radii = rng.uniform(1.2, 1.9, size=60)
    cpu = solvent_excluded_surface(centres, radii)
    gpu = solvent_excluded_surface(torch.tensor(centres, device="cuda"), torch.tensor(radii, device="cuda"))
    assert abs(len(cpu.points) - len(gpu.points)) <= 0.01 * len(cpu.points)
    distance = np.linalg.norm(gpu.points[:, None] - cpu.points[None], axis=2).min(axis=1)
    assert np.percentile(distance, 99) < 0.01


GOOD_COORDS = np.zeros((2, 3))
GOOD_RADII = np.array([1.5, 1.5])


@pytest.mark.parametrize("coords, radii, kwargs, message", [
    (np.zeros((2, 2)), GOOD_RADII, {}, r"coords must have shape \(N, 3\); got \(2, 2\)"),
    (np.zeros(3), np.array([1.5]), {}, r"coords must have shape \(N, 3\); got \(3,\)"),
    (GOOD_COORDS, np.ones((2, 1)), {}, r"radii must have shape \(N,\); got \(2, 1\)"),
    (GOOD_COORDS, np.array([1.5]), {}, "same length; got 2 atoms and 1 radii"),
    (np.zeros((0, 3)), np.zeros(0), {}, "at least one atom; got 0 atoms"),
    (np.array([[0.0, np.nan, 0.0], [1.0, 0.0, 0.0]]), GOOD_RADII, {}, "coords must be finite"),
    (np.array([[0.0, np.inf, 0.0], [1.0, 0.0, 0.0]]), GOOD_RADII, {}, "coords must be finite"),
    (GOOD_COORDS, np.array([1.5, np.nan]), {}, "radii must be finite"),
    (GOOD_COORDS, np.array([1.5, 0.0]), {}, "radii must be positive; got minimum 0"),
    (GOOD_COORDS, np.array([1.5, -1.0]), {}, "radii must be positive; got minimum -1"),
    (GOOD_COORDS, GOOD_RADII, {"probe": -0.5}, "probe must be a finite number >= 0; got -0.5"),
    (GOOD_COORDS, GOOD_RADII, {"probe": float("nan")}, "probe must be a finite number >= 0; got nan"),
    (GOOD_COORDS, GOOD_RADII, {"spacing": 0.0}, "spacing must be a finite number > 0; got 0.0"),
    (GOOD_COORDS, GOOD_RADII, {"spacing": -1}, "spacing must be a finite number > 0; got -1"),
    (GOOD_COORDS, GOOD_RADII, {"spacing": "fine"}, "spacing must be a finite number > 0; got 'fine'"),
    ([["a", "b", "c"]], [1.0], {}, "coords must be a numeric array or tensor"),
])
def test_bad_input_is_rejected(coords, radii, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        solvent_excluded_surface(coords, radii, **kwargs)


def test_bad_input_is_a_value_error_to_callers_that_catch_those():
    with pytest.raises(ValueError, match="probe must be"):
        solvent_excluded_surface(GOOD_COORDS, GOOD_RADII, probe=-1.0)


def test_too_large_grid_is_refused_before_allocating():
    coords = np.array([[0.0, 0.0, 0.0], [400.0, 400.0, 400.0]])
    with pytest.raises(ResourceLimitError, match=r"grid would have .* points .* above the limit"):
        solvent_excluded_surface(coords, np.array([1.5, 1.5]), spacing=0.5)


def test_too_coarse_spacing_is_explained():
    with pytest.raises(InvalidInputError, match="too coarse"):
        solvent_excluded_surface(np.zeros((1, 3)), np.array([0.2]), probe=0.0, spacing=5.0)


def test_vdw_radii_lookup():
    radii = vdw_radii(["C", "c", "CL", "Cl", "Fe", "ZN", "Se", "h", "Xx", " O "])
    np.testing.assert_allclose(radii, [1.7, 1.7, 1.75, 1.75, DEFAULT_RADIUS, 1.39, 1.9, 1.2, DEFAULT_RADIUS, 1.52])
    assert radii.dtype == np.float32 and vdw_radii([]).shape == (0,)
    with pytest.raises(InvalidInputError, match="not one string"):
        vdw_radii("CA")


def test_vdw_radii_match_pymol_for_a_peptide():
    pymol = pytest.importorskip("pymol")
    cmd, stored = pymol.cmd, pymol.stored
    cmd.delete("all")
    cmd.fab("ACDEFGHIK", "pep")
    # fab copies the radii of PyMOL's fragment library (C 1.8, N 1.8, ...); re-assigning the elements gives
    # the per-element defaults PyMOL uses for every loaded file.
    cmd.alter("pep", "elem = elem")
    stored.atoms = []
    cmd.iterate("pep", "stored.atoms.append((elem, vdw))")
    elements = [element for element, _ in stored.atoms]
    assert {"H", "C", "N", "O", "S"} <= set(elements)
    np.testing.assert_allclose(vdw_radii(elements), [vdw for _, vdw in stored.atoms], atol=1e-6)
    cmd.delete("all")
    cmd.read_pdbstr(_pdb_of_elements(["SE", "CL", "BR", "I", "F", "P", "FE", "ZN", "MG", "CA", "NA", "K"]), "ions")
    stored.atoms = []
    cmd.iterate("ions", "stored.atoms.append((elem, vdw))")
    np.testing.assert_allclose(vdw_radii([e for e, _ in stored.atoms]), [v for _, v in stored.atoms], atol=1e-6)
    cmd.delete("all")


def _pdb_of_elements(elements):
    lines = [f"HETATM{i + 1:5d} {e:<4s} LIG A   1    {3.0 * i:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00          {e:>2s}"
             for i, e in enumerate(elements)]
    return "\n".join(lines + ["END"]) + "\n"


FREED_IN_A_WORKER = """
import threading
from dsr_backend.surface import release_free_memory

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096

def churn():  # like a surface worker thread: many mid-sized blocks freed, a few kept
    global kept
    kept = [bytearray(65536) for _ in range(4000)][::10]

worker = threading.Thread(target=churn)
worker.start()
worker.join()
before = resident()
release_free_memory()
print(before - resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc's allocator")
def test_memory_freed_by_worker_threads_goes_back_to_the_system():
    """230 MB freed among blocks still in use stays resident until handed back; then at least 150 MB goes."""
    released = subprocess.run([sys.executable, "-c", FREED_IN_A_WORKER], capture_output=True, text=True, check=True)
    assert int(released.stdout) > 150 * 2 ** 20
