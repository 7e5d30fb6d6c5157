"""Training wall time to reach the paper's reconstruction scores on the DIMS benchmark, one preset per run;
``--compare`` sets runs side by side and prints the time ratios.

    python benchmarks/time_to_accuracy.py --preset fast --minutes 5 -o tta/fast
    python benchmarks/time_to_accuracy.py --preset fast --minutes 2 --sized -o tta/fast2
    python benchmarks/time_to_accuracy.py --preset paper --minutes 75 -o tta/paper
    python benchmarks/time_to_accuracy.py --compare tta/fast tta/paper

Run the presets one after the other on an otherwise idle machine, or at the same time to give each a core; on a GPU
(``--device cuda``) one after the other, with ``--precision`` and ``--compile`` for the arithmetic variants.
``--atoms FILE.npz`` keeps the trajectory's atoms for a machine without MDAnalysis. Training is that of
``reproduce_dims.py`` (states 1-80:2 of adenylate kinase) until the preset's steps or the budget (with
``--sized``, a run whose steps the trainer sizes to the budget, as ``dsr_train minutes=`` does); the network
is copied at probe times growing by ``--growth`` (copies are not counted as training time) and every copy is
scored after training on ``--frames`` against their solvent-excluded surfaces: reconstruction IoU on the
paper's 128^3 grid, Chamfer distance and normal consistency (the paper's conventions; narrow-band query,
specks below 1 % dropped as surface queries do). A probe reaches the paper when its IoU and NC both do.
Training runs with the thread settings the engine picks itself (``Trainer.run``); ``--threads`` sets those of
the scoring.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np
import torch

from dsr_backend.config import PRECISIONS, preset
from dsr_backend.evaluate import ReferenceFrames
from dsr_backend.ranges import parse_indices
from dsr_backend.metrics import RESOLUTION, Shape, compare as compare_shapes
from dsr_backend.query import drop_small_components, narrow_band_sdf_grid
from dsr_backend.train import Trainer
from dsr_backend.trained import TrainedModel
from reproduce_dims import ATOMS_HELP, PAPER, TRAIN_FRAMES, dims_atoms, training_series

TARGETS = (0.80, 0.85, 0.88, 0.90, 0.92, PAPER["reconstruction"]["iou"][0])
PAPER_NC = PAPER["reconstruction"]["nc"][0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fast", help="model preset to train (default fast)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall-time budget (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the scoring (default 2; training "
                                                                "picks its own)")
    parser.add_argument("--steps", type=int, help="train this many steps instead of the preset's "
                                                   "(fast's cosine schedule then spans them)")
    parser.add_argument("--sized", action="store_true", help="size the run to --minutes (dsr_train minutes=: the "
                                                             "steps and the learning rate's fall fit the budget)")
    parser.add_argument("--first", type=float, default=15.0, help="first probe after this many seconds (default 15)")
    parser.add_argument("--growth", type=float, default=1.5, help="each probe this much later (default 1.5)")
    parser.add_argument("--frames", default="0-60:20", help="training frames scored, FIRST-LAST:STEP (default 0-60:20)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, help="override the preset's arithmetic")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step (MLP presets)")
    parser.add_argument("--members", type=int, help="K-Planes presets: train the mean of this many models")
    parser.add_argument("--atoms", help=ATOMS_HELP)
    parser.add_argument("-o", "--output", default="tta_out", help="folder for the series and curve.json")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="output folders of runs to compare, fastest last")
    return parser.parse_args()


def train_with_probes(series, args: argparse.Namespace) -> list[dict]:
    """Train, copying the weights at each probe time; the copies with their training time and step."""
    overrides = {"precision": args.precision} if args.precision else {}
    if args.steps:
        overrides["steps"] = args.steps
    if args.sized:
        overrides["minutes"] = args.minutes
    if args.compile:
        overrides["compile"] = True
    config = preset(args.preset, **overrides)
    if args.members:
        config = config.with_members(args.members)
    trainer = Trainer(series, config, device=args.device)
    budget, next_probe, paused = args.minutes * 60.0, args.first, 0.0
    copies: list[dict] = []
    cancel = threading.Event()
    started = time.perf_counter()

    def progress(step: int, total: int, record: dict) -> None:
        nonlocal next_probe, paused
        seconds = time.perf_counter() - started - paused
        if seconds >= next_probe or seconds >= budget or step == total:
            copy_started = time.perf_counter()
            state = {**trainer.state(), "optimizer_state": None}
            state["model_state"] = {k: v.detach().clone() for k, v in state["model_state"].items()}
            copies.append(dict(seconds=seconds, step=step, loss=record["loss"], state=state))
            print(f"  {seconds:7.1f} s  step {step}/{total}  loss {record['loss']:.4g}", flush=True)
            while next_probe <= seconds:
                next_probe *= args.growth
            paused += time.perf_counter() - copy_started
        if seconds >= budget:
            cancel.set()

    trainer.run(progress=progress, cancel=cancel)
    trainer.save(os.path.join(args.output, "model.pt"))
    return copies


def reference_shapes(reference: ReferenceFrames, frames: list[int], normalization) -> dict[int, Shape]:
    """Each frame's solvent-excluded surface in the model's unit frame, as the metrics read it."""
    shapes = {}
    for frame in frames:
        surface = reference.frame_surface(frame)
        shapes[frame] = Shape.from_mesh(normalization.to_unit(surface.vertices), surface.faces, surface.normals,
                                        seed=frame)
    return shapes


def score(copies: list[dict], shapes: dict[int, Shape], device: str) -> list[dict]:
    """Mean and per-frame reconstruction IoU, Chamfer and NC of every copy."""
    curve = []
    for copy in copies:
        model = TrainedModel.from_state(copy["state"], torch.device(device))
        rows = []
        for frame, truth in shapes.items():
            t = float(model.time_map.time_to_fraction(frame))
            grid, _ = narrow_band_sdf_grid(model, t, 0.0, RESOLUTION)
            rows.append(compare_shapes(Shape.from_sdf_grid(drop_small_components(grid) / model.normalization.scale),
                                       truth))
        means = {name: float(np.mean([row[name] for row in rows])) for name in ("iou", "chamfer", "nc")}
        curve.append(dict(seconds=copy["seconds"], step=copy["step"], loss=copy["loss"], **means,
                          frame_iou=[row["iou"] for row in rows]))
        print(f"  {copy['seconds']:7.1f} s  step {copy['step']:6d}  IoU {means['iou']:.4f}  Chamfer "
              f"{means['chamfer']:.3g}  NC {means['nc']:.4f}", flush=True)
    return curve


def time_to_reach(curve: list[dict], target: float, nc: float = 0.0) -> float | None:
    """Training seconds of the first probe at or above IoU ``target`` and NC ``nc`` (None if never)."""
    return next((point["seconds"] for point in curve if point["iou"] >= target and point.get("nc", 1.0) >= nc), None)


def run_label(run: dict) -> str:
    """Preset, arithmetic where set, and the device or CPU threads of a run."""
    where = run.get("device", "cpu")
    where = "cpu" if where == "cpu" else where
    compiled = "compiled" if run.get("compile") else None
    members = f"{run['members']} members" if run.get("members") else None
    return ", ".join(part for part in (run["preset"], members, run.get("precision"), compiled, where) if part)


def compare(folders: list[str]) -> None:
    """Seconds to each target IoU per run, and each run's time over the last (fastest) run's; the first row is
    the best IoU the weakest run reached."""
    runs = []
    for folder in folders:
        with open(os.path.join(folder, "curve.json"), encoding="utf-8") as handle:
            runs.append(json.load(handle))
    names = [f"{os.path.basename(os.path.normpath(folder))} ({run_label(run)})" for folder, run in zip(folders, runs)]
    print("| IoU reached | " + " | ".join(names) + " | ratio vs " + names[-1] + " |")
    print("|---:|" + "---:|" * (len(runs) + 1))
    weakest = min(max(point["iou"] for point in run["curve"]) for run in runs)
    for target in sorted({weakest, *TARGETS}):
        times = [time_to_reach(run["curve"], target) for run in runs]
        cells = [f"{t:.0f} s" if t is not None else f"not in {run['curve'][-1]['seconds']:.0f} s"
                 for t, run in zip(times, runs)]
        fastest = times[-1]
        ratios = []
        for t, run in zip(times[:-1], runs[:-1]):
            if fastest is None:
                ratios.append("-")
            elif t is None:
                ratios.append(f"> {run['curve'][-1]['seconds'] / fastest:.1f}x")
            else:
                ratios.append(f"{t / fastest:.1f}x")
        print(f"| {target:.4f} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")
    paper = [time_to_reach(run["curve"], PAPER["reconstruction"]["iou"][0], PAPER_NC) for run in runs]
    print("| the paper's IoU and NC (" + f"{PAPER['reconstruction']['iou'][0]}, {PAPER_NC})" + " | "
          + " | ".join(f"{t:.0f} s" if t is not None else f"not in {run['curve'][-1]['seconds']:.0f} s"
                       for t, run in zip(paper, runs)) + " | |")
    for name, run in zip(names, runs):
        last = run["curve"][-1]
        print(f"{name}: best IoU {max(p['iou'] for p in run['curve']):.4f}, last {last['iou']:.4f} after "
              f"{last['seconds']:.0f} s ({last['step']} steps)")


def main() -> None:
    args = parse_args()
    if args.compare:
        compare(args.compare)
        return
    torch.set_num_threads(args.threads)
    os.makedirs(args.output, exist_ok=True)
    atoms = dims_atoms(args.atoms)
    frames = parse_indices(args.frames, len(atoms.coords), "--frames")
    if not set(frames) <= set(TRAIN_FRAMES):
        raise SystemExit(f"--frames must be training frames ({TRAIN_FRAMES[0]}..{TRAIN_FRAMES[-1]} step 2)")
    reference = ReferenceFrames.from_atoms(atoms.coords, atoms.radii, atoms.frame_indices.astype(float))
    series, _ = training_series(reference, args.output)
    print(f"training {run_label(vars(args))} for up to {args.minutes:g} min")
    copies = train_with_probes(series, args)
    print(f"scoring {len(copies)} probes on frames {frames}")
    curve = score(copies, reference_shapes(reference, frames, series.normalization), args.device)
    result = dict(preset=args.preset, steps=args.steps, members=args.members, precision=args.precision,
                  compile=args.compile, device=args.device, threads=args.threads, frames=frames, curve=curve)
    with open(os.path.join(args.output, "curve.json"), "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    compare([args.output])


if __name__ == "__main__":
    main()
