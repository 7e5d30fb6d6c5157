"""What ``dsr_surface`` does: times, object names and colours, the backend query and the PyMOL objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pymol import CmdException, cmd

from .backend import Backend
from .coloring import atom_colors, atoms_at, atoms_in_step, speed_legend, surface_coloring
from .display import hex_color, level_colors, load_cgo_states, load_sdf_maps, mesh_cgo
from .parsing import Values, parse_values

STYLES = ("cgo", "mesh", "map")
DEFAULT_RESOLUTION = 64
MAX_MAP_STATES = 10  # a map holds a whole grid per state (~16 MB at resolution 128)
REPLACEABLE = ("object:cgo", "object:surface", "object:map")


@dataclass
class TimePoints:
    """The times asked for, as fractions ``t`` of the trained range and as (fractional) state numbers."""

    t: list[float]
    states: list[float]
    static: bool

    @classmethod
    def of(cls, info: dict, t: Values = "", state: Values = "", current_state: int = 1) -> "TimePoints":
        """From ``t`` or ``state`` (at most one of them; neither: the current state) and a model's info."""
        start, stop = (float(v) for v in info["time_range"])
        static = stop == start
        if str(t).strip() and str(state).strip():
            raise CmdException("give t or state, not both")
        if str(t).strip():
            ts = parse_values(t, "t")
            return cls(ts, [start + v * (stop - start) for v in ts], static)
        states = parse_values(state, "state", last=stop, step=1.0) if str(state).strip() else [float(current_state)]
        return cls([0.0 if static else (s - start) / (stop - start) for s in states], states, static)

    def display_states(self) -> list[int]:
        """Object state of each time: the state number itself when every time falls on a distinct whole state
        (so the surface plays in step with the atoms; see :func:`filled_states`), else 1, 2, ..., n."""
        whole = [round(s) for s in self.states]
        aligned = (len(self.t) > 1 and not self.static and min(whole) >= 1 and len(set(whole)) == len(whole)
                   and np.allclose(whole, self.states, atol=1e-6))
        return whole if aligned else list(range(1, len(self.t) + 1))

    def extrapolated(self) -> bool:
        return not self.static and any(v < -1e-9 or v > 1 + 1e-9 for v in self.t)

    def describe(self) -> str:
        if self.static:
            return "a static model (one trained state): every t gives the same surface"
        text = f"t = {_numbers(self.t)} (state {_numbers(self.states)})"
        return text + ", extrapolated beyond the trained states" if self.extrapolated() else text


def filled_states(objects: Sequence, states: Sequence[int]) -> tuple[list, list[int]]:
    """``objects`` in ``states``, with every state between them filled by the object of the state before it,
    so that an object made of every 5th state shows a surface in every state (no flicker when played)."""
    chosen = dict(zip(states, objects))
    filled, current = [], objects[0]
    every = list(range(min(states), max(states) + 1))
    for state in every:
        current = chosen.get(state, current)
        filled.append(current)
    return filled, every


def _numbers(values: Sequence[float]) -> str:
    if len(values) <= 4:
        return ", ".join(f"{v:.4g}" for v in values)
    return f"{values[0]:.4g} .. {values[-1]:.4g} ({len(values)} values)"


def default_name(model: str, times: TimePoints, by_state: bool, protein: str = "") -> str:
    """``<model>[_<object>]_t0.5``, ``..._s37.5`` or, for several times, ``..._t0-1``."""
    prefix = f"{model}_{protein}" if protein else model
    values, letter = (times.states, "s") if by_state else (times.t, "t")
    label = f"{values[0]:.4g}" if len(values) == 1 else f"{values[0]:.4g}-{values[-1]:.4g}"
    return cmd.get_legal_name(f"{prefix}_{letter}{label}")


def protein_of(info: dict, name: str) -> str:
    """The protein (object) whose surface to show: ``name`` checked against the model, default the first."""
    names = list(info["protein_names"])
    if not name:
        return names[0]
    if name not in names:
        raise CmdException(f"model '{info['name']}' has no object '{name}' (it knows {', '.join(names)})")
    return name


def check_name(name: str, _self=cmd) -> None:
    """Refuse to replace an object that ``dsr_surface`` would not have made (molecules, selections...)."""
    if name in _self.get_names("all") and _self.get_type(name) not in REPLACEABLE:
        raise CmdException(f"'{name}' is an existing {_self.get_type(name)}; choose another name=")


def show_surface(backend: Backend, info: dict, times: TimePoints, levels: Sequence[float], name: str,
                 resolution: int = DEFAULT_RESOLUTION, color: str = "auto", style: str = "cgo", protein: str = "",
                 min_component: float | None = None, speed_range: tuple[float, float] | None = None,
                 atoms: bool = False, _self=cmd) -> str:
    """Query the model and (re)place object ``name``; returns a one-line summary.

    Parameters
    ----------
    backend, info : where the model lives and its information (``model_info``).
    times : the time points; several make a multi-state object.
    levels : SDF levels in Å; several are shown together (and transparent as triangles).
    resolution : grid nodes per axis over the model's box.
    color : ``auto`` (one level: white, the object's colour, which ``color`` changes; several: positive red,
        zero white, negative blue), ``speed`` (normal speed, blue-white-red, with a ramp object
        ``<name>_speed``), ``atoms`` (each vertex the colour of the nearest atom at that time), or a PyMOL
        colour name.
    style : ``cgo`` (triangles), ``mesh`` (lines) or ``map`` (SDF map + isosurfaces).
    protein : object name of a multi-object model.
    min_component : leave out floating pieces smaller than this fraction of the largest piece's volume
        (None: the backend's default; 0 keeps every piece). A map shows the whole field.
    speed_range : the ends of the speed colour scale (None: symmetric, from the data).
    atoms : also (re)make ``<name>_atoms``, the atoms at the same times, state for state.
    """
    if style not in STYLES:
        raise CmdException(f"as must be one of {', '.join(STYLES)}, got '{style}'")
    check_name(name, _self)
    source = protein or info["protein_names"][0]
    states = times.display_states()
    # the atoms at every time, read once and before the query (a missing object fails here, at once)
    atom_coords = atoms_at(source, times.states, _self) if (atoms or color == "atoms") and style != "map" else []
    if style == "map":
        return _show_maps(backend, info, times, levels, name, resolution, color, protein, states, _self)
    meshes = backend.surfaces(info["name"], times.t, list(levels), resolution, protein, color == "speed",
                              min_component)
    coloring = surface_coloring(meshes, color, levels, speed_range, atom_coords,
                                atom_colors(source, _self) if color == "atoms" else None)
    colors = coloring.per_vertex or [[None] * len(row) for row in meshes]
    objects = [np.concatenate([mesh_cgo(mesh, c, style) for mesh, c in zip(row, row_colors)])
               for row, row_colors in zip(meshes, colors)]
    objects, object_states = filled_states(objects, states)
    load_cgo_states(name, objects, object_states, _self)
    if coloring.per_vertex is None:
        _self.color(coloring.object_color, name)
    if len(levels) > 1 and style == "cgo":
        _self.set("cgo_transparency", 0.5, name)
    summary = (f"'{name}': {len(object_states)} state(s), "
               f"{sum(len(mesh['faces']) for row in meshes for mesh in row)} triangles, {times.describe()}")
    if atoms:
        atoms_in_step(f"{name}_atoms", source, atom_coords, states, _self)
        summary += f"; atoms at the same times in '{name}_atoms'"
    if coloring.speed_range is None:
        return summary
    speed_legend(f"{name}_speed", coloring.speed_range, _self)
    low, high = coloring.speed_range
    span = abs(float(info["time_range"][1]) - float(info["time_range"][0])) or 1.0
    return (f"{summary}; speed colours (legend '{name}_speed') blue {low:.3g} .. white .. red {high:.3g} Å per "
            f"unit t (= {low / span:.3g} .. {high / span:.3g} Å per state), red moving outward")


def _show_maps(backend: Backend, info: dict, times: TimePoints, levels: Sequence[float], name: str,
               resolution: int, color: str, protein: str, states: list[int], _self) -> str:
    if color in ("speed", "atoms"):
        raise CmdException(f"color={color} needs as=cgo or as=mesh (an isosurface has no per-vertex colours)")
    if len(times.t) > MAX_MAP_STATES:
        raise CmdException(f"as=map keeps a whole grid per time point: use at most {MAX_MAP_STATES} times, "
                           "or as=cgo for a longer series")
    if color != "auto" and _self.get_color_tuple(color) is None:
        raise CmdException(f"unknown colour '{color}' (a PyMOL colour name or auto)")
    map_name = f"{name}_sdf"
    surfaces = [name] if len(levels) == 1 else [f"{name}_{j + 1}" for j in range(len(levels))]
    for checked in [map_name] + surfaces:
        check_name(checked, _self)
    grids = [backend.sdf_grid(info["name"], t, resolution, protein) for t in times.t]
    load_sdf_maps(map_name, grids, states, _self)
    for surface, level, rgb in zip(surfaces, levels, level_colors(levels)):
        _self.delete(surface)
        _self.isosurface(surface, map_name, float(level), state=0)
        _self.color(color if color != "auto" else hex_color(rgb), surface)
    return (f"'{map_name}' (SDF in Å, {len(states)} state(s)) with isosurface(s) {', '.join(surfaces)} at "
            f"level(s) {_numbers(list(levels))} Å; change with: isolevel {surfaces[0]}, <level>; {times.describe()}")
