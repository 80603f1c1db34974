"""The exceptions pruneviz raises.

Every error a user can cause derives from :class:`PrunevizError`, so ``except PrunevizError`` catches
all of them; the subclasses also derive from the matching built-in (``ValueError``, ``ImportError``,
``OSError``) so code written against those keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "DivergenceError",
    "MissingDependencyError",
    "NotApplicableError",
    "PrunevizError",
    "ValidationError",
    "ZooError",
    "ZooSchemaError",
]


class PrunevizError(Exception):
    """Base class of every error raised by pruneviz."""


class ValidationError(PrunevizError, ValueError):
    """A parameter has the wrong type, shape or value."""


class DataError(ValidationError):
    """A dataset's contents are unusable (empty, non-finite, labels out of range, ...)."""


class CheckpointError(PrunevizError, OSError):
    """A weights file is missing, truncated, corrupt, or of a format that is refused (pickle)."""


class ZooError(PrunevizError, OSError):
    """A zoo directory is missing, is not a zoo, or a run in it cannot be found or read."""


class ZooSchemaError(ZooError):
    """A zoo was written by a newer pruneviz whose schema this version does not understand."""


class NotApplicableError(PrunevizError):
    """An analysis was asked of data it is not defined for (pixel corruptions of a table, ...)."""


class MissingDependencyError(PrunevizError, ImportError):
    """An optional dependency is needed for this feature and is not installed."""


class DivergenceError(PrunevizError, FloatingPointError):
    """Training diverged: the loss became NaN/inf or blew up far beyond its starting value."""
