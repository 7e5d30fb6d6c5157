"""The ``dsr`` command line end to end on tiny inputs, through its real entry point."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from dsr_backend.cli import main
from dsr_backend.meshio import read_ply
from dsr_backend.series import SurfaceSeries
from dsr_backend.trained import TrainedModel
from tests.damaged import damaged_checkpoints
from tests.shapes import box


@pytest.fixture(scope="module")
def cli_model(sphere_series, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    series_path = folder / "series.npz"
    sphere_series.save(series_path)
    model_path = folder / "model.pt"
    assert main(["train", str(series_path), "-o", str(model_path), "--preset", "tiny", "--steps", "150",
                 "--device", "cpu", "-q"]) == 0
    return folder, series_path, model_path


def test_train_surface_info_end_to_end(cli_model, sphere, capsys):
    folder, _, model_path = cli_model
    out = folder / "mid.ply"
    assert main(["surface", str(model_path), "--t", "0.5", "--resolution", "40", "--speed", "-o", str(out)]) == 0
    mesh = read_ply(out)
    assert len(mesh["faces"]) > 500
    assert np.abs(sphere.sdf(mesh["vertices"], 5.0)).mean() < 0.6
    assert mesh["value_name"] == "speed" and mesh["values"].shape == (len(mesh["vertices"]),)
    capsys.readouterr()
    assert main(["info", str(model_path)]) == 0
    text = capsys.readouterr().out
    assert "tiny" in text and "150 of 150" in text and "1 .. 9" in text
    assert re.search(r"150 of 150, \d+ s of training\n", text)
    size = model_path.stat().st_size / 1e6
    assert f"file         {size:.1f} MB, model, float32 weights" in text
    assert not (folder / "model.resume.pt").exists()  # the run completed: the model only


def test_float16_storage_and_what_dsr_info_says_of_it(cli_model, tmp_path, capsys):
    _, series_path, model_path = cli_model
    half = tmp_path / "half.pt"
    assert main(["train", str(series_path), "-o", str(half), "--preset", "tiny", "--steps", "2", "--device", "cpu",
                 "--storage", "float16", "-q"]) == 0
    assert half.stat().st_size < 0.6 * model_path.stat().st_size
    capsys.readouterr()
    assert main(["info", str(half)]) == 0
    assert "model, float16 weights" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["train", str(series_path), "-o", str(half), "--storage", "float8", "-q"])
    assert stop.value.code == 2
    assert "invalid choice: 'float8'" in capsys.readouterr().err


def test_several_times_and_levels_write_one_file_each(cli_model):
    folder, _, model_path = cli_model
    assert main(["surface", str(model_path), "--t", "0-1:0.5", "--level", "0", "1", "--resolution", "24",
                 "-o", str(folder / "s.obj")]) == 0
    names = sorted(p.name for p in folder.glob("s_t*.obj"))
    assert names == [f"s_t{t}_level{lv}.obj" for t in ("0.000", "0.500", "1.000") for lv in ("+0.00", "+1.00")]


def test_state_selects_fractional_frame(cli_model, sphere):
    folder, _, model_path = cli_model
    assert main(["surface", str(model_path), "--state", "7", "--resolution", "32", "-o", str(folder / "st.ply")]) == 0
    vertices = read_ply(folder / "st.ply")["vertices"]
    assert np.abs(sphere.sdf(vertices, 7.0)).mean() < np.abs(sphere.sdf(vertices, 1.0)).mean()


def test_resume_from_cli(cli_model, tmp_path, capsys):
    _, series_path, model_path = cli_model
    copy = tmp_path / "again.pt"
    copy.write_bytes(model_path.read_bytes())
    assert main(["train", str(series_path), "-o", str(copy), "--resume", str(copy), "--steps", "160",
                 "--device", "cpu", "-q"]) == 0
    assert "has no resume checkpoint beside it: training goes on from its weights" in capsys.readouterr().out
    from dsr_backend import TrainedModel
    assert TrainedModel.load(copy).step == 160


def test_surfaces_from_a_trajectory(tmp_path):
    from MDAnalysisTests.datafiles import DCD, PSF

    out = tmp_path / "adk.npz"
    assert main(["molsurf", PSF, DCD, "--frames", "0-10:10", "--spacing", "0.7", "-o", str(out), "-q"]) == 0
    series = SurfaceSeries.load(out)
    assert series.num_frames == 2 and series.times.tolist() == [0.0, 10.0]
    assert series.protein_names == ["adk"]
    assert all(len(p) > 10000 for p in series.points)


def test_molsurf_makes_a_solvated_protein_whole(tmp_path):
    from MDAnalysisTests.datafiles import GRO, XTC

    out = tmp_path / "whole.npz"
    assert main(["molsurf", GRO, XTC, "--frames", "0", "--whole", "--center", "--fit", "name CA", "--spacing", "0.8",
                 "-o", str(out), "-q"]) == 0
    (points,) = SurfaceSeries.load(out).points
    assert np.ptp(points, axis=0).max() < 70  # one protein, not pieces across the 80 Å box


def test_molsurf_refuses_a_former_frame_slice_with_the_range_it_meant(tmp_path, capsys):
    from MDAnalysisTests.datafiles import DCD, PSF

    assert main(["molsurf", PSF, DCD, "--frames", "0:80:2", "-o", str(tmp_path / "x.npz"), "-q"]) == 2
    assert "'0:80:2' is a former Python slice; write 0-78:2" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_the_former_name_of_molsurf_says_the_new_one(tmp_path, capsys):
    assert main(["surfaces", "adk.psf", "-o", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.strip() == "dsr: error: 'dsr surfaces' is now 'dsr molsurf' (same options)"
    assert not (tmp_path / "x.npz").exists()


def test_series_from_given_oriented_points(tmp_path, sphere_series):
    from dsr_backend.meshio import write_obj, write_ply

    paths = []
    for frame in range(2):
        points, normals = sphere_series.points[frame], sphere_series.normals[frame]
        path = tmp_path / (f"f{frame}.ply" if frame == 0 else f"f{frame}.obj")
        (write_ply if frame == 0 else write_obj)(path, points, np.zeros((0, 3), int), normals)
        paths.append(str(path))
    out = tmp_path / "given.npz"
    assert main(["series", *paths, "--times", "1", "3", "--name", "ball", "-o", str(out)]) == 0
    series = SurfaceSeries.load(out)
    assert np.array_equal(series.points[0], sphere_series.points[0])  # taken unchanged
    assert np.allclose(series.normals[1], sphere_series.normals[1], atol=1e-6)
    assert series.times.tolist() == [1.0, 3.0] and series.protein_names == ["ball"]


@pytest.mark.parametrize("argv, message", [
    (["series", "{tmp}/nonormals.ply", "-o", "{tmp}/x.npz"], "has no vertex normals"),
    (["train", "{series}", "-o", "{tmp}/x.pt", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "{tmp}/missing.npz", "-o", "{tmp}/x.pt"], "no such series file"),
    (["surface", "{tmp}/garbage.pt", "-o", "{tmp}/x.ply"], "not a readable pymol-dsr checkpoint"),
    (["surface", "{model}", "--t", "nan", "-o", "{tmp}/x.ply"], "--t must be a finite number"),
    (["surface", "{model}", "--t", "0.5", "--resolution", "3", "-o", "{tmp}/x.ply"], "resolution must lie in [8, 512], got 3"),
    (["surface", "{model}", "--min-component", "2", "-o", "{tmp}/x.ply"], "min_component is a fraction"),
    (["surface", "{model}", "--t", "0.5", "--resolution", "100000", "-o", "{tmp}/x.ply"], "resolution must lie in [8, 512], got 100000"),
    (["surface", "{model}", "--t", "0.5", "-o", "{tmp}/x.stl"], "output must end in .ply or .obj"),
    (["surface", "{model}", "--t", "a:b", "-o", "{tmp}/x.ply"], "cannot read --t 'a:b'"),
    (["surface", "{model}", "--t", "0:1:5", "-o", "{tmp}/x.ply"], "--t '0:1:5' is a former form; write 0-1:0.25"),
    (["surface", "{model}", "--t", "0-0.001:0.0005", "-o", "{tmp}/x.ply"], "would both write"),
    (["surface", "{model}", "--t", "0-1:0.001", "-o", "{tmp}/x.ply"], "too many --t values: at most 256"),
    (["surface", "{model}", "--t", "1e39", "-o", "{tmp}/x.ply"], "--t must be a finite number of at most 1e9"),
    (["surface", "{model}", "--state", "1e308", "-o", "{tmp}/x.ply"], "--state must be a finite number"),
    (["molsurf", "{tmp}/none.psf", "-o", "{tmp}/x.npz"], "none.psf"),
    (["train", "{series}", "-o", "{tmp}/missing/x.pt", "--preset", "tiny"], "folder {tmp}/missing does not exist"),
    (["train", "{series}", "-o", "{tmp}", "--preset", "tiny"], "cannot write {tmp}: it is a folder"),
    (["surface", "{model}", "-o", "{tmp}/missing/x.ply"], "folder {tmp}/missing does not exist"),
    (["measure", "{model}", "-o", "{tmp}/missing/x.png"], "folder {tmp}/missing does not exist"),
])
def test_bad_input_exits_nonzero_with_one_line(cli_model, tmp_path, capsys, argv, message):
    _, series_path, model_path = cli_model
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    from dsr_backend.meshio import write_ply
    write_ply(tmp_path / "nonormals.ply", np.eye(3, dtype=np.float32), np.array([[0, 1, 2]]))
    filled = [a.format(tmp=tmp_path, series=series_path, model=model_path) for a in argv]
    assert main(filled) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(tmp=tmp_path) in err and len(err.splitlines()) == 1
    assert not any((tmp_path / name).exists() for name in ("x.pt", "x.ply", "x.npz"))


def test_console_script_runs_as_a_process(cli_model):
    _, _, model_path = cli_model
    done = subprocess.run([sys.executable, "-m", "dsr_backend.cli", "info", str(model_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "tiny" in done.stdout
    failed = subprocess.run([sys.executable, "-m", "dsr_backend.cli", "info", "/nonexistent.pt"],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "no such checkpoint file" in failed.stderr




def test_measure_prints_area_and_volume_over_time_and_plots_them(cli_model, sphere, tmp_path, capsys):
    _, _, model_path = cli_model
    assert main(["measure", str(model_path), "--t", "0-1:0.5", "--resolution", "48",
                 "-o", str(tmp_path / "sizes.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[float(v) for v in line.split()] for line in lines[1:4]]
    model = TrainedModel.load(model_path)
    for t, time, area, volume in rows:
        radius = sphere.radius(time)  # the tiny model of a growing sphere: near the true sizes
        assert area == pytest.approx(4 * np.pi * radius ** 2, rel=0.15)
        assert volume == pytest.approx(4 / 3 * np.pi * radius ** 3, rel=0.15)
        assert time == pytest.approx(float(model.time_map.fraction_to_time(t)))
    assert (tmp_path / "sizes.png").stat().st_size > 10_000


def test_area_and_volume_of_a_box():
    from dsr_backend.measure import area_and_volume

    corners, faces = box((2.0, 3.0, 4.0))
    assert area_and_volume(corners, faces) == pytest.approx((52.0, 24.0))


def test_damaged_checkpoints_are_one_line_errors(cli_model, tmp_path, capsys):
    _, _, model_path = cli_model
    for path, message in damaged_checkpoints(model_path, tmp_path):
        for argv in (["info", str(path)], ["surface", str(path), "-o", str(tmp_path / "x.ply")]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert message in err and str(path) in err and len(err.splitlines()) == 1, err
    torch.save({"format": "pymol-dsr", "trap": ConfigDict()}, tmp_path / "objects.pt")
    assert main(["info", str(tmp_path / "objects.pt")]) == 2
    err = capsys.readouterr().err
    assert "holds Python objects besides tensors and numbers" in err and "weights_only" not in err


class ConfigDict(dict):
    """A class of the test's own: loading it would need unpickling code."""


@pytest.mark.parametrize("change, message", [
    (lambda a: [a.pop("frame_sizes"), a.pop("version")], "is incomplete: missing version, frame_sizes"),
    (lambda a: a.update(scale=np.array(0.0)), "is not a finite box of positive size"),
    (lambda a: a.update(time_range=np.array([np.nan, 4.0])), "is not a finite range"),
    (lambda a: a.update(center=np.array([0.0, 0.0, 1e30])), "is not a finite box of positive size"),
    (lambda a: a.update(time_range=np.array([0.0, 1e20])), "is not a finite range"),
    (lambda a: a.update(frame_sizes=np.array([[1, 2]])), "frame sizes do not add up"),
])
def test_damaged_series_are_one_line_errors(cli_model, tmp_path, capsys, change, message):
    _, series_path, _ = cli_model
    with np.load(series_path) as data:
        arrays = {key: data[key] for key in data.files}
    change(arrays)
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **arrays)
    before = damaged.read_bytes()
    assert main(["train", str(damaged), "-o", str(tmp_path / "x.pt"), "--preset", "tiny", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(damaged) in err and len(err.splitlines()) == 1, err
    assert damaged.read_bytes() == before and not (tmp_path / "x.pt").exists()


def test_minutes_train_for_a_time_budget_and_must_be_positive(cli_model, tmp_path, capsys):
    _, series_path, _ = cli_model
    model = tmp_path / "budget.pt"
    assert main(["train", str(series_path), "-o", str(model), "--preset", "tiny", "--minutes", "0.02",
                 "--device", "cpu"]) == 0
    state = torch.load(model, weights_only=True)
    assert 0 < state["step"] < 400 and state["seconds"] == pytest.approx(1.2, abs=0.5)  # tiny: 400 steps
    capsys.readouterr()
    assert main(["info", str(model)]) == 0
    assert re.search(rf"{state['step']} of {state['step']}, \d s of training of a 0.02-minute budget\n",
                     capsys.readouterr().out)
    for minutes, message in (("0", "--minutes must be positive, got 0"),
                             ("-1", "--minutes must be positive, got -1")):
        assert main(["train", str(series_path), "-o", str(tmp_path / "x.pt"), "--minutes", minutes]) == 2
        assert message in capsys.readouterr().err
    assert main(["train", str(series_path), "-o", str(tmp_path / "x.pt"), "--minutes", "1", "--steps", "5"]) == 2
    assert "not both" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_training_removes_what_an_interrupted_write_of_its_output_left(cli_model, tmp_path):
    _, series_path, _ = cli_model
    orphan, other = tmp_path / ".model.pt.0123456789ab.tmp", tmp_path / ".other.pt.0123456789ab.tmp"
    orphan.write_bytes(b"half a checkpoint")
    other.write_bytes(b"another file's write")
    assert main(["train", str(series_path), "-o", str(tmp_path / "model.pt"), "--preset", "tiny", "--steps", "2",
                 "-q"]) == 0
    assert not orphan.exists() and other.exists() and (tmp_path / "model.pt").is_file()


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_old_file(cli_model, tmp_path):
    import resource
    import signal

    _, series_path, _ = cli_model
    model = tmp_path / "model.pt"
    model.write_bytes(b"the model saved before")

    def small_files() -> None:  # writes past 20 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    done = subprocess.run([sys.executable, "-m", "dsr_backend.cli", "train", str(series_path), "-o", str(model),
                           "--preset", "tiny", "--steps", "3", "-q"], capture_output=True, text=True, timeout=300,
                          preexec_fn=small_files)
    assert done.returncode == 2, done.stderr
    assert f"cannot write the checkpoint {model} at step 3: File too large" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert model.read_bytes() == b"the model saved before"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no half-written leftovers


def test_ctrl_c_during_a_long_request_is_one_line(cli_model, tmp_path):
    import signal

    _, _, model_path = cli_model
    process = subprocess.Popen([sys.executable, "-m", "dsr_backend.cli", "surface", str(model_path), "--t", "0-1:0.004",
                                "--resolution", "64", "-o", str(tmp_path / "many.ply")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout.readline().startswith("wrote ")  # the first of 251 surfaces written, 250 to go
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.strip().splitlines()[-1] == "dsr surface: interrupted"
    assert "Traceback" not in err
