"""Damaged checkpoints made from a good one, each with what every reader must say of it."""
from __future__ import annotations

import copy
import pathlib

from dsr_backend.checkpoint import read_checkpoint, save_checkpoint


def _config_with_hidden(config: dict, hidden: int) -> dict:
    changed = copy.deepcopy(config)
    changed["model"]["hidden"] = hidden
    return changed


CHANGES = [  # what is changed, and what a reader says
    (lambda s: s.update(normalization="x"), "normalization or time map is not numbers"),
    (lambda s: s.update(protein_names=7), "protein names are not a list of names"),
    (lambda s: s["normalization"].update(scale=0.0), "is not a finite box of positive size"),
    (lambda s: s["time_map"].update(start=float("nan")), "is not a finite range"),
    (lambda s: s.update(config=_config_with_hidden(s["config"], 8192)), "declares a network of"),
]


def damaged_checkpoints(good: str | pathlib.Path, folder: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    """(path, message) of one damaged copy of ``good`` per change in :data:`CHANGES`."""
    made = []
    for index, (change, message) in enumerate(CHANGES):
        state = copy.deepcopy(read_checkpoint(good))
        change(state)
        path = folder / f"damaged{index}.pt"
        save_checkpoint(path, {key: value for key, value in state.items() if key not in ("format", "version")})
        made.append((path, message))
    return made
