"""``dsr_evaluate`` in headless PyMOL: a tiny model against its object's states, in-process and in a worker."""
import sys

import pytest
from pymol import CmdException, cmd

import pymol_dsr  # noqa: F401  (registers the commands)
from pymol_dsr.evaluation import dsr_evaluate
from pymol_dsr.session import session_for
from tests.server_process import ServerProcess
from tests.conftest import hinge_peptide



@pytest.fixture(scope="module")
def trained_peptide(tmp_path_factory):
    """The tiny model trained on states 1, 3, 5 of a 7-state hinge peptide, saved to a file."""
    cmd.reinitialize()
    cmd.feedback("disable", "all", "everything")
    session_for(cmd).set_backend("thread")
    hinge_peptide("pep", 7)
    cmd.do("dsr_train pep, states=1-5:2, name=pep_dsr, preset=tiny, steps=150")
    path = tmp_path_factory.mktemp("evaluate") / "pep_dsr.pt"
    cmd.do(f"dsr_save pep_dsr, {path}")
    return path


def rows(result):
    return {(row["protocol"], row["method"]): row for row in result["summary"]}


def test_table_of_the_model_against_its_states(trained_peptide, capsys):
    assert "dsr_evaluate" in cmd.keyword
    result = dsr_evaluate("pep_dsr", resolution=32, samples=3000, quiet=0)
    printed = capsys.readouterr().out
    assert "| reconstruction | DSR | 3 |" in printed and "| interpolation | linear atoms | 3 |" in printed
    scores = rows(result)
    assert scores["future 1-10", "DSR"]["n"] == 1
    assert scores["reconstruction", "floor"]["iou"] == 1.0 and scores["reconstruction", "floor"]["nc"] > 0.95
    assert 0.3 < scores["reconstruction", "DSR"]["iou"] <= 1.0
    assert scores["interpolation", "linear atoms"]["iou"] > scores["interpolation", "nearest frame"]["iou"]


def test_same_scores_from_the_subprocess_worker(trained_peptide):
    in_process = dsr_evaluate("pep_dsr", states="2 3", resolution=32, samples=3000)
    session = session_for(cmd)
    try:
        session.set_backend("subprocess", sys.executable)
        cmd.do(f"dsr_load {trained_peptide}, pep_dsr")
        worker = dsr_evaluate("pep_dsr", states="2 3", resolution=32, samples=3000)
    finally:
        session.set_backend("thread")
        cmd.do(f"dsr_load {trained_peptide}, pep_dsr")
    for key, row in rows(in_process).items():
        assert rows(worker)[key]["iou"] == pytest.approx(row["iou"], abs=1e-9)
        assert rows(worker)[key]["chamfer"] == pytest.approx(row["chamfer"], rel=1e-6)


def test_same_scores_from_the_remote_backend(trained_peptide, tmp_path):
    in_process = dsr_evaluate("pep_dsr", states="2 6", resolution=32, samples=3000)
    server = ServerProcess(tmp_path / "data").start()
    session = session_for(cmd)
    try:
        cmd.do(f"dsr_backend url={server.url}, token_file={server.token_file}")
        cmd.do(f"dsr_load {trained_peptide}, pep_dsr")
        remote = dsr_evaluate("pep_dsr", states="2 6", resolution=32, samples=3000)
    finally:
        session.set_backend("thread")
        cmd.do(f"dsr_load {trained_peptide}, pep_dsr")
        server.stop()
    assert rows(remote).keys() == rows(in_process).keys()
    for key, row in rows(in_process).items():
        assert rows(remote)[key]["iou"] == pytest.approx(row["iou"], abs=1e-9)
        assert rows(remote)[key]["chamfer"] == pytest.approx(row["chamfer"], rel=1e-6)
    assert remote["table"] == in_process["table"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(object="other"), "has no object 'other'"),
    (dict(states="5-9"), "out of range"),
    (dict(train_states="9"), "out of range"),
    (dict(model="nothing"), "no DSR model named 'nothing'"),
])
def test_bad_input(trained_peptide, kwargs, message):
    with pytest.raises(CmdException, match=message):
        dsr_evaluate(**{"model": "pep_dsr", "resolution": 32, "samples": 3000, **kwargs})


def test_another_object_is_refused(trained_peptide):
    cmd.fab("GGGGGGGGGGGGGGGGGGGGGGGG", "long", ss=1)
    cmd.set_name("pep", "pep_original")
    cmd.set_name("long", "pep")
    try:
        with pytest.raises(CmdException, match="does not match the model's system"):
            dsr_evaluate("pep_dsr", states="1", train_states="1", resolution=32, samples=3000, baselines=0)
    finally:
        cmd.delete("pep")
        cmd.set_name("pep_original", "pep")


def test_a_model_of_pymols_surface_is_refused(trained_peptide):
    cmd.do("dsr_train pep, states=1 3, name=pep_pymol, preset=tiny, steps=3, surface=pymol")
    with pytest.raises(CmdException, match="learned PyMOL's own surface"):
        dsr_evaluate("pep_pymol", resolution=32, samples=3000)
