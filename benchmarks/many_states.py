"""Training on many states: surfaces, setup, step time and peak memory for 40, 150 and 1,000 states, and with
``--score`` the reconstruction after the default schedule (1,500 steps up to 40 states, 1,500 x states / 40
past them), each count in a process of its own.

    python benchmarks/many_states.py --states 40 150 1000
    python benchmarks/many_states.py --states 150 --score        # the default training, then IoU / NC

The states come from the DIMS trajectory of adenylate kinase (98 frames): 40 states are frames 0, 2, ..., 78
(the paper's training frames); more states resample the trajectory evenly, each state's atoms interpolated
linearly between the two nearest real frames. Surfaces are computed as ``dsr_train`` does
(``solvent_excluded_surfaces``: one frame per core); training is preset fast through ``Trainer.run``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from reproduce_dims import ATOMS_HELP, dims_atoms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, nargs="+", default=[40, 150, 1000], help="state counts")
    parser.add_argument("--steps", type=int, default=60, help="steps timed without --score (default 60)")
    parser.add_argument("--score", action="store_true", help="train the default schedule and score 4 states "
                        "(150 states: about 20 minutes on 2 CPU cores)")
    parser.add_argument("--atoms", help=ATOMS_HELP)
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)  # one count, in this process
    return parser.parse_args()


def state_coords(coords: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of ``count`` states over the trajectory (frame times, coordinates): 40 is every 2nd of the first
    80 frames, other counts resample all frames with linear interpolation between neighbours."""
    if count == 40:
        frames = np.arange(0, 80, 2, dtype=float)
    else:
        frames = np.linspace(0, len(coords) - 1, count)
    low = np.floor(frames).astype(int)
    high = np.minimum(low + 1, len(coords) - 1)
    weight = (frames - low)[:, None, None]
    return frames, (1 - weight) * coords[low] + weight * coords[high]


def measure(count: int, args: argparse.Namespace) -> dict:
    import torch

    from dsr_backend.config import preset
    from dsr_backend.evaluate import ReferenceFrames
    from dsr_backend.metrics import Shape, compare
    from dsr_backend.query import drop_small_components, narrow_band_sdf_grid
    from dsr_backend.series import SurfaceSeries
    from dsr_backend.surface import solvent_excluded_surfaces
    from dsr_backend.train import Trainer

    atoms = dims_atoms(args.atoms)
    times, coords = state_coords(atoms.coords, count)
    start = time.perf_counter()
    surfaces = solvent_excluded_surfaces(list(coords), [atoms.radii] * count)
    row = dict(states=count, surfaces_s=time.perf_counter() - start,
               points=int(sum(len(s.points) for s in surfaces)))
    series = SurfaceSeries([s.points for s in surfaces], [s.normals for s in surfaces], times=times)
    del surfaces
    start = time.perf_counter()
    trainer = Trainer(series, preset("fast"), device="cpu")
    row["setup_s"] = time.perf_counter() - start
    stamps: list[float] = []
    steps = trainer.total_steps if args.score else args.steps
    trainer.total_steps = steps
    trainer.run(progress=lambda *_: stamps.append(time.perf_counter()))
    tail = np.diff(stamps[min(10, len(stamps) // 2):])
    row.update(steps=steps, step_s=float(np.median(tail)), train_s=stamps[-1] - stamps[0],
               peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)
    if args.score:
        torch.set_num_threads(2)
        model = trainer.snapshot()
        reference = ReferenceFrames.from_atoms(coords, atoms.radii, times)
        scores = []
        for index in np.linspace(0, count - 1, 4).round().astype(int):
            surface = reference.frame_surface(int(index))
            truth = Shape.from_mesh(series.normalization.to_unit(surface.vertices), surface.faces, surface.normals)
            grid, _ = narrow_band_sdf_grid(model, float(series.time_map.time_to_fraction(times[index])), 0.0, 128)
            scores.append(compare(Shape.from_sdf_grid(drop_small_components(grid) / series.normalization.scale), truth))
        row.update({name: float(np.mean([s[name] for s in scores])) for name in ("iou", "chamfer", "nc")})
    return row


def main() -> None:
    args = parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args)))
        return
    rows = []
    for count in args.states:
        command = [sys.executable, __file__, "--single", str(count), "--steps", str(args.steps)]
        command += (["--score"] if args.score else []) + (["--atoms", args.atoms] if args.atoms else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    scored = args.score
    print("\n| states | surface points | surfaces | setup | step | peak memory (GiB) |"
          + (" steps | training | IoU | Chamfer | NC |" if scored else ""))
    print("|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|---:|---:|" if scored else ""))
    for row in rows:
        line = (f"| {row['states']} | {row['points'] / 1e6:.1f} M | {row['surfaces_s']:.0f} s | {row['setup_s']:.1f} s | "
                f"{row['step_s']:.3f} s | {row['peak_rss_gib']:.2f} |")
        if scored:
            line += (f" {row['steps']} | {row['train_s']:.0f} s | {row['iou']:.4f} | {row['chamfer']:.3g} | "
                     f"{row['nc']:.4f} |")
        print(line)


if __name__ == "__main__":
    main()
