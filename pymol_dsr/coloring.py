"""Colours of DSR surfaces and the atoms that go with them at any (fractional) state.

A surface of one colour is drawn without colours of its own, so PyMOL's ``color`` command and the
object's colour act on it like on any object; colours that vary over the surface (levels, normal speed,
the atoms' colours) are written per vertex.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from pymol import CmdException, cmd

from .atoms import ATOM_FILTER
from .display import hex_color, level_colors, ramp, speed_scale

COLOR_MODES = ("auto", "speed", "atoms")
SPEED_COLORS = ("blue", "white", "red")
NEAREST_CHUNK = 4096  # vertices compared against every atom at a time (bounded memory)


@dataclass
class Coloring:
    """How a surface object is coloured.

    Attributes
    ----------
    per_vertex : colours (V, 3) of every mesh, ``per_vertex[i][j]`` for time i and level j; None when the
        object has one colour.
    object_color : the object's PyMOL colour when ``per_vertex`` is None.
    speed_range : the (low, high) ends of the speed colour scale, with ``color=speed``.
    """

    per_vertex: list[list[np.ndarray]] | None
    object_color: str = "white"
    speed_range: tuple[float, float] | None = None


def parse_range(text: str) -> tuple[float, float] | None:
    """``range=`` of the speed colours: two numbers, low then high (empty: symmetric, from the data)."""
    text = str(text).strip()
    if not text:
        return None
    try:
        low, high = (float(word) for word in text.replace(",", " ").split())
    except ValueError:
        raise CmdException(f"range must be two numbers, low and high (e.g. range=-2 2), got '{text}'") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise CmdException(f"range must be two finite numbers with low < high, got '{text}'")
    return low, high


def check_color(color: str, _self=cmd) -> str:
    """``auto``, ``speed``, ``atoms`` or a PyMOL colour name; anything else is a one-line error."""
    if color.lower() in COLOR_MODES:
        return color.lower()
    if _self.get_color_tuple(color) is None:
        raise CmdException(f"unknown colour '{color}' (a PyMOL colour name, auto, speed or atoms)")
    return color


def surface_coloring(meshes: list[list[dict]], color: str, levels: Sequence[float],
                     speed_range: tuple[float, float] | None = None,
                     atom_coords: Sequence[np.ndarray] = (), atom_rgb: np.ndarray | None = None) -> Coloring:
    """The colouring of every mesh for ``color`` (see :func:`check_color`); for ``color=atoms``,
    ``atom_coords`` holds the atoms' coordinates (N, 3) at each time and ``atom_rgb`` their colours (N, 3)."""
    if color == "speed":
        if speed_range is None:
            scale = speed_scale([mesh["speed"] for row in meshes for mesh in row])
            speed_range = (-scale, scale)
        low, high = speed_range
        middle, half = (low + high) / 2, (high - low) / 2
        return Coloring([[ramp((mesh["speed"] - middle) / half) for mesh in row] for row in meshes],
                        speed_range=speed_range)
    if color == "atoms":
        return Coloring([[atom_rgb[nearest_atoms(mesh["vertices"], coords)] for mesh in row]
                         for row, coords in zip(meshes, atom_coords)])
    if color == "auto" and len(levels) > 1:
        rgbs = level_colors(levels)
        return Coloring([[np.broadcast_to(rgbs[j], (len(mesh["vertices"]), 3)) for j, mesh in enumerate(row)]
                         for row in meshes])
    return Coloring(None, hex_color(level_colors(levels)[0]) if color == "auto" else color)


def nearest_atoms(vertices: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """The index of the atom nearest to each vertex: (V,)."""
    nearest = np.empty(len(vertices), dtype=np.int64)
    squared_norms = (coords ** 2).sum(axis=1)
    for start in range(0, len(vertices), NEAREST_CHUNK):
        block = vertices[start:start + NEAREST_CHUNK]
        distances = squared_norms[None, :] - 2.0 * block @ coords.T  # |a - b|^2 less the constant |a|^2
        nearest[start:start + NEAREST_CHUNK] = distances.argmin(axis=1)
    return nearest


def atoms_at(name: str, states: Sequence[float], _self=cmd) -> list[np.ndarray]:
    """Coordinates (N, 3) of the atoms of object ``name`` (solvent and ions left out) at each (fractional)
    state: linear between the two states around it, the first or last state beyond them."""
    selection = f"(%{name}) and {ATOM_FILTER}"
    if name not in _self.get_names("objects") or _self.count_atoms(selection) == 0:
        raise CmdException(f"the atoms of object '{name}' are not loaded in PyMOL")
    count = _self.count_states(name)
    cache: dict[int, np.ndarray] = {}

    def coords(state: int) -> np.ndarray:
        if state not in cache:
            cache[state] = np.asarray(_self.get_coords(selection, state), dtype=np.float64)
        return cache[state]

    result = []
    for state in states:
        clipped = min(max(float(state), 1.0), float(count))
        below = int(np.floor(clipped))
        above, weight = min(below + 1, count), clipped - below
        result.append(coords(below) if weight == 0 else (1 - weight) * coords(below) + weight * coords(above))
    return result


def atom_colors(name: str, _self=cmd) -> np.ndarray:
    """The RGB colour (N, 3) of every atom of object ``name`` (solvent and ions left out), in coordinate order."""
    indices: list[int] = []
    _self.iterate(f"(%{name}) and {ATOM_FILTER}", "indices.append(color)", space={"indices": indices})
    table = {index: _self.get_color_tuple(index) for index in set(indices)}
    return np.asarray([table[index] for index in indices], dtype=np.float64)


def atoms_in_step(name: str, source: str, coords: Sequence[np.ndarray], object_states: Sequence[int],
                  _self=cmd) -> None:
    """(Re)make molecular object ``name``: the atoms of ``source`` with coordinates ``coords[i]`` (from
    :func:`atoms_at`) in object state ``object_states[i]``."""
    if name in _self.get_names("all") and _self.get_type(name) != "object:molecule":
        raise CmdException(f"'{name}' is an existing {_self.get_type(name)}; choose another name=")
    _self.delete(name)
    selection = f"(%{source}) and {ATOM_FILTER}"
    for xyz, state in zip(coords, object_states):
        _self.create(name, selection, 1, int(state))
        _self.load_coords(xyz.tolist(), name, state=int(state))


def speed_legend(name: str, speed_range: tuple[float, float], _self=cmd) -> None:
    """A colour ramp object ``name`` (blue - white - red over ``speed_range``), the key of ``color=speed``."""
    low, high = speed_range
    if name in _self.get_names("all") and _self.get_type(name) != "object:ramp":
        raise CmdException(f"'{name}' is an existing {_self.get_type(name)}; choose another name=")
    _self.delete(name)
    _self.ramp_new(name, "none", [low, (low + high) / 2, high], list(SPEED_COLORS))
