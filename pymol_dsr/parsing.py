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


MAX_TIMES = 256  # the engine's limit on times in one request (dsr_backend.limits.MAX_TIMES; a test keeps them equal)
RANGE_HELP = "first-last:step, e.g. 0-1:0.25 or 1-98:0.5; or a list, e.g. 0 0.5 1"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER}|last)-({_NUMBER}|last)(?::({_NUMBER}))?$", re.IGNORECASE)


def parse_values(value: Values, what: str = "value", last: float | None = None,
                 step: float | None = None) -> list[float]:
    """Finite numbers from ``"0.5"``, ``"0 0.5 1"`` (space or comma separated) or ranges ``first-last:step``
    (``"0-1:0.25"``; both ends included when the step reaches them; ``last`` stands for ``last`` where
    given, ``step`` is the step of a range without one); lists and numbers pass through, checked. The
    grammar of the engine's ``dsr_backend.ranges``; the former ``start:stop:count`` is refused with the
    range that replaces it."""
    if isinstance(value, (int, float)):
        numbers = [_checked(float(value), what)]
    elif isinstance(value, str):
        numbers = []
        for token in re.split(r"[\s,]+", value.strip()):
            if token:
                numbers.extend(_token_values(token, what, last, step, MAX_TIMES - len(numbers)))
    else:
        numbers = [_checked(_number(v, what, None), what) for v in value]
    if not numbers:
        raise CmdException(f"no {what} given ({RANGE_HELP})")
    return numbers


def _token_values(token: str, what: str, last: float | None, step: float | None, room: int) -> list[float]:
    if token.count(":") == 2:
        raise CmdException(f"{what}={token} is the former start:stop:count form; write {what}={_replacement(token)} "
                           f"({RANGE_HELP})")
    match = _RANGE.match(token)
    if match is None:
        values = [_checked(_number(token, what, last), what)]
    else:
        first, end = (_checked(_number(word, what, last), what) for word in match.group(1, 2))
        stride = _number(match.group(3), what, None) if match.group(3) else step
        if stride is None:
            raise CmdException(f"the range {what}={token} needs a step: {what}={token}:STEP ({RANGE_HELP})")
        if stride <= 0 or end < first:
            raise CmdException(f"the range {what}={token} is empty: it needs first <= last and a step > 0")
        count = int(math.floor((end - first) / stride + 1e-9)) + 1
        values = [round(first + i * stride, 10) for i in range(min(count, room + 1))]
    if len(values) > room:
        raise CmdException(f"too many {what} values: at most {MAX_TIMES} in one request")
    return values


def _replacement(token: str) -> str:
    """The range that a former ``start:stop:count`` form meant."""
    try:
        start, stop, count = (float(part) for part in token.split(":"))
    except ValueError:
        return "first-last:step"
    if count < 2:
        return f"{start:g}"
    return f"{start:g}-{stop:g}:{(stop - start) / (count - 1):.6g}"


def _number(word, what: str, last: float | None) -> float:
    if str(word).lower() == "last":
        if last is None:
            raise CmdException(f"{what} cannot use 'last' here")
        return float(last)
    try:
        return float(word)
    except (TypeError, ValueError):
        raise CmdException(f"cannot read {what} '{word}' ({RANGE_HELP})") from None


def _checked(value: float, what: str) -> float:
    if not math.isfinite(value) or abs(value) > 1e9:
        raise CmdException(f"{what} must be a finite number of at most 1e9 in size, got {value}")
    return value


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
