"""Surface query time: dense SDF grid against the coarse-to-fine narrow band, same model, one run.

For each resolution, times the grid evaluation and marching cubes of the zero level set both ways, counts
the network evaluations, and compares the meshes: the farthest any vertex of one lies from the nearest
vertex of the other (float noise of batched evaluation can flip a node whose SDF is ~1e-6 Å, which moves
a vertex or two by a fraction of a cell; anything near a cell size would mean a missed crossing).

    python benchmarks/query_speed.py --model demo_out/adk_dsr.pt --resolution 128 256 --threads 2

The model defaults to the quick start's (``pymol -c examples/quickstart.pml`` writes it).
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from scipy.spatial import cKDTree

from dsr_backend import TrainedModel
from dsr_backend.query import mesh_from_grid, narrow_band_sdf_grid, sdf_grid


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo_out/adk_dsr.pt")
    parser.add_argument("--resolution", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--t", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not os.path.isfile(args.model):
        raise SystemExit(f"{args.model} not found: run 'pymol -c examples/quickstart.pml' first")
    torch.set_num_threads(args.threads)
    model = TrainedModel.load(args.model, device=args.device)
    sdf_grid(model, args.t, 16)  # warm-up
    print(f"query time at t={args.t}, model {args.model}, torch {torch.__version__}, {args.device}, "
          f"{args.threads} thread(s)")
    print(f"{'resolution':>10} {'dense s':>8} {'band s':>7} {'speed-up':>8} {'evaluated':>9} {'faces':>15} "
          f"{'vertex gap':>16}")
    for resolution in args.resolution:
        dense, dense_s = timed(sdf_grid, model, args.t, resolution)
        (banded, evaluations), band_s = timed(narrow_band_sdf_grid, model, args.t, [0.0], resolution)
        (dense_v, dense_f, _), mc_dense_s = timed(mesh_from_grid, dense, model, 0.0)
        (band_v, band_f, _), mc_band_s = timed(mesh_from_grid, banded, model, 0.0)
        gap = max(cKDTree(band_v).query(dense_v)[0].max(), cKDTree(dense_v).query(band_v)[0].max())
        cell = 2.0 * model.normalization.scale / (resolution - 1)
        total_dense, total_band = dense_s + mc_dense_s, band_s + mc_band_s
        print(f"{resolution:>10} {total_dense:>8.2f} {total_band:>7.2f} {total_dense / total_band:>7.1f}x "
              f"{evaluations / resolution ** 3:>8.1%} {len(dense_f):>7}/{len(band_f):<7} "
              f"{gap:.4f} Å ({gap / cell:.2f} cell)")


if __name__ == "__main__":
    main()
