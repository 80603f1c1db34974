"""Seeds that fix every random choice without touching global random state for longer than needed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch, numpy and ``random`` inside the block; restore their previous states afterwards.

    Yields a ``torch.Generator`` seeded with ``seed`` for explicit use (shuffling, sampling).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
