"""Validation of what clients upload: training data or evaluation references as a flat ``.npz``, and settings.

Nothing is unpickled: arrays are read with ``np.load(allow_pickle=False)`` after the archive's declared
sizes are checked (so a small compressed file cannot expand past the cap). Each failure is an
:class:`~dsr_backend.errors.InvalidInputError` whose message says what was wrong.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import numpy as np

from ..config import DEFAULT_PRESET, MAX_MINUTES, PRESETS, QUALITIES, preset as preset_config
from ..errors import InvalidInputError
from ..series import MAX_COORDINATE
from ..surface import DEFAULT_PROBE, MAX_PROBE

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
SETTINGS = ("name", "preset", "quality", "steps", "minutes", "members", "device", "protein_names", "metadata", "probe")
MAX_SETTINGS_CHARS = 256 * 1024
MAX_STEPS = 10_000_000
MAX_MEMBERS = 16
MAX_ARCHIVE_MEMBERS = 16
ATOMS, SURFACES = ("coords", "radii"), ("points", "normals")
ARRAYS = ("settings", "times", "proteins", "sizes") + ATOMS + SURFACES


def check_name(name: Any, what: str = "model name") -> str:
    """A model name: 1-64 letters, digits, ``_ . + -``, not starting with a punctuation mark."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInputError(f"{what} {name!r} must be 1-64 letters, digits or _ . + - (starting with a "
                                "letter, digit or _)")
    return name


def read_npz(data: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive whose members add up to at most ``max_bytes`` uncompressed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise InvalidInputError("the upload is not an .npz file (numpy.savez)") from None
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise InvalidInputError(f"the .npz holds {len(members)} arrays; at most {MAX_ARCHIVE_MEMBERS} are read")
    expanded = sum(member.file_size for member in members)
    if expanded > max_bytes:
        raise InvalidInputError(f"the .npz expands to {expanded} bytes; the limit is {max_bytes}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise InvalidInputError("the .npz holds object arrays (pickles), which are refused") from None
        raise InvalidInputError(f"cannot read the .npz: {error}") from None
    except Exception as error:  # zlib, zip and header errors all mean a broken upload
        raise InvalidInputError(f"cannot read the .npz: {type(error).__name__}: {error}") from None
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands members without the .npy header over as bytes
            raise InvalidInputError(f"cannot read the .npz: '{key}' is not a .npy array")
    return arrays


def training_upload(data: bytes, max_bytes: int, max_frames: int = 10_000) -> tuple[dict, dict[str, np.ndarray]]:
    """Settings and training arrays of a job upload (see :mod:`dsr_backend.engine` for the arrays).

    The archive holds ``settings`` (a JSON object as a string array), ``times``, ``sizes``, optionally
    ``proteins``, and either ``coords`` + ``radii`` (atoms) or ``points`` + ``normals`` (surfaces).
    """
    arrays = read_npz(data, max_bytes)
    unknown = sorted(set(arrays) - set(ARRAYS))
    if unknown:
        raise InvalidInputError(f"unknown array(s) {', '.join(map(repr, unknown))}; expected {', '.join(ARRAYS)}")
    for key in ("settings", "times", "sizes"):
        if key not in arrays:
            raise InvalidInputError(f"the upload has no '{key}' array")
    settings = check_settings(arrays.pop("settings"))
    times = _numeric(arrays, "times", 1, "iuf").astype(np.float64)
    frames = len(times)
    if not 1 <= frames <= max_frames:
        raise InvalidInputError(f"'times' has {frames} frames; between 1 and {max_frames} are accepted")
    sizes = _numeric(arrays, "sizes", 1, "iu").astype(np.int64)
    _length(sizes, "sizes", frames)
    if np.any(sizes < 1):
        raise InvalidInputError(f"'sizes' must be at least 1 (frame {int(np.argmin(sizes))} is empty)")
    checked = dict(times=times, sizes=sizes)
    names = settings.setdefault("protein_names", ["protein"])
    proteins = _numeric(arrays, "proteins", 1, "iu") if "proteins" in arrays else np.zeros(frames, np.int64)
    _length(proteins, "proteins", frames)
    if proteins.min() < 0 or proteins.max() >= len(names):
        raise InvalidInputError(f"'proteins' must lie in [0, {len(names) - 1}] (one per protein name)")
    checked["proteins"] = proteins.astype(np.int64)
    kind = [group for group in (ATOMS, SURFACES) if any(key in arrays for key in group)]
    if len(kind) != 1:
        raise InvalidInputError("send either atoms ('coords' + 'radii') or surfaces ('points' + 'normals')")
    first, second = kind[0]
    rows = int(sizes.sum())
    for key in kind[0]:
        if key not in arrays:
            raise InvalidInputError(f"'{first}' and '{second}' go together; '{key}' is missing")
        values = _numeric(arrays, key, 1 if key == "radii" else 2, "f")
        if len(values) != rows or (values.ndim == 2 and values.shape[1] != 3):
            shape = f"({rows},)" if key == "radii" else f"({rows}, 3)"
            raise InvalidInputError(f"'{key}' has shape {values.shape}; the frame sizes need {shape}")
        checked[key] = values.astype(np.float32)
    if "radii" in checked and np.any(checked["radii"] <= 0):
        raise InvalidInputError("'radii' must be positive")
    if "normals" in checked and np.any(np.linalg.norm(checked["normals"], axis=1) < 1e-12):
        raise InvalidInputError("'normals' has vectors of zero length")
    return settings, checked


def _numeric(arrays: dict[str, np.ndarray], key: str, ndim: int, kinds: str) -> np.ndarray:
    values = arrays[key]
    expected = {"iu": "integers", "iuf": "numbers", "f": "floating-point numbers"}[kinds]
    if values.dtype.kind not in kinds or values.dtype.itemsize > 8:
        raise InvalidInputError(f"'{key}' has dtype {values.dtype}; expected {expected}")
    if values.ndim != ndim:
        raise InvalidInputError(f"'{key}' has {values.ndim} dimensions; expected {ndim}")
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if bad.any():
            raise InvalidInputError(f"'{key}' has {int(bad.sum())} rows with NaN or infinite values "
                                    f"(first: row {int(np.argmax(bad))})")
        if key in ("coords", "points") and len(values) and np.abs(values).max() > MAX_COORDINATE:
            raise InvalidInputError(f"'{key}' holds coordinates beyond ±{MAX_COORDINATE:g} Å")
    return values


def _length(values: np.ndarray, key: str, frames: int) -> None:
    if len(values) != frames:
        raise InvalidInputError(f"'{key}' has {len(values)} entries for {frames} frames")


def check_settings(raw: np.ndarray) -> dict[str, Any]:
    """The job settings stored as a JSON object in a 0-d string array."""
    settings = _json_object(raw, SETTINGS)
    check_name(settings.get("name"))
    preset = settings.setdefault("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    quality = settings.setdefault("quality", "quick")
    if quality not in QUALITIES:
        raise InvalidInputError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITIES)}")
    steps = settings.setdefault("steps", 0)
    if not _is_int(steps) or not 0 <= steps <= MAX_STEPS:
        raise InvalidInputError(f"'steps' must be an integer from 0 (the preset's) to {MAX_STEPS}")
    minutes = settings.setdefault("minutes", 0)
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not 0 <= minutes <= MAX_MINUTES:
        raise InvalidInputError(f"'minutes' must be a time budget from 0 (none: the steps) to {MAX_MINUTES:g}")
    if minutes and steps:
        raise InvalidInputError("give 'steps' or 'minutes', not both")
    members = settings.setdefault("members", 0)
    if not _is_int(members) or not 0 <= members <= MAX_MEMBERS:
        raise InvalidInputError(f"'members' must be an integer from 0 (the preset's) to {MAX_MEMBERS}")
    if members:
        preset_config(preset).with_members(members)  # only K-Planes presets have members
    probe = settings.setdefault("probe", DEFAULT_PROBE)
    if not isinstance(probe, (int, float)) or isinstance(probe, bool) or not 0 <= probe <= MAX_PROBE:
        raise InvalidInputError(f"'probe' must be a radius in Å from 0 to {MAX_PROBE:g}")
    if not isinstance(settings.setdefault("device", ""), str):
        raise InvalidInputError("'device' must be a string")
    names = settings.get("protein_names", ["protein"])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names):
        raise InvalidInputError("'protein_names' must be a non-empty list of names of 1-64 characters")
    if not isinstance(settings.setdefault("metadata", {}), dict):
        raise InvalidInputError("'metadata' must be a JSON object")
    return settings


EVALUATION_SETTINGS = ("train_times", "protein", "resolution", "samples", "baselines", "frames", "all_times")
MAX_EVALUATION_SAMPLES = 1_000_000


def evaluation_upload(data: bytes, max_bytes: int, max_resolution: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Settings and reference atoms of an evaluation request.

    The archive holds ``settings`` (a JSON object: ``train_times``, and optionally ``protein``,
    ``resolution``, ``samples``, ``baselines``, ``frames``, ``all_times``; see
    :meth:`dsr_backend.engine.Engine.evaluate`), ``times`` (K,), ``coords`` (K, N, 3) Å and ``radii`` (N,).
    """
    arrays = read_npz(data, max_bytes)
    expected = ("settings", "times", "coords", "radii")
    if sorted(arrays) != sorted(expected):
        raise InvalidInputError(f"an evaluation sends the arrays {', '.join(expected)}; got {', '.join(sorted(arrays))}")
    settings = _evaluation_settings(arrays["settings"], max_resolution)
    times = _numeric(arrays, "times", 1, "iuf").astype(np.float64)
    coords = _numeric(arrays, "coords", 3, "f")
    radii = _numeric(arrays, "radii", 1, "f")
    if coords.shape[0] != len(times) or coords.shape[1:] != (len(radii), 3) or len(radii) == 0:
        raise InvalidInputError(f"'coords' has shape {coords.shape}; 'times' and 'radii' need "
                                f"({len(times)}, {len(radii)}, 3) with at least one atom")
    if np.any(radii <= 0):
        raise InvalidInputError("'radii' must be positive")
    frames = settings["frames"]
    if frames is not None and not all(0 <= index < len(times) for index in frames):
        raise InvalidInputError(f"'frames' are indices into the {len(times)} frames sent")
    return settings, dict(times=times, coords=coords.astype(np.float32), radii=radii.astype(np.float32))


def _evaluation_settings(raw: np.ndarray, max_resolution: int) -> dict[str, Any]:
    settings = _json_object(raw, EVALUATION_SETTINGS)
    checked = dict(train_times=_numbers(settings.get("train_times"), "train_times"),
                   protein=settings.get("protein", 0), resolution=settings.get("resolution", 128),
                   samples=settings.get("samples", 300_000), baselines=settings.get("baselines", True),
                   frames=settings.get("frames"), all_times=settings.get("all_times"))
    if not checked["train_times"]:
        raise InvalidInputError("'train_times' must name at least one training time")
    if not isinstance(checked["protein"], (int, str)) or isinstance(checked["protein"], bool):
        raise InvalidInputError("'protein' must be an index or a protein name")
    if not _is_int(checked["resolution"]) or not 8 <= checked["resolution"] <= max_resolution:
        raise InvalidInputError(f"'resolution' must be an integer in [8, {max_resolution}]")
    if not _is_int(checked["samples"]) or not 100 <= checked["samples"] <= MAX_EVALUATION_SAMPLES:
        raise InvalidInputError(f"'samples' must be an integer in [100, {MAX_EVALUATION_SAMPLES}]")
    if not isinstance(checked["baselines"], bool):
        raise InvalidInputError("'baselines' must be true or false")
    if checked["frames"] is not None and (not isinstance(checked["frames"], list)
                                          or not all(_is_int(index) for index in checked["frames"])):
        raise InvalidInputError("'frames' must be a list of frame indices")
    if checked["all_times"] is not None:
        checked["all_times"] = _numbers(checked["all_times"], "all_times")
    return checked


def _json_object(raw: np.ndarray, known: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object held in a 0-d string array, whose keys must be among ``known``."""
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise InvalidInputError("'settings' must be one JSON string (numpy.array(json.dumps(settings)))")
    text = str(raw)
    if len(text) > MAX_SETTINGS_CHARS:
        raise InvalidInputError(f"'settings' has {len(text)} characters; at most {MAX_SETTINGS_CHARS}")
    try:
        settings = json.loads(text)
    except ValueError as error:
        raise InvalidInputError(f"'settings' is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInputError("'settings' is nested too deeply") from None
    if not isinstance(settings, dict):
        raise InvalidInputError("'settings' must be a JSON object")
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InvalidInputError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return settings


def _numbers(values: Any, key: str) -> list[float]:
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               and np.isfinite(v) for v in values):
        raise InvalidInputError(f"'{key}' must be a list of finite numbers")
    return [float(v) for v in values]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
