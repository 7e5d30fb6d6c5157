"""The fast (K-Planes) model's training step three ways, in one run: the autograd reference (grad f by
``autograd.grad(create_graph=True)``, then a double backward through the plane look-ups), the closed-form
gradient at the time nodes (one ordinary backward), and the same through ``torch.compile`` (what training
runs); and a no-grad query forward, eager and compiled. Random points in the unit cube at random nodes.

    python benchmarks/compile_speed.py [--threads 1] [--device cpu] [--points 8704]

A compile that fails is printed as such.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

from dsr_backend.config import preset
from dsr_backend.kplanes import KPlanesSDF


def timed(run: Callable[[], None], repeats: int) -> float:
    """Seconds per call after two warm-up calls (which also compile)."""
    run()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, what training uses)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=8704, help="points per step (default 8704: a fast batch)")
    parser.add_argument("--query-points", type=int, default=65536, help="points per query chunk (default 65536)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    config = preset("fast").model.for_times(np.linspace(-1, 1, 40))
    network = KPlanesSDF(config).to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    rows = torch.randint(40, (args.points,), generator=generator).to(device)
    train_x = (torch.rand(args.points, 3, generator=generator) * 2 - 1).to(device)
    train_t, protein = network.node_times[rows], torch.zeros(args.points, dtype=torch.long, device=device)
    query_x = (torch.rand(args.query_points, 3, generator=generator) * 2 - 1).to(device)
    query_t = torch.full((args.query_points,), 0.3, device=device)
    query_p = torch.zeros(args.query_points, dtype=torch.long, device=device)

    def loss(at_rows: torch.Tensor | None) -> torch.Tensor:
        out = network.sdf_and_gradient(train_x, train_t, protein, rows=at_rows)
        return out.sdf.abs().mean() + (out.grad_x.norm(dim=1) - 1).pow(2).mean()

    compiled_loss = torch.compile(loss)
    steps = {"autograd (reference)": lambda: loss(None).backward(),
             "closed form": lambda: loss(rows).backward(),
             "closed form, compiled": lambda: compiled_loss(rows).backward()}
    print(f"fast preset ({config.describe()}), torch {torch.__version__}, {device}, {torch.get_num_threads()} "
          f"thread(s), {args.points} points a step")
    reference = None
    for name, run in steps.items():
        try:
            seconds = timed(run, args.repeats)
        except Exception as error:  # report, do not stop: a refused compile is a result
            print(f"  train step, {name}: failed ({type(error).__name__}: {str(error).splitlines()[0][:70]})")
            continue
        reference = reference or seconds
        print(f"  train step, {name}: {seconds * 1e3:.0f} ms ({reference / seconds:.2f}x the reference)")
    compiled_network = torch.compile(network)
    for name, model in (("eager", network), ("compiled", compiled_network)):
        def query() -> None:
            with torch.no_grad():
                model(query_x, query_t, query_p)

        try:
            print(f"  query of {args.query_points} points, {name}: {timed(query, args.repeats) * 1e3:.0f} ms")
        except Exception as error:  # report, do not stop
            print(f"  query, {name}: failed ({type(error).__name__}: {str(error).splitlines()[0][:70]})")


if __name__ == "__main__":
    main()
