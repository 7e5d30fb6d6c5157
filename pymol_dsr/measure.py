"""``dsr_measure``: area and enclosed volume of a learned surface over time, and how fast it moves near
chosen domains: the paper's "movement trends and amplitudes" as numbers and a plot."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pymol import CmdException, cmd

from .atoms import ATOM_FILTER
from .coloring import atoms_at, nearest_atoms
from .parsing import parse_int
from .session import session_for
from .surfaces import TimePoints, protein_of


@dataclass
class Measurement:
    """The surface at one time: area (Å²), enclosed volume (Å³) and, per domain, the mean and the largest
    |normal speed| (Å per state) on the part of the surface nearest to that domain's atoms."""

    t: float
    state: float
    area: float
    volume: float
    domains: dict[str, tuple[float, float]] = field(default_factory=dict)


def area_and_volume(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Area and enclosed volume of a closed, outward-oriented triangle mesh (divergence theorem)."""
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    cross = np.cross(b - a, c - a)
    return float(0.5 * np.linalg.norm(cross, axis=1).sum()), float(abs((a * np.cross(b, c)).sum()) / 6.0)


def parse_domains(text: str, source: str, _self=cmd) -> dict[str, np.ndarray]:
    """``"CORE LID NMP"`` (names of PyMOL selections, or any one-word selections) -> a mask over the atoms of
    ``source`` per domain."""
    atoms = f"(%{source}) and {ATOM_FILTER}"
    order: list[int] = []
    _self.iterate(atoms, "order.append(index)", space={"order": order})
    domains = {}
    for name in str(text).replace(",", " ").split():
        try:
            _self.count_atoms(f"({name})")
        except CmdException:
            raise CmdException(f"unknown selection '{name}' for a domain (make it first: select {name}, ...)") from None
        chosen: list[int] = []
        _self.iterate(f"{atoms} and ({name})", "chosen.append(index)", space={"chosen": chosen})
        if not chosen:
            raise CmdException(f"domain '{name}' has no atoms in '{source}'")
        domains[name] = np.isin(order, chosen)
    return domains


def measure(meshes: Sequence[dict], times: TimePoints, per_state: float, coords: Sequence[np.ndarray],
            domains: dict[str, np.ndarray]) -> list[Measurement]:
    """One :class:`Measurement` per mesh (``vertices``, ``faces``, ``speed`` per unit t); ``per_state``
    converts speeds to Å per state; ``coords`` are the atoms at each time (used with ``domains``)."""
    coords = coords if domains else [None] * len(meshes)
    rows = []
    for mesh, t, state, atoms in zip(meshes, times.t, times.states, coords):
        area, volume = area_and_volume(mesh["vertices"], mesh["faces"])
        row = Measurement(t, state, area, volume)
        if domains:
            nearest = nearest_atoms(mesh["vertices"], atoms)
            speed = np.asarray(mesh["speed"]) * per_state
            for name, mask in domains.items():
                near = speed[mask[nearest]]
                row.domains[name] = ((float(np.abs(near).mean()), float(np.abs(near).max())) if len(near)
                                     else (np.nan, np.nan))
        rows.append(row)
    return rows


def table(rows: Sequence[Measurement]) -> str:
    """The measurements as a text table, one line per time."""
    names = list(rows[0].domains) if rows else []
    header = f"{'t':>7} {'state':>8} {'area Å²':>10} {'volume Å³':>11}" + "".join(
        f" {name + ' mean|v|':>13} {name + ' max|v|':>12}" for name in names)
    lines = [header]
    for row in rows:
        lines.append(f"{row.t:7.3f} {row.state:8.2f} {row.area:10.1f} {row.volume:11.1f}" + "".join(
            f" {row.domains[name][0]:13.3f} {row.domains[name][1]:12.3f}" for name in names))
    return "\n".join(lines)


def plot(rows: Sequence[Measurement], path: str, title: str) -> None:
    """Area and volume against the state, and each domain's mean and largest speed, in one PNG."""
    try:
        import matplotlib  # optional: only for plot=

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CmdException("plot= needs matplotlib in PyMOL's Python: pip install matplotlib") from None
    states = [row.state for row in rows]
    panels = 3 if rows and rows[0].domains else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6))
    axes[0].plot(states, [row.area for row in rows], "o-")
    axes[0].set(xlabel="state", ylabel="area (Å²)", title="surface area")
    axes[1].plot(states, [row.volume for row in rows], "o-", color="tab:green")
    axes[1].set(xlabel="state", ylabel="volume (Å³)", title="enclosed volume")
    if panels == 3:
        for name in rows[0].domains:
            line, = axes[2].plot(states, [row.domains[name][0] for row in rows], "o-", label=f"{name} mean |v|")
            axes[2].plot(states, [row.domains[name][1] for row in rows], "--", color=line.get_color(),
                         label=f"{name} max |v|")
        axes[2].set(xlabel="state", ylabel="|normal speed| (Å per state)", title="domain motion")
        axes[2].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise CmdException(f"cannot write the plot {path}: {error.strerror or error}") from None
    finally:
        plt.close(figure)


def dsr_measure(model: str = "", t: str = "0-1:0.1", state: str = "", domains: str = "", resolution: int = 64,
                plot_file: str = "", object: str = "", quiet: int = 0, *, _self=cmd, **kwargs) -> list[Measurement]:
    """
DESCRIPTION

    "dsr_measure" measures the surface a DSR model learned over time: its area (Å²) and enclosed
    volume (Å³) at each time, and for each domain the mean and the largest |normal speed| (Å per
    state) on the part of the surface nearest to that domain's atoms: how fast and how far each
    domain moves. Prints a table; plot= writes a PNG.

USAGE

    dsr_measure [ model [, t [, state [, domains [, resolution [, plot_file [, object ]]]]]]]

ARGUMENTS

    model = str: DSR model {default: the last one trained or loaded}

    t = times as fractions of the trained range, first-last:step or a list {default: 0-1:0.1}

    state = times as state numbers instead of t, e.g. 1-98:4

    domains = str: names of selections (made first with "select"), space separated, e.g.
    CORE LID NMP {default: none}

    resolution = int: grid nodes per axis {default: 64}

    plot_file = str: PNG to write (needs matplotlib) {default: none}

    object = str: whose surface, for a model trained on several objects {default: the first}

EXAMPLE

    select CORE, adk and resi 1-29+68-117
    select LID, adk and resi 118-167
    select NMP, adk and resi 30-67
    dsr_measure adk_dsr, state=1-79:6, domains=CORE LID NMP, plot_file=adk_motion.png

SEE ALSO

    dsr_surface, dsr_evaluate
    """
    if kwargs:
        raise CmdException(f"unknown argument '{next(iter(kwargs))}'")
    session = session_for(_self)
    info = session.model_info(model)
    times = TimePoints.of(info, "" if str(state).strip() else t, state, _self.get_state())
    resolution = parse_int(resolution, "resolution", minimum=8)
    source = protein_of(info, object)
    masks = parse_domains(domains, source, _self) if str(domains).strip() else {}
    coords = atoms_at(source, times.states, _self) if masks else []  # read once, before the query
    meshes = session.backend().surfaces(info["name"], times.t, [0.0], resolution, source, bool(masks))
    span = abs(float(info["time_range"][1]) - float(info["time_range"][0])) or 1.0
    rows = measure([row[0] for row in meshes], times, 1.0 / span, coords, masks)
    if not int(quiet):
        print(f" dsr_measure: model '{info['name']}', object {source}, resolution {resolution}\n{table(rows)}")
    if str(plot_file).strip():
        plot(rows, str(plot_file).strip(), f"{info['name']} ({source})")
        if not int(quiet):
            print(f" dsr_measure: wrote {str(plot_file).strip()}")
    return rows

