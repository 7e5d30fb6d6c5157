"""The fast K-Planes model: initialisation, gradients, extrapolation, training, checkpoints, presets."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dsr_backend import InvalidInputError, KPlanesConfig, KPlanesSDF, TrainedModel, TrainConfig, preset, train
from dsr_backend import kplanes
from dsr_backend.cli import main
from dsr_backend.networks import build_network, network_config_from_dict, network_config_to_dict
from dsr_backend.query import sdf_grid

from .shapes import grid_iou
from .test_train import analytic_grid

SMALL = KPlanesConfig(space_resolutions=(16, 32), time_resolution=5, features=8, hidden=32, latent_dim=4,
                      num_proteins=2)
SPREAD = dataclasses.replace(SMALL, time_spread=0.3)
PRODUCTS = dataclasses.replace(SPREAD, time_blend="products")


def random_inputs(count=300, seed=0, spread=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 3, generator=generator) * 1.8 - 0.9
    t = (torch.rand(count, generator=generator) * 2 - 1) * spread
    protein = torch.randint(2, (count,), generator=generator)
    return x, t, protein


def test_initial_zero_set_is_a_static_sphere():
    model = KPlanesSDF(SMALL)
    x, t, protein = random_inputs()
    expected = x.norm(dim=1) - SMALL.init_radius
    assert torch.allclose(model(x, t, protein), expected, atol=1e-6)
    assert torch.allclose(model(x, -t, 1 - protein), expected, atol=1e-6)


@pytest.mark.parametrize("config", [SMALL, SPREAD, PRODUCTS], ids=["linear", "spread", "products"])
def test_gradients_match_finite_differences(config):
    model = KPlanesSDF(config)
    with torch.no_grad():  # make the field depend on x and t through the planes and the MLP
        for plane in model.time_planes:
            plane.normal_(1.0, 0.3)
        torch.nn.init.normal_(model.mlp[-1].weight, 0.0, 0.3)
    x, t, protein = random_inputs(50, seed=1)
    x, t = x.double(), t.double()
    model = model.double()
    out = model.sdf_and_gradient(x, t, protein, with_time=True)
    step = 1e-6
    for axis in range(3):
        shift = torch.zeros_like(x)
        shift[:, axis] = step
        numeric = (model(x + shift, t, protein) - model(x - shift, t, protein)) / (2 * step)
        assert torch.allclose(out.grad_x[:, axis], numeric, atol=1e-5)
    numeric_t = (model(x, t + step, protein) - model(x, t - step, protein)) / (2 * step)
    assert torch.allclose(out.grad_t, numeric_t, atol=1e-5)


@pytest.mark.parametrize("height, width", [(2, 9), (40, 32)])
def test_gathered_bilinear_is_grid_sample_to_second_derivatives(height, width):
    generator = torch.Generator().manual_seed(3)
    plane = torch.randn(1, 5, height, width, dtype=torch.float64, generator=generator, requires_grad=True)
    u = (torch.rand(300, dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(True)
    v = (torch.rand(300, dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(True)
    weights = torch.randn(300, 5, dtype=torch.float64, generator=generator)

    def derivatives(sample):
        features = sample(plane, u, v)
        du, dv = torch.autograd.grad((features * weights).sum(), (u, v), create_graph=True)
        dplane, = torch.autograd.grad((du.square() + dv.square()).sum(), plane)  # as the eikonal term does
        return features, du, dv, dplane

    def grid_sample(plane, u, v):  # twice differentiable on a CPU (not on CUDA)
        grid = torch.stack([u, v], dim=-1).view(1, -1, 1, 2)
        return F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True).view(5, -1).t()

    with torch.no_grad():
        queried = kplanes._sample(plane, u, v)
    gathered = derivatives(kplanes._sample)
    torch.testing.assert_close(queried, gathered[0])
    for ours, theirs in zip(gathered, derivatives(grid_sample)):
        torch.testing.assert_close(ours, theirs)
    assert (gathered[1] == 0).any() and (gathered[1] != 0).any()  # clamped outside [-1, 1], live inside


def test_rows_gather_is_grid_sample_on_node_rows_to_second_derivatives():
    generator = torch.Generator().manual_seed(4)
    plane = torch.randn(1, 5, 5, 16, dtype=torch.float64, generator=generator, requires_grad=True)
    u = (torch.rand(300, dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(True)
    rows = torch.randint(5, (300, 4), generator=generator)
    rows[0] = 4  # the last row, whose bilinear neighbour lies above it
    weights = torch.randn(300, 4, 5, dtype=torch.float64, generator=generator)

    def derivatives(sample):
        features = sample()
        du, = torch.autograd.grad((features * weights).sum(), u, create_graph=True)
        dplane, = torch.autograd.grad(du.square().sum(), plane)
        return features, du, dplane

    def on_rows():
        return kplanes._gather_rows(plane, u, rows)

    def bilinear():
        v = rows * 0.5 - 1.0  # exactly on the rows
        columns = [kplanes._sample(plane, u, v[:, r]) for r in range(4)]
        return torch.stack(columns, dim=1)

    for ours, theirs in zip(derivatives(on_rows), derivatives(bilinear)):
        torch.testing.assert_close(ours, theirs)


def test_one_gather_over_all_planes_equals_plane_by_plane():
    # The all-plane look-up that training on CUDA uses, against one plane at a time, to second derivatives.
    model = KPlanesSDF(SMALL).double()
    with torch.no_grad():
        for plane in [*model.space_planes, *model.time_planes]:
            plane.normal_(1.0, 0.3)
    planes = [*model.space_planes, *model.time_planes]
    generator = torch.Generator().manual_seed(4)
    u = (torch.rand(200, len(planes), dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(True)
    v = (torch.rand(200, len(planes), dtype=torch.float64, generator=generator) * 2.4 - 1.2).requires_grad_(True)

    def derivatives(values):
        du, dv = torch.autograd.grad(values.square().sum(), (u, v), create_graph=True)
        grads = torch.autograd.grad((du.square() + dv.square()).sum(), planes)
        return (values, du, dv, *grads)

    together = derivatives(kplanes._gather_bilinear(planes, u, v))
    one_by_one = derivatives(torch.stack([kplanes._gather_bilinear([plane], u[:, i:i + 1], v[:, i:i + 1])[:, 0]
                                          for i, plane in enumerate(planes)], dim=1))
    for ours, theirs in zip(together, one_by_one):
        torch.testing.assert_close(ours, theirs)
    assert all(grad.abs().sum() > 0 for grad in together[3:])


def test_gradient_is_differentiable_in_training_and_plain_in_queries():
    model = KPlanesSDF(SMALL)
    with torch.no_grad():  # at initialisation only the zeroed last layer would receive gradients
        torch.nn.init.normal_(model.mlp[-1].weight, 0.0, 0.3)
    x, t, protein = random_inputs()
    out = model.sdf_and_gradient(x, t, protein)
    ((out.grad_x.norm(dim=1) - 1) ** 2).mean().backward()  # eikonal: through the input gradient
    assert model.space_planes[0].grad is not None and model.space_planes[0].grad.abs().sum() > 0
    with torch.no_grad():
        query = model.sdf_and_gradient(x, t, protein)
    assert not query.sdf.requires_grad and not query.grad_x.requires_grad


def test_past_the_trained_range_the_last_surface_is_held():
    model = KPlanesSDF(SMALL)
    with torch.no_grad():
        for plane in model.time_planes:
            plane.normal_(1.0, 0.3)
        torch.nn.init.normal_(model.mlp[-1].weight, 0.0, 0.3)
    x, _, protein = random_inputs()

    def sdf(time):
        return model(x, torch.full((len(x),), float(time)), protein)

    assert not torch.allclose(sdf(0.9), sdf(1.0))
    assert torch.allclose(sdf(1.7), sdf(1.0)) and torch.allclose(sdf(-1.3), sdf(-1.0))


@pytest.mark.parametrize("config", [SMALL, SPREAD, PRODUCTS], ids=["linear", "spread", "products"])
def test_node_function_is_the_forward_pass_at_grid_nodes(monkeypatch, config):
    model = KPlanesSDF(config)
    with torch.no_grad():
        for plane in list(model.space_planes) + list(model.time_planes):  # planes that vary along every axis
            plane.uniform_(0.5, 1.5)
        model.mlp[-1].weight.normal_(0.0, 0.3)
    axis = torch.linspace(-1.0, 1.2, 23)  # a padded grid reaches past +1
    index = torch.randint(23, (500, 3), generator=torch.Generator().manual_seed(1))
    for t, protein in ((-0.7, 0), (0.35, 1), (0.5, 1), (-1.0, 0)):  # between nodes and at nodes
        expected = model(axis[index], torch.full((500,), t), torch.full((500,), protein))
        assert torch.allclose(model.node_function(axis, t, protein)(index), expected, atol=1e-5)
    assert model.node_function(axis, 0.0, 0)(index[:0]).shape == (0,)
    monkeypatch.setattr("dsr_backend.kplanes.NODE_PLANE_BYTES", 1000)
    assert model.node_function(axis, 0.0, 0) is None  # too large a grid: the caller goes point by point


def test_time_spread_keeps_the_nodes_and_blends_four_of_them_in_between():
    model = KPlanesSDF(SPREAD)
    with torch.no_grad():
        for plane in model.time_planes:
            plane.uniform_(0.5, 1.5)
        model.mlp[-1].weight.normal_(0.0, 0.3)
    linear = KPlanesSDF(SMALL)
    linear.load_state_dict(model.state_dict())
    x, _, protein = random_inputs()
    nodes = torch.linspace(-1.0, 1.0, SMALL.time_resolution)

    def at(network, time):
        return network(x, torch.full((len(x),), float(time)), protein)

    for node in nodes:
        torch.testing.assert_close(at(model, node), at(linear, node))
    for k in (0, 2):  # an interval at the start (node -1 is node 0 repeated) and one inside
        blended = copy.deepcopy(linear)
        with torch.no_grad():
            for plane in blended.time_planes:
                rows = [plane[0, :, max(j, 0)].clone() for j in (k - 1, k, k + 1, k + 2)]
                offset = 0.3 * 0.25  # c u (1 - u) halfway
                line = offset * rows[0] + (0.5 - offset) * (rows[1] + rows[2]) + offset * rows[3]
                plane[0, :, k] = plane[0, :, k + 1] = line  # linear interpolation then gives the blend anywhere
        halfway = float(nodes[k] + nodes[k + 1]) / 2
        torch.testing.assert_close(at(model, halfway), at(blended, halfway))
        assert not torch.allclose(at(model, halfway), at(linear, halfway))
    with pytest.raises(ValueError, match="time_spread"):
        dataclasses.replace(SMALL, time_spread=1.5)


def test_blending_products_weights_the_features_of_the_four_nearest_nodes():
    model = KPlanesSDF(PRODUCTS)
    with torch.no_grad():
        for plane in list(model.space_planes) + list(model.time_planes):
            plane.uniform_(0.5, 1.5)
        model.mlp[-1].weight.normal_(0.0, 0.3)
    lines = KPlanesSDF(SPREAD)
    lines.load_state_dict(model.state_dict())
    x, t, protein = random_inputs(seed=2)
    nodes = torch.linspace(-1.0, 1.0, PRODUCTS.time_resolution)
    for node in nodes:  # at the nodes nothing is blended: the same model either way
        at_node = torch.full((len(x),), float(node))
        torch.testing.assert_close(model(x, at_node, protein), lines(x, at_node, protein))
    position = (t + 1) * 0.5 * (len(nodes) - 1)
    interval = position.floor().clamp(max=len(nodes) - 2)
    u = position - interval
    spread = 0.3 * u * (1 - u)
    expected = 0
    for offset, weight in zip((-1, 0, 1, 2), (spread, 1 - u - spread, u - spread, spread)):
        node = nodes[(interval + offset).clamp(0, len(nodes) - 1).long()]  # the ends repeated
        expected = expected + weight[:, None] * model.features(x, node)
    torch.testing.assert_close(model.features(x, t), expected)
    assert not torch.allclose(model(x, t, protein), lines(x, t, protein), atol=1e-3)
    with pytest.raises(ValueError, match="time_blend must be one of lines, products, got 'outputs'"):
        dataclasses.replace(SMALL, time_blend="outputs")


def test_trained_on_a_moving_sphere(sphere, sphere_series):
    config = preset("fast", steps=300, batch_size=1024, model=SMALL, space_smoothness=1e-2)
    result = train(sphere_series, config, device="cpu")
    model = result.model
    assert model.network.config.time_resolution == 5  # explicit resolutions are kept
    for state in (2.0, 6.0):
        t = float(model.time_map.time_to_fraction(state))
        assert grid_iou(sdf_grid(model, t, 40), analytic_grid(model, sphere, state, 40)) > 0.9
    assert {"smoothness", "space_smoothness", "distance"} <= set(result.last_record)


def test_space_smoothness_is_the_squared_step_between_neighbouring_texels():
    model = KPlanesSDF(SMALL)
    with torch.no_grad():
        for plane in [*model.space_planes, *model.time_planes]:
            plane.fill_(0.7)
        assert model.space_smoothness() == 0
        width = model.space_planes[0].shape[3]
        model.space_planes[0].copy_(torch.linspace(0, 0.1 * (width - 1), width))  # a ramp along the width
    assert model.space_smoothness().item() == pytest.approx(0.1 ** 2)
    with pytest.raises(InvalidInputError, match="K-Planes"):
        preset("paper", space_smoothness=1e-2)
    with pytest.raises(InvalidInputError, match="must not be negative"):
        preset("fast", space_smoothness=-1.0)


def test_automatic_time_resolution_and_checkpoint_round_trip(sphere_series, tmp_path, capsys):
    small = KPlanesConfig(space_resolutions=(8,), features=4, hidden=16, latent_dim=2)
    path = tmp_path / "fast.pt"
    result = train(sphere_series, preset("fast", steps=3, batch_size=256, model=small), checkpoint=path, device="cpu")
    assert result.model.network.config.time_resolution == sphere_series.num_frames
    loaded = TrainedModel.load(path, device="cpu")
    assert isinstance(loaded.network, KPlanesSDF)
    points = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    assert np.allclose(loaded.sdf(points, 0.4), result.model.sdf(points, 0.4), atol=1e-6)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert f"fast: K-Planes 8 x 4 features, {sphere_series.num_frames} time nodes" in capsys.readouterr().out


def test_configurations_round_trip_and_bad_ones_are_rejected():
    config = preset("fast", num_proteins=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert network_config_from_dict(network_config_to_dict(PRODUCTS)) == PRODUCTS
    older = network_config_to_dict(SPREAD)
    del older["time_blend"]  # checkpoints from before the setting interpolated the lines
    assert network_config_from_dict(older) == SPREAD and SPREAD.time_blend == "lines"
    assert isinstance(build_network(SMALL), KPlanesSDF)
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        network_config_from_dict({"architecture": "transformer"})
    with pytest.raises(InvalidInputError, match="unknown kplanes settings"):
        network_config_from_dict({"architecture": "kplanes", "depth": 3})
    with pytest.raises(ValueError, match="time_resolution"):
        KPlanesSDF(KPlanesConfig())  # automatic resolution not yet fitted to a series


def test_an_ensemble_is_the_mean_of_its_members(monkeypatch):
    model = build_network(dataclasses.replace(SPREAD, members=3))
    assert isinstance(model, kplanes.KPlanesEnsemble) and len(model.members) == 3
    with torch.no_grad():
        for member in model.members:
            for plane in member.time_planes:
                plane.normal_(1.0, 0.3)
            member.mlp[-1].weight.normal_(0.0, 0.3)
    x, t, protein = random_inputs(80, seed=2)
    out = model.sdf_and_gradient(x, t, protein, with_time=True)
    alone = [member.sdf_and_gradient(x, t, protein, with_time=True) for member in model.members]
    assert not torch.allclose(alone[0].sdf, alone[1].sdf)  # initialised independently
    for name in ("sdf", "grad_x", "grad_t"):
        torch.testing.assert_close(getattr(out, name), torch.stack([getattr(a, name) for a in alone]).mean(0))
    torch.testing.assert_close(model(x, t, protein), out.sdf)
    axis = torch.linspace(-1, 1, 12)
    index = torch.randint(12, (100, 3), generator=torch.Generator().manual_seed(4))
    expected = model(axis[index], torch.full((100,), 0.3), torch.full((100,), 1))
    torch.testing.assert_close(model.node_function(axis, 0.3, 1)(index), expected, atol=1e-5, rtol=1e-5)
    one_member = kplanes.node_plane_bytes(model.config, 12)
    monkeypatch.setattr("dsr_backend.kplanes.NODE_PLANE_BYTES", 2 * one_member)
    assert model.members[0].node_function(axis, 0.3, 1) is not None
    assert model.node_function(axis, 0.3, 1) is None  # the three together would take too much memory
    with pytest.raises(ValueError, match="members"):
        dataclasses.replace(SMALL, members=0)


def test_ensemble_members_train_as_if_alone_and_round_trip(sphere_series, tmp_path):
    config = preset("fast", steps=6, batch_size=512, model=dataclasses.replace(SPREAD, num_proteins=1, members=2))
    path = tmp_path / "ensemble.pt"
    together = train(sphere_series, config, checkpoint=path, device="cpu")
    alone = train(sphere_series, dataclasses.replace(config, model=dataclasses.replace(config.model, members=1)),
                  device="cpu")
    first, second = together.model.network.members
    for mine, single in zip(first.state_dict().values(), alone.model.network.state_dict().values()):
        torch.testing.assert_close(mine, single)  # the same seed, batches and steps
    assert not torch.allclose(second.space_planes[0], first.space_planes[0], atol=1e-3)
    loaded = TrainedModel.load(path, device="cpu")
    assert isinstance(loaded.network, kplanes.KPlanesEnsemble)
    assert "mean of 2 models" in loaded.network.config.describe()
    points = np.random.default_rng(0).uniform(-10, 10, (50, 3))
    assert np.allclose(loaded.sdf(points, 0.4), together.model.sdf(points, 0.4), atol=1e-6)


def test_dsr_train_members_option(sphere_series, tmp_path, capsys):
    series, path = tmp_path / "series.npz", tmp_path / "m.pt"
    sphere_series.save(series)
    common = ["train", str(series), "-o", str(path), "--steps", "2", "--batch-size", "256", "--device", "cpu", "-q"]
    assert main([*common, "--preset", "fast", "--members", "2"]) == 0
    network = TrainedModel.load(path, device="cpu").network
    assert isinstance(network, kplanes.KPlanesEnsemble) and len(network.members) == 2
    capsys.readouterr()
    assert main([*common, "--preset", "tiny", "--members", "2"]) == 2
    assert "--members: members apply to the K-Planes model (preset fast) only, not to preset tiny" in capsys.readouterr().err
    assert main([*common, "--preset", "fast", "--members", "0"]) == 2
    assert "--members: members must be at least 1, got 0" in capsys.readouterr().err
