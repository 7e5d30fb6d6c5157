"""``dsr evaluate``: a model against reference frames (a series, or a trajectory's surfaces) by the paper's
protocols and metrics, with baselines; tables on stdout, reports and plots in a folder."""
from __future__ import annotations

import argparse
import os

from tqdm import tqdm

from .errors import InvalidInputError
from .evaluate import ReferenceFrames, evaluate
from .query import MIN_COMPONENT
from .report import markdown_table, write_reports
from .series import SurfaceSeries
from .trained import TrainedModel
from .ranges import parse_indices
from .trajectory import read_atom_frames


def load_reference(paths: list[str], select: str, probe: float, spacing: float | None,
                   no_hydrogens: bool) -> ReferenceFrames:
    """A series ``.npz``, or a topology (and trajectories) whose frames get solvent-excluded surfaces."""
    if len(paths) == 1 and paths[0].endswith(".npz"):
        return ReferenceFrames.from_series(SurfaceSeries.load(paths[0]))
    atoms = read_atom_frames(paths[0], paths[1:], select=select, frames="all", include_hydrogens=not no_hydrogens)
    grid = {} if spacing is None else {"spacing": spacing}
    return ReferenceFrames.from_atoms(atoms.coords, atoms.radii, atoms.frame_indices.astype(float), probe, **grid)


def training_times(model, reference: ReferenceFrames, spec: str | None, protein: int | str = 0) -> list[float]:
    """The times the model was trained on for ``protein``: ``--train-frames`` of the reference, else the
    frames of that protein in the series the checkpoint names."""
    if spec:
        return [float(reference.times[i]) for i in parse_indices(spec, len(reference), "--train-frames")]
    series = model.metadata.get("series")
    if not series or not os.path.isfile(series):
        raise InvalidInputError("cannot tell which frames the model was trained on (its checkpoint names no "
                                "readable series); give them with --train-frames, e.g. --train-frames 0-78:2")
    loaded = SurfaceSeries.load(series)
    return loaded.times[loaded.proteins == model.protein_index(protein)].tolist()


def cmd_evaluate(args: argparse.Namespace) -> None:
    model = TrainedModel.load(args.model, device=args.device)
    reference = load_reference(args.reference, args.select, args.probe, args.spacing, args.no_hydrogens)
    frames = parse_indices(args.frames, len(reference), "--frames")
    train = training_times(model, reference, args.train_frames, args.protein)
    bar = tqdm(total=len(frames), desc="evaluate", unit="frame", disable=args.quiet)

    def progress(done: int, total: int, label: str) -> None:
        bar.update(1)
        bar.set_postfix_str(label)

    try:
        grid = {key: value for key, value in (("resolution", args.resolution), ("samples", args.samples))
                if value is not None}
        result = evaluate(model, reference, frames, train, args.protein, baselines=not args.no_baselines,
                          progress=progress, min_component=args.min_component, **grid)
    finally:
        bar.close()
    print(markdown_table(result))
    if args.output:
        paths = write_reports(result, args.output, plots=not args.no_plots)
        print(f"wrote {', '.join(os.path.basename(p) for p in paths)} to {args.output}")


def add_min_component_argument(parser: argparse.ArgumentParser) -> None:
    """``--min-component``: the smallest inside piece a model's surface keeps."""
    parser.add_argument("--min-component", type=float, default=MIN_COMPONENT, metavar="FRACTION",
                        help="leave out floating pieces smaller than this fraction of the largest piece's volume "
                             f"(default {MIN_COMPONENT}; 0 keeps every piece)")


def add_evaluate_parser(commands) -> None:
    """The ``evaluate`` subcommand of ``dsr``."""
    p = commands.add_parser("evaluate", help="score a model against reference surfaces (IoU, Chamfer, NC) "
                                             "by the paper's protocols, with baselines")
    p.add_argument("model", help="checkpoint .pt")
    p.add_argument("--reference", nargs="+", required=True,
                   help="a series .npz, or TOPOLOGY [TRAJECTORY ...] whose frames get solvent-excluded surfaces")
    p.add_argument("--frames", default="all", help="reference frames to score, 0-based FIRST-LAST:STEP or a list "
                                                   "(default: all)")
    p.add_argument("--train-frames", help="reference frames the model was trained on (default: the times of "
                                          "the series named in the checkpoint)")
    p.add_argument("--select", default="protein", help="MDAnalysis selection for a trajectory (default protein)")
    p.add_argument("--probe", type=float, default=1.4, help="SES probe radius in Å (default 1.4)")
    p.add_argument("--spacing", type=float, help="SES grid spacing in Å (default: the library's, 0.45)")
    p.add_argument("--no-hydrogens", action="store_true", help="leave hydrogens out of the reference surface")
    p.add_argument("--protein", default="0", help="protein name or index (default 0)")
    p.add_argument("--resolution", type=int, help="IoU grid nodes per axis (default 128, the paper's)")
    p.add_argument("--samples", type=int, help="Chamfer samples per surface (default 300000, the paper's)")
    p.add_argument("--no-baselines", action="store_true", help="score the model only")
    add_min_component_argument(p)
    p.add_argument("--no-plots", action="store_true", help="write tables only")
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--output", help="folder for summary.md/.csv, frames.csv, results.json and plots")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)
