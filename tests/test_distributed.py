"""Data-parallel training with 2 CPU processes (gloo) against single-process training of the same batch.

Tolerance: the 2-process batch is exactly the single-process batch, so runs differ only by float32
summation order (per-process means, DDP's gradient all-reduce); after 16-20 Adam steps weights agree
to 1e-5 and losses to a relative 1e-5 (measured: about 1e-7).
"""
import dataclasses
import json
import threading
import time

import numpy as np
import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from dsr_backend import InvalidInputError, Trainer, TrainedModel, TrainingDivergedError, preset, train
from dsr_backend.checkpoint import read_checkpoint, resume_path
from dsr_backend.cli import build_parser
from dsr_backend.cli import main as dsr_main
from dsr_backend.train_command import main as distributed_main, train_argv
from dsr_backend.distributed import leave_process_group, train_distributed
from dsr_backend.loss import igr_loss
from dsr_backend.mlp import SpaceTimeSDF, reference_sdf_and_gradient
from dsr_backend.sampling import SeriesSampler, part_slice

WEIGHT_TOLERANCE = 1e-5
LOSS_RTOL = 1e-5
# an odd batch: the two processes get unequal parts (500 + 501 points, 62 + 63 uniform points)
CONFIG = dict(batch_size=1001, checkpoint_every=0)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p - q).abs().max().item() < WEIGHT_TOLERANCE, name


def test_parts_of_a_batch_are_the_whole_batch(sphere_series):
    sampler = SeriesSampler(sphere_series, 1001, frames_per_step=2, distances=True)
    whole = sampler.sample(torch.Generator().manual_seed(3))
    parts = [sampler.sample(torch.Generator().manual_seed(3), part=(k, 3)) for k in range(3)]
    for name in ("surface_x", "surface_n", "surface_t", "surface_protein", "near_distance"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name))
    count = len(whole.surface_x)
    for name in ("space_x", "space_t", "space_protein"):
        noisy = torch.cat([getattr(p, name)[:len(p.surface_x)] for p in parts])
        uniform = torch.cat([getattr(p, name)[len(p.surface_x):] for p in parts])
        assert torch.equal(torch.cat([noisy, uniform]), getattr(whole, name)[:count + len(uniform)])
    assert [part_slice(10, k, 3) for k in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]


def test_two_processes_follow_single_process_training(sphere_series):
    config = preset("tiny", steps=20, distance_weight=1.0, **CONFIG)
    records = []
    single = train(sphere_series, config, device="cpu")
    double = train_distributed(sphere_series, config, nproc=2, device="cpu",
                               progress=lambda step, total, record: records.append((step, total, record)))
    assert [(step, total) for step, total, _ in records] == [(s, 20) for s in range(1, 21)]
    assert records[-1][2]["loss"] < 0.7 * records[0][2]["loss"]          # the loss falls
    assert double.steps_done == 20 and not double.cancelled
    assert [h["step"] for h in double.history] == [h["step"] for h in single.history] == [10, 20]
    for a, b in zip(single.history, double.history):
        for term in ("loss", "surface", "normal", "eikonal", "latent", "distance"):
            assert b[term] == pytest.approx(a[term], rel=LOSS_RTOL), term
    assert_same_weights(single.model.network, double.model.network)


def test_cancelled_two_process_checkpoint_resumes_in_one_process(sphere_series, tmp_path):
    path = tmp_path / "ddp.pt"
    cancel = threading.Event()

    def progress(step, total, record):
        if step == 6:
            cancel.set()

    # far more steps than the workers can take before the parent, polling every 0.1 s, passes the cancel on
    stopped = train_distributed(sphere_series, preset("tiny", steps=20_000, **CONFIG), checkpoint=path, nproc=2,
                                device="cpu", progress=progress, cancel=cancel)
    assert stopped.cancelled and 6 <= stopped.steps_done < 20_000
    state = read_checkpoint(resume_path(path))
    assert state["step"] == stopped.steps_done and "optimizer_state" in state
    resumed = Trainer.resume(path, sphere_series, device="cpu", steps=stopped.steps_done + 10).run()
    straight = train(sphere_series, preset("tiny", steps=stopped.steps_done + 10, **CONFIG), device="cpu")
    assert resumed.final_loss == pytest.approx(straight.final_loss, rel=LOSS_RTOL)
    assert_same_weights(straight.model.network, resumed.model.network)


def test_dsr_train_nproc_runs_torchrun(sphere_series, tmp_path, capsys):
    series, path = tmp_path / "series.npz", tmp_path / "cli.pt"
    sphere_series.save(series)
    status = dsr_main(["train", str(series), "-o", str(path), "--preset", "tiny", "--steps", "12",
                       "--batch-size", "1001", "--device", "cpu", "--nproc", "2", "-q"])
    assert status == 0
    model = TrainedModel.load(path, device="cpu")
    assert model.step == 12
    straight = train(sphere_series, preset("tiny", steps=12, **CONFIG), device="cpu")
    assert_same_weights(straight.model.network, model.network)
    points = np.random.default_rng(0).normal(scale=10, size=(50, 3))
    assert np.allclose(model.sdf(points, 0.4), straight.model.sdf(points, 0.4), atol=1e-4)


def test_diverging_run_raises_in_the_caller_and_keeps_the_last_good_checkpoint(sphere_series, tmp_path):
    path = tmp_path / "d.pt"
    with pytest.raises(TrainingDivergedError, match="loss became"):
        train_distributed(sphere_series, preset("tiny", steps=200, lr=1e12, checkpoint_every=1), checkpoint=path,
                          nproc=2, device="cpu")
    state = read_checkpoint(path)
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())


class ReferenceLoss(torch.nn.Module):
    """The loss through ``autograd.grad(create_graph=True)``: a double backward under DDP."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, batch):
        return igr_loss(self.network, batch, gradient_fn=reference_sdf_and_gradient)[0]


def double_backward_worker(rank, world_size, address, series, result_path):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size)
    torch.manual_seed(0)
    network = SpaceTimeSDF(preset("tiny").model)
    sampler = SeriesSampler(series, 1024)       # 512 + 64 points per process: the mean of means is exact
    replica = DistributedDataParallel(ReferenceLoss(network))
    replica(sampler.sample(torch.Generator().manual_seed(1), part=(rank, world_size))).backward()
    if rank == 0:
        single = SpaceTimeSDF(preset("tiny").model)
        single.load_state_dict(network.state_dict())
        ReferenceLoss(single)(sampler.sample(torch.Generator().manual_seed(1))).backward()
        torch.save([(p.grad - q.grad).abs().max() / q.grad.abs().max()
                    for p, q in zip(network.parameters(), single.parameters())], result_path)
    leave_process_group(finished=True)  # rank 1 leaving while rank 0 still works has aborted gloo (1 run in 3)


def test_ddp_averages_gradients_of_a_double_backward_loss(sphere_series, tmp_path):
    path = tmp_path / "differences.pt"
    torch.multiprocessing.spawn(double_backward_worker, nprocs=2,
                                args=(2, f"file://{tmp_path / 'rendezvous'}", sphere_series, str(path)))
    assert max(torch.load(path)) < 1e-5


def leaving_worker(rank, world_size, address, result_path):
    torch.distributed.init_process_group("gloo", init_method=address, rank=rank, world_size=world_size)
    torch.distributed.barrier()
    if rank == 1:
        time.sleep(1.0)  # still busy with its last work
    started = time.perf_counter()
    leave_process_group(finished=True)
    if rank == 0:
        torch.save(time.perf_counter() - started, result_path)


def test_a_finished_process_leaves_the_group_only_with_the_others(tmp_path):
    path = tmp_path / "waited.pt"
    torch.multiprocessing.spawn(leaving_worker, nprocs=2, args=(2, f"file://{tmp_path / 'rendezvous'}", str(path)))
    assert torch.load(path) > 0.8  # rank 0 waited for rank 1 before closing its connections


def test_distributed_entry_needs_torchrun(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert distributed_main([str(tmp_path / "s.npz"), "-o", str(tmp_path / "m.pt")]) == 2
    assert "torchrun" in capsys.readouterr().err


def test_nproc_must_be_positive(sphere_series):
    with pytest.raises(ValueError, match="nproc must be at least 1"):
        train_distributed(sphere_series, preset("tiny", steps=1), nproc=0)


def test_a_time_budget_is_refused_for_several_processes(sphere_series, tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="a time budget .minutes. sizes the steps of one process"):
        train_distributed(sphere_series, preset("tiny", minutes=1.0), nproc=2)
    sphere_series.save(tmp_path / "s.npz")
    assert dsr_main(["train", str(tmp_path / "s.npz"), "-o", str(tmp_path / "m.pt"), "--nproc", "2",
                     "--minutes", "1"]) == 2
    assert "give distributed training a number of steps" in capsys.readouterr().err


def test_train_options_survive_the_trip_to_torchrun():
    parser = build_parser()
    argv = ["train", "s.npz", "-o", "m.pt", "--preset", "tiny", "--steps", "7", "--lr", "0.01", "-q", "--nproc", "2"]
    args = parser.parse_args(argv)
    again = parser.parse_args(["train", *train_argv(args), "--nproc", "2"])
    assert vars(again) == vars(args)


def test_dsr_train_reads_a_config_file(sphere_series, tmp_path):
    series, config_path, path = tmp_path / "series.npz", tmp_path / "config.json", tmp_path / "m.pt"
    sphere_series.save(series)
    config = preset("tiny", steps=3, batch_size=999, lr=5e-3)
    config_path.write_text(json.dumps(config.to_dict()))
    assert dsr_main(["train", str(series), "-o", str(path), "--config", str(config_path), "--steps", "4",
                     "--device", "cpu", "-q"]) == 0
    assert read_checkpoint(path)["config"] == dataclasses.replace(config, steps=4).to_dict()
    config_path.write_text("{not json")
    assert dsr_main(["train", str(series), "-o", str(path), "--config", str(config_path), "-q"]) == 2
