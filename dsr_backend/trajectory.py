"""Atoms per frame from MD files (any topology/trajectory MDAnalysis reads), with PyMOL vdW radii.

MDAnalysis is an optional dependency (``pip install "pymol-dsr[md]"``); it is imported only when
a trajectory is read.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .errors import InvalidInputError, MissingDependencyError
from .radii import vdw_radii
from .ranges import parse_indices

logger = logging.getLogger(__name__)

INSTALL_MD = 'pip install "pymol-dsr[md]"'
HYDROGENS = ("H", "D")  # deuterium counts as hydrogen


@dataclass
class AtomFrames:
    """Selected atoms of selected frames.

    Attributes
    ----------
    coords : (K, N, 3) float32
        Positions in Å, one row per selected frame.
    radii : (N,) float32
        PyMOL vdW radii by element.
    elements : list of str
        Element symbol per atom, capitalised as in the periodic table (``"C"``, ``"Zn"``).
    frame_indices : (K,) int64
        0-based trajectory frame numbers.
    times_ps : (K,) float64
        Frame times in ps (MDAnalysis ``ts.time``).
    """

    coords: np.ndarray
    radii: np.ndarray
    elements: list[str]
    frame_indices: np.ndarray
    times_ps: np.ndarray


def _add_transformations(universe, atoms, whole: bool, center: bool) -> None:
    """Unwrap (``whole``) and centre (``center``) ``atoms`` in every frame, through MDAnalysis' transformations."""
    from MDAnalysis import transformations  # MDAnalysis is optional: imported with the universe's reader

    steps = []
    if whole:
        if not hasattr(atoms, "bonds") or len(atoms.bonds) == 0:
            try:
                atoms.guess_bonds()
            except Exception as error:  # MDAnalysis' guessers raise several types
                raise InvalidInputError(f"cannot make the molecules whole: guessing bonds failed ({error})") from None
        steps.append(transformations.unwrap(atoms))
    if center:
        steps.append(transformations.center_in_box(atoms))
    if steps:
        universe.trajectory.add_transformations(*steps)


def _fit_mask(atoms, fit: str) -> np.ndarray:
    """Which of ``atoms`` the fit selection picks; at least 3 of them."""
    try:
        chosen = atoms.select_atoms(fit)
    except Exception as error:  # SelectionError and parser errors
        raise InvalidInputError(f"invalid fit selection {fit!r}: {error}") from None
    if len(chosen) < 3:
        raise InvalidInputError(f"fit selection {fit!r} has {len(chosen)} of the selected atoms; superposing "
                                "needs at least 3")
    return np.isin(atoms.indices, chosen.indices)


def _superpose(coords: np.ndarray, mask: np.ndarray) -> None:
    """Rotate and move every frame of ``coords`` (K, N, 3), in place, onto the first by the atoms in ``mask``
    (the least-squares superposition, Kabsch)."""
    reference = coords[0, mask].astype(np.float64)
    target = reference.mean(axis=0)
    for frame in coords:
        mobile = frame[mask].astype(np.float64)
        centre = mobile.mean(axis=0)
        u, _, vt = np.linalg.svd((mobile - centre).T @ (reference - target))
        flip = np.sign(np.linalg.det(u @ vt))
        rotation = u @ np.diag([1.0, 1.0, flip]) @ vt
        frame[:] = (frame - centre) @ rotation + target


def _checked_frames(frames: Sequence[int], count: int) -> list[int]:
    """Frame numbers given as a sequence, each a whole number within the trajectory."""
    indices = [int(index) for index in frames]
    if not indices or any(index != value or not 0 <= index < count for index, value in zip(indices, frames)):
        raise InvalidInputError(f"frames must be whole numbers within the trajectory's {count} frames "
                                f"(0-{count - 1}); got {list(frames)[:5]}")
    return indices


def _import_mdanalysis():
    try:
        import MDAnalysis
    except ImportError:
        raise MissingDependencyError(
            f"reading MD topologies and trajectories needs MDAnalysis; install it with: {INSTALL_MD}") from None
    return MDAnalysis


def _element_guesser() -> Callable[[str], str]:
    """MDAnalysis' element-from-atom-name guesser (the 2.8+ API, else the older function)."""
    try:
        from MDAnalysis.guesser.default_guesser import DefaultGuesser
    except ImportError:
        from MDAnalysis.topology.guessers import guess_atom_element
        return guess_atom_element
    return DefaultGuesser(None).guess_atom_element


def _normalize_element(symbol: str) -> str:
    return str(symbol).strip().capitalize()


def _atom_elements(atoms) -> list[str]:
    """Element symbols of an MDAnalysis AtomGroup: the topology's, else guessed from atom names.

    Atoms whose topology element is blank (e.g. an empty PDB element column) are guessed one by one.
    """
    try:
        given = [_normalize_element(symbol) for symbol in atoms.elements]
    except AttributeError:  # MDAnalysis' NoDataError: the topology has no element column
        given = [""] * len(atoms)
    missing = [i for i, symbol in enumerate(given) if not symbol]
    if missing:
        guess = _element_guesser()
        try:
            labels = atoms.names
        except AttributeError:
            labels = atoms.types
        for i in missing:
            given[i] = _normalize_element(guess(str(labels[i])))
        logger.info("guessed the elements of %d of %d atoms from their names", len(missing), len(atoms))
    return given


def _check_files(topology: str, trajectories: Sequence[str]) -> None:
    if not os.path.isfile(topology):
        raise InvalidInputError(f"topology file not found: {topology}")
    for path in trajectories:
        if not os.path.isfile(path):
            raise InvalidInputError(f"trajectory file not found: {path}")


def _load_universe(topology: str, trajectories: Sequence[str]):
    mda = _import_mdanalysis()
    try:
        universe = mda.Universe(topology, list(trajectories)) if trajectories else mda.Universe(topology)
    except Exception as error:  # MDAnalysis raises many types for unreadable or mismatched files
        files = ", ".join([topology, *trajectories])
        raise InvalidInputError(f"MDAnalysis could not read {files}: {error}") from None
    if not hasattr(universe, "trajectory"):
        raise InvalidInputError(f"topology {topology} holds no coordinates; give a trajectory file as well")
    return universe


def _select(universe, select: str):
    try:
        atoms = universe.select_atoms(select)
    except Exception as error:  # SelectionError and parser errors
        raise InvalidInputError(f"invalid atom selection {select!r}: {error}") from None
    if len(atoms) == 0:
        raise InvalidInputError(f"atom selection {select!r} matches no atoms "
                                f"(the topology has {len(universe.atoms)} atoms)")
    return atoms


def read_atom_frames(topology: str, trajectories: Sequence[str] = (), select: str = "protein",
                     frames: str | Sequence[int] = "all", include_hydrogens: bool = True, whole: bool = False,
                     center: bool = False, fit: str | None = None) -> AtomFrames:
    """Read the positions of selected atoms over selected frames of an MD trajectory.

    Parameters
    ----------
    topology : str
        Topology file (PSF, PDB, GRO, TPR, ...); used alone when it also holds coordinates.
    trajectories : sequence of str
        Trajectory files (DCD, XTC, TRR, ...), concatenated in order.
    select : str
        MDAnalysis selection string.
    frames : str or sequence of int
        0-based frames to read: ``"all"``, a range such as ``"0-78:2"`` or a list (see
        :mod:`dsr_backend.ranges`), or the frame numbers themselves.
    include_hydrogens : bool
        Keep hydrogen atoms (elements H and D).
    whole : bool
        Make the selected molecules whole across periodic boundaries (MDAnalysis' ``unwrap``; bonds are
        guessed from distances where the topology has none).
    center : bool
        Move the selection's centre of geometry to the centre of the box in every frame.
    fit : str, optional
        An MDAnalysis selection (e.g. ``"name CA"``) within the selected atoms: every frame is rotated and
        moved onto the first frame read by these atoms (least squares).

    Returns
    -------
    AtomFrames
    """
    topology = os.fspath(topology)
    if isinstance(trajectories, (str, os.PathLike)):
        trajectories = [trajectories]
    trajectories = [os.fspath(path) for path in trajectories]
    _check_files(topology, trajectories)
    universe = _load_universe(topology, trajectories)
    atoms = _select(universe, select)
    elements = _atom_elements(atoms)
    if not include_hydrogens:
        heavy = np.array([symbol not in HYDROGENS for symbol in elements], dtype=bool)
        if not heavy.any():
            raise InvalidInputError(f"atom selection {select!r} holds only hydrogens; "
                                    "nothing is left with include_hydrogens=False")
        atoms = atoms[heavy]
        elements = [symbol for symbol, keep in zip(elements, heavy) if keep]
    _add_transformations(universe, atoms, whole, center)
    n_frames = len(universe.trajectory)
    indices = np.asarray(parse_indices(frames, n_frames, "frames") if isinstance(frames, str) else
                         _checked_frames(frames, n_frames), dtype=np.int64)
    coords = np.empty((len(indices), len(atoms), 3), dtype=np.float32)
    times = np.empty(len(indices), dtype=np.float64)
    for k, index in enumerate(indices):
        timestep = universe.trajectory[int(index)]
        positions = atoms.positions
        if not np.isfinite(positions).all():
            raise InvalidInputError(f"frame {index} of {', '.join(trajectories) or topology} has "
                                    "non-finite (NaN or infinite) coordinates")
        coords[k] = positions
        times[k] = timestep.time
    if fit:
        _superpose(coords, _fit_mask(atoms, fit))
    logger.info("read %d atoms x %d frames from %s", len(atoms), len(indices), topology)
    return AtomFrames(coords=coords, radii=np.asarray(vdw_radii(elements), dtype=np.float32),
                      elements=elements, frame_indices=indices, times_ps=times)

