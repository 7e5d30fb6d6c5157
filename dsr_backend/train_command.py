"""``dsr train``: its options, the training it runs with a progress bar, and the torchrun entry point.

``torchrun --nproc-per-node N -m dsr_backend.train_command ARGS`` runs ``dsr train ARGS`` on every process
with DistributedDataParallel; ``dsr train --nproc N`` starts that command on this machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from typing import Sequence

import torch
import torch.distributed as dist
from tqdm import tqdm

from .atomic import check_writable
from .checkpoint import STORAGES
from .config import DEFAULT_PRESET, QUALITIES, TrainConfig, preset
from .distributed import NO_TIME_BUDGET, DistributedTrainer, init_process_group, launch, leave_process_group, process_device
from .errors import InvalidInputError, exit_status
from .series import SurfaceSeries
from .train import Trainer

def add_train_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Add the options of ``dsr train`` (shared with the torchrun entry point); return them."""
    return [
        parser.add_argument("series", help="series .npz written by 'dsr molsurf' or 'dsr series'"),
        parser.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)"),
        parser.add_argument("--preset", default=DEFAULT_PRESET, help="fast (K-Planes, minutes on a CPU; the default), "
                                                                     "paper (the paper's 8x512 MLP, for a GPU), "
                                                                     "small (6x128 MLP), tiny (tests)"),
        parser.add_argument("--quality", default="quick", choices=list(QUALITIES),
                            help="quick (the preset's schedule, default) or best (four times as many steps: for fast, "
                                 "reconstruction IoU 0.981 instead of 0.971 on DIMS)"),
        parser.add_argument("--config", help="a TrainConfig as JSON (the 'config' of a checkpoint) instead of "
                                             "--preset; the options below still override it"),
        parser.add_argument("--steps", type=int, help="number of optimiser steps (default: the preset's epochs)"),
        parser.add_argument("--minutes", type=float, help="train for this wall time instead of a number of steps: "
                                                          "the run sizes its steps and schedule to it"),
        parser.add_argument("--batch-size", type=int, help="surface points per step (over all processes)"),
        parser.add_argument("--frames-per-step", type=int, help="frames per step (0: all)"),
        parser.add_argument("--lr", type=float, help="learning rate"),
        parser.add_argument("--members", type=int, help="fast preset: train the mean of this many independently "
                                                        "initialised models (this many times the work a step)"),
        parser.add_argument("--precision", choices=["fp32", "tf32", "bf16"], help="arithmetic of the network"),
        parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                            help="torch.compile the training step (default: the preset's; on for fast)"),
        parser.add_argument("--seed", type=int),
        parser.add_argument("--storage", choices=list(STORAGES),
                            help="weights of the model file: float32, or float16 deflated (default: the preset's; "
                                 "float16 for fast)"),
        parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints"),
        parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (default)"),
        parser.add_argument("--resume", help="continue the run saved in this checkpoint"),
        parser.add_argument("-q", "--quiet", action="store_true"),
    ]


def train_argv(args: argparse.Namespace) -> list[str]:
    """The ``dsr train`` options held in ``args`` as a command line again (defaults left out)."""
    argv: list[str] = []
    for action in add_train_arguments(argparse.ArgumentParser()):
        value = getattr(args, action.dest)
        if not action.option_strings:
            argv.append(str(value))
        elif action.nargs == 0:
            argv += [action.option_strings[-1]] if value else []
        elif value is not None and value != action.default:
            argv += [action.option_strings[-1], str(value)]
    return argv


def train_config(args: argparse.Namespace, num_proteins: int) -> TrainConfig:
    """The configuration named by ``--preset`` or ``--config`` with the other options applied."""
    overrides = {key: value for key, value in (
        ("steps", args.steps), ("minutes", args.minutes), ("batch_size", args.batch_size), ("lr", args.lr),
        ("precision", args.precision), ("seed", args.seed), ("checkpoint_every", args.checkpoint_every),
        ("frames_per_step", args.frames_per_step), ("compile", args.compile), ("storage", args.storage))
        if value is not None}
    if not args.config:
        config = preset(args.preset, num_proteins=num_proteins, quality=args.quality, **overrides)
    else:
        try:
            with open(args.config, encoding="utf-8") as handle:
                config = TrainConfig.from_dict(json.load(handle))
        except (OSError, ValueError, TypeError) as error:
            raise InvalidInputError(f"cannot read the configuration {args.config}: {error}") from None
        config = dataclasses.replace(config, **overrides)
    if args.members is None:
        return config
    try:
        return config.with_members(args.members)
    except InvalidInputError as error:
        raise InvalidInputError(f"--members: {error}") from None


def run_training(args: argparse.Namespace, trainer_class: type[Trainer] | None = None,
                 device: str | torch.device | None = None,
                 main_process: bool = True) -> None:
    """Train as ``dsr train`` does with ``trainer_class`` (default :class:`Trainer`) on ``device``.

    Only the ``main_process`` shows progress and prints; every process saves through its trainer.
    """
    trainer_class = trainer_class or Trainer
    device = device or args.device
    check_writable(args.output)
    if args.minutes is not None and not args.minutes > 0:
        raise InvalidInputError(f"--minutes must be positive, got {args.minutes:g}")
    if args.minutes is not None and args.resume:
        raise InvalidInputError("--resume goes on with the run's own steps or time budget (or --steps); "
                                "--minutes starts a new run")
    series = SurfaceSeries.load(args.series)
    if args.resume:
        trainer = trainer_class.resume(args.resume, series, device=device, steps=args.steps or 0)
    else:
        metadata = {"series": os.path.abspath(args.series), "frames": series.num_frames}
        trainer = trainer_class(series, train_config(args, series.num_proteins), device=device, metadata=metadata)
    say = print if main_process else (lambda *_: None)
    if not trainer.exact_resume:
        say(f"{args.resume} has no resume checkpoint beside it: training goes on from its weights with a "
            "fresh optimiser")
    if series.time_map.is_static:
        say("one frame only: the model is static (the same surface at every t)")
    cancel = threading.Event()
    previous_handler = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc="train", unit="step",
               disable=args.quiet or not main_process)

    def progress(step: int, total: int, record: dict) -> None:
        if bar.total != total:  # a time budget sizes the run as it goes
            bar.total = total
        bar.update(1)
        if step % 10 == 0 or step == total:
            bar.set_postfix(loss=f"{record['loss']:.4g}", eik=f"{record['eikonal']:.3g}")

    try:
        result = trainer.run(args.output, progress=progress, cancel=cancel)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous_handler)
    if result.cancelled:
        say(f"cancelled at step {result.steps_done}/{result.total_steps}; saved {args.output} "
            f"(continue with: dsr train {args.series} -o {args.output} --resume {args.output})")
        raise SystemExit(130)
    say(f"wrote {args.output}: {result.steps_done} steps on {trainer.device} in {result.seconds:.1f} s, "
        f"final loss {result.final_loss:.4g}")


def cmd_train(args: argparse.Namespace) -> None:
    if args.nproc > 1:
        if args.minutes is not None:
            raise InvalidInputError(NO_TIME_BUDGET)
        raise SystemExit(launch(args.nproc, train_argv(args)))
    run_training(args)


# ---------------------------------------------------------------------- torchrun entry point
def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun ... -m dsr_backend.train_command ARGS``: ``dsr train ARGS`` on every process; the exit status."""
    parser = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m dsr_backend.train_command",
                                     description="Train a DSR model with DistributedDataParallel (one process "
                                                 "per GPU); the options are those of 'dsr train'.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return exit_status("dsr train (distributed)", lambda: train_in_process_group(args))


def train_in_process_group(args: argparse.Namespace) -> None:
    """This torchrun process's share of ``dsr train``: join the group, train, leave it."""
    if "RANK" not in os.environ:
        raise InvalidInputError("no torchrun environment (RANK, WORLD_SIZE, ...): start this module with "
                                "torchrun, or use 'dsr train --nproc N'")
    device = process_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    init_process_group(device)
    finished = False
    try:
        run_training(args, DistributedTrainer, device, main_process=dist.get_rank() == 0)
        finished = True
    except SystemExit:  # a cancelled run: every process stopped at the same step, and rank 0 saved
        finished = True
        raise
    finally:
        leave_process_group(finished)


if __name__ == "__main__":
    sys.exit(main())
