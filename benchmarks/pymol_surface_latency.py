"""Latency of ``dsr_surface``: from the command typed to the object in PyMOL, at two t and over a 50-state range.

Uses the quick-start model (``demo_out/adk_dsr.pt``, written by ``pymol -c examples/quickstart.pml``)
on adenylate kinase, in headless PyMOL with the in-process backend. Prints, per resolution, the
median wall time of the command and how much of it the backend query (SDF grid, marching cubes,
normals) takes; the rest is building and loading the CGO.

    python benchmarks/pymol_surface_latency.py [--model demo_out/adk_dsr.pt] [--resolution 64 96] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from pymol import cmd

import pymol_dsr  # noqa: F401  (registers the commands)
from pymol_dsr.commands import dsr_load, dsr_surface
from pymol_dsr.session import session_for

CASES = {"t=0.5": ("0.5", 1), "t=0.55": ("0.55", 1), "50-state range": ("0-0.98:0.02", 50)}
"""As typed, and the number of time points. For the quick-start model t = 0.5 is a training state (a time node
of the K-Planes model) and t = 0.55 lies halfway between two, where the model blends the nearest nodes."""


class QueryClock:
    """Wraps a backend's ``surfaces`` to add up the seconds spent in it."""

    def __init__(self, backend) -> None:
        self.seconds, self._surfaces = 0.0, backend.surfaces
        backend.surfaces = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._surfaces(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def measure(clock: QueryClock, t: str, model: str, resolution: int, repeats: int) -> tuple[float, float]:
    """Median seconds of the whole command and of its backend query, over ``repeats`` runs."""
    totals, queries = [], []
    for _ in range(repeats):
        clock.seconds = 0.0
        start = time.perf_counter()
        cmd.do(f"dsr_surface t={t}, model={model}, name=bench_surface, resolution={resolution}")
        totals.append(time.perf_counter() - start)
        queries.append(clock.seconds)
    return statistics.median(totals), statistics.median(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo_out/adk_dsr.pt", help="checkpoint of the quick start")
    parser.add_argument("--resolution", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the one-t cases (the range runs once)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if not os.path.isfile(args.model):
        raise SystemExit(f"{args.model} not found: run 'pymol -c examples/quickstart.pml' first")
    torch.set_num_threads(args.threads)
    cmd.feedback("disable", "all", "everything")
    model = dsr_load(args.model, "bench")
    clock = QueryClock(session_for(cmd).backend())
    dsr_surface(t="0.5", model=model, name="warmup", resolution=32)
    print(f"dsr_surface latency, model {args.model}, torch {torch.__version__} on CPU with {args.threads} thread(s)")
    print(f"{'case':>16} {'resolution':>10} {'command s':>10} {'query s':>8} {'display s':>9}")
    for resolution in args.resolution:
        for case, (t, count) in CASES.items():
            command, query = measure(clock, t, model, resolution, args.repeats if count == 1 else 1)
            print(f"{case:>16} {resolution:>10} {command:>10.2f} {query:>8.2f} {command - query:>9.2f}")


if __name__ == "__main__":
    main()
