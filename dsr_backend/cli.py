"""The ``dsr`` command line: molecular surfaces of trajectories, training, surface queries, model info, demo."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from . import __version__
from .atomic import check_writable
from .checkpoint import is_resume_checkpoint, read_checkpoint
from .demo import run_demo
from .errors import InvalidInputError, MissingDependencyError, exit_status
from .evaluate_command import add_evaluate_parser, add_min_component_argument
from .measure import surface_sizes
from .meshio import SUPPORTED_SUFFIXES, read_obj, read_ply, write_mesh
from .query import extract_surfaces
from .ranges import parse_numbers
from .series import SurfaceSeries
from .server.serve import add_serve_arguments, cmd_serve
from .surface import solvent_excluded_surfaces
from .train_command import add_train_arguments, cmd_train
from .trained import TrainedModel, checked_contents
from .trajectory import read_atom_frames

logger = logging.getLogger("dsr_backend")


# ---------------------------------------------------------------------- dsr molsurf
def cmd_molsurf(args: argparse.Namespace) -> None:
    check_writable(args.output)
    atoms = read_atom_frames(args.topology, args.trajectory, select=args.select, frames=args.frames,
                             include_hydrogens=not args.no_hydrogens, whole=args.whole, center=args.center,
                             fit=args.fit)
    grid = {} if args.spacing is None else {"spacing": args.spacing}
    with tqdm(total=len(atoms.coords), desc="surfaces", unit="frame", disable=args.quiet) as bar:
        surfaces = solvent_excluded_surfaces(atoms.coords, [atoms.radii] * len(atoms.coords),
                                             done=lambda count: bar.update(count - bar.n) and False,
                                             probe=args.probe, **grid)
    points, normals = [surface.points for surface in surfaces], [surface.normals for surface in surfaces]
    series = SurfaceSeries(points, normals, times=atoms.frame_indices.astype(float),
                           protein_names=[args.name or os.path.splitext(os.path.basename(args.topology))[0]])
    series.save(args.output)
    sizes = series.frame_sizes()
    print(f"wrote {args.output}: {series.num_frames} frames of {len(atoms.radii)} atoms, "
          f"{sizes.min()}-{sizes.max()} surface points per frame")


# ---------------------------------------------------------------------- dsr series
def read_oriented_points(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and vertex normals of a PLY or OBJ file (e.g. a surface exported from PyMOL)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".ply", ".obj"):
        raise InvalidInputError(f"{path}: point files must be .ply or .obj")
    if not os.path.isfile(path):
        raise InvalidInputError(f"no such file: {path}")
    data = read_ply(path) if suffix == ".ply" else read_obj(path)
    if data.get("normals") is None:
        raise InvalidInputError(f"{path} has no vertex normals; DSR trains on oriented points")
    return data["vertices"], data["normals"]


def cmd_series(args: argparse.Namespace) -> None:
    check_writable(args.output)
    times = (parse_numbers(" ".join(args.times), "--times", step=1.0, limit=len(args.files) + 1) if args.times
             else list(range(len(args.files))))
    if len(times) != len(args.files):
        raise InvalidInputError(f"got {len(times)} times for {len(args.files)} files")
    frames = [read_oriented_points(path) for path in args.files]
    series = SurfaceSeries([p for p, _ in frames], [n for _, n in frames], times=times,
                           protein_names=[args.name])
    series.save(args.output)
    print(f"wrote {args.output}: {series.num_frames} frames, {int(series.frame_sizes().sum())} points")


# ---------------------------------------------------------------------- dsr surface
def output_paths(output: str, times: Sequence[float], levels: Sequence[float]) -> list[list[str]]:
    """One file per (t, level); the plain name when there is only one. Two requests that would write the
    same file are refused."""
    if len(times) == 1 and len(levels) == 1:
        return [[output]]
    stem, suffix = os.path.splitext(output)
    paths = []
    for t in times:
        row = []
        for level in levels:
            name = f"{stem}_t{t:.3f}"
            if len(levels) > 1:
                name += f"_level{level:+.2f}"
            row.append(name + suffix)
        paths.append(row)
    written: dict[str, tuple[float, float]] = {}
    for t, row in zip(times, paths):
        for level, path in zip(levels, row):
            if path in written:
                raise InvalidInputError(f"t={written[path][0]:g} level={written[path][1]:g} and t={t:g} "
                                        f"level={level:g} would both write {path}: ask for times (and levels) "
                                        "that differ in the first three decimals (levels: two)")
            written[path] = (t, level)
    return paths


def cmd_surface(args: argparse.Namespace) -> None:
    if os.path.splitext(args.output)[1].lower() not in SUPPORTED_SUFFIXES:
        raise InvalidInputError(f"output must end in {' or '.join(SUPPORTED_SUFFIXES)}, got {args.output}")
    model = TrainedModel.load(args.model, device=args.device)
    if args.state:
        states = parse_numbers(" ".join(args.state), "--state", last=model.time_map.stop, step=1.0)
        times = [float(model.time_map.time_to_fraction(s)) for s in states]
    else:
        times = parse_numbers(" ".join(args.t or ["0.5"]), "--t")
    outputs = output_paths(args.output, times, args.level)
    for path in {path for row in outputs for path in row}:
        check_writable(path)
    meshes = extract_surfaces(model, times, args.level, args.resolution, args.protein, with_speed=args.speed,
                              min_component=args.min_component)
    for row, paths in zip(meshes, outputs):
        for mesh, path in zip(row, paths):
            speed = mesh.values.get("speed")
            write_mesh(path, mesh.vertices, mesh.faces, mesh.normals, values=speed, value_name="speed")
            note = "" if not mesh.is_empty else " (empty: the level is not reached)"
            print(f"wrote {path}: t={mesh.t:.3f} level={mesh.level:g} Å, {len(mesh.vertices)} vertices, "
                  f"{len(mesh.faces)} triangles{note}")


# ---------------------------------------------------------------------- dsr measure
def cmd_measure(args: argparse.Namespace) -> None:
    if args.output:
        check_writable(args.output)
    model = TrainedModel.load(args.model, device=args.device)
    rows = surface_sizes(model, parse_numbers(" ".join(args.t), "--t"), args.resolution, args.protein)
    print(f"{'t':>7} {'time':>9} {'area Å²':>10} {'volume Å³':>11}")
    for t, time, area, volume in rows:
        print(f"{t:7.3f} {time:9.3f} {area:10.1f} {volume:11.1f}")
    if args.output:
        write_size_plot(args.output, rows, os.path.basename(args.model))
        print(f"wrote {args.output}")


def write_size_plot(path: str, rows: list[tuple[float, float, float, float]], title: str) -> None:
    """Area and volume against the model's time in one PNG (matplotlib, the ``demo`` extra)."""
    try:
        import matplotlib  # optional: only for -o

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError('a plot needs matplotlib: pip install matplotlib') from None
    times = [row[1] for row in rows]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    axes[0].plot(times, [row[2] for row in rows], "o-")
    axes[0].set(xlabel="time (frame)", ylabel="area (Å²)", title="surface area")
    axes[1].plot(times, [row[3] for row in rows], "o-", color="tab:green")
    axes[1].set(xlabel="time (frame)", ylabel="volume (Å³)", title="enclosed volume")
    figure.suptitle(title)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        plt.close(figure)


# ---------------------------------------------------------------------- dsr info
def cmd_info(args: argparse.Namespace) -> None:
    state = read_checkpoint(args.model)
    config, times, norm = checked_contents(state, args.model), state["time_map"], state["normalization"]
    history = state.get("history") or []
    kind = ("resume checkpoint: weights, optimiser and random state (continue with dsr train ... --resume)"
            if is_resume_checkpoint(state) else f"model, {state['storage']} weights")
    lines = [
        f"checkpoint   {args.model}",
        f"file         {os.path.getsize(args.model) / 1e6:.1f} MB, {kind}",
        f"preset       {config.preset}: {config.model.describe()}, precision {config.precision}",
        f"proteins     {', '.join(state['protein_names'])}",
        f"time range   {times['start']:g} .. {times['stop']:g}" + (" (static)" if times['start'] == times['stop'] else ""),
        f"box          centre ({', '.join(f'{c:.2f}' for c in norm['center'])}) Å, half size {norm['scale']:.2f} Å",
        f"steps        {state['step']} of {state.get('total_steps', '?')}" + _training_time(state),
        f"loss         {history[-1]['loss']:.5g}" if history else "loss         (not trained)",
    ]
    lines += [f"{key:12s} {value}" for key, value in sorted(state.get("metadata", {}).items())]
    print("\n".join(lines))


def _training_time(state: dict) -> str:
    """", 123 s of training" (", 123 s of training of a 2-minute budget") where the checkpoint says; "" for
    files written before checkpoints held their training time."""
    if "seconds" not in state:
        return ""
    minutes = state["config"].get("minutes", 0.0)
    budget = f" of a {minutes:g}-minute budget" if minutes else ""
    return f", {float(state['seconds']):.0f} s of training{budget}"


# ---------------------------------------------------------------------- dsr demo
def cmd_demo(args: argparse.Namespace) -> None:
    run_demo(args.output, steps=args.steps, quiet=args.quiet)


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsr", description="DSR: learned space-time protein surfaces.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    parser.add_argument("--version", action="version", version=f"dsr (pymol-dsr) {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("molsurf", help="molecular (solvent-excluded) surfaces of a trajectory -> series .npz")
    p.add_argument("topology", help="topology or structure file (PSF, PDB, GRO, ...)")
    p.add_argument("trajectory", nargs="*", help="trajectory files (DCD, XTC, ...), joined in order")
    p.add_argument("--select", default="protein", help="MDAnalysis selection (default: protein)")
    p.add_argument("--frames", default="all", help="0-based frames: FIRST-LAST:STEP (e.g. 0-78:2), a list "
                                                   "(0,5,9) or all (the default)")
    p.add_argument("--probe", type=float, default=1.4, help="probe radius in Å (default 1.4)")
    p.add_argument("--spacing", type=float, help="grid spacing in Å (default: the library's, 0.45)")
    p.add_argument("--no-hydrogens", action="store_true", help="leave hydrogens out of the surface")
    p.add_argument("--whole", action="store_true", help="make molecules broken by periodic boundaries whole")
    p.add_argument("--center", action="store_true", help="centre the selection in the box in every frame")
    p.add_argument("--fit", help="superpose every frame on the first by these atoms, e.g. 'name CA'")
    p.add_argument("--name", help="protein name stored in the series (default: topology file name)")
    p.add_argument("-o", "--output", required=True, help="series file to write (.npz)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_molsurf)

    p = commands.add_parser("series", help="oriented points of given surfaces (PLY/OBJ with normals) -> series .npz")
    p.add_argument("files", nargs="+", help="one .ply or .obj per frame, in time order, with vertex normals")
    p.add_argument("--times", nargs="+", help="time of each file (default 0, 1, 2, ...); FIRST-LAST:STEP allowed")
    p.add_argument("--name", default="protein", help="protein name stored in the series")
    p.add_argument("-o", "--output", required=True, help="series file to write (.npz)")
    p.set_defaults(func=cmd_series)

    p = commands.add_parser("train", help="train a DSR model on a surface series")
    add_train_arguments(p)
    p.add_argument("--nproc", type=int, default=1,
                   help="processes (one per GPU) to train with under torchrun, DistributedDataParallel")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("surface", help="extract the learned surface at time t")
    p.add_argument("model", help="checkpoint .pt")
    p.add_argument("--t", nargs="+", help="fraction(s) of the trained range: 0 first, 1 last, >1 extrapolates; "
                                           "FIRST-LAST:STEP for a series, e.g. 0-1:0.1 (default 0.5)")
    p.add_argument("--state", nargs="+", help="frame time(s) / state number(s) instead of --t; FIRST-LAST:STEP "
                                               "allowed (step 1 if left out; 'last' is the last trained)")
    p.add_argument("--level", type=float, nargs="+", default=[0.0], help="SDF level(s) in Å (default 0)")
    p.add_argument("--resolution", type=int, default=128, help="grid nodes per axis (default 128)")
    p.add_argument("--protein", default="0", help="protein name or index (default 0)")
    p.add_argument("--speed", action="store_true", help="store per-vertex normal speed (PLY 'speed')")
    add_min_component_argument(p)
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--output", required=True, help="mesh file (.ply or .obj)")
    p.set_defaults(func=cmd_surface)

    p = commands.add_parser("measure", help="area and enclosed volume of the learned surface over time")
    p.add_argument("model", help="checkpoint .pt")
    p.add_argument("--t", nargs="+", default=["0-1:0.1"], help="fractions of the trained range, FIRST-LAST:STEP "
                                                              "or a list (default 0-1:0.1)")
    p.add_argument("--resolution", type=int, default=64, help="grid nodes per axis (default 64)")
    p.add_argument("--protein", default="0", help="protein name or index (default 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--output", help="PNG plot of area and volume over time (needs matplotlib)")
    p.set_defaults(func=cmd_measure)

    p = commands.add_parser("info", help="describe a checkpoint")
    p.add_argument("model", help="checkpoint .pt")
    p.set_defaults(func=cmd_info)

    add_evaluate_parser(commands)

    p = commands.add_parser("demo", help="end to end on adenylate kinase (MDAnalysisTests) with a small CPU model")
    p.add_argument("-o", "--output", default="demo_out", help="folder for the results (default demo_out)")
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = commands.add_parser("serve", help="HTTP service for remote PyMOL clients (FastAPI + uvicorn)")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return parser


RENAMED = {"surfaces": "molsurf"}
"""Former command names and what they are called now."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsr`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in RENAMED:
        print(f"dsr: error: 'dsr {argv[0]}' is now 'dsr {RENAMED[argv[0]]}' (same options)", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return exit_status(f"dsr {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
