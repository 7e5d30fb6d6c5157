"""The quick-start job: adenylate kinase (MDAnalysisTests) -> surfaces -> fast model -> meshes + picture."""
from __future__ import annotations

import os

import numpy as np
from tqdm import tqdm

from .config import preset
from .errors import MissingDependencyError
from .meshio import write_ply
from .query import extract_surfaces
from .series import SurfaceSeries
from .surface import solvent_excluded_surface, solvent_excluded_surfaces
from .train import train
from .trajectory import read_atom_frames

DEMO_INSTALL = 'pip install "pymol-dsr[demo]"'
TRAIN_FRAMES = "0-80:8"      # DIMS frames 0, 8, ..., 80 (the paper trains every 2nd of the first 80)
HELD_OUT_FRAME = 36          # between two training frames: an interpolation check
SHOW_TIMES = (0.0, 0.5, 1.0)


def _adk_files() -> tuple[str, str]:
    try:
        from MDAnalysisTests.datafiles import DCD, PSF
    except ImportError:
        raise MissingDependencyError(f"the demo reads adenylate kinase from MDAnalysisTests: {DEMO_INSTALL}") from None
    return PSF, DCD


def render_meshes(path: str, meshes: list, titles: list[str]) -> None:
    """Save a PNG with one shaded 3-D panel per mesh (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    except ImportError:
        raise MissingDependencyError(f"the demo picture needs matplotlib: {DEMO_INSTALL}") from None
    light = np.array([0.4, 0.3, 0.87])
    figure = plt.figure(figsize=(5 * len(meshes), 5))
    for index, (mesh, title) in enumerate(zip(meshes, titles)):
        axes = figure.add_subplot(1, len(meshes), index + 1, projection="3d")
        triangles = mesh.vertices[mesh.faces]
        shade = 0.35 + 0.65 * np.clip(mesh.normals[mesh.faces].mean(axis=1) @ light, 0, 1)
        colors = np.stack([shade * 0.55, shade * 0.75, shade, np.ones_like(shade)], axis=1)
        axes.add_collection3d(Poly3DCollection(triangles, facecolors=colors, linewidths=0))
        low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        middle, half = (low + high) / 2, (high - low).max() / 2
        for setter, centre in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), middle):
            setter(centre - half, centre + half)
        axes.set_box_aspect((1, 1, 1))
        axes.view_init(elev=15, azim=-60)
        axes.set_axis_off()
        axes.set_title(title, pad=0)
    figure.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=0)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_demo(output: str = "demo_out", steps: int = 1000, quiet: bool = False) -> dict[str, float]:
    """Run the whole pipeline on the CPU and write series, checkpoint, PLY meshes and a PNG to ``output``.

    Returns the numbers it prints (training time, final loss, held-out surface error in Å).
    """
    psf, dcd = _adk_files()
    os.makedirs(output, exist_ok=True)
    atoms = read_atom_frames(psf, [dcd], select="protein", frames=TRAIN_FRAMES)
    held_out = read_atom_frames(psf, [dcd], select="protein", frames=str(HELD_OUT_FRAME))
    with tqdm(total=len(atoms.coords), desc="surfaces", unit="frame", disable=quiet) as surface_bar:
        def one_more(count: int) -> bool:
            surface_bar.update(1)
            return False  # never cancelled

        surfaces = solvent_excluded_surfaces(atoms.coords, [atoms.radii] * len(atoms.coords), done=one_more)
    series = SurfaceSeries([s.points for s in surfaces], [s.normals for s in surfaces],
                           times=atoms.frame_indices.astype(float), protein_names=["adk"])
    series.save(os.path.join(output, "adk_series.npz"))

    bar = tqdm(total=steps, desc="train", unit="step", disable=quiet)

    def progress(step: int, total: int, record: dict) -> None:
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{record['loss']:.4g}")

    config = preset("fast", steps=steps, checkpoint_every=500)
    checkpoint = os.path.join(output, "adk_model.pt")
    result = train(series, config, checkpoint=checkpoint, device="cpu", progress=progress,
                   metadata={"source": "MDAnalysisTests adk_dims.dcd", "frames": TRAIN_FRAMES})
    bar.close()
    model = result.model

    truth = solvent_excluded_surface(held_out.coords[0], held_out.radii)
    t_held = float(model.time_map.time_to_fraction(HELD_OUT_FRAME))
    held_error = float(np.abs(model.sdf(truth.points, t_held)).mean())
    meshes = [row[0] for row in extract_surfaces(model, SHOW_TIMES, 0.0, resolution=96)]
    for mesh in meshes:
        write_ply(os.path.join(output, f"adk_surface_t{mesh.t:.1f}.ply"), mesh.vertices, mesh.faces, mesh.normals)
    picture = os.path.join(output, "adk_surfaces.png")
    titles = [f"t = {t:g} (frame {model.time_map.fraction_to_time(t):g})" for t in SHOW_TIMES]
    render_meshes(picture, meshes, titles)
    numbers = {"train_seconds": result.seconds, "final_loss": result.final_loss,
               "held_out_mean_abs_sdf": held_error}
    print(f"trained {result.steps_done} steps in {result.seconds:.0f} s on the CPU, final loss {result.final_loss:.4f}")
    print(f"held-out frame {HELD_OUT_FRAME} (t={t_held:.2f}): its true surface points lie "
          f"{held_error:.2f} Å from the learned surface on average")
    print(f"wrote {output}/: adk_series.npz, adk_model.pt, adk_surface_t*.ply, adk_surfaces.png")
    return numbers
