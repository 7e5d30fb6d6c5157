"""Tables (markdown, CSV, JSON) and plots of an evaluation (:mod:`dsr_backend.evaluate`)."""
from __future__ import annotations

import csv
import json
import os

from .errors import MissingDependencyError
from .evaluate import METHODS, EvaluationResult
from .metrics import METRIC_NAMES

HEADERS = {"iou": "IoU ↑", "chamfer": "Chamfer ↓", "nc": "NC ↑", "chamfer_l1": "Chamfer-L1 ↓",
           "nc_symmetric": "NC sym. ↑"}
PLOT_INSTALL = 'pip install "pymol-dsr[demo]"'


def format_value(name: str, mean: float, std: float) -> str:
    """``mean ± std`` with the paper's digits (Chamfer in scientific notation, it is often below 1e-4)."""
    if name == "chamfer":
        return f"{mean:.2e} ± {std:.1e}"
    return f"{mean:.4f} ± {std:.4f}"


def markdown_table(result: EvaluationResult, metrics: tuple[str, ...] = METRIC_NAMES) -> str:
    """One row per protocol and method: frames (and how many had no surface), then mean ± std of each
    metric over the frames with a surface."""
    lines = ["| protocol | method | frames | " + " | ".join(HEADERS[m] for m in metrics) + " |",
             "|---|---|---:|" + "---:|" * len(metrics)]
    for row in result.summary():
        cells = [format_value(m, row[m], row[f"{m}_std"]) for m in metrics]
        frames = f"{row['n']} ({row['empty']} empty)" if row["empty"] else str(row["n"])
        lines.append(f"| {row['protocol']} | {row['method']} | {frames} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_reports(result: EvaluationResult, folder: str, plots: bool = True) -> list[str]:
    """Write ``summary.md``, ``summary.csv``, ``frames.csv``, ``results.json`` and (``plots``) one
    ``<metric>.png`` per metric into ``folder``; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, name) for name in ("summary.md", "summary.csv", "frames.csv", "results.json")]
    with open(paths[0], "w", encoding="utf-8") as handle:
        handle.write(markdown_table(result) + "\n")
    _write_csv(paths[1], result.summary())
    _write_csv(paths[2], result.to_dict()["frames"])
    with open(paths[3], "w", encoding="utf-8") as handle:
        json.dump(result.to_dict(), handle, indent=1)
    if plots:
        paths += plot_metrics(result, folder)
    return paths


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_metrics(result: EvaluationResult, folder: str, metrics: tuple[str, ...] = ("iou", "chamfer", "nc")) -> list[str]:
    """One PNG per metric: its value against frame time for every method, training frames marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(f"evaluation plots need matplotlib: {PLOT_INSTALL}") from None
    paths = []
    for name in metrics:
        figure, axes = plt.subplots(figsize=(7, 3.2))
        for method in METHODS:
            scores = sorted((s.time, s.metrics[name]) for s in result.scores if s.method == method)
            if scores:
                times, values = zip(*scores)
                style = dict(lw=2.0, zorder=3) if method == "DSR" else dict(lw=1.0, ls="--" if method == "floor" else "-")
                axes.plot(times, values, marker=".", ms=3, label=method, **style)
        for t in result.train_times:
            axes.axvline(t, color="0.85", lw=0.6, zorder=0)
        axes.axvline(result.train_times[-1], color="0.4", lw=0.8, ls=":", zorder=1)
        axes.set_xlabel("frame (grey lines: training frames)")
        axes.set_ylabel(HEADERS[name])
        if name == "chamfer":
            axes.set_yscale("log")
        axes.legend(fontsize=7, ncol=len(METHODS), loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False)
        figure.tight_layout()
        path = os.path.join(folder, f"{name}.png")
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths
