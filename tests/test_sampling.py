import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from dsr_backend import InvalidInputError, neighbours
from dsr_backend.sampling import FrameNearest, SeriesSampler, knn_distance


def test_knn_distance_kdtree_against_brute_force():
    points = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    expected = np.sort(distances, axis=1)[:, 50]
    assert np.allclose(knn_distance(points, 50), expected, atol=1e-5)


@pytest.mark.parametrize("method", ["keops", "torch"])
def test_knn_distance_matches_kdtree(method, monkeypatch):
    if method == "keops":
        pytest.importorskip("pykeops")
    monkeypatch.setattr(neighbours, "BRUTE_FORCE_PAIRS", 500 * 7)  # the brute force in chunks of 7 queries
    points = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    assert np.allclose(knn_distance(points, 50, method=method), knn_distance(points, 50, method="kdtree"),
                       atol=1e-4)


def test_knn_distance_estimated_on_a_subsample_of_a_surface(sphere_series):
    points = sphere_series.unit_points(2)
    exact, estimate = knn_distance(points, 50), knn_distance(points, 50, subsample=10)
    assert 0.85 < np.median(estimate / exact) < 1.15
    assert np.percentile(estimate / exact, 95) < 1.6 and np.percentile(estimate / exact, 5) > 0.5


def test_batches_carry_the_time_node_of_each_point(sphere_series):
    node_times = np.unique(sphere_series.model_times())
    sampler = SeriesSampler(sphere_series, batch_size=1000, node_times=node_times)
    batch = sampler.sample(torch.Generator().manual_seed(0))
    nodes = torch.tensor(node_times, dtype=torch.float32)
    assert torch.equal(nodes[batch.surface_row], batch.surface_t)
    assert torch.equal(nodes[batch.space_row], batch.space_t)
    with pytest.raises(InvalidInputError, match="time nodes do not include every frame"):
        SeriesSampler(sphere_series, batch_size=1000, node_times=node_times[::2])


def test_many_frames_keep_an_even_share_of_their_points(sphere_series, monkeypatch):
    monkeypatch.setattr("dsr_backend.sampling.MAX_TRAINING_POINTS", 2000)
    sampler = SeriesSampler(sphere_series, batch_size=500)
    assert sampler.sizes.tolist() == [400] * sphere_series.num_frames  # 2000 over 5 frames
    kept = sampler.points[:400].numpy()
    own = sphere_series.unit_points(0)
    assert cKDTree(own).query(kept)[0].max() < 1e-6 and len(np.unique(kept, axis=0)) == 400


def test_knn_distance_small_clouds():
    assert knn_distance(np.zeros((1, 3)), 50).shape == (1,)
    points = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0]], dtype=np.float32)
    assert knn_distance(points, 50).tolist() == [3.0, 2.0, 3.0]  # k clamped to the 2 other points


def test_batches_cover_frames_with_matching_times_and_noise_scale(sphere_series):
    sampler = SeriesSampler(sphere_series, batch_size=4000, frames_per_step=0, knn=50)
    batch = sampler.sample(torch.Generator().manual_seed(0))
    assert batch.surface_x.shape == (4000, 3) and batch.space_x.shape == (4500, 3)
    model_times = torch.tensor(sphere_series.model_times(), dtype=torch.float32)
    assert set(batch.surface_t.unique().tolist()) == set(model_times.tolist())  # every frame drawn
    # a surface point carries its own frame's time: it is one of that frame's points
    for frame, t in enumerate(model_times):
        chosen = batch.surface_x[batch.surface_t == t].numpy()
        distance, _ = cKDTree(sphere_series.unit_points(frame)).query(chosen)
        assert distance.max() < 1e-6
    # local samples of D lie near the surface at about the 50-NN distance; 1/8 are uniform in the box
    moved = (batch.space_x[:4000] - batch.surface_x).norm(dim=1)
    assert 0.5 < moved.mean() / (sampler.sigmas.mean() * 1.6) < 2.0
    uniform = batch.space_x[4000:]
    assert uniform.abs().max() <= 1.0 and uniform.abs().mean() > 0.4


def test_frames_per_step_limits_each_batch(sphere_series):
    sampler = SeriesSampler(sphere_series, batch_size=1000, frames_per_step=1)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(10):
        batch = sampler.sample(generator)
        assert len(batch.surface_t.unique()) == 1
        seen.add(batch.surface_t[0].item())
    assert len(seen) > 1


def test_a_step_of_some_time_nodes_draws_their_frames_and_lists_them(sphere_series):
    node_times = np.unique(sphere_series.model_times())
    sampler = SeriesSampler(sphere_series, batch_size=1000, frames_per_step=2, node_times=node_times)
    assert sampler.row_sparse
    generator, seen = torch.Generator().manual_seed(0), set()
    for _ in range(10):
        batch = sampler.sample(generator)
        assert len(batch.node_rows) == 2 and torch.all(batch.node_rows[1:] > batch.node_rows[:-1])
        assert set(batch.rows().tolist()) == set(batch.node_rows.tolist())
        seen.update(batch.node_rows.tolist())
    assert seen == set(range(len(node_times)))
    every = SeriesSampler(sphere_series, batch_size=1000, node_times=node_times)
    assert not every.row_sparse and every.sample(generator).node_rows is None


def test_same_generator_state_same_batch(sphere_series):
    sampler = SeriesSampler(sphere_series, batch_size=256)
    a = sampler.sample(torch.Generator().manual_seed(3))
    b = sampler.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a.space_x, b.space_x) and torch.equal(a.surface_n, b.surface_n)


def test_near_samples_carry_their_signed_distance(sphere, sphere_series):
    """On the moving sphere the targets match the exact signed distance to a tenth of the point spacing (a
    twentieth on average right at the surface, where the distance to the nearest point is off by a fifth)."""
    sampler = SeriesSampler(sphere_series, batch_size=3000, distances=True)
    batch = sampler.sample(torch.Generator().manual_seed(0))
    assert SeriesSampler(sphere_series, batch_size=10).sample(torch.Generator()).near_distance is None
    norm = sphere_series.normalization
    states = dict(zip(sphere_series.model_times().tolist(), sphere_series.times.tolist()))
    near = batch.space_x[:3000].numpy()
    exact = np.array([sphere.sdf(norm.to_angstrom(x[None]), states[t])[0] / norm.scale
                      for x, t in zip(near, batch.surface_t.tolist())])
    target = batch.near_distance.numpy()
    spacing = knn_distance(sphere_series.unit_points(0), 1).max()
    error = np.abs(target - exact)
    assert error.max() < 0.1 * spacing and error.mean() < 0.02 * spacing
    assert error[np.abs(exact) < spacing].mean() < 0.05 * spacing
    clear = np.abs(exact) > spacing
    assert clear.sum() > 1000 and np.array_equal(np.sign(target[clear]), np.sign(exact[clear]))


def test_deep_samples_reach_far_and_carry_the_distance_to_the_points(sphere, sphere_series):
    """Every second near sample spread six times wider: ten times farther from the surface on the moving
    sphere, its target the distance to a sparse cloud, off by a fraction of the point spacing."""
    series = sphere_series
    batch = SeriesSampler(series, batch_size=3000, distances=True, deep_spread=6.0).sample(
        torch.Generator().manual_seed(0))
    norm = series.normalization
    states = dict(zip(series.model_times().tolist(), series.times.tolist()))
    exact = np.array([sphere.sdf(norm.to_angstrom(x[None]), states[t])[0] / norm.scale
                      for x, t in zip(batch.space_x[:3000].numpy(), batch.surface_t.tolist())])
    target = batch.near_distance.numpy()
    spacing = knn_distance(series.unit_points(0), 1).max()
    near, deep = slice(0, None, 2), slice(1, None, 2)
    assert np.median(np.abs(exact[deep])) > 6 * np.median(np.abs(exact[near]))
    assert np.abs(target[near] - exact[near]).max() < 0.1 * spacing
    assert np.abs(target[deep] - exact[deep]).mean() < 0.3 * spacing
    clear = np.abs(exact[deep]) > spacing
    assert np.array_equal(np.sign(target[deep][clear]), np.sign(exact[deep][clear]))
    with pytest.raises(InvalidInputError, match="deep_spread must not be negative"):
        SeriesSampler(series, batch_size=10, deep_spread=-1.0)


@pytest.mark.parametrize("method", ["keops", "torch"])
def test_frame_nearest_matches_kdtree(method):
    if method == "keops":
        pytest.importorskip("pykeops")
    rng = np.random.default_rng(2)
    clouds = [rng.normal(size=(400, 3)).astype(np.float32) for _ in range(3)]
    queries = torch.as_tensor(rng.normal(size=(300, 3)).astype(np.float32))
    frames = torch.as_tensor(rng.integers(3, size=300))
    searched, kdtree = FrameNearest(clouds, method=method), FrameNearest(clouds, method="kdtree")
    found = kdtree(frames, queries)
    assert torch.equal(searched(frames, queries), found)
    for frame in range(3):  # each query's nearest point within its own frame
        mine = frames == frame
        expected = ((queries[mine, None] - torch.as_tensor(clouds[frame])[None]) ** 2).sum(-1).argmin(1)
        assert torch.equal(found[mine], expected)
    with pytest.raises(ValueError, match="method"):
        FrameNearest(clouds, method="brute")
