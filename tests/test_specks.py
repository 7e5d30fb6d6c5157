"""Floating specks left out of query surfaces (dsr_backend.query.drop_small_components)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from dsr_backend import InvalidInputError, extract_surface
from dsr_backend.config import preset
from dsr_backend.sdf import SDFWithGradient
from dsr_backend.query import drop_small_components
from dsr_backend.series import Normalization, TimeMap
from dsr_backend.trained import TrainedModel

AXIS = np.linspace(-1.0, 1.0, 48)
X, Y, Z = np.meshgrid(AXIS, AXIS, AXIS, indexing="ij")


def ball(center, radius):
    return np.sqrt((X - center[0]) ** 2 + (Y - center[1]) ** 2 + (Z - center[2]) ** 2) - radius


def inside_pieces(grid, level=0.0):
    return ndimage.label(grid < level, structure=np.ones((3, 3, 3)))[1]


def test_a_speck_is_dropped_and_the_body_kept_exactly():
    body, speck = ball((-0.2, 0, 0), 0.5), ball((0.7, 0.6, 0.6), 0.08)
    grid = np.minimum(body, speck).astype(np.float32)
    cleaned = drop_small_components(grid)
    assert inside_pieces(grid) == 2 and inside_pieces(cleaned) == 1
    assert np.array_equal(cleaned < 0, body < 0)
    near_body = body < 0.3
    assert np.array_equal(cleaned[near_body], grid[near_body])
    assert drop_small_components(grid, min_fraction=0.0) is grid
    assert inside_pieces(drop_small_components(grid, min_fraction=1e-4)) == 2  # the speck is 0.4 % of the body


def test_cavities_and_other_levels():
    shell = np.maximum(ball((0, 0, 0), 0.7), -ball((0, 0, 0), 0.2)).astype(np.float32)  # a hollow ball
    assert np.array_equal(drop_small_components(shell), shell)  # the cavity is outside: kept
    grid = np.minimum(ball((-0.3, 0, 0), 0.4), ball((0.6, 0.6, 0.6), 0.05)).astype(np.float32)
    level = 0.02  # both grow by 0.02 and stay apart
    cleaned = drop_small_components(grid, level)
    assert inside_pieces(grid, level) == 2 and inside_pieces(cleaned, level) == 1
    assert cleaned.min() == grid.min()


def test_bad_fraction_rejected():
    grid = ball((0, 0, 0), 0.5).astype(np.float32)
    for fraction in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidInputError, match="min_component is a fraction"):
            drop_small_components(grid, min_fraction=fraction)


class BodyAndSpeck(torch.nn.Module):
    """A static 10 Å ball with a 1 Å ball 15 Å away, in a 25 Å half-width box."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # for the device

    def forward(self, x, t, protein):
        body = (x - torch.tensor([-0.2, 0.0, 0.0])).norm(dim=1) - 0.4
        speck = (x - torch.tensor([0.5, 0.5, 0.5])).norm(dim=1) - 0.04
        return torch.minimum(body, speck) + self.anchor

    def sdf_and_gradient(self, x, t, protein, with_time=False, dtype=torch.float32):
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            sdf = self(x, t, protein)
            (grad,) = torch.autograd.grad(sdf.sum(), x)
        return SDFWithGradient(sdf.detach(), grad, torch.zeros_like(sdf) if with_time else None)


def test_surface_queries_leave_specks_out_unless_asked():
    model = TrainedModel(BodyAndSpeck(), Normalization((0.0, 0.0, 0.0), 25.0), TimeMap(0.0, 1.0), ["p"],
                         preset("tiny"))
    cleaned = extract_surface(model, t=0.5, resolution=64)
    everything = extract_surface(model, t=0.5, resolution=64, min_component=0.0)
    speck_centre = np.array([12.5, 12.5, 12.5])
    assert np.linalg.norm(everything.vertices - speck_centre, axis=1).min() < 1.5
    assert np.linalg.norm(cleaned.vertices - speck_centre, axis=1).min() > 10.0
    radius = np.linalg.norm(cleaned.vertices - np.array([-5.0, 0, 0]), axis=1)
    assert np.abs(radius - 10.0).max() < 0.2
    with pytest.raises(InvalidInputError, match="min_component"):
        extract_surface(model, t=0.5, resolution=32, min_component=2.0)
