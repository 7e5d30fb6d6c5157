"""The paper's DIMS experiment on adenylate kinase (MDAnalysisTests PSF + DCD, 98 frames, 3,341 atoms).

Train on states 1-80:2 (0-based frames 0, 2, ..., 78) within a wall-time budget; score reconstruction on
those frames, interpolation on frames 1, 3, ..., 79 and future prediction on frames 80-89 and 90-97
against the solvent-excluded surface mesh of each frame, with the paper's metrics (128^3 IoU grid, 300k
Chamfer samples); the baselines on the same frames; our table beside the paper's DIMS rows.

    python benchmarks/reproduce_dims.py --minutes 60 --preset small --threads 2 -o dims_out
    python benchmarks/reproduce_dims.py --model dims_out/model.pt -o dims_out     # evaluate again only
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import torch

from dsr_backend.config import preset
from dsr_backend.evaluate import ReferenceFrames, evaluate
from dsr_backend.ranges import parse_indices
from dsr_backend.query import MIN_COMPONENT
from dsr_backend.report import format_value, markdown_table, write_reports
from dsr_backend.series import SurfaceSeries
from dsr_backend.train import Trainer
from dsr_backend.trained import TrainedModel
from dsr_backend.trajectory import AtomFrames, read_atom_frames

TRAIN_FRAMES = list(range(0, 80, 2))
PAPER = {  # Table 1 (reconstruction) and Table 2 (future prediction), DIMS rows: (mean, std)
    "reconstruction": {"iou": (0.9316, 0.0070), "chamfer": (0.0003, 0.0001), "nc": (0.9671, 0.0050)},
    "future 1-10": {"iou": (0.8467, 0.0423), "chamfer": (0.0010, 0.0005), "nc": (0.8666, 0.0504)},
    "future 11-20": {"iou": (0.6835, 0.0551), "chamfer": (0.0055, 0.0020), "nc": (0.6932, 0.0474)},
}
ATOMS_HELP = ".npz of the trajectory's atoms: read if it exists, else written from MDAnalysisTests"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="training wall-time budget (default 60)")
    parser.add_argument("--preset", default="small", help="model preset (default small; paper on a GPU)")
    parser.add_argument("--steps", type=int, default=0, help="training steps (default: the preset's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and k-d tree workers)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", help="evaluate this checkpoint instead of training")
    parser.add_argument("--frames", default="all", help="frames to score, 0-based FIRST-LAST:STEP (default: all 98)")
    parser.add_argument("--resolution", type=int, default=128, help="IoU grid (default 128, the paper's)")
    parser.add_argument("--samples", type=int, default=300_000, help="Chamfer samples (default 300k, the paper's)")
    parser.add_argument("--min-component", type=float, default=MIN_COMPONENT,
                        help=f"smallest piece of the model's surface kept, share of the largest (default {MIN_COMPONENT})")
    parser.add_argument("-o", "--output", default="dims_out", help="folder for series, model, tables and plots")
    parser.add_argument("--atoms", help=ATOMS_HELP)
    return parser.parse_args()


def dims_atoms(cache: str | None = None) -> AtomFrames:
    """The protein atoms of adenylate kinase over the 98 DIMS frames, read from MDAnalysisTests, or from
    ``cache`` where an earlier call wrote them (for a machine without MDAnalysis)."""
    if cache and os.path.exists(cache):
        with np.load(cache) as data:
            return AtomFrames(data["coords"], data["radii"], data["elements"].tolist(), data["frame_indices"],
                              data["times_ps"])
    from MDAnalysisTests.datafiles import DCD, PSF

    atoms = read_atom_frames(PSF, [DCD], select="protein")
    if cache:
        np.savez_compressed(cache, coords=atoms.coords, radii=atoms.radii, elements=np.array(atoms.elements),
                            frame_indices=atoms.frame_indices, times_ps=atoms.times_ps)
    return atoms


def training_series(reference: ReferenceFrames, output: str) -> tuple[SurfaceSeries, str]:
    """The surfaces of the training frames as a series, saved in ``output`` (or read from there, where an
    earlier run saved it); the series and its path (the reference keeps new meshes for scoring)."""
    series_path = os.path.join(output, "series.npz")
    if os.path.exists(series_path):
        print(f"surfaces of the training frames: {series_path} (delete it to compute them again)")
        return SurfaceSeries.load(series_path), series_path
    start = time.perf_counter()
    surfaces = [reference.frame_surface(f, keep=True) for f in TRAIN_FRAMES]
    series = SurfaceSeries([s.points for s in surfaces], [s.normals for s in surfaces],
                           times=np.array(TRAIN_FRAMES, float), protein_names=["adk"])
    series.save(series_path)
    print(f"surfaces of {len(TRAIN_FRAMES)} training frames: {time.perf_counter() - start:.0f} s")
    return series, series_path


def train_model(reference: ReferenceFrames, args: argparse.Namespace) -> TrainedModel:
    """Surfaces of the training frames, then training until the preset's steps or the time budget."""
    series, series_path = training_series(reference, args.output)
    overrides = {"steps": args.steps} if args.steps else {}
    trainer = Trainer(series, preset(args.preset, **overrides), device=args.device,
                      metadata={"series": os.path.abspath(series_path), "atoms": len(reference.radii)})
    cancel = threading.Event()
    timer = threading.Timer(args.minutes * 60, cancel.set)
    timer.start()

    def progress(step: int, total: int, record: dict) -> None:
        if step % 100 == 0:
            print(f"  step {step}/{total} loss {record['loss']:.4g}", flush=True)

    result = trainer.run(os.path.join(args.output, "model.pt"), progress=progress, cancel=cancel)
    timer.cancel()
    print(f"trained {args.preset}: {result.steps_done}/{result.total_steps} steps on {trainer.device} in "
          f"{result.seconds / 60:.1f} min{' (time budget reached)' if result.cancelled else ''}, "
          f"final loss {result.final_loss:.4g}")
    return result.model


def comparison(result) -> str:
    """Our DSR rows beside the paper's DIMS rows."""
    rows = {(r["protocol"], r["method"]): r for r in result.summary()}
    lines = ["| protocol | | IoU ↑ | Chamfer ↓ | NC ↑ |", "|---|---|---:|---:|---:|"]
    for protocol, paper in PAPER.items():
        lines.append(f"| {protocol} | paper | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in paper.values()) + " |")
        ours = rows.get((protocol, "DSR"))
        if ours:
            lines.append(f"| {protocol} | ours | " + " | ".join(
                format_value(name, ours[name], ours[f"{name}_std"]) for name in paper) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.output, exist_ok=True)
    atoms = dims_atoms(args.atoms)
    print(f"adenylate kinase: {len(atoms.radii)} atoms, {len(atoms.coords)} frames; torch threads "
          f"{torch.get_num_threads()}")
    reference = ReferenceFrames.from_atoms(atoms.coords, atoms.radii, atoms.frame_indices.astype(float))
    model = TrainedModel.load(args.model, device=args.device) if args.model else train_model(reference, args)
    start = time.perf_counter()

    def progress(done: int, total: int, label: str) -> None:
        print(f"  evaluated {done}/{total} ({label}) {time.perf_counter() - start:.0f} s", flush=True)

    frames = parse_indices(args.frames, len(reference), "--frames")
    result = evaluate(model, reference, frames, TRAIN_FRAMES, progress=progress,
                      resolution=args.resolution, samples=args.samples, min_component=args.min_component)
    result.settings.update(minutes=args.minutes, threads=args.threads, steps=model.step, frames=args.frames)
    write_reports(result, args.output)
    text = comparison(result)
    with open(os.path.join(args.output, "comparison.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(f"\nevaluation: {(time.perf_counter() - start) / 60:.1f} min\n\n{text}\n\n{markdown_table(result)}")


if __name__ == "__main__":
    main()
