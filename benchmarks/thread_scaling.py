"""Thread counts on a CPU: the fast training step and the surfaces of many frames, with and without a busy
neighbour process, ours (the thread settings the engine picks itself) against torch's defaults, in one run.

    python benchmarks/thread_scaling.py --frames 40
    python benchmarks/thread_scaling.py --atoms dims_atoms.npz     # a machine without MDAnalysis

Training: seconds per step of preset fast on the DIMS frames 0, 2, ... (adenylate kinase) with the step run by
``Trainer.run`` (what the CLI, the plugin, the worker and the service run: one intra-op thread, denormal
floats flushed, the next batch drawn in a second thread) against the same steps under
``torch.set_num_threads(n)`` for n = 1, 2 and torch's default with denormals flushed, and under torch's
defaults as they come (the reference: what a training without these settings gets). Surfaces: seconds for ``--surface-frames`` frames by ``solvent_excluded_surfaces`` (one
frame per core, one thread each) against one frame after the other on torch's default threads. The busy
neighbour is ``python -c "while True: pass"``, started for the measurements that name it.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from typing import Iterator

import numpy as np
import torch

from dsr_backend.config import preset
from dsr_backend.series import SurfaceSeries
from dsr_backend.surface import solvent_excluded_surface, solvent_excluded_surfaces
from dsr_backend.threads import cpu_workers
from dsr_backend.train import Trainer
from reproduce_dims import ATOMS_HELP, dims_atoms

DEFAULT_THREADS = torch.get_num_threads()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="training frames (every 2nd DIMS frame; default 40)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per setting (default 20)")
    parser.add_argument("--surface-frames", type=int, default=8, help="frames of the surface timing (default 8)")
    parser.add_argument("--atoms", help=ATOMS_HELP)
    return parser.parse_args()


@contextlib.contextmanager
def busy_neighbour(on: bool) -> Iterator[None]:
    """A second process spinning on one core inside the block (when ``on``)."""
    if not on:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        process.kill()
        process.wait()


def ours(trainer: Trainer, steps: int) -> float:
    """Seconds per step of ``Trainer.run`` (the engine's own thread settings), after two warm-up steps."""
    times: list[float] = []
    stop = threading.Event()

    def progress(step: int, total: int, record: dict) -> None:
        times.append(time.perf_counter())
        if len(times) == steps + 3:
            stop.set()

    trainer.total_steps = trainer.step + steps + 10
    trainer.run(progress=progress, cancel=stop)
    return (times[-1] - times[2]) / steps


def plain(trainer: Trainer, steps: int, threads: int, flush: bool = True) -> float:
    """Seconds per step of ``train_step`` under ``torch.set_num_threads(threads)`` (batches drawn in line),
    denormal floats flushed to zero where ``flush``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)
    prefetch, trainer._prefetch = trainer._prefetch, None
    try:
        for _ in range(2):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        return (time.perf_counter() - start) / steps
    finally:
        trainer._prefetch = prefetch
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)


def main() -> None:
    args = parse_args()
    atoms = dims_atoms(args.atoms)
    frames = list(range(0, 2 * args.frames, 2))
    print(f"{cpu_workers()} cores, torch default {DEFAULT_THREADS} threads; surfaces of {args.surface_frames} "
          f"frames, then preset fast on {len(frames)} frames of adenylate kinase ({len(atoms.radii)} atoms)")
    surface_coords = [atoms.coords[f] for f in frames[:args.surface_frames]]
    surface_rows = []
    for neighbour in (False, True):
        with busy_neighbour(neighbour):
            start = time.perf_counter()
            for xyz in surface_coords:
                solvent_excluded_surface(xyz, atoms.radii)
            plain_seconds = time.perf_counter() - start
            start = time.perf_counter()
            solvent_excluded_surfaces(surface_coords, [atoms.radii] * len(surface_coords))
            surface_rows.append((neighbour, plain_seconds, time.perf_counter() - start))
    surfaces = solvent_excluded_surfaces([atoms.coords[f] for f in frames], [atoms.radii] * len(frames))
    series = SurfaceSeries([s.points for s in surfaces], [s.normals for s in surfaces], times=np.array(frames, float))
    trainer = Trainer(series, preset("fast"), device="cpu")
    ours(trainer, 2)  # compile and warm up
    rows = []
    for neighbour in (False, True):
        with busy_neighbour(neighbour):
            timings = {"torch's defaults": plain(trainer, args.steps, DEFAULT_THREADS, flush=False)}
            timings.update({f"{n} thread{'s' if n > 1 else ''}": plain(trainer, args.steps, n)
                            for n in sorted({1, 2, DEFAULT_THREADS})})
            timings["ours"] = ours(trainer, args.steps)
            rows.append((neighbour, timings))
    print("\n| surfaces | one after the other, torch default threads | ours (one frame per core) | ratio |")
    print("|---|---:|---:|---:|")
    for neighbour, plain_seconds, our_seconds in surface_rows:
        label = "busy neighbour" if neighbour else "idle machine"
        print(f"| {label} | {plain_seconds:.1f} s | {our_seconds:.1f} s | {plain_seconds / our_seconds:.2f}x |")
    names = list(rows[0][1])
    print("\n| training step | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for neighbour, timings in rows:
        label = "busy neighbour" if neighbour else "idle machine"
        print(f"| {label} | " + " | ".join(f"{timings[name]:.3f} s" for name in names) + " |")
    idle, busy = rows[0][1], rows[1][1]
    default = "torch's defaults"
    print(f"\nours against torch's defaults ({DEFAULT_THREADS} threads, denormals kept): {idle[default] / idle['ours']:.2f}x "
          f"faster idle, {busy[default] / busy['ours']:.2f}x beside a busy process; against one thread with "
          f"denormals flushed {idle['1 thread'] / idle['ours']:.2f}x / {busy['1 thread'] / busy['ours']:.2f}x. The "
          f"neighbour (1 of {cpu_workers()} cores) slows ours {busy['ours'] / idle['ours']:.2f}x and torch's defaults "
          f"{busy[default] / idle[default]:.2f}x")


if __name__ == "__main__":
    main()
