import re
import sys
import threading

import numpy as np
import pytest
import torch

from dsr_backend import (CheckpointError, InvalidInputError, TrainedModel, Trainer, TrainingDivergedError, preset,
                         train)
from dsr_backend.checkpoint import ROW_OPTIMIZER_KEY, model_only, read_checkpoint, save_checkpoint
from dsr_backend.errors import ResourceLimitError
from dsr_backend.kplanes import KPlanesConfig
from dsr_backend.loss import igr_loss
from dsr_backend.query import sdf_grid
from dsr_backend.train import cuda_matmul_precision

from .shapes import analytic_grid, grid_iou

train_module = sys.modules["dsr_backend.train"]  # the package exports the function train under that name


SMALL_KPLANES = KPlanesConfig(space_resolutions=(8, 16), features=8, hidden=16, latent_dim=4)


@pytest.mark.parametrize("state", [2.0, 6.0])  # held-out states between training frames
def test_trained_surface_matches_analytic_shape_at_held_out_time(trained_sphere, sphere, state):
    model = trained_sphere[0].model
    t = float(model.time_map.time_to_fraction(state))
    learned = sdf_grid(model, t, resolution=48)
    assert grid_iou(learned, analytic_grid(model, sphere, state, 48)) > 0.9


def test_gradient_norm_close_to_one_near_surface(trained_sphere, sphere):
    model = trained_sphere[0].model
    state = 4.0
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    shells = sphere.radius(state) + rng.uniform(-1.5, 1.5, size=(500, 1))
    points = sphere.center(state) + directions * shells
    unit = torch.tensor(model.normalization.to_unit(points), dtype=torch.float32)
    t = torch.full((500,), float(model.time_map.fraction_to_model(model.time_map.time_to_fraction(state))))
    with torch.no_grad():
        out = model.network.sdf_and_gradient(unit, t, torch.zeros(500, dtype=torch.long))
    norms = out.grad_x.norm(dim=1).numpy()
    assert abs(np.median(norms) - 1.0) < 0.1
    assert np.mean(np.abs(norms - 1.0) < 0.2) > 0.9


def test_bf16_training_reaches_the_same_quality(sphere_series, sphere):
    result = train(sphere_series, preset("tiny", steps=300, precision="bf16"), device="cpu")
    model = result.model
    t = float(model.time_map.time_to_fraction(6.0))
    assert grid_iou(sdf_grid(model, t, 48), analytic_grid(model, sphere, 6.0, 48)) > 0.9


def test_tf32_is_fp32_off_cuda(sphere_series):
    fp32, tf32 = (Trainer(sphere_series, preset("tiny", steps=3, precision=p), device="cpu") for p in ("fp32", "tf32"))
    for _ in range(3):
        assert fp32.train_step()["loss"] == tf32.train_step()["loss"]


@pytest.mark.parametrize("name, overrides", [("tiny", {}), ("fast", dict(batch_size=512, model=SMALL_KPLANES)),
                                            ("fast", dict(batch_size=512, model=SMALL_KPLANES, frames_per_step=2))])
def test_compiled_training_follows_eager_training(sphere_series, name, overrides, monkeypatch):
    monkeypatch.setattr(train_module, "MIN_COMPILED_STEPS", 3)
    eager, compiled = (Trainer(sphere_series, preset(name, steps=3, compile=c, **overrides), device="cpu")
                       for c in (False, True))
    for _ in range(3):
        assert compiled.train_step()["loss"] == pytest.approx(eager.train_step()["loss"], rel=1e-4)
    for key, value in eager.network.state_dict().items():
        torch.testing.assert_close(compiled.network.state_dict()[key], value, rtol=1e-3, atol=1e-5)
    assert compiled.loss_function is not igr_loss and eager.loss_function is igr_loss
    short = Trainer(sphere_series, preset(name, steps=2, compile=True, **overrides), device="cpu")
    assert short.loss_function is igr_loss  # too short a run to earn the compilation back


def test_training_goes_on_without_the_compiler_when_compiling_fails(sphere_series, caplog):
    trainer = Trainer(sphere_series, preset("tiny", steps=3, compile=True), device="cpu")
    assert trainer.loss_function is igr_loss  # (too short a run to compile: the failure is simulated)

    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ compiler\nmore detail")

    trainer.loss_function = broken
    assert np.isfinite(trainer.train_step()["loss"])
    assert "torch.compile failed, training without it: InductorError: no working C++ compiler" in caplog.text
    assert trainer.loss_function is igr_loss


def test_cuda_matmul_precision_is_set_inside_the_block_only():
    before = torch.get_float32_matmul_precision()
    with pytest.raises(RuntimeError, match="inside"):
        with cuda_matmul_precision(torch.device("cuda"), "tf32"):
            assert torch.get_float32_matmul_precision() == "high"
            with cuda_matmul_precision(torch.device("cuda"), "bf16"):
                assert torch.get_float32_matmul_precision() == "highest"
            raise RuntimeError("inside")
    assert torch.get_float32_matmul_precision() == before
    with cuda_matmul_precision(torch.device("cpu"), "tf32"):
        assert torch.get_float32_matmul_precision() == before


def test_checkpoint_round_trip(trained_sphere):
    result, path = trained_sphere
    loaded = TrainedModel.load(path, device="cpu")
    points = np.random.default_rng(0).normal(scale=10, size=(100, 3))
    assert np.array_equal(loaded.sdf(points, 0.3), result.model.sdf(points, 0.3))
    assert loaded.time_map == result.model.time_map
    assert loaded.normalization == result.model.normalization
    assert loaded.step == 300 and loaded.config == result.model.config


@pytest.mark.parametrize("name, overrides", [
    ("tiny", {}), ("fast", dict(batch_size=512, model=SMALL_KPLANES, compile=False)),
    ("fast", dict(batch_size=512, model=SMALL_KPLANES, compile=False, frames_per_step=2))])
def test_resume_continues_exactly(sphere_series, tmp_path, name, overrides):
    config = preset(name, steps=12, checkpoint_every=0, **overrides)
    straight = train(sphere_series, config, device="cpu")
    first, stop = Trainer(sphere_series, config, device="cpu"), threading.Event()
    interrupted = first.run(tmp_path / "half.pt", progress=lambda step, *_: step == 5 and stop.set(), cancel=stop)
    assert interrupted.cancelled and (tmp_path / "half.resume.pt").is_file()
    resumed = Trainer.resume(tmp_path / "half.pt", sphere_series, device="cpu")
    finished = resumed.run(tmp_path / "half.pt")
    assert not (tmp_path / "half.resume.pt").exists()  # a finished run leaves the model only
    assert finished.steps_done == 12
    for a, b in zip(straight.model.network.parameters(), finished.model.network.parameters()):
        assert torch.equal(a, b)
    def every_tenth(history):
        return [(h["step"], h["loss"]) for h in history if h["step"] % 10 == 0]

    assert every_tenth(straight.history) == every_tenth(finished.history)
    assert straight.final_loss == finished.final_loss


def test_a_row_sparse_step_trains_the_rows_of_the_nodes_it_draws_and_no_others(sphere_series):
    trainer = Trainer(sphere_series, preset("fast", steps=6, batch_size=512, model=SMALL_KPLANES, compile=False,
                                            frames_per_step=2), device="cpu")
    planes = list(trainer.network.time_planes)
    assert trainer.row_optimizer is not None and len(planes) == 6
    assert not any(plane is held for group in trainer.optimizer.param_groups for held in group["params"]
                   for plane in planes)
    trainer.train_step()  # (the first step moves no plane: the last layer starts at zero)
    for _ in range(3):
        before = [plane.detach().clone() for plane in planes]
        space_before = trainer.network.space_planes[0].detach().clone()
        trainer.train_step()
        drawn = trainer._time_rows[0].rows.tolist()
        assert len(drawn) == 2
        for plane, old in zip(planes, before):
            moved = (plane.detach() != old).flatten(1).any(dim=1)
            assert moved.nonzero()[:, 0].tolist() == drawn
        assert not torch.equal(trainer.network.space_planes[0], space_before)
    state = trainer.state()  # the rows' moments go with the resume checkpoint, not with the model file
    assert torch.equal(state[ROW_OPTIMIZER_KEY]["updates"], trainer.row_optimizer.updates)
    assert ROW_OPTIMIZER_KEY not in model_only(state)
    every = Trainer(sphere_series, preset("fast", steps=5, batch_size=512, model=SMALL_KPLANES), device="cpu")
    assert every.row_optimizer is None  # a step over every node trains the planes whole


def test_past_40_states_the_fast_schedule_grows_so_that_every_state_trains_as_much():
    fast, paper = preset("fast"), preset("paper")
    assert [fast.total_steps(states) for states in (5, 40, 41, 150, 1000)] == [1500, 1500, 1538, 5625, 37500]
    assert [fast.total_steps(states) * 4096 / states for states in (40, 150, 1000)] == [153600.0] * 3
    assert paper.total_steps(40) == 40 * paper.epochs and paper.decay_every_steps(40) == 40 * paper.lr_decay_epochs
    assert preset("fast", quality="best").total_steps(150) == 4 * 5625


def test_cosine_schedule_falls_to_zero_and_a_warm_start_takes_it_up(sphere_series, tmp_path):
    config = preset("tiny", steps=20, lr_schedule="cosine", checkpoint_every=0)
    trainer, rates = Trainer(sphere_series, config, device="cpu"), []
    trainer.run(tmp_path / "cos.pt", progress=lambda *_: rates.append(trainer.optimizer.param_groups[0]["lr"]))
    expected = [2e-3 * 0.5 * (1 + np.cos(np.pi * step / 20)) for step in range(1, 21)]
    assert np.allclose(rates, expected) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    warm = Trainer.resume(tmp_path / "cos.pt", sphere_series, device="cpu", steps=40)
    assert not warm.exact_resume
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.5 * (1 + np.cos(np.pi * 20 / 40)))


def test_a_time_budget_sizes_the_run_and_its_schedule_to_the_minutes(sphere_series, tmp_path):
    config = preset("tiny", minutes=0.03, lr_schedule="cosine", checkpoint_every=0)  # 1.8 s
    trainer, seen = Trainer(sphere_series, config, device="cpu"), []
    result = trainer.run(tmp_path / "budget.pt", progress=lambda step, total, _: seen.append(
        (step, total, trainer.optimizer.param_groups[0]["lr"])))
    assert not result.cancelled and result.steps_done == result.total_steps == seen[-1][0]
    assert seen[0][1] == config.total_steps(sphere_series.num_frames)  # the preset's until the pace is known
    assert result.steps_done != seen[0][1]
    assert 1.8 - 0.5 < result.seconds < 1.8 + 0.5
    assert seen[-1][2] == pytest.approx(0.0, abs=1e-12)  # the cosine spans the budgeted run
    assert read_checkpoint(tmp_path / "budget.pt")["seconds"] == pytest.approx(result.seconds, abs=0.05)


def test_a_resumed_run_trains_for_the_time_its_budget_has_left(sphere_series, tmp_path):
    config = preset("tiny", minutes=0.03, checkpoint_every=0)
    first, stop = Trainer(sphere_series, config, device="cpu"), threading.Event()
    first.run(tmp_path / "b.pt", progress=lambda step, *_: step == 5 and stop.set(), cancel=stop)
    before = read_checkpoint(tmp_path / "b.resume.pt")["seconds"]
    resumed = Trainer.resume(tmp_path / "b.pt", sphere_series, device="cpu")
    result = resumed.run(tmp_path / "b.pt")
    assert result.steps_done > 5 and before + result.seconds == pytest.approx(1.8, abs=0.5)
    assert Trainer.resume(tmp_path / "b.pt", sphere_series, device="cpu", steps=result.steps_done + 3).run() \
        .steps_done == result.steps_done + 3  # steps replace the budget


def test_bad_time_budgets_are_refused():
    for minutes in (-1.0, float("nan"), 1e9):
        with pytest.raises(InvalidInputError, match="minutes must be positive"):
            preset("tiny", minutes=minutes)
    with pytest.raises(InvalidInputError, match="steps or a time budget in minutes, not both"):
        preset("tiny", minutes=1.0, steps=10)


def test_the_model_file_holds_weights_only_and_float16_storage_is_smaller(trained_sphere, sphere_series, tmp_path):
    result, path = trained_sphere
    state = torch.load(path, weights_only=True)
    assert not {"optimizer_state", "scheduler_state", "generator_state"} & set(state)
    warm = Trainer.resume(path, sphere_series, device="cpu", steps=310)
    assert not warm.exact_resume and warm.step == 300
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * 0.5 ** (300 // 200))  # tiny's schedule
    assert warm.run().steps_done == 310
    half = tmp_path / "half.pt"
    save_checkpoint(half, model_only(read_checkpoint(path), "float16"))
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded = TrainedModel.load(half, device="cpu")
    points = np.random.default_rng(0).normal(scale=10, size=(100, 3))
    assert np.allclose(loaded.sdf(points, 0.3), result.model.sdf(points, 0.3), atol=0.05)
    assert read_checkpoint(half)["storage"] == "float16" and read_checkpoint(path)["storage"] == "float32"
    damaged = torch.load(half, weights_only=True)
    name = next(iter(damaged["model_state"]))
    damaged["model_state"][name]["deflated_float16"] = damaged["model_state"][name]["deflated_float16"][:-8]
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match=f"damaged.pt: the weights {name} are damaged"):
        TrainedModel.load(tmp_path / "damaged.pt")


def test_periodic_checkpoints_and_progress(sphere_series, tmp_path):
    seen = []
    path = tmp_path / "m.pt"
    train(sphere_series, preset("tiny", steps=6, checkpoint_every=3), checkpoint=path, device="cpu",
          progress=lambda step, total, record: seen.append((step, total, path.exists())))
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert all(total == 6 for _, total, _ in seen)
    assert [exists for _, _, exists in seen] == [False, False, True, True, True, True]


def test_cancel_stops_and_saves_a_resumable_checkpoint(sphere_series, tmp_path):
    cancel = threading.Event()
    path = tmp_path / "c.pt"

    def progress(step, total, record):
        if step == 4:
            cancel.set()

    result = train(sphere_series, preset("tiny", steps=50), checkpoint=path, device="cpu", progress=progress,
                   cancel=cancel)
    assert result.cancelled and result.steps_done == 4
    assert TrainedModel.load(path, device="cpu").step == 4


def test_diverging_loss_raises_and_keeps_the_last_good_checkpoint(sphere_series, tmp_path):
    path = tmp_path / "d.pt"
    train(sphere_series, preset("tiny", steps=2), checkpoint=path, device="cpu")
    with pytest.raises(TrainingDivergedError, match="loss became") as failure:
        train(sphere_series, preset("tiny", steps=200, lr=1e12, checkpoint_every=1), checkpoint=path,
              device="cpu")
    failed_step = int(re.search(r"at step (\d+)", str(failure.value)).group(1))
    state = torch.load(path, weights_only=True)
    # the file holds the last good step (or the earlier run when the first step failed), finite weights
    assert state["step"] == (failed_step - 1 if failed_step > 1 else 2)
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())


def test_single_frame_trains_a_static_model(sphere):
    series = sphere.series([5.0], points_per_frame=800)
    result = train(series, preset("tiny", steps=3), device="cpu")
    points = np.random.default_rng(0).normal(scale=10, size=(20, 3))
    assert np.allclose(result.model.sdf(points, 0.0), result.model.sdf(points, 2.5))


def test_bad_training_inputs(sphere_series, tmp_path):
    with pytest.raises(InvalidInputError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(InvalidInputError, match="latent codes"):
        Trainer(sphere_series, preset("tiny", num_proteins=2))
    with pytest.raises(InvalidInputError, match="precision"):
        preset("tiny", precision="fp8")
    with pytest.raises(InvalidInputError, match="lr_schedule must be one of step, cosine, got 'linear'"):
        preset("tiny", lr_schedule="linear")



@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(sphere_series):
    with pytest.raises(InvalidInputError, match="no CUDA"):
        Trainer(sphere_series, preset("tiny"), device="cuda")


def test_a_training_too_large_for_memory_is_refused_with_what_it_needs(sphere_series, monkeypatch):
    monkeypatch.setattr(train_module, "available_memory_bytes", lambda: 1 << 20)
    with pytest.raises(ResourceLimitError, match=r"training on 5 frames needs about 0\.\d GiB \(7,500 surface "
                                                 r"points, [\d,]+ parameters\) but 0\.0 GiB are available"):
        Trainer(sphere_series, preset("tiny"), device="cpu")


def test_corrupted_or_foreign_checkpoint_rejected(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable pymol-dsr checkpoint"):
        TrainedModel.load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a pymol-dsr checkpoint"):
        TrainedModel.load(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        TrainedModel.load(tmp_path / "missing.pt")
