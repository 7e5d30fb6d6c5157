"""Speed-up of data-parallel training (DistributedDataParallel) against the number of processes.

Trains the same run (same effective batch, seed and steps) with plain single-process training and with
``train_distributed`` on 1, 2, ... processes, and prints training time (process start-up excluded: the
time of the training loop on rank 0), steps/s, batch points/s and the speed-up against single-process
training. On the CPU the processes use gloo and ``--threads`` torch threads each; with ``--device cuda``
process k uses GPU k (NCCL).

    python benchmarks/distributed_speedup.py --preset small --steps 40 --nproc 1 2 --threads 1
"""
from __future__ import annotations

import argparse

import torch

from dsr_backend import preset, train
from dsr_backend.distributed import train_distributed
from dsr_backend.synthetic import MovingSphere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, help="effective batch (default: the preset's)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    series = MovingSphere().series([float(k) for k in range(args.frames)], points_per_frame=6000)
    overrides = {"steps": args.steps, "checkpoint_every": 0}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = preset(args.preset, **overrides)
    points = config.batch_size * args.steps
    print(f"preset {args.preset}, effective batch {config.batch_size}, {args.steps} steps, device {args.device}, "
          f"{args.threads} thread(s) per process, torch {torch.__version__}")
    baseline = train(series, config, device=args.device)
    rows = [("single process (train)", baseline.seconds, baseline.final_loss)]
    for nproc in args.nproc:
        result = train_distributed(series, config, nproc=nproc, device=args.device, threads=args.threads)
        rows.append((f"DDP {nproc} process(es)", result.seconds, result.final_loss))
    print(f"{'run':26s} {'seconds':>8s} {'steps/s':>8s} {'points/s':>10s} {'speed-up':>8s} {'final loss':>11s}")
    for name, seconds, loss in rows:
        print(f"{name:26s} {seconds:8.2f} {args.steps / seconds:8.2f} {points / seconds:10.0f} "
              f"{baseline.seconds / seconds:8.2f} {loss:11.5g}")


if __name__ == "__main__":
    main()
