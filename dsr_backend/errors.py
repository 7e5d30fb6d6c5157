"""Exceptions raised by dsr_backend; each carries a message meant for the user."""


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
