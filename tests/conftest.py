"""Shared fixtures: a moving, growing sphere with an analytic SDF, and a small model trained on it."""
import pytest
import torch

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
