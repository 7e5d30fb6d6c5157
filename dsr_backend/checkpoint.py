"""Checkpoint files: atomic writes, safe loading (``weights_only=True``) and validation.

A training leaves two kinds of file: the model (``model.pt``: weights, maps and metadata, what queries
need; float32 or float16) and, while it runs or after it was stopped, its resume checkpoint beside it
(``model.resume.pt``: the same plus optimiser, schedule and random state, for ``dsr train --resume``).
"""
from __future__ import annotations

import math
import os
import zlib
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write
from .errors import CheckpointError

CHECKPOINT_FORMAT = "pymol-dsr-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("config", "model_state", "normalization", "time_map", "protein_names", "step")
RESUME_KEYS = ("optimizer_state", "scheduler_state", "generator_state")
"""What a resume checkpoint holds beyond the model."""
ROW_OPTIMIZER_KEY = "row_optimizer_state"
"""Where a resume checkpoint of a row-sparse training holds the moments of its space-time planes."""
RESUME_SUFFIX = ".resume.pt"
STORAGES = ("float32", "float16")
"""How a model file may store its floating-point weights: as they are, or rounded to float16 and deflated
(high and low bytes apart, zlib): about 40 % of the size. Queries compute in float32 either way."""
PACKED = "deflated_float16"


def resume_path(path: str | os.PathLike) -> str:
    """The resume checkpoint that goes with the model file ``path`` (``model.pt`` -> ``model.resume.pt``)."""
    path = os.fspath(path)
    if path.endswith(RESUME_SUFFIX):
        return path
    return (path[:-3] if path.endswith(".pt") else path) + RESUME_SUFFIX


def model_only(state: dict[str, Any], storage: str = "float32") -> dict[str, Any]:
    """The model part of a training state: no optimiser, schedule or random state, the floating-point
    weights stored as ``storage`` (one of :data:`STORAGES`)."""
    if storage not in STORAGES:
        raise CheckpointError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    weights = {name: _pack(value) if storage == "float16" and value.is_floating_point() else value.detach()
               for name, value in state["model_state"].items()}
    return {**{k: v for k, v in state.items() if k not in RESUME_KEYS + (ROW_OPTIMIZER_KEY,)},
            "model_state": weights}


def _pack(tensor: torch.Tensor) -> dict[str, Any]:
    """A float tensor as float16, its high and low bytes apart (the high bytes compress well), deflated."""
    pairs = tensor.detach().cpu().to(torch.float16).contiguous().numpy().view(np.uint8).reshape(-1, 2)
    blob = zlib.compress(np.ascontiguousarray(pairs.T).tobytes(), 6)
    return {"shape": list(tensor.shape), PACKED: torch.frombuffer(bytearray(blob), dtype=torch.uint8)}


def _unpack(entry: dict[str, Any], name: str, path: str) -> torch.Tensor:
    """The float32 tensor of a :func:`_pack` entry; the inflated size is checked before it is used."""
    try:
        shape = [int(size) for size in entry["shape"]]
        expected = 2 * math.prod(shape)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(entry[PACKED].numpy().tobytes(), expected + 1)
        if len(raw) != expected or not inflater.eof:
            raise ValueError(f"{len(raw)} bytes where {expected} were expected")
    except (KeyError, TypeError, ValueError, AttributeError, zlib.error) as error:
        raise CheckpointError(f"{path}: the weights {name} are damaged ({error})") from None
    pairs = np.frombuffer(raw, dtype=np.uint8).reshape(2, -1).T.copy()
    return torch.from_numpy(pairs.view(np.float16).reshape(shape)).float()


def storage_of(state: dict[str, Any]) -> str:
    """How a checkpoint as written stores its weights (one of :data:`STORAGES`)."""
    packed = any(isinstance(value, dict) for value in state["model_state"].values())
    return "float16" if packed else "float32"


def is_resume_checkpoint(state: dict[str, Any]) -> bool:
    """Whether a checkpoint holds what continuing its training needs."""
    return all(state.get(key) is not None for key in RESUME_KEYS)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a crash never leaves half a file), making its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
    atomic_write(path, lambda handle: torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                                                 **state}, handle))


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    label: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint` (``label`` names it in messages;
    default its path).

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, or not a pymol-dsr checkpoint of a known version.
    """
    file = os.fspath(path)
    path = label or file
    if os.path.isdir(file):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not os.path.isfile(file):
        raise CheckpointError(f"no such checkpoint file: {path}")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and torch errors all mean "not a readable checkpoint"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights only load failed" in reason.lower():  # torch's advice to unpickle must not reach users
            reason = "it holds Python objects besides tensors and numbers, which are never loaded"
        raise CheckpointError(f"{path} is not a readable pymol-dsr checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pymol-dsr checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state['version']}; this pymol-dsr reads up "
                              f"to {CHECKPOINT_VERSION}: upgrade pymol-dsr")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    if not isinstance(state["model_state"], dict):
        raise CheckpointError(f"{path} is damaged: its weights are not a dictionary")
    return unpacked(state, path)


def unpacked(state: dict[str, Any], path: str = "the checkpoint") -> dict[str, Any]:
    """A checkpoint's state with its weights as float32 tensors whatever their storage, which is recorded
    under ``storage``."""
    weights = {name: _unpack(value, name, path) if isinstance(value, dict) else value
               for name, value in state["model_state"].items()}
    return {**state, "storage": storage_of(state), "model_state": weights}
