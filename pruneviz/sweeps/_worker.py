"""What runs inside a local worker process of :class:`~pruneviz.sweeps.executors.LocalProcessExecutor`.

A worker is set up once (:func:`init_worker`: one torch thread, one BLAS / OpenMP thread) and keeps the
objects the driver shared (a sweep's dataset splits) in a small per-process cache, so a task carries
only a :class:`SharedFile` reference, not the data. The cache is keyed by the SHA-256 of the file's
bytes: an object shared anew with other contents has another key, so a worker never serves stale data,
and a file changed on disk after it was shared is refused rather than read.

This module imports nothing heavy; :mod:`pruneviz.sweeps._preload` is what the fork server imports.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pruneviz.exceptions import PrunevizError

__all__ = [
    "SharedFile",
    "SharedFileChangedError",
    "cache_info",
    "call",
    "init_worker",
    "load_shared",
    "write_shared",
]

#: how many shared objects one worker keeps (least recently used dropped first)
CACHE_SIZE = 8

_cache: OrderedDict[str, Any] = OrderedDict()  # sha256 hex digest -> the unpickled object
#: how many times this process read a shared file (a cache miss); tests read it
reads = 0


class SharedFileChangedError(PrunevizError, RuntimeError):
    """A shared object's file no longer holds the bytes it was shared with."""


@dataclass(frozen=True)
class SharedFile:
    """A reference to an object the driver pickled once into ``path``; ``digest`` is the SHA-256 of
    the file's bytes, ``size`` their number."""

    path: str
    digest: str
    size: int


def write_shared(obj: Any, folder: Path) -> SharedFile:
    """Pickle ``obj`` once into ``folder`` (named by its digest) and return the reference to pass to
    tasks. The same contents shared twice give the same reference and one file."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"{digest}.pkl"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return SharedFile(str(path), digest, len(data))


def load_shared(ref: SharedFile) -> Any:
    """The object of ``ref``: from this process's cache, or read once from its file (checked against
    the digest) and kept."""
    global reads
    if ref.digest in _cache:
        _cache.move_to_end(ref.digest)
        return _cache[ref.digest]
    data = Path(ref.path).read_bytes()
    if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.digest:
        raise SharedFileChangedError(
            f"The shared file {ref.path!r} changed after it was shared (expected {ref.size} bytes with "
            f"SHA-256 {ref.digest[:12]}…, found {len(data)} bytes with another digest), so the task was "
            "not run on it. Fix: leave the executor's temporary folder alone while a sweep runs; share "
            "the object again to send new contents."
        )
    obj = pickle.loads(data)  # a file this executor wrote into its own private folder
    reads += 1
    _cache[ref.digest] = obj
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return obj


def cache_info() -> dict[str, Any]:
    """This process's cache: ``reads`` (files read so far) and ``digests`` (kept, oldest first)."""
    return {"reads": reads, "digests": list(_cache)}


def _resolve(value: Any) -> Any:
    return load_shared(value) if isinstance(value, SharedFile) else value


def call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """Run ``fn`` with every :class:`SharedFile` among its arguments replaced by its object."""
    return fn(*(_resolve(a) for a in args), **{k: _resolve(v) for k, v in kwargs.items()})


def init_worker(threads: int) -> None:
    """Pin this worker to ``threads`` torch threads and ``threads`` threads in the BLAS / OpenMP pools
    (``threadpoolctl``) for its whole life, so that two workers never oversubscribe two cores and a
    task's own :func:`~pruneviz._seed.torch_threads` changes nothing."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
