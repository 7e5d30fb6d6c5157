"""The one grammar of states, frames and times: ``first-last:step`` ranges and lists, as PyMOL writes states.

``"1-80:2"`` is 1, 3, ..., 79; ``"0-1:0.25"`` is 0, 0.25, ..., 1 (both ends included when the step reaches
them); ``"2-last"`` runs to the last one; ``"1 5 9"`` (or ``1,5,9``) lists values; a single number is
itself. The former ``start:stop:count`` and ``start:stop:step`` slice forms are refused with the range that
replaces them. The plugin reads the same grammar (``pymol_dsr.parsing``); a shared table of cases in the
tests keeps the two in step.
"""
from __future__ import annotations

import math
import re

from .errors import InvalidInputError
from .limits import MAX_TIMES

GRAMMAR = "first-last:step, e.g. 1-80:2, 0-1:0.25 or 2-last; or a list, e.g. 1 5 9"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER}|last)-({_NUMBER}|last)(?::({_NUMBER}))?$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s,]+")


def parse_numbers(text: str, what: str, last: float | None = None, step: float | None = None,
                  limit: int = MAX_TIMES, bounds: tuple[float, float] | None = None) -> list[float]:
    """The values of ``text`` in the range grammar, in the order given.

    Parameters
    ----------
    text : numbers and ranges separated by spaces or commas.
    what : how to name the values in error messages (``"t"``, ``"--frames"``).
    last : what ``last`` stands for (None: not allowed).
    step : the step of a range without one (None: a range must give its step).
    limit : the most values allowed.
    bounds : the lowest and highest value allowed (None: any), checked before a range is expanded.
    """
    tokens = [token for token in _SEPARATORS.split(str(text).strip()) if token]
    if not tokens:
        raise InvalidInputError(f"no {what} given ({GRAMMAR})")
    values: list[float] = []
    for token in tokens:
        values.extend(_token_values(token, what, last, step, limit - len(values), bounds))
    return values


def _token_values(token: str, what: str, last: float | None, step: float | None, room: int,
                  bounds: tuple[float, float] | None) -> list[float]:
    if token.count(":") == 2 or token.startswith(":") or token.endswith(":"):
        raise InvalidInputError(f"{what} '{token}' is a former form; write {_replacement(token)} ({GRAMMAR})")
    match = _RANGE.match(token)
    ends = (token,) * 2 if match is None else match.group(1, 2)
    first, end = _value(ends[0], what, last), _value(ends[1], what, last)
    if bounds is not None and not (bounds[0] <= first <= bounds[1] and bounds[0] <= end <= bounds[1]):
        raise InvalidInputError(f"{what} '{token}' reaches outside {bounds[0]:g}-{bounds[1]:g}")
    if match is None:
        return [first] if room >= 1 else _too_many(what, room)
    stride = _value(match.group(3), what, None) if match.group(3) else step
    if stride is None:
        raise InvalidInputError(f"the range {what}={token} needs a step: {token}:STEP ({GRAMMAR})")
    if stride <= 0 or end < first:
        raise InvalidInputError(f"the range {what}={token} is empty: it needs first <= last and a step > 0")
    count = int(math.floor((end - first) / stride + 1e-9)) + 1
    if count > room:
        return _too_many(what, room)
    return [round(first + i * stride, 10) for i in range(count)]


def _value(word: str, what: str, last: float | None) -> float:
    if word.lower() == "last":
        if last is None:
            raise InvalidInputError(f"{what} cannot use 'last' here")
        return float(last)
    try:
        value = float(word)
    except ValueError:
        raise InvalidInputError(f"cannot read {what} '{word}' ({GRAMMAR})") from None
    if not math.isfinite(value) or abs(value) > 1e9:
        raise InvalidInputError(f"{what} must be a finite number of at most 1e9 in size, got '{word}'")
    return value


def _too_many(what: str, room: int) -> list[float]:
    """Refuse a request past the limit (``room`` values were left)."""
    raise InvalidInputError(f"too many {what} values: at most {MAX_TIMES} in one request")


def _replacement(token: str) -> str:
    """The range that a former ``start:stop:count`` form meant."""
    parts = token.split(":")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        return "first-last:step"
    if count < 2:
        return f"{start:g}"
    return f"{start:g}-{stop:g}:{(stop - start) / (count - 1):.6g}"


def parse_indices(text: str, count: int, what: str = "--frames") -> list[int]:
    """0-based indices of ``count`` items (trajectory frames) in the range grammar; ``all`` for every one."""
    if str(text).strip().lower() in ("all", "*"):
        return list(range(count))
    if ":" in str(text) and "-" not in str(text).split(":")[0].lstrip("-"):
        parts = (str(text).split(":") + ["", ""])[:3]
        hint = _slice_replacement(parts, count)
        raise InvalidInputError(f"{what} '{text}' is a former Python slice; write {hint} ({GRAMMAR}; 0-based)")
    values = parse_numbers(text, what, last=count - 1, step=1.0, limit=max(count, 1), bounds=(0, count - 1))
    indices = [int(v) for v in values]
    if any(index != value for index, value in zip(indices, values)):
        raise InvalidInputError(f"{what} must be whole frame numbers, got '{text}'")
    return indices


def _slice_replacement(parts: list[str], count: int) -> str:
    try:
        chosen = range(count)[slice(*(int(part) if part.strip() else None for part in parts))]
    except ValueError:
        return "first-last:step"
    if len(chosen) == count:
        return "all"
    if not chosen:
        return "first-last:step"
    return f"{chosen[0]}-{chosen[-1]}" + (f":{chosen.step}" if chosen.step != 1 else "")
