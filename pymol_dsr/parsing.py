"""Argument strings as PyMOL users type them: state lists, number lists and ranges."""
from __future__ import annotations

import math
import re
from typing import Sequence, Union

from pymol import CmdException

Values = Union[str, float, int, Sequence[float]]

STATE_HELP = "e.g. 1-150, 1-80:2, 2-last, 1 5 9 or all"
_STATE_TOKEN = re.compile(r"^(\d+|last)(?:-(\d+|last)(?::(\d+))?)?$")
_SEPARATORS = re.compile(r"[\s,+]+")


def _state_number(word: str, count: int) -> int:
    return count if word == "last" else int(word)


def parse_states(text: str, count: int, owner: str = "the object") -> list[int]:
    """State numbers (1-based, ascending, unique) from a PyMOL-style state string.

    Parameters
    ----------
    text : ``"1-150"``, ``"1-80:2"`` (every 2nd), ``"2-last"``, ``"1 5 9"`` (also ``+`` or ``,``
        separated), or ``""``/``"0"``/``"all"``/``"*"`` for every state.
    count : number of states of the object.
    owner : how to name the object in error messages.
    """
    text = str(text).strip().lower()
    if text in ("", "0", "all", "*"):
        return list(range(1, count + 1))
    states: set[int] = set()
    for token in _SEPARATORS.split(text):
        match = _STATE_TOKEN.match(token)
        if not match:
            raise CmdException(f"cannot read states '{token}' ({STATE_HELP})")
        first = _state_number(match.group(1), count)
        last = _state_number(match.group(2), count) if match.group(2) else first
        step = int(match.group(3) or 1)
        if step < 1 or first < 1 or last < first:
            raise CmdException(f"empty state range '{token}' ({STATE_HELP})")
        if last > count:
            raise CmdException(f"state {last} is out of range: {owner} has {count} state{'s' * (count != 1)}")
        states.update(range(first, last + 1, step))
    return sorted(states)


def parse_values(value: Values, what: str = "value") -> list[float]:
    """Finite numbers from ``"0.5"``, ``"0 0.5 1"`` (space or comma separated) or ranges ``"0:1:50"``
    (``start:stop:count``, both ends included); lists and numbers pass through, checked."""
    if isinstance(value, (int, float)):
        numbers = [float(value)]
    elif isinstance(value, str):
        numbers = []
        for token in re.split(r"[\s,]+", value.strip()):
            numbers.extend(_range(token, what) if ":" in token else [_number(token, what)])
    else:
        numbers = [_number(v, what) for v in value]
    if not numbers:
        raise CmdException(f"no {what} given")
    bad = [v for v in numbers if not math.isfinite(v)]
    if bad:
        raise CmdException(f"{what} must be finite, got {bad[0]}")
    return numbers


def _number(word, what: str) -> float:
    try:
        return float(word)
    except (TypeError, ValueError):
        raise CmdException(f"{what} must be a number, got '{word}'") from None


def _range(token: str, what: str) -> list[float]:
    parts = token.split(":")
    if len(parts) != 3:
        raise CmdException(f"a {what} range is start:stop:count, e.g. 0:1:50; got '{token}'")
    start, stop = _number(parts[0], what), _number(parts[1], what)
    count = _number(parts[2], what)
    if count < 1 or count != int(count):
        raise CmdException(f"the count of a {what} range must be a positive whole number, got '{parts[2]}'")
    count = int(count)
    if count == 1:
        return [start]
    return [start + (stop - start) * i / (count - 1) for i in range(count)]


def parse_fraction(value: Union[str, float], what: str = "value") -> float:
    """One number in [0, 1]."""
    numbers = parse_values(value, what)
    if len(numbers) != 1 or not 0.0 <= numbers[0] <= 1.0:
        raise CmdException(f"{what} must be one fraction in [0, 1], got '{value}'")
    return numbers[0]


def parse_int(value: Union[str, int], what: str = "value", minimum: int | None = None) -> int:
    """A whole number, at least ``minimum`` if given."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise CmdException(f"{what} must be a whole number, got '{value}'") from None
    if minimum is not None and number < minimum:
        raise CmdException(f"{what} must be at least {minimum}, got {number}")
    return number
