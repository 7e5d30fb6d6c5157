"""The bounds of one surface request, shared by the CLI, the plugin's backends and the service.

Every request is checked against them before any grid is allocated, so a request either runs in bounded
time and memory or is refused with a message that names the limit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InvalidInputError

MAX_TIMES = 256
"""Most times in one request."""
MAX_LEVELS = 16
"""Most levels in one request."""
MAX_RESOLUTION = 512
"""Largest grid, nodes per axis."""
MAX_QUERY_NODES = 8 * 256 ** 3
"""Most grid nodes (times x resolution^3) in one request; the levels of a time share its grid."""
MAX_ABS_T = 1000.0
"""Largest |t| (fractions of the trained range; beyond it float32 arithmetic is no longer meaningful)."""
MAX_ABS_LEVEL = 1000.0
"""Largest |level| in Å."""


def check_query(ts: Sequence[float], levels: Sequence[float], resolution: int,
                max_resolution: int = MAX_RESOLUTION) -> None:
    """Refuse a surface request past any of the limits, with a one-line message that names it."""
    ts, levels = np.atleast_1d(np.asarray(ts, float)), np.atleast_1d(np.asarray(levels, float))
    if not 1 <= len(ts) <= MAX_TIMES:
        raise InvalidInputError(f"ask for 1 to {MAX_TIMES} times in one request, not {len(ts)}")
    if not 1 <= len(levels) <= MAX_LEVELS:
        raise InvalidInputError(f"ask for 1 to {MAX_LEVELS} levels in one request, not {len(levels)}")
    if not np.all(np.isfinite(ts)) or np.abs(ts).max() > MAX_ABS_T:
        raise InvalidInputError(f"t must be finite and within ±{MAX_ABS_T:g}, got {_first_bad(ts, MAX_ABS_T)}")
    if not np.all(np.isfinite(levels)) or np.abs(levels).max() > MAX_ABS_LEVEL:
        raise InvalidInputError(f"levels must be finite and within ±{MAX_ABS_LEVEL:g} Å, got "
                                f"{_first_bad(levels, MAX_ABS_LEVEL)}")
    if not 8 <= int(resolution) <= max_resolution:
        raise InvalidInputError(f"resolution must lie in [8, {max_resolution}], got {resolution}")
    if len(ts) * int(resolution) ** 3 > MAX_QUERY_NODES:
        raise InvalidInputError(f"{len(ts)} times at resolution {resolution} is {len(ts) * int(resolution) ** 3:,} "
                                f"grid nodes; one request may hold {MAX_QUERY_NODES:,}: split it")


def _first_bad(values: np.ndarray, bound: float) -> float:
    return float(values[~(np.isfinite(values) & (np.abs(values) <= bound))][0])
