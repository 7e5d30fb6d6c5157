"""dsr_backend.trajectory on the adenylate kinase PSF + DCD of MDAnalysisTests and small hand-made files."""
import sys

import numpy as np
import pytest

from dsr_backend.errors import InvalidInputError, MissingDependencyError
from dsr_backend.trajectory import AtomFrames, read_atom_frames

mda = pytest.importorskip("MDAnalysis")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
PSF, DCD = datafiles.PSF, datafiles.DCD

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PYMOL_RADII = {"H": 1.2, "C": 1.7, "N": 1.55, "O": 1.52, "S": 1.8}


@pytest.fixture(scope="module")
def reference():
    """MDAnalysis' own positions and times of frames 0, 2, 4, 6, 8 of all protein atoms."""
    universe = mda.Universe(PSF, DCD)
    protein = universe.select_atoms("protein")
    positions, times = [], []
    for ts in universe.trajectory[0:10:2]:
        positions.append(protein.positions.copy())
        times.append(ts.time)
    return np.array(positions), np.array(times)


@pytest.fixture(scope="module")
def adk() -> AtomFrames:
    return read_atom_frames(PSF, [DCD], frames="0-8:2")


def test_adk_frames_match_mdanalysis(adk, reference):
    positions, times = reference
    assert adk.coords.shape == (5, 3341, 3) and adk.coords.dtype == np.float32
    np.testing.assert_array_equal(adk.coords, positions)
    np.testing.assert_array_equal(adk.frame_indices, [0, 2, 4, 6, 8])
    assert adk.frame_indices.dtype == np.int64
    np.testing.assert_array_equal(adk.times_ps, times)
    assert adk.times_ps.dtype == np.float64


def test_adk_elements_and_radii(adk):
    """The PSF has no element column: elements are guessed from atom names, hydrogens included."""
    assert len(adk.elements) == 3341
    counts = {symbol: adk.elements.count(symbol) for symbol in set(adk.elements)}
    assert counts == {"H": 1685, "C": 1040, "N": 289, "O": 320, "S": 7}
    assert adk.radii.shape == (3341,) and adk.radii.dtype == np.float32
    for symbol, radius in PYMOL_RADII.items():
        mask = np.array(adk.elements) == symbol
        np.testing.assert_allclose(adk.radii[mask], radius, rtol=1e-6)


def test_without_hydrogens(adk):
    heavy = read_atom_frames(PSF, [DCD], frames="0-8:2", include_hydrogens=False)
    assert "H" not in heavy.elements
    assert heavy.coords.shape == (5, 3341 - 1685, 3)
    keep = np.array(adk.elements) != "H"
    np.testing.assert_array_equal(heavy.coords, adk.coords[:, keep])
    np.testing.assert_array_equal(heavy.radii, adk.radii[keep])


def test_slice_object_selection_and_single_path():
    frames = read_atom_frames(PSF, DCD, select="name CA", frames="90-last:5")
    np.testing.assert_array_equal(frames.frame_indices, [90, 95])
    assert frames.coords.shape == (2, 214, 3) and set(frames.elements) == {"C"}


def test_trajectories_are_concatenated():
    frames = read_atom_frames(PSF, [DCD, DCD], select="resid 1:3", frames="97-98")
    first = read_atom_frames(PSF, [DCD], select="resid 1:3", frames="0")
    last = read_atom_frames(PSF, [DCD], select="resid 1:3", frames="last")
    np.testing.assert_array_equal(frames.frame_indices, [97, 98])
    np.testing.assert_array_equal(frames.coords, np.concatenate([last.coords, first.coords]))


def test_selection_errors():
    with pytest.raises(InvalidInputError, match=r"atom selection 'resname XYZ' matches no atoms \(the topology has 3341"):
        read_atom_frames(PSF, [DCD], select="resname XYZ")
    with pytest.raises(InvalidInputError, match=r"invalid atom selection 'protein and \('"):
        read_atom_frames(PSF, [DCD], select="protein and (")
    with pytest.raises(InvalidInputError, match="'name H\\*' holds only hydrogens"):
        read_atom_frames(PSF, [DCD], select="name H*", include_hydrogens=False)


def test_frame_selection_errors():
    with pytest.raises(InvalidInputError, match=r"frames '200-last' reaches outside 0-97"):
        read_atom_frames(PSF, [DCD], select="name CA", frames="200-last")
    with pytest.raises(InvalidInputError, match=r"frames '0:50' is a former Python slice; write 0-49"):
        read_atom_frames(PSF, [DCD], select="name CA", frames="0:50")
    with pytest.raises(InvalidInputError, match=r"frames must be whole numbers within the trajectory's 98 frames"):
        read_atom_frames(PSF, [DCD], select="name CA", frames=[5, 120])


def test_missing_files(tmp_path):
    with pytest.raises(InvalidInputError, match="topology file not found: .*nothing.psf"):
        read_atom_frames(str(tmp_path / "nothing.psf"), [DCD])
    with pytest.raises(InvalidInputError, match="trajectory file not found: .*gone.dcd"):
        read_atom_frames(PSF, [DCD, str(tmp_path / "gone.dcd")])


@pytest.mark.filterwarnings("ignore:No coordinate reader found")
def test_topology_without_coordinates():
    with pytest.raises(InvalidInputError, match="holds no coordinates; give a trajectory file"):
        read_atom_frames(PSF)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # MDAnalysis' DCDReader.__del__
def test_unreadable_file(tmp_path):
    path = tmp_path / "junk.dcd"
    path.write_bytes(b"not a dcd file at all")
    with pytest.raises(InvalidInputError, match="MDAnalysis could not read .*junk.dcd"):
        read_atom_frames(PSF, [str(path)])


@pytest.mark.filterwarnings("ignore:Reader has no dt information")
def test_topology_elements_are_used_and_nonfinite_frames_rejected(tmp_path):
    path = tmp_path / "ions.xyz"
    path.write_text("3\nframe 0\nC 0 0 0\nZN 1 0 0\nH 0 1 0\n"
                    "3\nframe 1\nC 0 0 0\nZN nan 0 0\nH 0 1 0\n")
    first = read_atom_frames(str(path), select="all", frames="0")
    assert first.elements == ["C", "Zn", "H"]
    np.testing.assert_array_equal(first.coords[0], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(InvalidInputError, match="frame 1 of .*ions.xyz has non-finite"):
        read_atom_frames(str(path), select="all")


def test_missing_mdanalysis(monkeypatch):
    monkeypatch.setitem(sys.modules, "MDAnalysis", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "pymol-dsr\[md\]"'):
        read_atom_frames(PSF, [DCD])


def mesh_pieces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Face counts of the connected pieces of a triangle mesh, largest first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2)
    _, label = connected_components(graph, directed=False)
    return np.sort(np.bincount(label[faces[:, 0]]))[::-1]


def test_a_solvated_trajectory_made_whole_gives_one_closed_protein_surface():
    from MDAnalysisTests.datafiles import GRO, XTC

    from dsr_backend.surface import solvent_excluded_surface

    broken = read_atom_frames(GRO, [XTC], frames="0")
    whole = read_atom_frames(GRO, [XTC], frames="0-4:4", whole=True, center=True, fit="name CA")
    assert whole.coords.shape == (2, 3341, 3)
    assert np.ptp(broken.coords[0], axis=0).max() > 75  # split across the periodic box as stored
    assert np.ptp(whole.coords[0], axis=0).max() < 65
    for coords in whole.coords:
        surface = solvent_excluded_surface(coords, whole.radii, spacing=0.8, mesh=True)
        pieces = mesh_pieces(surface.vertices, surface.faces)
        assert pieces[0] > 0.97 * pieces.sum()  # one protein surface (small inner cavities aside)
    first, last = whole.coords
    assert np.sqrt(((first - last) ** 2).sum(axis=1)).mean() < 3.0  # superposed: no drift left


def test_a_fit_selection_needs_three_atoms():
    with pytest.raises(InvalidInputError, match="fit selection 'name CA and resid 1' has 1 of the selected atoms"):
        read_atom_frames(PSF, [DCD], frames="0-1", fit="name CA and resid 1")
