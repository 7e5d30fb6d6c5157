"""Data-parallel training on torch.distributed: DistributedDataParallel under torchrun or spawned processes.

Every process holds the whole series and draws the random numbers of the whole batch from the same
seeded generator, then keeps its contiguous slice of the batch points (and of the uniform points of D).
The slices of all processes together are exactly the single-process batch of ``config.batch_size``
points, so a run on N processes follows the single-process run up to floating-point summation order,
and checkpoints (written by rank 0 in the single-process format) resume on any number of processes.
Gradients, latent codes included, are averaged by DDP; each process weights its loss by its share of
the batch so that the average is the loss of the whole batch.

Used by ``torchrun --nproc-per-node N -m dsr_backend.train_command ARGS`` (ARGS as for ``dsr train``), by
:func:`launch`, which runs that command on this machine (``dsr train --nproc N``), and by
:func:`train_distributed`, which spawns the processes on this machine and returns a :class:`TrainResult`.
"""
from __future__ import annotations

import datetime
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import errors
from .config import TrainConfig
from .errors import DSRError, InvalidInputError
from .loss import igr_loss
from .sampling import Batch, part_slice
from .series import SurfaceSeries
from .train import ProgressCallback, Trainer, TrainResult
from .trained import TrainedModel, resolve_device

logger = logging.getLogger(__name__)

ENTRY_MODULE = "dsr_backend.train_command"
POLL_SECONDS = 0.1
FINISHED_KEY = "dsr/finished"  # a process's key in the group's store once its training is over


class ReplicaLoss(nn.Module):
    """The loss of one process's part of the batch, scaled so that DDP's gradient average is exact.

    With ``b`` of ``B`` surface points and ``s`` of ``S`` samples of D on this process, the surface, normal
    and distance terms are weighted by ``N b / B``, the eikonal term by ``N s / S`` and the latent term by 1,
    so the mean over the N processes is the loss of the whole batch.
    """

    def __init__(self, network: nn.Module, config: TrainConfig, dtype: torch.dtype, surface_share: float,
                 space_share: float, world_size: int, loss_function: Callable = igr_loss):
        super().__init__()
        self.network, self.config, self.dtype, self.loss_function = network, config, dtype, loss_function
        self.scale = world_size * surface_share
        self.eikonal_weight = config.eikonal_weight * space_share / surface_share
        self.latent_weight = config.latent_weight / self.scale

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, terms = self.loss_function(self.network, batch, self.config.normal_weight, self.eikonal_weight,
                                         self.latent_weight, dtype=self.dtype,
                                         smoothness_weight=self.config.time_smoothness / self.scale,
                                         distance_weight=self.config.distance_weight)
        return self.scale * loss, terms


class AgreedCancel:
    """A cancel flag read alike by every process of the group: set as soon as any process's ``event`` is."""

    def __init__(self, event: Any | None, device: torch.device):
        self.event, self.device = event, device

    def is_set(self) -> bool:
        flag = torch.tensor([float(self.event is not None and self.event.is_set())], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


NO_TIME_BUDGET = ("a time budget (minutes) sizes the steps of one process; give distributed training a number "
                  "of steps")


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one process of an initialised ``torch.distributed`` group.

    Same interface and checkpoint format as :class:`Trainer`; ``config.batch_size`` is the effective
    batch over all processes. Rank 0 alone writes checkpoints and reports progress; every process
    returns the same result.
    """

    ROW_SPARSE = False
    """DistributedDataParallel averages the gradients of module parameters only: the space-time planes train
    whole, with the rest of the model."""

    def __init__(self, series: SurfaceSeries, config: TrainConfig, device: str | torch.device | None = None,
                 metadata: dict[str, Any] | None = None):
        if not dist.is_initialized():
            raise InvalidInputError("no torch.distributed process group: run under torchrun or train_distributed")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        if config.batch_size < self.world_size:
            raise InvalidInputError(f"batch_size {config.batch_size} is smaller than the {self.world_size} "
                                    "processes it is split across")
        if config.minutes:
            raise InvalidInputError(NO_TIME_BUDGET)
        super().__init__(series, config, device, metadata)
        shares = []
        for total in (self.sampler.batch_size, self.sampler.num_global):
            mine = part_slice(total, self.rank, self.world_size)
            shares.append((mine.stop - mine.start) / total if total else 0.0)
        self.surface_share, global_share = shares
        self.space_share = ((self.surface_share * self.sampler.batch_size + global_share * self.sampler.num_global)
                            / (self.sampler.batch_size + self.sampler.num_global))
        replica = ReplicaLoss(self.network, config, self.compute_dtype, self.surface_share, self.space_share,
                              self.world_size, self.loss_function)
        self.replica = DistributedDataParallel(
            replica, device_ids=[self.device] if self.device.type == "cuda" else None)

    def batch_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This process's scaled loss, and the loss and terms of the whole batch (all-reduced)."""
        batch = self.sampler.sample(self.generator, part=(self.rank, self.world_size))
        loss, terms = self.replica(batch)
        # the mean of the scaled losses is the whole batch's loss; point terms add up by share, and terms
        # of the parameters alone (latent codes, ...) are the same on every process
        shares = {"surface": self.surface_share, "normal": self.surface_share, "distance": self.surface_share,
                  "eikonal": self.space_share}
        weights = [1.0 / self.world_size] + [shares.get(name, 1.0 / self.world_size) for name in terms]
        values = torch.stack([loss.detach(), *terms.values()]) * torch.tensor(weights, device=self.device)
        dist.all_reduce(values)
        return loss, dict(zip(["loss", *terms], values))

    def save(self, path: str | os.PathLike) -> None:
        """Rank 0 writes the checkpoint; every process waits until it is on disk."""
        if self.rank == 0:
            super().save(path)
        dist.barrier()

    def run(self, checkpoint: str | os.PathLike | None = None, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None) -> TrainResult:
        """As :meth:`Trainer.run`; ``progress`` is called on rank 0 only, ``cancel`` set on any rank stops all."""
        return super().run(checkpoint, progress if self.rank == 0 else None, AgreedCancel(cancel, self.device))


def process_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its node: ``cuda:local_rank`` for CUDA, else CPU."""
    device = resolve_device(device)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise InvalidInputError(f"process {local_rank} of this node has no GPU: torch sees "
                                f"{torch.cuda.device_count()}; start at most that many processes per node")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_process_group(device: torch.device, **kwargs: Any) -> None:
    """Join the process group with NCCL for CUDA devices and gloo otherwise (torchrun's env:// by default)."""
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30),
                            **kwargs)


def leave_process_group(finished: bool) -> None:
    """Destroy the process group; after a finished run, only once every process has finished with it.

    Gloo can abort a process whose peer closes its connections while it still works (gloo issue 155: a
    barrier followed by destruction). Here a rank aborted so ("terminate called without an active
    exception") after rank 0 had saved, in CI and once in about 450 ``dsr train --nproc 2`` runs on this
    machine, and in a test whose rank 1 left while rank 0 still computed, once in three runs. Waiting on
    the group's store, which carries no collective's messages, lets every process finish its work before
    any connection closes. After an error the group goes at once, so that processes blocked in a
    collective fail rather than wait.
    """
    if finished:
        store, rank = dist.distributed_c10d._get_default_store(), dist.get_rank()
        store.set(f"{FINISHED_KEY}/{rank}", "1")
        store.wait([f"{FINISHED_KEY}/{peer}" for peer in range(dist.get_world_size())])
    dist.destroy_process_group()


def launch(nproc: int, train_args: Sequence[str]) -> int:
    """Run ``torchrun --standalone --nproc-per-node nproc -m dsr_backend.train_command train_args``.

    SIGINT (Ctrl-C) and SIGTERM are passed on to torchrun, which passes them to the processes; after
    SIGINT they stop at the same step and rank 0 saves. Returns torchrun's exit status (130 after SIGINT).
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", ENTRY_MODULE, *train_args]
    process = subprocess.Popen(command, start_new_session=True)  # signals reach it once, through us
    received: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 130 if signal.SIGINT in received else status


# ---------------------------------------------------------------------- spawned processes
def _spawned(rank: int, world_size: int, address: str, threads: int, series: SurfaceSeries, config: TrainConfig,
             checkpoint: str, device: str | None, metadata: dict[str, Any] | None, messages: Any,
             cancel: Any) -> None:
    """Body of one process started by :func:`train_distributed`; talks to the parent through ``messages``."""
    torch.set_num_threads(threads)
    try:
        here = process_device(device, rank)
        init_process_group(here, init_method=address, rank=rank, world_size=world_size)
        result = None
        try:
            trainer = DistributedTrainer(series, config, here, metadata)
            result = trainer.run(checkpoint, lambda *update: messages.put(("progress", update)), cancel)
        finally:
            leave_process_group(result is not None)
    except DSRError as error:
        messages.put(("error", (type(error).__name__, str(error))))
        raise
    if rank == 0:
        messages.put(("done", (result.steps_done, result.total_steps, result.cancelled, result.seconds,
                               result.history, result.last_record)))


def train_distributed(series: SurfaceSeries | str | os.PathLike, config: TrainConfig,
                      checkpoint: str | os.PathLike | None = None, nproc: int = 2,
                      device: str | torch.device | None = None, progress: ProgressCallback | None = None,
                      cancel: threading.Event | None = None, metadata: dict[str, Any] | None = None,
                      threads: int | None = None) -> TrainResult:
    """:func:`dsr_backend.train.train` on ``nproc`` processes of this machine (one per GPU), with DDP.

    Parameters
    ----------
    series : the series, or the path of its ``.npz``.
    config : as for ``train``; ``config.batch_size`` is the batch of all processes together.
    checkpoint : written by rank 0 every ``config.checkpoint_every`` steps and at the end (a temporary
        file when None); the single-process format, so ``Trainer.resume`` continues it on any number of
        processes.
    nproc : number of processes; with CUDA, process k uses GPU k (NCCL), otherwise the CPU (gloo).
    device, progress, cancel, metadata : as for ``train``; ``progress`` runs in this process.
    threads : torch threads per process on the CPU (default: this process's threads / nproc, at least 1).

    Raises
    ------
    The :class:`DSRError` a process raised (e.g. ``TrainingDivergedError``), or
    ``torch.multiprocessing.ProcessRaisedException`` for anything else.
    """
    if nproc < 1:
        raise InvalidInputError(f"nproc must be at least 1, got {nproc}")
    if config.minutes:
        raise InvalidInputError(NO_TIME_BUDGET)
    if not isinstance(series, SurfaceSeries):
        series = SurfaceSeries.load(series)
    device = resolve_device(device)
    threads = threads or max(1, torch.get_num_threads() // nproc)
    with tempfile.TemporaryDirectory(prefix="dsr-ddp-") as scratch:
        path = os.fspath(checkpoint) if checkpoint else os.path.join(scratch, "model.pt")
        rendezvous = "file://" + os.path.join(scratch, "rendezvous")
        context = mp.get_context("spawn")
        messages, stop = context.Queue(), context.Event()
        workers = mp.start_processes(
            _spawned, nprocs=nproc, join=False, start_method="spawn",
            args=(nproc, rendezvous, threads, series, config, path, str(device), metadata, messages, stop))
        outcome: dict[str, Any] = {}

        def drain() -> None:
            while True:
                try:
                    kind, payload = messages.get_nowait()
                except queue.Empty:
                    return
                if kind == "progress":
                    if progress is not None:
                        progress(*payload)
                else:
                    outcome.setdefault(kind, payload)

        try:
            finished = False
            while not finished:
                if cancel is not None and cancel.is_set():
                    stop.set()
                finished = workers.join(timeout=POLL_SECONDS)
                drain()
        except mp.ProcessRaisedException:
            drain()
            if "error" in outcome:
                name, message = outcome["error"]
                raise getattr(errors, name, DSRError)(message) from None
            raise
        steps_done, total_steps, cancelled, seconds, history, last_record = outcome["done"]
        model = TrainedModel.load(path, device=device)
    return TrainResult(model=model, steps_done=steps_done, total_steps=total_steps, cancelled=cancelled,
                       seconds=seconds, history=history, last_record=last_record)


if __name__ == "__main__":  # the torchrun entry point moved; say where
    sys.exit("this module is library code: run 'torchrun --nproc-per-node N -m dsr_backend.train_command ARGS' "
             "or 'dsr train --nproc N ARGS'")
