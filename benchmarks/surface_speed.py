"""Solvent-excluded surface per frame: ours (dsr_backend.surface) against PyMOL's own surface.

Adenylate kinase from MDAnalysisTests (PSF + DCD, 3,341 atoms with hydrogens). For each frame, PyMOL
loads the same frame and gives the vdW radii; PyMOL's surfaces at surface_quality 0 and 1 are exported
with ``cmd.get_mtl_obj`` (under an identity view, so in the molecule's Å frame; checked against the
atoms). Quality 1 is the reference: occupancy IoU (ray-parity inside tests on a grid), normal consistency
NC (mean ``|n_ref . n_nearest|`` over reference vertices) and Chamfer distance (mean of the two directed
mean squared nearest distances, in Å² and in the [-1, 1]^3 frame: centred on the reference surface's box,
divided by 1.1 x half its largest extent).

    python benchmarks/surface_speed.py --frames 0 1 2 --threads 2
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from _surface_metrics import chamfer, normal_consistency, parse_obj, unit_cube_scale, weld
from dsr_backend.metrics import iou, mesh_occupancy
from dsr_backend.surface import solvent_excluded_surface

IDENTITY_VIEW = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, -100, 0, 0, 0, 80, 120, -20]
PYMOL_SETTINGS = {"surface_solvent": 0, "dot_solvent": 0, "solvent_radius": 1.4, "surface_mode": 0,
                  "surface_cavity_mode": 0}


@dataclass
class Mesh:
    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    seconds: float
    best_seconds: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 1, 2], help="0-based DCD frames")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (and k-d tree workers)")
    parser.add_argument("--spacing", type=float, nargs="+", default=[0.45, 0.5], help="our grid spacings, Å")
    parser.add_argument("--probe", type=float, default=1.4)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours per frame (mean reported)")
    parser.add_argument("--eval-spacing", type=float, default=0.25, help="IoU occupancy grid spacing, Å")
    return parser.parse_args()


def load_frame(cmd, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Load one DCD frame into PyMOL object 'adk'; return its coordinates and PyMOL vdW radii."""
    from MDAnalysisTests.datafiles import DCD, PSF
    from pymol import stored

    cmd.delete("all")
    cmd.load(PSF, "adk")
    cmd.load_traj(DCD, "adk", state=1, start=frame + 1, stop=frame + 1)
    stored.vdw = []
    cmd.iterate("adk", "stored.vdw.append(vdw)")
    return cmd.get_coords("adk", state=1).astype(np.float64), np.array(stored.vdw, dtype=np.float64)


def check_against_mdanalysis(coords: np.ndarray, frame: int) -> None:
    import MDAnalysis
    from MDAnalysisTests.datafiles import DCD, PSF

    universe = MDAnalysis.Universe(PSF, DCD)
    universe.trajectory[frame]
    difference = np.abs(universe.atoms.positions - coords).max()
    if difference > 1e-3:
        raise RuntimeError(f"PyMOL and MDAnalysis disagree on frame {frame}: max |dx| = {difference:.3g} Å")


def pymol_surface(cmd, quality: int, frame: int) -> Mesh:
    """PyMOL's surface of 'adk' at a quality, in Å; seconds exclude the OBJ export."""
    load_frame(cmd, frame)
    for name, value in PYMOL_SETTINGS.items():
        cmd.set(name, value)
    cmd.set("surface_quality", quality)
    cmd.set_view(IDENTITY_VIEW)
    start = time.perf_counter()
    cmd.show_as("surface", "adk")
    text = cmd.get_mtl_obj()[1]
    total = time.perf_counter() - start
    start = time.perf_counter()
    cmd.get_mtl_obj()
    export = time.perf_counter() - start
    vertices, normals, faces = parse_obj(text)
    vertices, faces, normals = weld(vertices, faces, normals)
    return Mesh(vertices, normals, faces, total - export, total - export)


def check_frame(mesh: Mesh, coords: np.ndarray, radii: np.ndarray, probe: float, name: str) -> None:
    """The surface must hug the atoms: no vertex inside a vdW sphere or beyond the probe's reach."""
    from scipy.spatial import cKDTree

    distance, index = cKDTree(coords).query(mesh.vertices, k=16)
    gap = (distance - radii[index]).min(axis=1)
    if gap.min() < -0.1 or gap.max() > probe + 0.1:
        raise RuntimeError(f"{name} surface is not in the atoms' frame: vdW gap from {gap.min():.2f} to "
                           f"{gap.max():.2f} Å")


def ours(coords: np.ndarray, radii: np.ndarray, probe: float, spacing: float, repeats: int) -> tuple[Mesh, list]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        surface = solvent_excluded_surface(coords, radii, probe=probe, spacing=spacing, mesh=True)
        times.append(time.perf_counter() - start)
    return Mesh(surface.points, surface.normals, surface.faces, float(np.mean(times)), min(times)), times


def occupancy(mesh: Mesh, centre: np.ndarray, scale: float, resolution: int) -> np.ndarray:
    """Inside test of ``mesh`` on the ``resolution``^3 grid over the reference's [-1, 1]^3 frame."""
    return mesh_occupancy((mesh.vertices - centre) / scale, mesh.faces, resolution)


def compare(mesh: Mesh, reference: Mesh, inside_reference: np.ndarray, resolution: int) -> dict:
    centre, scale = unit_cube_scale(reference.vertices)
    inside = occupancy(mesh, centre, scale, resolution)
    return {
        "iou": iou(inside, inside_reference),
        "nc": normal_consistency(reference.vertices, reference.normals, mesh.vertices, mesh.normals),
        "chamfer_a2": chamfer(mesh.vertices, reference.vertices),
        "chamfer_unit": chamfer((mesh.vertices - centre) / scale, (reference.vertices - centre) / scale),
    }


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(args.threads)
    from pymol import cmd

    cmd.feedback("disable", "all", "everything")
    print(f"torch {torch.__version__}: {torch.get_num_threads()} threads; os.cpu_count() = {os.cpu_count()}; "
          f"PyMOL {cmd.get_version()[0]}, max_threads = {cmd.get('max_threads')}")
    print("PyMOL settings:", ", ".join(f"{name}={cmd.get(name)}" for name in PYMOL_SETTINGS))
    coords, radii = load_frame(cmd, args.frames[0])
    solvent_excluded_surface(coords, radii, probe=args.probe, spacing=args.spacing[0])  # warm-up
    rows = []
    for frame in args.frames:
        coords, radii = load_frame(cmd, frame)
        check_against_mdanalysis(coords, frame)
        reference = pymol_surface(cmd, 1, frame)
        check_frame(reference, coords, radii, args.probe, "PyMOL quality 1")
        candidates = {"PyMOL q0": pymol_surface(cmd, 0, frame)}
        check_frame(candidates["PyMOL q0"], coords, radii, args.probe, "PyMOL quality 0")
        for spacing in args.spacing:
            mesh, times = ours(coords, radii, args.probe, spacing, args.repeats)
            check_frame(mesh, coords, radii, args.probe, "our")
            candidates[f"ours h={spacing:g}"] = mesh
            print(f"frame {frame}: ours h={spacing:g} runs " + " ".join(f"{t:.3f}" for t in times) + " s")
        centre, scale = unit_cube_scale(reference.vertices)
        resolution = int(np.ceil(2.0 * scale / args.eval_spacing)) + 1  # nodes args.eval_spacing Å apart
        inside_reference = occupancy(reference, centre, scale, resolution)
        rows.append((frame, "PyMOL q1", reference, None))
        for name, mesh in candidates.items():
            metrics = compare(mesh, reference, inside_reference, resolution)
            rows.append((frame, name, mesh, metrics))
    print_table(rows, args)


def print_table(rows: list, args: argparse.Namespace) -> None:
    print(f"\nadenylate kinase, 3341 atoms, probe {args.probe} Å; metrics against PyMOL surface_quality 1; "
          f"IoU grid {args.eval_spacing} Å; Chamfer in Å² and in the [-1,1]^3 frame; "
          f"s/frame = mean (and best) of {args.repeats} runs for ours, one run for PyMOL")
    print(f"{'frame':>5} {'surface':<14} {'s/frame':>8} {'best':>6} {'points':>7} {'IoU':>7} {'NC':>7} "
          f"{'CD Å²':>8} {'CD unit':>9}")
    for frame, name, mesh, metrics in rows:
        head = f"{frame:>5} {name:<14} {mesh.seconds:8.3f} {mesh.best_seconds:6.3f} {len(mesh.vertices):7d}"
        if metrics is None:
            print(f"{head} {'ref':>7}")
            continue
        print(f"{head} {metrics['iou']:7.4f} {metrics['nc']:7.4f} {metrics['chamfer_a2']:8.4f} "
              f"{metrics['chamfer_unit']:9.2e}")
    print("\nmean over frames")
    for name in dict.fromkeys(row[1] for row in rows):
        selected = [row for row in rows if row[1] == name]
        seconds = np.mean([row[2].seconds for row in selected])
        best = np.mean([row[2].best_seconds for row in selected])
        if selected[0][3] is None:
            print(f"  {name:<14} {seconds:.3f} s/frame (reference)")
            continue
        mean = {key: np.mean([row[3][key] for row in selected]) for key in selected[0][3]}
        print(f"  {name:<14} {seconds:.3f} s/frame (best {best:.3f})  IoU {mean['iou']:.4f}  NC {mean['nc']:.4f}  "
              f"CD {mean['chamfer_a2']:.4f} Å² ({mean['chamfer_unit']:.2e} unit)")


if __name__ == "__main__":
    main()
