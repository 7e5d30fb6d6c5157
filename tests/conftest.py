"""Shared fixtures and helpers: a moving, growing sphere with an analytic SDF, a small model trained on it,
a fresh PyMOL, and a hinged peptide in PyMOL whose states move."""
import pytest
import torch
from pymol import cmd

from dsr_backend import preset, train
from dsr_backend.synthetic import MovingSphere

TRAIN_STATES = [1.0, 3.0, 5.0, 7.0, 9.0]


@pytest.fixture(scope="session", autouse=True)
def few_threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sphere():
    return MovingSphere()


@pytest.fixture(scope="session")
def sphere_series(sphere):
    return sphere.series(TRAIN_STATES, points_per_frame=1500)


@pytest.fixture(scope="session")
def trained_sphere(sphere_series, tmp_path_factory):
    """(result, checkpoint path) of the tiny preset trained 300 steps on the sphere series."""
    path = tmp_path_factory.mktemp("model") / "sphere.pt"
    result = train(sphere_series, preset("tiny", steps=300), checkpoint=path, device="cpu")
    return result, path


@pytest.fixture
def fresh_pymol():
    """PyMOL reinitialised, its feedback off, before and after the test."""
    cmd.reinitialize()
    cmd.feedback("disable", "all", "everything")
    yield cmd
    cmd.reinitialize()


def add_states(name: str, count: int, angle: float = 20.0) -> None:
    """States 2..count of ``name``: its second half turned about the x axis by ``angle`` degrees per state."""
    atoms = cmd.count_atoms(f"{name} and name CA")
    hinge = cmd.get_coords(f"{name} and name CA and resi {atoms // 2}", 1)[0].tolist()
    for state in range(2, count + 1):
        cmd.create(name, name, 1, state)
        cmd.rotate("x", angle * (state - 1), f"{name} and resi {atoms // 2 + 1}-{atoms}", state=state, camera=0,
                   origin=hinge)


def hinge_peptide(name: str = "pep", states: int = 5, angle: float = 20.0) -> None:
    """A helical 12-residue peptide whose C-terminal half swings about its middle over the states."""
    cmd.fab("ACDEFGHIKLMN", name, ss=1)
    add_states(name, states, angle)
