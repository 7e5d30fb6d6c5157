import numpy as np
import pytest

from dsr_backend import InvalidInputError, Normalization, SurfaceSeries, TimeMap


def test_normalization_round_trip_and_box(sphere_series):
    norm = sphere_series.normalization
    points = np.concatenate(sphere_series.points)
    unit = norm.to_unit(points)
    assert np.allclose(norm.to_angstrom(unit), points, atol=1e-4)
    # the points fill the unit cube up to the 1.1 margin
    assert np.isclose(np.abs(unit).max(), 1 / 1.1, atol=1e-3)


def test_time_map_fractions():
    times = TimeMap(1.0, 9.0)
    assert times.time_to_fraction(5.0) == pytest.approx(0.5)
    assert times.fraction_to_time(1.5) == pytest.approx(13.0)
    assert times.fraction_to_model(np.array([0.0, 1.0])).tolist() == [-1.0, 1.0]
    static = TimeMap(4.0, 4.0)
    assert static.is_static and static.fraction_to_model(0.7) == 0.0


def test_save_load_round_trip(sphere_series, tmp_path):
    path = tmp_path / "s.npz"
    sphere_series.save(path)
    loaded = SurfaceSeries.load(path)
    assert loaded.num_frames == sphere_series.num_frames
    for a, b in zip(loaded.points, sphere_series.points):
        assert np.array_equal(a, b)
    for a, b in zip(loaded.normals, sphere_series.normals):
        assert np.array_equal(a, b)
    assert np.array_equal(loaded.times, sphere_series.times)
    assert loaded.normalization == sphere_series.normalization
    assert loaded.time_map == sphere_series.time_map
    assert loaded.protein_names == sphere_series.protein_names


def test_subset_keeps_maps(sphere_series):
    part = sphere_series.subset([1, 3])
    assert part.normalization == sphere_series.normalization
    assert part.time_map == sphere_series.time_map
    assert part.times.tolist() == [3.0, 7.0]


def test_normals_rescaled_to_unit_length():
    points = np.random.default_rng(0).normal(size=(10, 3))
    series = SurfaceSeries([points], [points * 3.0], times=[1])
    assert np.allclose(np.linalg.norm(series.normals[0], axis=1), 1.0, atol=1e-6)


def good_frame(count=10):
    points = np.random.default_rng(1).normal(size=(count, 3))
    return points, points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.mark.parametrize("points, normals, message", [
    (np.full((4, 3), np.nan), np.ones((4, 3)), "NaN or infinite coordinates"),
    (np.full((4, 3), np.inf), np.ones((4, 3)), "NaN or infinite coordinates"),
    (np.zeros((0, 3)), np.zeros((0, 3)), "empty frame"),
    (np.ones((4, 3)), np.ones((4, 2)), "normals must have the shape"),
    (np.ones((4, 3)), np.zeros((4, 3)), "zero length"),
    (np.ones((4, 2)), np.ones((4, 2)), r"shape \(M, 3\)"),
])
def test_bad_frames_rejected(points, normals, message):
    good_points, good_normals = good_frame()
    with pytest.raises(InvalidInputError, match=message):
        SurfaceSeries([good_points, points], [good_normals, normals], times=[1, 2])


def test_bad_series_arguments():
    points, normals = good_frame()
    with pytest.raises(InvalidInputError, match="at least one frame"):
        SurfaceSeries([], [], times=[])
    with pytest.raises(InvalidInputError, match="2 times for 1 frames"):
        SurfaceSeries([points], [normals], times=[1, 2])
    with pytest.raises(InvalidInputError, match="times must be finite"):
        SurfaceSeries([points], [normals], times=[np.nan])
    with pytest.raises(InvalidInputError, match="protein ids"):
        SurfaceSeries([points], [normals], times=[1], proteins=[1], protein_names=["a"])


def test_load_rejects_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(InvalidInputError, match="not a pymol-dsr surface series"):
        SurfaceSeries.load(foreign)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file at all")
    with pytest.raises(InvalidInputError, match="not a readable .npz"):
        SurfaceSeries.load(corrupt)
    with pytest.raises(InvalidInputError, match="no such series file"):
        SurfaceSeries.load(tmp_path / "missing.npz")


def test_single_frame_is_static():
    points, normals = good_frame()
    series = SurfaceSeries([points], [normals], times=[7])
    assert series.time_map.is_static
    assert series.model_times().tolist() == [0.0]


def test_fit_normalization_of_flat_cloud():
    norm = Normalization.fit(np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]))
    assert norm.center == (2.0, 0.0, 0.0) and norm.scale == pytest.approx(2.2)
