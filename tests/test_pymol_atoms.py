"""Atoms taken from PyMOL (coordinates, radii, filtering, objects) and PyMOL's own surface as points."""
import numpy as np
import pytest
from pymol import CmdException, cmd
from scipy.spatial import cKDTree

from pymol_dsr.atoms import extract_atoms
from pymol_dsr.pymol_surface import pymol_surfaces
from tests.conftest import add_states, hinge_peptide


pytestmark = pytest.mark.usefixtures("fresh_pymol")


def test_coordinates_and_radii_equal_get_coords_and_vdw():
    hinge_peptide("pep", 4)
    (frames,) = extract_atoms("pep", "2-last")
    assert frames.object == "pep" and frames.states == [2, 3, 4]
    for index, state in enumerate(frames.states):
        np.testing.assert_array_equal(frames.coords[index], cmd.get_coords("pep", state))
    radii = []
    cmd.iterate("pep", "radii.append(vdw)", space={"radii": radii})
    np.testing.assert_allclose(frames.radii, radii)
    assert not np.allclose(frames.coords[0], frames.coords[2])


def test_solvent_and_ions_are_dropped_hydrogens_kept():
    cmd.fab("ACD", "pep")
    protein = cmd.count_atoms("pep")
    cmd.pseudoatom("pep", resn="HOH", resi=100, name="O", elem="O", pos=[20, 0, 0], chain="W")
    cmd.pseudoatom("pep", resn="NA", resi=101, name="NA", elem="Na", pos=[-20, 0, 0], chain="I")
    (frames,) = extract_atoms("pep")
    assert frames.coords.shape == (1, protein, 3)
    assert cmd.count_atoms(f"({frames.selection}) and hydro") > 0


def test_several_objects_give_one_entry_each_with_its_own_states():
    cmd.fab("ACDE", "one")
    cmd.fab("KLMN", "two")
    add_states("two", 3)
    frames = extract_atoms("one or two")
    assert [f.object for f in frames] == ["one", "two"]
    assert [f.states for f in frames] == [[1], [1, 2, 3]]


@pytest.mark.parametrize("selection, states, message", [
    ("nothing_here", "", "unknown selection"),
    ("pep and resn TRP", "", "has no atoms"),
    ("pep", "1-9", "out of range"),
    ("pep", "3-1", "empty"),
    ("solvent", "", "left after removing solvent"),
])
def test_bad_selections_and_states(selection, states, message):
    cmd.fab("ACD", "pep")
    cmd.pseudoatom("pep", resn="HOH", resi=100, name="O", elem="O", pos=[20, 0, 0], chain="W")
    add_states("pep", 2)
    with pytest.raises(CmdException, match=message):
        extract_atoms(selection, states)


def test_pymol_surface_points_lie_on_the_atoms_with_outward_normals():
    cmd.fab("ACDEFGHIK", "pep", ss=1)
    add_states("pep", 2, angle=60.0)
    cmd.turn("x", 40)  # the user's view must not matter
    models = [cmd.get_model("pep", state) for state in (1, 2)]
    surfaces = pymol_surfaces(models, quality=0)
    for state, (points, normals) in zip((1, 2), surfaces):
        xyz = cmd.get_coords("pep", state)
        distance, nearest = cKDTree(xyz).query(points)
        assert len(points) > 500
        assert distance.max() < 3.5 and abs(distance.mean() - 1.6) < 0.4  # on the vdW spheres or the probe
        outward = np.sum((points - xyz[nearest]) * normals, axis=1) / distance
        assert np.mean(outward > 0) > 0.98
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert cmd.get_names() == ["pep"]  # the user's session is untouched
