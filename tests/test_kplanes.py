"""The fast K-Planes model: initialisation, closed-form gradients, time nodes, extrapolation, training,
checkpoints, presets."""
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

from .shapes import analytic_grid, grid_iou

EVEN = tuple(np.linspace(-1.0, 1.0, 5))
SMALL = KPlanesConfig(space_resolutions=(16, 32), node_times=EVEN, features=8, hidden=32, latent_dim=4,
                      num_proteins=2, time_spread=0.3)
UNEVEN = dataclasses.replace(SMALL, node_times=(-1.0, -0.8, 0.1, 0.3, 1.0))


def random_inputs(count=300, seed=0, spread=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(count, 3, generator=generator) * 1.8 - 0.9
    t = (torch.rand(count, generator=generator) * 2 - 1) * spread
    protein = torch.randint(2, (count,), generator=generator)
    return x, t, protein


def varied(config, dtype=torch.float32):
    """A model whose field depends on x and t through every plane and the MLP."""
    model = KPlanesSDF(config).to(dtype)
    with torch.no_grad():
        for plane in [*model.space_planes, *model.time_planes]:
            plane.uniform_(0.5, 1.5)
        model.mlp[-1].weight.normal_(0.0, 0.3)
        model.latents.weight.normal_(0.0, 0.5)
    return model


def test_initial_zero_set_is_a_static_sphere():
    model = KPlanesSDF(SMALL)
    x, t, protein = random_inputs()
    expected = x.norm(dim=1) - SMALL.init_radius
    assert torch.allclose(model(x, t, protein), expected, atol=1e-6)
    assert torch.allclose(model(x, -t, 1 - protein), expected, atol=1e-6)


@pytest.mark.parametrize("config", [SMALL, UNEVEN], ids=["even", "uneven"])
def test_autograd_gradients_match_finite_differences(config):
    model = varied(config, torch.float64)
    x, t, protein = random_inputs(50, seed=1)
    x, t = x.double(), t.double()
    out = model.sdf_and_gradient(x, t, protein, with_time=True)
    step = 1e-6
    for axis in range(3):
        shift = torch.zeros_like(x)
        shift[:, axis] = step
        numeric = (model(x + shift, t, protein) - model(x - shift, t, protein)) / (2 * step)
        assert torch.allclose(out.grad_x[:, axis], numeric, atol=1e-5)
    numeric_t = (model(x, t + step, protein) - model(x, t - step, protein)) / (2 * step)
    assert torch.allclose(out.grad_t, numeric_t, atol=1e-5)


@pytest.mark.parametrize("config", [SMALL, UNEVEN], ids=["even", "uneven"])
def test_closed_form_gradient_at_the_nodes_is_autograds_to_the_parameters(config):
    model = varied(config, torch.float64)
    x, _, protein = random_inputs(200, seed=2, spread=1.0)
    x = torch.cat([x.double(), torch.tensor([[1.3, 0.2, -0.4]], dtype=torch.float64)])  # one beyond the box
    protein = torch.cat([protein, protein[:1]])
    rows = torch.randint(len(config.node_times), (len(x),), generator=torch.Generator().manual_seed(3))
    t = model.node_times[rows]
    parameters = list(model.parameters())

    def loss_and_grads(out):  # an IGR-like loss of f and grad f, differentiated to every parameter
        loss = out.sdf.abs().mean() + ((out.grad_x.norm(dim=1) - 1) ** 2).mean() + out.grad_x[:, 0].sum()
        return (out.sdf, out.grad_x, *torch.autograd.grad(loss, parameters))

    closed = loss_and_grads(model.sdf_and_gradient(x, t, protein, rows=rows))
    reference = loss_and_grads(model.sdf_and_gradient(x, t, protein))  # autograd, differentiated twice
    for ours, theirs in zip(closed, reference):
        torch.testing.assert_close(ours, theirs)
    assert closed[1][-1].abs().sum() > 0 and all(grad.abs().sum() > 0 for grad in closed[2:])
    without = model.at_nodes(x, rows, protein, gradient=False)
    torch.testing.assert_close(without.sdf, closed[0])
    assert without.grad_x is None


def test_copies_of_some_rows_get_the_gradient_of_the_whole_planes_in_those_rows():
    config = dataclasses.replace(SMALL, node_times=tuple(np.linspace(-1.0, 1.0, 8)))
    model = varied(config, torch.float64)
    x, _, protein = random_inputs(200, seed=4)
    trained = torch.tensor([0, 1, 4, 7])  # an end, its neighbour, one inside, the other end
    rows = trained[torch.randint(len(trained), (len(x),), generator=torch.Generator().manual_seed(5))]

    def loss(out, smoothness):
        return out.sdf.abs().mean() + ((out.grad_x.norm(dim=1) - 1) ** 2).mean() + 10 * smoothness

    whole = torch.autograd.grad(loss(model.at_nodes(x.double(), rows, protein), model.time_smoothness()),
                                list(model.time_planes))
    copies = kplanes.TimeRows.of(model, trained)
    partial = torch.autograd.grad(loss(model.at_nodes(x.double(), rows, protein, time_rows=copies),
                                       model.time_smoothness(copies)), copies.planes)
    for full, part in zip(whole, partial):
        torch.testing.assert_close(part, full[trained])
        assert full[[2, 3, 5, 6]].abs().sum() > 0  # the smoothness reaches the other rows too, untrained here


@pytest.mark.parametrize("height, width", [(2, 9), (40, 32)])
def test_plane_and_line_look_ups_are_grid_samples_bilinear_interpolation(height, width):
    generator = torch.Generator().manual_seed(3)
    plane = torch.randn(height, width, 5, dtype=torch.float64, generator=generator)
    u = torch.rand(300, dtype=torch.float64, generator=generator) * 2.4 - 1.2  # clamped beyond [-1, 1]
    v = torch.rand(300, dtype=torch.float64, generator=generator) * 2.4 - 1.2
    grid = torch.stack([u, v], dim=-1).view(1, -1, 1, 2)
    expected = F.grid_sample(plane.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border",
                             align_corners=True).view(5, -1).t()
    torch.testing.assert_close(kplanes._plane(plane, u, v)[0], expected)
    rows = torch.randint(height, (300, 2), generator=generator)
    on_rows = kplanes._line(plane, rows, u)[0]
    for column in range(2):
        at_row = rows[:, column] * (2 / (height - 1)) - 1.0  # on the row up to rounding
        torch.testing.assert_close(on_rows[:, column], kplanes._plane(plane, u, at_row)[0], atol=1e-5, rtol=1e-5)


def test_past_the_trained_range_the_last_surface_is_held():
    model = varied(SMALL)
    x, _, protein = random_inputs()

    def sdf(time):
        return model(x, torch.full((len(x),), float(time)), protein)

    assert not torch.allclose(sdf(0.9), sdf(1.0))
    assert torch.allclose(sdf(1.7), sdf(1.0)) and torch.allclose(sdf(-1.3), sdf(-1.0))


@pytest.mark.parametrize("config", [SMALL, UNEVEN], ids=["even", "uneven"])
def test_between_nodes_the_features_blend_the_four_nearest_nodes(config):
    model = varied(config)
    x, t, _ = random_inputs(seed=2)
    nodes = torch.tensor(config.node_times)
    interval = (torch.searchsorted(nodes, t, right=True) - 1).clamp(0, len(nodes) - 2)
    u = (t - nodes[interval]) / (nodes[interval + 1] - nodes[interval])
    spread = config.time_spread * u * (1 - u)
    expected = 0
    for offset, weight in zip((-1, 0, 1, 2), (spread, 1 - u - spread, u - spread, spread)):
        node = nodes[(interval + offset).clamp(0, len(nodes) - 1)]  # the ends repeated
        expected = expected + weight[:, None] * model.features(x, node)
    torch.testing.assert_close(model.features(x, t), expected)
    at_nodes = torch.arange(len(nodes)).repeat(len(x) // len(nodes) + 1)[:len(x)]
    torch.testing.assert_close(model.features(x, nodes[at_nodes]),
                               model.features(x, nodes[at_nodes] + 1e-7), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [SMALL, UNEVEN], ids=["even", "uneven"])
def test_node_function_is_the_forward_pass_at_grid_nodes(monkeypatch, config):
    model = varied(config)
    axis = torch.linspace(-1.0, 1.2, 23)  # a padded grid reaches past +1
    index = torch.randint(23, (500, 3), generator=torch.Generator().manual_seed(1))
    for t, protein in ((-0.7, 0), (0.35, 1), (0.5, 1), (-1.0, 0), (config.node_times[2], 1)):
        expected = model(axis[index], torch.full((500,), t), torch.full((500,), protein))
        assert torch.allclose(model.node_function(axis, t, protein)(index), expected, atol=1e-5)
    assert model.node_function(axis, 0.0, 0)(index[:0]).shape == (0,)
    monkeypatch.setattr("dsr_backend.kplanes.NODE_PLANE_BYTES", 1000)
    assert model.node_function(axis, 0.0, 0) is None  # too large a grid: the caller goes point by point


def test_one_time_node_is_a_static_model():
    model = varied(dataclasses.replace(SMALL, node_times=(0.0,)))
    x, t, protein = random_inputs()
    torch.testing.assert_close(model(x, t, protein), model(x, torch.zeros_like(t), protein))
    rows = torch.zeros(len(x), dtype=torch.long)
    torch.testing.assert_close(model.at_nodes(x, rows, protein).sdf, model(x, t, protein))


@pytest.mark.parametrize("frames_per_step", [0, 2], ids=["every node", "row-sparse"])
def test_trained_on_a_moving_sphere(sphere, sphere_series, frames_per_step):
    config = preset("fast", steps=300, batch_size=1024, model=dataclasses.replace(SMALL, num_proteins=1),
                    compile=False, frames_per_step=frames_per_step)
    result = train(sphere_series, config, device="cpu")
    model = result.model
    assert np.allclose(model.network.config.node_times, sphere_series.model_times())  # a node per frame
    for state in (2.0, 6.0):
        t = float(model.time_map.time_to_fraction(state))
        assert grid_iou(sdf_grid(model, t, 40), analytic_grid(model, sphere, state, 40)) > 0.9
    assert {"smoothness", "distance"} <= set(result.last_record)


def test_unevenly_spaced_frames_each_get_a_node(sphere):
    series = sphere.series([1.0, 2.0, 6.0, 9.0], points_per_frame=800)
    config = preset("fast", steps=150, batch_size=512, model=dataclasses.replace(SMALL, node_times=(), num_proteins=1),
                    compile=False)
    model = train(series, config, device="cpu").model
    assert np.allclose(model.network.config.node_times, [-1.0, -0.75, 0.25, 1.0])
    t = float(model.time_map.time_to_fraction(6.0))
    assert grid_iou(sdf_grid(model, t, 40), analytic_grid(model, sphere, 6.0, 40)) > 0.85


def test_automatic_time_nodes_and_checkpoint_round_trip(sphere_series, tmp_path, capsys):
    small = KPlanesConfig(space_resolutions=(8,), features=4, hidden=16, latent_dim=2)
    path = tmp_path / "fast.pt"
    result = train(sphere_series, preset("fast", steps=3, batch_size=256, model=small, compile=False),
                   checkpoint=path, device="cpu")
    assert len(result.model.network.config.node_times) == sphere_series.num_frames
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
    assert network_config_from_dict(network_config_to_dict(UNEVEN)) == UNEVEN
    assert isinstance(build_network(SMALL), KPlanesSDF)
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        network_config_from_dict({"architecture": "transformer"})
    with pytest.raises(InvalidInputError, match="unknown kplanes settings"):
        network_config_from_dict({"architecture": "kplanes", "time_blend": "lines"})
    with pytest.raises(ValueError, match="node_times must be strictly increasing"):
        dataclasses.replace(SMALL, node_times=(0.0, 0.5, 0.5))
    with pytest.raises(ValueError, match="time_spread"):
        dataclasses.replace(SMALL, time_spread=1.5)
    with pytest.raises(ValueError, match="set the time nodes"):
        KPlanesSDF(KPlanesConfig())  # nodes not yet fitted to a series
    with pytest.raises(InvalidInputError, match="time_smoothness applies to the K-Planes"):
        preset("paper", time_smoothness=1e-3)


def test_an_ensemble_is_the_mean_of_its_members(monkeypatch):
    model = build_network(dataclasses.replace(SMALL, members=3))
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


@pytest.mark.parametrize("frames_per_step", [0, 2], ids=["every node", "row-sparse"])
def test_ensemble_members_train_as_if_alone_and_round_trip(sphere_series, tmp_path, frames_per_step):
    config = preset("fast", steps=6, batch_size=512, compile=False, frames_per_step=frames_per_step,
                    model=dataclasses.replace(SMALL, node_times=(), num_proteins=1, members=2))
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
    common = ["train", str(series), "-o", str(path), "--steps", "2", "--batch-size", "256", "--device", "cpu",
              "--no-compile", "-q"]
    assert main([*common, "--preset", "fast", "--members", "2"]) == 0
    network = TrainedModel.load(path, device="cpu").network
    assert isinstance(network, kplanes.KPlanesEnsemble) and len(network.members) == 2
    capsys.readouterr()
    assert main([*common, "--preset", "tiny", "--members", "2"]) == 2
    assert "--members: members apply to the K-Planes model (preset fast) only, not to preset tiny" in capsys.readouterr().err
    assert main([*common, "--preset", "fast", "--members", "0"]) == 2
    assert "--members: members must be at least 1, got 0" in capsys.readouterr().err
