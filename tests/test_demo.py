"""The quick-start job (README command 1) end to end, with a handful of training steps."""
import numpy as np

from dsr_backend.demo import run_demo
from dsr_backend.meshio import read_ply
from dsr_backend.series import SurfaceSeries
from dsr_backend.trained import TrainedModel


def test_demo_writes_every_result(tmp_path):
    numbers = run_demo(str(tmp_path), steps=5, quiet=True)
    series = SurfaceSeries.load(tmp_path / "adk_series.npz")
    assert series.num_frames == 11 and series.times.tolist() == list(range(0, 81, 8))
    assert TrainedModel.load(tmp_path / "adk_model.pt").step == 5
    for t in ("0.0", "0.5", "1.0"):
        mesh = read_ply(tmp_path / f"adk_surface_t{t}.ply")
        assert len(mesh["faces"]) > 0
    png = (tmp_path / "adk_surfaces.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert np.isfinite(numbers["held_out_mean_abs_sdf"])
