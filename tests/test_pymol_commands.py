"""The commands end to end in headless PyMOL, on the in-process backend with tiny models."""
import re
import time

import numpy as np
import pymol2
import pytest
from pymol import CmdException, cgo, cmd
from scipy.spatial import cKDTree

import pymol_dsr  # noqa: F401  (registers the commands)
from pymol_dsr.commands import dsr_list, dsr_status, dsr_surface, dsr_train, dsr_wait, register, update_preview
from pymol_dsr.session import session_for
from tests.conftest import hinge_peptide
from tests.damaged import damaged_checkpoints

MODEL = "pep_model"
OPERANDS = {cgo.BEGIN: 1, cgo.END: 0, cgo.COLOR: 3, cgo.NORMAL: 3, cgo.VERTEX: 3}


@pytest.fixture(scope="module")
def trained():
    """The tiny model trained on states 1-5 of the hinge peptide (typed as a user would)."""
    cmd.reinitialize()
    hinge_peptide()
    cmd.do(f"dsr_train pep, states=1-5, name={MODEL}, preset=tiny, steps=150")
    assert MODEL in [info["name"] for info in session_for(cmd).backend().models()]
    return MODEL


@pytest.fixture(autouse=True)
def peptide(fresh_pymol):
    """A fresh PyMOL holding the hinged peptide."""
    hinge_peptide()


def read_cgo(name: str, state: int = 1) -> list[dict]:
    """The BEGIN..END blocks of one state of a CGO object as PyMOL stores it: mode, colours, vertices."""
    entry = next(item for item in cmd.get_session(name)["names"] if item and item[0] == name)
    stored = entry[5][2][state - 1]
    stream = stored[0][1] if stored and stored[0] else []
    blocks, color, index = [], None, 0
    while index < len(stream) and stream[index] in OPERANDS:
        op = stream[index]
        values = stream[index + 1:index + 1 + OPERANDS[op]]
        if op == cgo.BEGIN:
            blocks.append({"mode": values[0], "colors": [], "vertices": []})
        elif op == cgo.COLOR:
            color = values
        elif op == cgo.VERTEX:
            blocks[-1]["vertices"].append(values)
            blocks[-1]["colors"].append(color)
        index += 1 + OPERANDS[op]
    return [{key: np.asarray(value) if key != "mode" else value for key, value in block.items()} for block in blocks]


def object_rgb(name: str) -> tuple[float, float, float]:
    return cmd.get_color_tuple(cmd.get_object_color_index(name))


def distances(vertices: np.ndarray, state: int, selection: str = "pep") -> np.ndarray:
    return cKDTree(cmd.get_coords(selection, state)).query(vertices)[0]


def test_surface_at_t_lies_on_the_atoms_of_the_matching_state(trained):
    for t, state, other in ((0, 1, 5), (1, 5, 1)):
        cmd.do(f"dsr_surface t={t}, model={trained}, name=surf{t}")
        (block,) = read_cgo(f"surf{t}")
        assert block["mode"] == cgo.TRIANGLES and len(block["vertices"]) > 3000
        near = distances(block["vertices"], state)
        assert near.mean() < 2.2 and np.percentile(near, 99) < 3.5  # Å, on a peptide with vdW radii ~1.1-1.9
        assert near.mean() < distances(block["vertices"], other).mean()
        assert block["colors"][0] is None  # drawn in the object's colour, white
        assert object_rgb(f"surf{t}") == pytest.approx((1.0, 1.0, 1.0))


def test_default_name_and_time_is_the_current_state(trained, capsys):
    cmd.frame(3)
    assert dsr_surface(model=trained, quiet=0) == f"{trained}_s3"
    assert "t = 0.5 (state 3)" in capsys.readouterr().out
    assert dsr_surface(t="0.25", model=trained) == f"{trained}_t0.25"


def test_a_t_range_gives_one_state_per_time(trained):
    cmd.do(f"dsr_surface t=0-1:0.25, model={trained}, name=movie")
    assert cmd.count_states("movie") == 5
    assert all(len(read_cgo("movie", state)[0]["vertices"]) > 1000 for state in (1, 3, 5))


def test_times_on_whole_states_line_up_with_the_atom_states(trained):
    cmd.do(f"dsr_surface state=2-4, model={trained}, name=aligned")
    assert cmd.count_states("aligned") == 4
    assert read_cgo("aligned", 1) == []
    for state in (2, 3, 4):
        assert distances(read_cgo("aligned", state)[0]["vertices"], state).mean() < 2.2


def test_every_state_of_a_stepped_range_holds_a_surface(trained):
    cmd.do(f"dsr_surface state=1-last:2, model={trained}, name=stepped")
    assert cmd.count_states("stepped") == 5
    held = [read_cgo("stepped", state)[0]["vertices"] for state in range(1, 6)]
    assert all(len(vertices) > 1000 for vertices in held)
    np.testing.assert_array_equal(held[1], held[0])  # state 2 holds the surface of state 1
    assert distances(held[2], 3).mean() < 2.2


def test_a_fractional_step_and_atoms_in_step(trained):
    cmd.do(f"dsr_surface state=2-3:0.5, model={trained}, name=half, atoms=1")
    assert cmd.count_states("half") == 3 and cmd.count_states("half_atoms") == 3
    assert cmd.get_type("half_atoms") == "object:molecule"
    middle = 0.5 * (cmd.get_coords("pep", 2) + cmd.get_coords("pep", 3))
    np.testing.assert_allclose(cmd.get_coords("half_atoms", 2), middle, atol=1e-3)
    np.testing.assert_allclose(cmd.get_coords("half_atoms", 3), cmd.get_coords("pep", 3), atol=1e-3)
    vertices = read_cgo("half", 2)[0]["vertices"]
    assert cKDTree(middle).query(vertices)[0].mean() < 2.2


def test_pymol_colour_and_transparency_act_on_a_surface(trained):
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=plain")
    cmd.do("color red, plain")
    assert object_rgb("plain") == pytest.approx((1.0, 0.0, 0.0))
    cmd.do("set cgo_transparency, 0.4, plain")
    assert cmd.get_setting_float("cgo_transparency", "plain") == pytest.approx(0.4)
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=named, color=orange")
    assert object_rgb("named") == pytest.approx(cmd.get_color_tuple("orange"))


def test_atom_colours_go_onto_the_surface(trained):
    cmd.color("grey50", "pep")
    cmd.color("blue", "pep and resi 1-6")
    cmd.color("yellow", "pep and resi 7-12")
    cmd.do(f"dsr_surface state=3, model={trained}, name=painted, color=atoms")
    (block,) = read_cgo("painted")
    colors, vertices = block["colors"], block["vertices"]
    near_first = cKDTree(cmd.get_coords("pep and resi 1-4", 3)).query(vertices)[0] < 1.5
    near_last = cKDTree(cmd.get_coords("pep and resi 9-12", 3)).query(vertices)[0] < 1.5
    assert near_first.sum() > 100 and near_last.sum() > 100
    np.testing.assert_allclose(colors[near_first], np.broadcast_to(cmd.get_color_tuple("blue"), (near_first.sum(), 3)))
    np.testing.assert_allclose(colors[near_last], np.broadcast_to(cmd.get_color_tuple("yellow"), (near_last.sum(), 3)))


def test_extrapolation_is_said(trained, capsys):
    dsr_surface(t="1.2", model=trained, quiet=0)
    assert "extrapolated" in capsys.readouterr().out


def test_level_sets_are_nested_and_coloured(trained):
    cmd.do(f"dsr_surface t=0.5, model={trained}, level=-0.5 0 1.5, name=levels")
    blocks = read_cgo("levels")
    assert len(blocks) == 3
    inner, zero, outer = (distances(block["vertices"], 3).mean() for block in blocks)
    assert inner < zero < outer
    negative, white, positive = (block["colors"][0] for block in blocks)
    assert negative[2] > negative[0] and positive[0] > positive[2]  # blue, red
    np.testing.assert_allclose(white, 1.0)
    assert cmd.get_setting_float("cgo_transparency", "levels") == pytest.approx(0.5)


def test_speed_colours_the_moving_half(trained, capsys):
    dsr_surface(t="0.5", model=trained, color="speed", name="speed", quiet=0)
    assert "speed colours (legend 'speed_speed') blue -" in capsys.readouterr().out
    assert cmd.get_type("speed_speed") == "object:ramp"
    (block,) = read_cgo("speed")
    colors, vertices = block["colors"], block["vertices"]
    assert colors.shape == vertices.shape and np.ptp(colors, axis=0).max() > 0.3
    reddish = np.isclose(colors[:, 1], colors[:, 2], atol=1e-4)  # white -> red keeps green = blue
    bluish = (colors[:, 0] <= colors[:, 1] + 1e-4) & (colors[:, 1] <= colors[:, 2] + 1e-4)
    assert np.all(reddish | bluish) and reddish.any() and (bluish & ~reddish).any()
    moving = cKDTree(cmd.get_coords("pep and resi 7-12", 3)).query(vertices)[0] < 3.0
    whiteness = colors.min(axis=1)
    assert whiteness[moving].mean() < whiteness[~moving].mean()  # the swinging half is coloured most
    cmd.do(f"dsr_surface t=0.5, model={trained}, color=speed, name=keyed, range=-100 100, quiet=0")
    assert "blue -100 .. white .. red 100 Å per unit t" in capsys.readouterr().out
    (block,) = read_cgo("keyed")
    assert block["colors"].min() > 0.8  # every speed is small against the fixed range: all near white


def test_mesh_and_map_styles(trained):
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=lines, as=mesh")
    (block,) = read_cgo("lines")
    assert block["mode"] == cgo.LINES and len(block["vertices"]) % 2 == 0
    cmd.do(f"dsr_surface t=0 0.3, model={trained}, name=field, as=map")
    assert cmd.get_type("field_sdf") == "object:map" and cmd.count_states("field_sdf") == 2
    assert cmd.get_type("field") == "object:surface"
    low, high = np.array(cmd.get_extent("field_sdf"))
    atoms = cmd.get_coords("pep", 1)
    assert np.all(low <= atoms.min(axis=0)) and np.all(high >= atoms.max(axis=0))


def test_specks_are_left_out_unless_asked(trained):
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=clean, resolution=48")
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=all_pieces, resolution=48, min_component=0")
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=largest, resolution=48, min_component=1")
    counts = {name: len(read_cgo(name)[0]["vertices"]) for name in ("clean", "all_pieces", "largest")}
    assert counts["largest"] > 1000
    assert counts["largest"] <= counts["clean"] <= counts["all_pieces"]


def test_save_and_load_round_trip(trained, tmp_path):
    path = tmp_path / "model.pt"
    cmd.do(f"dsr_save {trained}, {path}")
    cmd.do(f"dsr_load {path}, reloaded")
    cmd.do(f"dsr_surface t=0.3, model={trained}, name=before")
    cmd.do("dsr_surface t=0.3, model=reloaded, name=after")
    np.testing.assert_allclose(read_cgo("after")[0]["vertices"], read_cgo("before")[0]["vertices"], atol=1e-4)
    assert session_for(cmd).current == "reloaded"
    cmd.do("dsr_delete reloaded")
    assert "reloaded" not in dsr_list() and trained in dsr_list() and session_for(cmd).current == ""
    with pytest.raises(CmdException, match="no DSR model named 'reloaded'"):
        dsr_surface(t="0.3", model="reloaded", name="gone")


def test_one_state_trains_a_static_model(capsys):
    dsr_train("pep", "3", name="still", preset="tiny", steps=20, quiet=0)
    assert "static" in capsys.readouterr().out
    dsr_surface(t="0 1", model="still", name="still_surf", quiet=0)
    assert "static model" in capsys.readouterr().out
    first, last = (read_cgo("still_surf", state)[0]["vertices"] for state in (1, 2))
    np.testing.assert_allclose(first, last)


def test_several_objects_train_one_model_with_a_code_each():
    cmd.fab("KLMNPQRSTVWY", "other", ss=3)  # a strand laid over the helix, as aligned GPCRmd systems overlap
    cmd.translate(list(cmd.get_coords("pep", 1).mean(axis=0) - cmd.get_coords("other", 1).mean(axis=0)), "other",
                  camera=0)
    dsr_train("pep or other", "1", name="pair", preset="tiny", steps=150)
    assert session_for(cmd).model_info("pair")["protein_names"] == ["pep", "other"]
    for shown, elsewhere in (("other", "pep"), ("pep", "other")):
        assert dsr_surface(t="0", model="pair", object=shown) == f"pair_{shown}_t0"
        vertices = read_cgo(f"pair_{shown}_t0")[0]["vertices"]
        assert distances(vertices, 1, shown).mean() < 0.6 * distances(vertices, 1, elsewhere).mean()


def test_the_probe_defaults_to_pymols_solvent_radius_and_is_recorded():
    cmd.set("solvent_radius", 1.2)
    dsr_train("pep", "1-2", name="probed", preset="tiny", steps=2)
    assert session_for(cmd).model_info("probed")["metadata"]["probe"] == pytest.approx(1.2)
    dsr_train("pep", "1-2", name="probed", preset="tiny", steps=2, probe="0")
    assert session_for(cmd).model_info("probed")["metadata"]["probe"] == 0.0


def test_fit_superposes_the_states_before_training():
    cmd.translate([5.0, 0.0, 0.0], "pep", state=3, camera=0)  # rigid drift of one state
    dsr_train("pep", "1-3", name="fitted", preset="tiny", steps=2, fit="name CA and resi 1-6")
    drift = cmd.get_coords("pep and name CA and resi 1-6", 3) - cmd.get_coords("pep and name CA and resi 1-6", 1)
    assert np.abs(drift).max() < 0.01  # the unmoving half lies on state 1 again


def test_damaged_checkpoints_and_saves_onto_a_folder_are_one_line_errors(trained, tmp_path, capsys):
    good = tmp_path / "good.pt"
    cmd.do(f"dsr_save {trained}, {good}")
    for path, message in damaged_checkpoints(good, tmp_path):
        capsys.readouterr()
        cmd.do(f"dsr_load {path}, name=broken")
        errors = [line for line in capsys.readouterr().out.splitlines() if "Error" in line]
        assert len(errors) == 1 and message in errors[0] and str(path) in errors[0], errors
    assert "broken" not in [info["name"] for info in session_for(cmd).backend().models()]
    cmd.do(f"dsr_save {trained}, {tmp_path}")
    errors = [line for line in capsys.readouterr().out.splitlines() if "Error" in line]
    assert len(errors) == 1 and f"cannot write {tmp_path}: it is a folder" in errors[0]
    assert good.read_bytes()[:2] == b"PK"  # what was saved is still whole


def test_training_on_pymols_own_surface():
    dsr_train("pep", "1-3", name="from_pymol", preset="tiny", steps=30, surface="pymol")
    assert session_for(cmd).model_info("from_pymol")["metadata"]["surface"] == "pymol"


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def shown_step(output: str) -> int:
    found = re.search(r"still training: the model at step (\d+) of 100000", output)
    assert found, output
    return int(found.group(1))


def test_a_model_in_training_is_shown_as_it_stands_then_cancelled_or_waited_for(trained, capsys, tmp_path):
    session = session_for(cmd)
    cmd.do("dsr_train pep, states=1-3, name=slow, preset=tiny, steps=100000, async=1")
    task = session.task("slow")
    try:
        wait_for(lambda: task.status()["phase"] == "training" and task.status()["step"] >= 5)
        capsys.readouterr()
        dsr_surface(t="0.5", model="slow", name="early", quiet=0)
        first = shown_step(capsys.readouterr().out)
        assert len(read_cgo("early")[0]["vertices"]) > 100  # a surface of the model as it stood
        task.preview = lambda: update_preview(session, "slow", cmd)  # what preview=1 does in the GUI
        wait_for(lambda: "slow_preview" in cmd.get_names())
        wait_for(lambda: task.status()["step"] > first + 20)
        dsr_surface(t="0.5", model="slow", name="later", quiet=0)
        assert shown_step(capsys.readouterr().out) > first
        assert dsr_status("slow", quiet=0)[0]["state"] == "running"
        assert "dsr_status: [" in capsys.readouterr().out
        for command, message in ((f"dsr_save slow, {tmp_path / 'slow.pt'}", "is still training (step"),
                                 ("dsr_delete slow", "'slow' is still training; dsr_cancel it first"),
                                 ("dsr_train pep, preview=1", "preview=1 needs the PyMOL GUI")):
            cmd.do(command)
            assert message in capsys.readouterr().out
        assert not (tmp_path / "slow.pt").exists()
    finally:
        cmd.do("dsr_cancel slow")
        cmd.do("dsr_wait slow")
    assert "cancelled" in capsys.readouterr().out
    cmd.do("dsr_surface t=0.5, model=slow")
    assert "no model was stored" in capsys.readouterr().out
    cmd.do("dsr_train pep, states=1-3, name=quick, preset=tiny, steps=20, async=1")
    assert dsr_wait("quick")["state"] == "done"
    cmd.do("dsr_train pep, states=1-3, name=timed, preset=tiny, minutes=0.02, async=1")
    status = dsr_wait("timed")
    assert status["state"] == "done" and 0 < status["total"] < 400  # tiny's schedule: 400 steps


@pytest.mark.parametrize("command, message", [
    ("dsr_train nothing_here", "unknown selection or object 'nothing_here'"),
    ("dsr_train pep, states=1-99", "state 99 is out of range: object 'pep' has 5 states"),
    ("dsr_train pep, states=4-2", "empty state range"),
    ("dsr_train solvent_only", "left after removing solvent"),
    ("dsr_train pep, preset=huge", "unknown preset 'huge'"),
    ("dsr_train pep, surface=msms", "surface must be ses or pymol"),
    ("dsr_train pep, steps=-3", "steps must be at least 0"),
    ("dsr_train pep, steps=many", "steps must be a whole number"),
    ("dsr_train pep, minutes=0", "minutes must be positive, got 0"),
    ("dsr_train pep, minutes=soon", "minutes must be a number of minutes, got 'soon'"),
    ("dsr_train pep, steps=100, minutes=2", "give steps= or minutes=, not both"),
    ("dsr_train pep, minutes=1e7", "minutes must be positive and at most 10080 (a week)"),
    ("dsr_train pep, preset=tiny, members=2", "members apply to preset fast only, not to tiny"),
    ("dsr_train pep, members=0", "members must be at least 1"),
    ("dsr_train pep, quality=perfect", "unknown quality 'perfect'; choose one of quick, best"),
    ("dsr_train pep, preview=2", "preview must be 0 or 1, got 2"),
    ("dsr_train pep, device=cuda", "no CUDA GPU"),
    ("dsr_train pep, probe=-1", r"probe must lie in [0, 10] Å, got -1"),
    ("dsr_train pep, probe=wide", "probe must be a radius in Å, got 'wide'"),
    ("dsr_train pep, fit=name CA and resi 1", "has 1 atoms of 'pep' in state 1; superposing needs at least 3"),
    ("dsr_surface t=nan, model={model}", "t must be a finite number"),
    ("dsr_surface t=0:1, model={model}", "cannot read t '0:1'"),
    ("dsr_surface t=0.5, state=3, model={model}", "t or state, not both"),
    ("dsr_surface t=0.5, model=unknown_model", "no DSR model named 'unknown_model'"),
    ("dsr_surface t=0.5, model={model}, name=pep", "'pep' is an existing object:molecule"),
    ("dsr_surface t=0.5, model={model}, object=zzz", "has no object 'zzz'"),
    ("dsr_surface t=0.5, model={model}, as=ribbon", "as must be one of cgo, mesh, map"),
    ("dsr_surface t=0.5, model={model}, color=nonsense", "unknown colour 'nonsense'"),
    ("dsr_surface t=0.5, model={model}, color=speed, as=map", "color=speed needs as=cgo or as=mesh"),
    ("dsr_surface t=0.5, model={model}, color=atoms, as=map", "color=atoms needs as=cgo or as=mesh"),
    ("dsr_surface t=0-1:0.05, model={model}, as=map", "use at most 10 times"),
    ("dsr_surface t=0:1:20, model={model}", r"t=0:1:20 is the former start:stop:count form; write t=0-1:0.0526316"),
    ("dsr_surface t=0-1, model={model}", "the range t=0-1 needs a step"),
    ("dsr_surface t=0-1:0.001, model={model}", "too many t values: at most 256"),
    ("dsr_surface t=1e39, model={model}", "t must be a finite number of at most 1e9"),
    ("dsr_surface t=5000, model={model}", "t must be finite and within ±1000"),
    ("dsr_surface t=0.5, model={model}, color=speed, range=1", "range must be two numbers"),
    ("dsr_surface t=0.5, model={model}, color=speed, range=2 1", "low < high"),
    ("dsr_surface t=0.5, model={model}, range=-1 1", "add color=speed"),
    ("dsr_surface t=0.5, model={model}, resolution=4", "resolution must be at least 8"),
    ("dsr_surface t=0.5, model={model}, resolution=600", "resolution must lie in [8, 512], got 600"),
    ("dsr_surface t=0.5, model={model}, min_component=2", "min_component must be one fraction in [0, 1]"),
    ("dsr_surface t=0.5, model={model}, min_component=lots", "cannot read min_component 'lots'"),
    ("dsr_surface t=0.5, model={model}, shape=round", "unknown argument 'shape'"),
    ("dsr_load /no/such/file.pt", "no such file"),
    ("dsr_save {model}", "needs a file name"),
    ("dsr_delete", "needs a model name"),
    ("dsr_delete nope_model", "no DSR model named 'nope_model'"),
    ("dsr_wait never_trained", "no training of 'never_trained'"),
])
def test_bad_input_is_a_one_line_error_and_changes_nothing(trained, capsys, command, message):
    cmd.pseudoatom("solvent_only", resn="HOH", name="O", elem="O", pos=[30.0, 0.0, 0.0])
    cmd.do(f"dsr_surface t=0.5, model={trained}, name=existing")
    objects = lambda: {name: (cmd.get_type(name), cmd.count_states(name)) for name in cmd.get_names()}  # noqa: E731
    before = objects()
    coords = cmd.get_coords("pep", 0)
    capsys.readouterr()
    cmd.do(command.format(model=trained))
    errors = [line for line in capsys.readouterr().out.splitlines() if "Error" in line]
    assert len(errors) == 1 and message in errors[0], errors
    assert objects() == before
    np.testing.assert_array_equal(cmd.get_coords("pep", 0), coords)
    assert len(read_cgo("existing")[0]["vertices"]) > 1000


def test_no_trained_model_in_a_fresh_pymol_instance(trained):
    instance = pymol2.PyMOL()
    instance.start()
    try:
        register(instance.cmd)
        assert "dsr_surface" in instance.cmd.keyword
        with pytest.raises(CmdException, match="no trained model: train one with dsr_train or load one with dsr_load"):
            dsr_surface(t="0.5", _self=instance.cmd)
    finally:
        instance.stop()


def test_help_shows_the_pymol_style_docstring(capsys):
    cmd.do("help dsr_train")
    text = capsys.readouterr().out
    assert all(section in text for section in ("DESCRIPTION", "USAGE", "ARGUMENTS", "not solvent and not inorganic"))


def test_members_train_the_mean_of_several_fast_models():
    cmd.do("dsr_train pep, states=1-3, name=pair, preset=fast, steps=3, members=2")
    (info,) = [info for info in session_for(cmd).backend().models() if info["name"] == "pair"]
    assert info["preset"] == "fast" and "mean of 2 models" in info["architecture"]
    assert dsr_surface(t="0.5", model="pair") == "pair_t0.5" and cmd.get_type("pair_t0.5") == "object:cgo"
