"""pruneviz's logger (``logging.getLogger("pruneviz")``): what long jobs say about their progress.

Progress lines are INFO records. Where the program configured no logging at all, the first of them
attaches a handler writing the bare message to ``sys.stderr`` (whatever it is when a record comes), so a
sweep run with ``progress=True`` is seen; configure logging (or set the ``pruneviz`` logger's level) to
route or silence them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

LOGGER = logging.getLogger("pruneviz")


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to the ``sys.stderr`` of the moment (tests and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass


def progress(message: str) -> None:
    """Log ``message`` at INFO on the ``pruneviz`` logger (shown on stderr when logging is not set up)."""
    if not LOGGER.handlers and not logging.getLogger().handlers:
        LOGGER.addHandler(_Stderr())
        if LOGGER.level == logging.NOTSET:
            LOGGER.setLevel(logging.INFO)
    LOGGER.info(message)


def bar(items: Any, *, show: bool, desc: str, total: int | None = None) -> Any:
    """``items`` wrapped in a ``tqdm.auto`` progress bar (a widget in Jupyter, text elsewhere) when
    ``show``; else ``items`` as they are. Every loop that can take more than a few seconds offers it
    as ``progress=``."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)
