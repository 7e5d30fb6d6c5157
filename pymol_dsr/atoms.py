"""Atoms of a PyMOL selection, per object and state: coordinates and van der Waals radii."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymol import CmdException, cmd

from .parsing import parse_states

ATOM_FILTER = "not solvent and not inorganic"
"""Atoms dropped by default: water and other solvent, inorganic ions (PyMOL's own surface skips them too).
Hydrogens are kept, as in PyMOL's surface; write ``... and not hydro`` to drop them."""


@dataclass
class AtomFrames:
    """One object's filtered atoms over the chosen states.

    Attributes
    ----------
    object : the PyMOL object name.
    selection : the selection the atoms were taken from (the user's, restricted to the object and filtered).
    states : (S,) state numbers, 1-based, ascending.
    coords : (S, N, 3) float32 coordinates in Å, as ``cmd.get_coords(selection, state)`` returns them.
    radii : (N,) float32 van der Waals radii in Å (the atoms' ``vdw`` property).
    """

    object: str
    selection: str
    states: list[int]
    coords: np.ndarray
    radii: np.ndarray


def selection_objects(selection: str, _self=cmd) -> list[str]:
    """Names of the molecular objects with atoms in ``selection``; a one-line error if there are none."""
    try:
        count = _self.count_atoms(f"({selection})")
    except CmdException:
        raise CmdException(f"unknown selection or object '{selection}'") from None
    if count == 0:
        raise CmdException(f"selection '{selection}' has no atoms")
    return list(_self.get_object_list(f"({selection})") or [])


def object_radii(selection: str, _self=cmd) -> np.ndarray:
    """The ``vdw`` radius of every atom of ``selection``, in the order of ``cmd.get_coords``."""
    radii: list[float] = []
    _self.iterate(selection, "radii.append(vdw)", space={"radii": radii})
    return np.asarray(radii, dtype=np.float32)


def superpose_states(selection: str, states: str, fit: str, _self=cmd) -> None:
    """Superpose every state of each object in ``selection`` on its first chosen state by the atoms ``fit``
    (``intra_fit``). Every state is checked first: nothing moves unless each has at least 3 fit atoms."""
    targets = []
    for name in selection_objects(selection, _self):
        chosen = f"(%{name}) and ({fit})"
        try:
            count = _self.count_atoms(chosen)
        except CmdException:
            raise CmdException(f"cannot read the fit selection '{fit}'") from None
        state_list = parse_states(states, _self.count_states(name), f"object '{name}'")
        for state in state_list:
            xyz = _self.get_coords(chosen, state)
            if count < 3 or xyz is None or len(xyz) < 3:
                raise CmdException(f"fit '{fit}' has {0 if xyz is None else len(xyz)} atoms of '{name}' in state "
                                   f"{state}; superposing needs at least 3")
        targets.append((chosen, state_list[0]))
    for chosen, first in targets:
        _self.intra_fit(chosen, first)


def extract_atoms(selection: str, states: str = "", _self=cmd) -> list[AtomFrames]:
    """Filtered atoms of every object in ``selection`` at the states given by ``states``.

    Parameters
    ----------
    selection : any PyMOL selection; each object in it becomes one protein of the model.
    states : a state string for :func:`pymol_dsr.parsing.parse_states`, applied to every object.
    """
    frames = []
    for name in selection_objects(selection, _self):
        chosen = f"(%{name}) and ({selection}) and {ATOM_FILTER}"
        count = _self.count_atoms(chosen)
        if count == 0:
            raise CmdException(f"no atoms of '{name}' in '{selection}' are left after removing solvent and "
                               "inorganic ions")
        state_list = parse_states(states, _self.count_states(name), f"object '{name}'")
        coords = []
        for state in state_list:
            xyz = _self.get_coords(chosen, state)
            if xyz is None or len(xyz) != count:
                raise CmdException(f"object '{name}' has {0 if xyz is None else len(xyz)} of the {count} "
                                   f"selected atoms in state {state}; every state needs all of them")
            coords.append(xyz)
        frames.append(AtomFrames(name, chosen, state_list, np.asarray(coords, dtype=np.float32),
                                 object_radii(chosen, _self)))
    return frames
