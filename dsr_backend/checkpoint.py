"""Checkpoint files: atomic writes, safe loading (``weights_only=True``) and validation."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from .errors import CheckpointError

CHECKPOINT_FORMAT = "pymol-dsr-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("config", "model_state", "normalization", "time_map", "protein_names", "step")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".pt")
    os.close(fd)
    try:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, or not a pymol-dsr checkpoint of a known version.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no such checkpoint file: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and torch errors all mean "not a readable checkpoint"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable pymol-dsr checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pymol-dsr checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state['version']}; this pymol-dsr reads up "
                              f"to {CHECKPOINT_VERSION}: upgrade pymol-dsr")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    return state
