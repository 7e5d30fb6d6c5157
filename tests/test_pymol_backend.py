"""The embedded backends: choosing one, the subprocess worker and its JSON-lines protocol, missing torch."""
import os
import re
import stat
import sys
import time

import numpy as np
import pymol2
import pytest
from pymol import CmdException, cmd
from scipy.spatial import cKDTree

from dsr_backend.engine import Engine, _Job
from dsr_backend.train import StepPace
from dsr_backend.series import SurfaceSeries
from pymol_dsr import backend as backends
from pymol_dsr.atoms import extract_atoms
from pymol_dsr.backend import SubprocessBackend, embedded_backend
from pymol_dsr.commands import dsr_backend, dsr_surface, dsr_train, register
from pymol_dsr.training import atom_arrays, duration, progress_line
from tests.conftest import hinge_peptide

ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def worker():
    backend = SubprocessBackend(sys.executable, env=ONE_THREAD)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def peptide_arrays():
    cmd.reinitialize()
    hinge_peptide(states=3)
    arrays = atom_arrays(extract_atoms("pep"))
    coords = {state: cmd.get_coords("pep", state) for state in (1, 2, 3)}
    cmd.reinitialize()
    return arrays, coords


def test_the_worker_trains_and_answers_queries_with_arrays(worker, peptide_arrays, tmp_path):
    arrays, coords = peptide_arrays
    assert worker.describe()["pid"] != os.getpid() and "tiny" in worker.describe()["presets"]
    job = worker.submit_train(dict(name="w", preset="tiny", steps=60, device="cpu", protein_names=["pep"]), arrays)
    status = worker.wait(job, timeout=120)
    assert status["state"] == "done" and status["step"] == 60
    assert worker.job(job)["state"] == "done"  # from the streamed job events
    (row,) = worker.surfaces("w", [0.0], [0.0], resolution=48, protein="pep", with_speed=True)
    mesh = row[0]
    assert mesh["vertices"].dtype == np.float32 and mesh["faces"].shape[1] == 3
    assert mesh["speed"].shape == (len(mesh["vertices"]),)
    assert cKDTree(coords[1]).query(mesh["vertices"])[0].mean() < 2.5
    with pytest.raises(CmdException, match="min_component is a fraction"):
        worker.surfaces("w", [0.5], [0.0], min_component=3.0)
    grid = worker.sdf_grid("w", 0.5, resolution=16)
    assert grid["grid"].shape == (16, 16, 16) and len(grid["origin"]) == 3 and grid["spacing"] > 0
    worker.save_model("w", str(tmp_path / "w.pt"))
    assert worker.load_model(str(tmp_path / "w.pt"), "w2")["protein_names"] == ["pep"]
    assert [info["name"] for info in worker.models()] == ["w", "w2"]
    assert worker.delete_model("w2") == {"name": "w2"}
    assert [info["name"] for info in worker.models()] == ["w"]
    with pytest.raises(CmdException, match="no DSR model named 'w2'"):
        worker.delete_model("w2")
    engine = Engine()
    try:
        own_files = lambda: os.listdir(engine._workdir)  # noqa: E731
        for _ in range(2):  # loading a name again replaces the model and its private copy
            engine.load_model(str(tmp_path / "w.pt"), "copy", device="cpu")
        assert len(own_files()) == 1 and [info["name"] for info in engine.models()] == ["copy"]
        engine.delete_model("copy")
        assert own_files() == [] and engine.models() == []
        assert (tmp_path / "w.pt").is_file()  # the caller's file is never touched
    finally:
        engine.close()


def test_the_probe_radius_shapes_the_surfaces_the_engine_computes(peptide_arrays, tmp_path):
    arrays, coords = peptide_arrays
    engine = Engine()
    distance = {}
    try:
        for probe in (0.0, 1.4):
            folder = tmp_path / f"probe{probe}"
            folder.mkdir()
            job = engine.submit_train(dict(name=f"p{probe}", preset="tiny", steps=1, device="cpu", probe=probe),
                                      arrays, job_dir=str(folder))
            assert engine.wait(job, timeout=120)["state"] == "done"
            points = SurfaceSeries.load(folder / "series.npz").points[0]
            distance[probe] = cKDTree(coords[1]).query(points)[0]
        with pytest.raises(Exception, match=r"probe must be a radius in Å from 0 to 10"):
            engine.submit_train(dict(name="bad", preset="tiny", probe=-1.0), arrays)
    finally:
        engine.close()
    assert distance[0.0].max() < 2.1  # on the van der Waals spheres (radii up to 1.8 Å, grid error)
    # the probe smooths over the crevices: less surface (fewer points), further from the atom centres
    assert len(distance[1.4]) < 0.9 * len(distance[0.0]) and distance[1.4].mean() > distance[0.0].mean() + 0.05


def test_the_time_left_is_paced_by_the_steps_after_the_compiling_ones():
    job = _Job(id="j", name="m")
    job.start_training(0, 1000)
    time.sleep(1.0)  # the first steps compile: slow
    for step in range(1, StepPace.WARMUP_STEPS + 1):
        job.advance(step, 1000, 1.0)
        assert "eta" not in job.snapshot()
    for step in range(StepPace.WARMUP_STEPS + 1, 101):  # then about a thousand steps a second
        time.sleep(0.001)
        job.advance(step, 1000, 1.0)
    snapshot = job.snapshot()
    # counted from the start, 100 steps in 1.1 s would promise 10 s more; the 97 since the warm-up take ~0.1 s
    assert 0 < snapshot["eta"] < 5 and snapshot["rate"] > 180
    job.state = "done"
    assert "eta" not in job.snapshot() and job.snapshot()["rate"] == snapshot["rate"]


def test_an_engine_job_reports_its_pace_once_the_warm_up_is_over(peptide_arrays):
    arrays, _ = peptide_arrays
    snapshots = []
    engine = Engine(on_update=snapshots.append)
    try:
        job = engine.submit_train(dict(name="paced", preset="tiny", steps=40, device="cpu"), arrays)
        final = engine.wait(job, timeout=120)
    finally:
        engine.close()
    assert final["state"] == "done" and final["rate"] > 0 and "eta" not in final
    assert all("eta" not in s for s in snapshots if s["step"] <= StepPace.WARMUP_STEPS)


@pytest.mark.parametrize("seconds, said", [(0.4, "0 s"), (45, "45 s"), (99, "99 s"), (100, "2 min"),
                                           (750, "12 min"), (3569, "59 min"), (3570, "1 h 0 min"),
                                           (7012, "1 h 57 min")])
def test_durations_read_as_people_say_them(seconds, said):
    assert duration(seconds) == said


def test_a_progress_line_says_the_steps_the_loss_and_the_time_left():
    job = dict(name="adk", state="running", phase="training", step=800, total=37500, loss=0.01234,
               seconds=160.0, eta=7012.0)
    assert progress_line(job) == "adk: training 2% (800/37500 steps), loss 0.01234, 3 min, about 1 h 57 min left"
    assert progress_line(dict(job, step=37500)).endswith("loss 0.01234, 3 min")


def test_worker_errors_come_back_as_one_line_messages(worker):
    with pytest.raises(CmdException, match="no DSR model named 'ghost'"):
        worker.surfaces("ghost", [0.5], [0.0])
    with pytest.raises(CmdException, match="unknown preset"):
        worker.submit_train(dict(name="x", preset="huge"), {"times": np.zeros(1)})
    assert worker.describe()["torch"]  # still serving


def test_commands_on_the_subprocess_backend(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    instance = pymol2.PyMOL()
    instance.start()
    try:
        register(instance.cmd)
        own = instance.cmd
        own.fab("ACDEFGHIKLMN", "pep", ss=1)
        assert dsr_backend("subprocess", sys.executable, _self=own)["label"].startswith("subprocess")
        dsr_train("pep", name="sub", preset="tiny", steps=60, _self=own)
        dsr_surface(t="0", model="sub", name="surf", _self=own)
        assert own.get_type("surf") == "object:cgo"
        low, high = np.array(own.get_extent("surf"))
        atoms = own.get_coords("pep")
        assert np.all(np.abs(low - atoms.min(axis=0)) < 4) and np.all(np.abs(high - atoms.max(axis=0)) < 4)
        dsr_backend("embedded", _self=own)
    finally:
        instance.stop()


def test_a_python_without_the_backend_names_the_pip_command(tmp_path):
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # -S: no site-packages, no dsr_backend
    bare.chmod(bare.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(CmdException, match=r"did not start .*No module named.*-m pip install torch \""):
        SubprocessBackend(str(bare))
    with pytest.raises(CmdException, match="cannot run the Python '/no/such/python'"):
        SubprocessBackend("/no/such/python")


def test_without_torch_and_without_a_python_the_error_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(backends, "torch_in_pymol", lambda: False)
    monkeypatch.delenv(backends.PYTHON_VARIABLE, raising=False)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with pytest.raises(CmdException, match=rf'-m pip install torch "{re.escape(root)}" .*PYMOL_DSR_PYTHON'):
        embedded_backend()
    assert os.path.isfile(os.path.join(backends.source_folder(), "setup.py"))
    with pytest.raises(CmdException, match="unknown backend 'remote'"):
        embedded_backend("remote")


def test_an_engine_removes_the_work_folders_of_dead_processes(tmp_path):
    import tempfile

    from dsr_backend.engine import WORKDIR_PREFIX

    root = tempfile.gettempdir()
    dead = os.path.join(root, f"{WORKDIR_PREFIX}999999999-leftover")
    alive = os.path.join(root, f"{WORKDIR_PREFIX}{os.getpid()}-inuse")
    for folder in (dead, alive):
        os.makedirs(folder, exist_ok=True)
    engine = Engine()
    try:
        assert not os.path.exists(dead) and os.path.isdir(alive)
    finally:
        engine.close()
        os.rmdir(alive)
