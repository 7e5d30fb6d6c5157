"""Evaluation protocols, baselines, reports and ``dsr evaluate`` on tiny systems with known motion."""
import json

import numpy as np
import pytest
import torch

from dsr_backend.cli import main
from dsr_backend.evaluate import ReferenceFrames, classify, evaluate, neighbours
from dsr_backend.metrics import EmptySurfaceError
from dsr_backend.query import sdf_grid
from dsr_backend.report import markdown_table, write_reports
from dsr_backend.trained import TrainedModel
from tests.conftest import TRAIN_STATES

GRID = dict(resolution=32, samples=4000)
FRAMES = 12  # frames of the atom trajectory; training on 0, 2, ..., 8


def test_dims_protocol_frames():
    """The paper's DIMS split: train on 0, 2, ..., 78; interpolation 1, ..., 79; future 80-89 and 90-97."""
    labels = classify(list(range(98)), list(range(0, 80, 2)))
    by = {name: [t for t, label in enumerate(labels) if label == name] for name in set(labels)}
    assert by["reconstruction"] == list(range(0, 80, 2))
    assert by["interpolation"] == list(range(1, 80, 2))
    assert by["future 1-10"] == list(range(80, 90)) and by["future 11-20"] == list(range(90, 98))
    assert classify([-1, 5, 6, 40], [0, 2, 4]) == ["past", "interpolation", "future 1-10", "future 1-10"]
    assert classify([100, 50, 6, 300], [0, 2, 4]) == ["future 1-10"] * 4  # counted in frames, not in time
    assert classify(list(range(6, 31)), [0, 2, 4]).count("future >20") == 5
    subset = list(range(0, 98, 5))  # a subsample keeps the trajectory's frame counting
    assert classify(subset, list(range(0, 80, 2)), list(range(98)))[-4:] == ["future 1-10"] * 2 + ["future 11-20"] * 2


def test_neighbours_bracket_and_extrapolate():
    train = np.array([0.0, 2.0, 4.0])
    assert neighbours(3.0, train) == (2.0, 4.0, 0.5)
    assert neighbours(7.0, train) == (2.0, 4.0, 2.5)
    assert neighbours(-1.0, train) == (0.0, 2.0, -0.5)
    assert neighbours(5.0, np.array([3.0])) == (3.0, 3.0, 0.0)


@pytest.fixture(scope="module")
def sphere_evaluation(trained_sphere, sphere):
    result, _ = trained_sphere
    states = np.arange(1.0, 13.0)
    reference = ReferenceFrames.from_series(sphere.series(states, points_per_frame=6000))
    return evaluate(result.model, reference, list(range(len(states))), TRAIN_STATES, **GRID)


def test_sphere_protocols_methods_and_scores(sphere_evaluation):
    rows = {(r["protocol"], r["method"]): r for r in sphere_evaluation.summary()}
    assert set(rows) == {("reconstruction", "DSR"), ("reconstruction", "floor")} | {
        (p, m) for p in ("interpolation", "future 1-10") for m in ("DSR", "nearest frame", "linear SDF", "floor")}
    assert rows["reconstruction", "DSR"]["n"] == 5 and rows["interpolation", "DSR"]["n"] == 5
    assert rows["future 1-10", "DSR"]["n"] == 2
    assert rows["reconstruction", "DSR"]["iou"] > 0.9 and rows["interpolation", "DSR"]["iou"] > 0.9
    floor = rows["reconstruction", "floor"]
    assert floor["iou"] == 1.0  # by construction: the resampled grid takes its inside from the reference
    assert floor["nc"] > 0.99
    # the sphere moves and grows linearly: blending neighbours beats copying one
    assert rows["interpolation", "linear SDF"]["iou"] > rows["interpolation", "nearest frame"]["iou"] + 0.02
    assert rows["interpolation", "linear SDF"]["chamfer"] < rows["interpolation", "nearest frame"]["chamfer"]


def test_reports(sphere_evaluation, tmp_path):
    table = markdown_table(sphere_evaluation)
    assert "| reconstruction | DSR | 5 |" in table and "±" in table
    paths = write_reports(sphere_evaluation, str(tmp_path))
    names = {p.split("/")[-1] for p in paths}
    assert names == {"summary.md", "summary.csv", "frames.csv", "results.json", "iou.png", "chamfer.png", "nc.png"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["frames"]) == len(sphere_evaluation.scores) and data["train_times"] == TRAIN_STATES
    assert (tmp_path / "frames.csv").read_text().splitlines()[0].startswith("time,protocol,method,iou,chamfer,nc")


def shifted_model(checkpoint, shift):
    """The trained sphere model with ``shift`` (unit frame) added to its output: its spheres shrink by that."""
    model = TrainedModel.load(checkpoint, device="cpu")
    with torch.no_grad():
        list(model.network.parameters())[-1].add_(shift)  # the output bias
    return model


def test_frames_without_a_model_surface_are_counted_not_scored(trained_sphere, sphere):
    """Shifted up by half-way between its deepest values at the first and the last state, the model keeps
    a surface only at the last (the sphere grows)."""
    checkpoint = trained_sphere[1]
    model = TrainedModel.load(checkpoint, device="cpu")
    deepest = [sdf_grid(model, float(model.time_map.time_to_fraction(s)), GRID["resolution"]).min()
               for s in (TRAIN_STATES[0], TRAIN_STATES[-1])]
    assert deepest[1] < deepest[0] - 0.5  # Å
    model = shifted_model(checkpoint, -np.mean(deepest) / model.normalization.scale)
    reference = ReferenceFrames.from_series(sphere.series(TRAIN_STATES, points_per_frame=2000))
    result = evaluate(model, reference, [0, 4], TRAIN_STATES, baselines=False, **GRID)
    first, last = result.scores
    assert np.isnan(first.metrics["iou"]) and np.isnan(first.metrics["chamfer"])
    assert 0.0 < last.metrics["iou"] < 1.0
    row = result.summary()[0]
    assert row["n"] == 2 and row["empty"] == 1 and row["iou"] == last.metrics["iou"]
    assert "| reconstruction | DSR | 2 (1 empty) |" in markdown_table(result)


def test_a_model_without_any_surface_is_an_error(trained_sphere, sphere):
    model = shifted_model(trained_sphere[1], 5.0)  # positive everywhere
    reference = ReferenceFrames.from_series(sphere.series(TRAIN_STATES, points_per_frame=2000))
    with pytest.raises(EmptySurfaceError, match="no surface at any of the 2 frames.*has not learned a surface"):
        evaluate(model, reference, [0, 1], TRAIN_STATES, baselines=False, **GRID)


# ---------------------------------------------------------------------- atoms and the CLI
def write_xyz(path, shift=0.0, scale=1.0):
    """Four carbons in a row, the last two moving linearly away over FRAMES frames."""
    with open(path, "w") as handle:
        for frame in range(FRAMES):
            x = [0.0, 2.5, 5.0 + 0.3 * frame, 7.5 + 0.6 * frame]
            handle.write(f"4\nframe {frame}\n" + "".join(f"C {scale * v + shift:.3f} 0 0\n" for v in x))


@pytest.fixture(scope="module")
def atom_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    traj, series, model = folder / "rod.xyz", folder / "series.npz", folder / "model.pt"
    write_xyz(traj)
    assert main(["molsurf", str(traj), "--select", "all", "--frames", "0-8:2", "-o", str(series), "-q"]) == 0
    assert main(["train", str(series), "-o", str(model), "--preset", "tiny", "--steps", "150", "--device", "cpu",
                 "-q"]) == 0
    return folder, traj, model


def test_reference_surfaces_are_computed_once_when_kept():
    coords = np.array([[[0.0, 0, 0], [2.5, 0, 0], [5.0 + 0.3 * f, 0, 0]] for f in range(3)])
    reference = ReferenceFrames.from_atoms(coords, np.full(3, 1.7), [0.0, 1.0, 2.0])
    kept = reference.frame_surface(1, keep=True)
    assert reference.frame_surface(1) is kept and list(reference.meshes) == [1]
    fresh = reference.frame_surface(2)
    assert list(reference.meshes) == [1] and fresh.vertices[:, 0].max() > kept.vertices[:, 0].max()
    np.testing.assert_array_equal(reference.surface(coords[1]).faces, kept.faces)


def run_evaluate(model, traj, *extra):
    return main(["evaluate", str(model), "--reference", str(traj), "--select", "all", "--resolution", "32",
                 "--samples", "4000", "-q", *extra])


def test_cli_against_a_trajectory(atom_model, capsys):
    folder, traj, model = atom_model
    out = folder / "report"
    assert run_evaluate(model, traj, "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert "| interpolation | linear atoms |" in printed and "wrote summary.md" in printed
    summary = {(r["protocol"], r["method"]): r for r in json.loads((out / "results.json").read_text())["summary"]}
    assert summary["reconstruction", "DSR"]["n"] == 5 and summary["interpolation", "DSR"]["n"] == 5
    assert summary["future 1-10", "DSR"]["n"] == 2
    # linear atom motion: blending coordinates reproduces the held-out surface up to the evaluation grid
    assert summary["interpolation", "linear atoms"]["iou"] > 0.97
    assert summary["interpolation", "linear atoms"]["iou"] > summary["interpolation", "nearest frame"]["iou"]
    assert summary["reconstruction", "DSR"]["iou"] > 0.7
    assert (out / "iou.png").stat().st_size > 1000


@pytest.mark.parametrize("extra, message", [
    (["--frames", "0-40"], "reaches outside 0-11"),
    (["--frames", "0:40"], "former Python slice; write all"),
    (["--frames", "2:40:2"], "former Python slice; write 2-10:2"),
    (["--frames", "30"], "reaches outside 0-11"),
    (["--train-frames", "0-8:2", "--protein", "other"], "unknown protein 'other'"),
    (["--resolution", "4"], "resolution must lie in [8, 512], got 4"),
])
def test_cli_bad_input(atom_model, capsys, extra, message):
    _, traj, model = atom_model
    assert run_evaluate(model, traj, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_another_system(atom_model, capsys):
    folder, _, model = atom_model
    other = folder / "other.xyz"
    write_xyz(other, shift=6.0, scale=1.6)
    assert run_evaluate(model, other, "--no-baselines") == 2
    assert "does not match the model's system" in capsys.readouterr().err


def test_cli_needs_the_training_frames(atom_model, capsys, tmp_path):
    _, traj, model = atom_model
    state = torch.load(model, weights_only=True)
    state["metadata"]["series"] = str(tmp_path / "gone.npz")
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    assert run_evaluate(moved, traj) == 2
    assert "--train-frames" in capsys.readouterr().err
    assert run_evaluate(moved, traj, "--train-frames", "0-8:2", "--no-baselines", "--frames", "0-3") == 0


def test_training_times_are_those_of_the_protein_scored(sphere_series, tmp_path):
    from dsr_backend import SurfaceSeries, preset, train
    from dsr_backend.evaluate_command import training_times

    two = SurfaceSeries(sphere_series.points, sphere_series.normals, times=[1.0, 3.0, 5.0, 2.0, 4.0],
                        proteins=[0, 0, 0, 1, 1], protein_names=["a", "b"])
    path = tmp_path / "two.npz"
    two.save(path)
    model = train(two, preset("tiny", num_proteins=2, steps=2), device="cpu",
                  metadata={"series": str(path)}).model
    reference = ReferenceFrames.from_series(two)
    assert training_times(model, reference, None, "a") == [1.0, 3.0, 5.0]
    assert training_times(model, reference, None, 1) == [2.0, 4.0]
