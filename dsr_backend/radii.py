"""PyMOL's default van der Waals radii by element.

The values are those PyMOL assigns to an atom from its element when a structure is loaded (or when
``cmd.alter(sel, "elem=elem")`` re-assigns them); they were read from pymol-open-source 3.x with
``cmd.iterate(sel, "stored.r.append((elem, vdw))")``. Elements PyMOL has no specific value for get
:data:`DEFAULT_RADIUS`, as in PyMOL.

Note: peptides built with ``cmd.fab`` carry the radii stored in PyMOL's fragment library
(C 1.8, N 1.8, O 1.5, H 1.1, S 1.9) until their elements are re-assigned; the table here follows
what PyMOL gives loaded files.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InvalidInputError

DEFAULT_RADIUS = 1.8
"""Radius (Å) PyMOL gives elements without a value of their own (e.g. Fe, Ca, Co, Mo)."""

PYMOL_VDW_RADII: dict[str, float] = {
    "H": 1.2, "D": 1.2, "HE": 1.4,
    "LI": 1.82, "B": 1.85, "C": 1.7, "N": 1.55, "O": 1.52, "F": 1.47, "NE": 1.54,
    "NA": 2.27, "MG": 1.73, "AL": 2.0, "SI": 2.1, "P": 1.8, "S": 1.8, "CL": 1.75, "AR": 1.88,
    "K": 2.75, "CA": 1.8, "MN": 1.73, "FE": 1.8, "CO": 1.8, "NI": 1.63, "CU": 1.4, "ZN": 1.39,
    "GA": 1.87, "AS": 1.85, "SE": 1.9, "BR": 1.85, "KR": 2.02,
    "PD": 1.63, "AG": 1.72, "CD": 1.58, "IN": 1.93, "SN": 2.17, "TE": 2.06, "I": 1.98, "XE": 2.16,
    "PT": 1.75, "AU": 1.66, "HG": 1.55, "TL": 1.96, "PB": 2.02, "U": 1.86,
    "LP": 0.5,
}
"""Element symbol (upper case) -> radius in Å; every other element gets :data:`DEFAULT_RADIUS`."""


def vdw_radius(element: str) -> float:
    """PyMOL's default vdW radius (Å) of one element symbol, case-insensitive ("C", "CL", "Fe")."""
    if not isinstance(element, str):
        raise InvalidInputError(f"element symbols must be strings; got {element!r} ({type(element).__name__})")
    return PYMOL_VDW_RADII.get(element.strip().upper(), DEFAULT_RADIUS)


def vdw_radii(elements: Sequence[str]) -> np.ndarray:
    """PyMOL's default vdW radii for element symbols.

    Parameters
    ----------
    elements : sequence of str
        Element symbols, any case (``"C"``, ``"CL"``, ``"Fe"``); unknown symbols get
        :data:`DEFAULT_RADIUS` as in PyMOL.

    Returns
    -------
    (N,) float32 array of radii in Å.
    """
    if isinstance(elements, str):
        raise InvalidInputError(f"elements must be a sequence of element symbols, not one string; got {elements!r}")
    return np.array([vdw_radius(element) for element in elements], dtype=np.float32).reshape(-1)
