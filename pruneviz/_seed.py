"""Seeds that fix every random choice without touching global random state for longer than needed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

from pruneviz._validation import check_int


def _forked_cuda_devices() -> list[int]:
    """The CUDA devices whose generators :func:`seeded` saves and restores: all of them once CUDA is
    initialised, none before (reading their state would initialise CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[torch.Generator]:
    """Seed torch (CPU and CUDA), numpy and ``random`` inside the block; restore their previous states
    afterwards.

    ``torch.manual_seed`` seeds the CPU generator and every CUDA device's; the CPU generator and, when
    CUDA is initialised, every CUDA generator are saved on entry and restored on exit (also after an
    exception). When CUDA is not initialised on entry there is no CUDA state to save: torch then
    applies the seed when CUDA first initialises.

    Yields a ``torch.Generator`` (CPU) seeded with ``seed`` for explicit use (shuffling, sampling).

    >>> with seeded(0):
    ...     a = torch.rand(1)
    >>> before = torch.get_rng_state()
    >>> with seeded(0):
    ...     b = torch.rand(1)
    >>> bool(torch.equal(a, b)), bool(torch.equal(torch.get_rng_state(), before))
    (True, True)
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=_forked_cuda_devices()):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch threads inside the block (``None``: leave the setting), and at most ``n`` threads
    in the BLAS and OpenMP pools NumPy and SciPy use (``threadpoolctl``), then restore both.

    Sweep tasks and analysis items run with one thread, so that every executor computes the same
    numbers (two threads sum in another order) and workers do not oversubscribe the cores.
    """
    if n is None:
        yield
        return
    n = check_int(n, "n", "torch_threads", minimum=1)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)
