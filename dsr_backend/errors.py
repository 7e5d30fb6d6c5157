"""Exceptions raised by dsr_backend; each carries a message meant for the user."""
from __future__ import annotations

import sys
from typing import Callable


class DSRError(Exception):
    """Base class of every error the DSR engine raises on purpose."""


class InvalidInputError(DSRError, ValueError):
    """Input data (coordinates, normals, times, arguments) failed validation."""


class CheckpointError(DSRError):
    """A checkpoint file is missing, corrupted, or not a pymol-dsr checkpoint."""


class TrainingDivergedError(DSRError, RuntimeError):
    """The training loss became NaN or infinite; the model is not saved."""


class TrainingCancelled(DSRError):
    """Training was cancelled on request; the last checkpoint is kept."""


class ResourceLimitError(DSRError, MemoryError):
    """A request would need more memory than allowed."""


class MissingDependencyError(DSRError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""


def exit_status(command: str, run: Callable[[], None]) -> int:
    """Run a command's body and return its exit status: 0, 2 with the one-line message of a :class:`DSRError`
    on stderr (``<command>: error: ...``), 130 after Ctrl-C (one line, no traceback), or the status a
    ``SystemExit`` carries."""
    try:
        run()
    except DSRError as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0
