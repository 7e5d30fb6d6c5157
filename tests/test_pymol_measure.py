"""dsr_measure: area and volume against shapes of known size, and domain motion of a trained hinge."""
import numpy as np
import pytest
from pymol import CmdException, cmd
from skimage import measure as skmeasure

from pymol_dsr.commands import dsr_train
from pymol_dsr.measure import area_and_volume, dsr_measure
from tests.conftest import hinge_peptide
from tests.shapes import box


def sphere_mesh(radius: float, step: float = 0.05):
    axis = np.arange(-radius - 3 * step, radius + 3 * step, step)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    vertices, faces, _, _ = skmeasure.marching_cubes(np.sqrt(x ** 2 + y ** 2 + z ** 2) - radius, 0.0,
                                                     spacing=(step,) * 3)
    return vertices, faces


def test_area_and_volume_of_a_sphere_and_a_box():
    area, volume = area_and_volume(*sphere_mesh(2.0))
    assert area == pytest.approx(4 * np.pi * 4.0, rel=0.01)
    assert volume == pytest.approx(4 / 3 * np.pi * 8.0, rel=0.01)
    corners, faces = box((2.0, 3.0, 4.0))
    assert area_and_volume(corners, faces) == pytest.approx((2 * (6 + 8 + 12), 24.0))


@pytest.fixture(scope="module")
def hinge_model():
    cmd.reinitialize()
    hinge_peptide(states=5, angle=20.0)
    dsr_train("pep", "1-5", name="hinge", preset="tiny", steps=150)
    cmd.select("STILL", "pep and resi 1-5")
    cmd.select("SWING", "pep and resi 8-12")
    yield "hinge"
    cmd.reinitialize()


def test_the_swinging_domain_moves_faster_than_the_fixed_one(hinge_model, tmp_path, capsys):
    rows = dsr_measure(hinge_model, state="1-5", domains="STILL SWING", resolution=48,
                       plot_file=str(tmp_path / "motion.png"))
    out = capsys.readouterr().out
    assert "STILL mean|v|" in out and "SWING max|v|" in out and (tmp_path / "motion.png").stat().st_size > 10_000
    assert len(rows) == 5 and all(row.area > 500 and row.volume > 500 for row in rows)
    swing = np.mean([row.domains["SWING"][1] for row in rows])
    fixed = np.mean([row.domains["STILL"][1] for row in rows])
    assert swing > 1.5 * fixed  # the C-terminal half swings, the N-terminal half stays
    assert np.mean([row.domains["SWING"][0] for row in rows]) > np.mean([row.domains["STILL"][0] for row in rows])


@pytest.mark.parametrize("arguments, message", [
    (dict(domains="NOWHERE"), "unknown selection 'NOWHERE'"),
    (dict(domains="none"), "domain 'none' has no atoms"),
    (dict(t="0:1:5"), "former start:stop:count"),
    (dict(resolution=2), "resolution must be at least 8"),
    (dict(plot_file="/nonexistent/folder/x.png"), "cannot write the plot"),
])
def test_bad_input_is_one_line(hinge_model, arguments, message):
    with pytest.raises(CmdException, match=message):
        dsr_measure(hinge_model, **{"t": "0 1", **arguments}, quiet=1)
