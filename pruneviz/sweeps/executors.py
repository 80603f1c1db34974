"""Where a sweep's tasks run: in this process, in local processes, or on a Dask distributed cluster.

An executor only computes: it takes a function and its arguments and hands back the value or the
error. It never writes anything; the driver (:func:`pruneviz.sweeps.run_sweep`) stores the results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from pruneviz._optional import require
from pruneviz.exceptions import PrunevizError

__all__ = [
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "LocalProcessExecutor",
    "SchedulerUnreachableError",
]


class SchedulerUnreachableError(PrunevizError, ConnectionError):
    """No Dask scheduler answered at the given address within the timeout."""


class Executor:
    """The interface: ``submit`` a call, ``wait`` for some to finish, read each ``outcome``."""

    name = "executor"

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def wait(self, pending: Sequence[Any]) -> list[Any]:
        """Block until at least one of ``pending`` is finished; return the finished ones."""
        raise NotImplementedError

    def outcome(self, handle: Any) -> tuple[bool, Any]:
        """``(True, value)`` for a success, ``(False, exception)`` for a failure."""
        raise NotImplementedError

    def share(self, obj: Any) -> Any:
        """Send ``obj`` (e.g. a dataset) to the workers once; pass the returned handle to tasks."""
        return obj

    def start(self) -> None:
        """Begin starting the workers, without waiting for them (the driver calls it before it loads
        the data, so both happen together); submitting starts them anyway."""

    @property
    def workers(self) -> int:
        return 1

    def close(self, *, cancel: bool = False) -> None:
        """Release what this executor started (a pool, a connection); a given client stays open.

        ``cancel`` drops the tasks not yet finished instead of waiting for them (after an error)."""


class _Call:
    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.finished, self.ok = False, False
        self.value: Any = None

    def run(self) -> None:
        try:
            self.value, self.ok = self.fn(*self.args, **self.kwargs), True
        except Exception as exc:
            self.value = exc
        self.finished = True
        self.args = self.kwargs = None  # type: ignore[assignment]


class InProcessExecutor(Executor):
    """Runs each task in the calling process, one at a time when waited for (for debugging)."""

    name = "inprocess"

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> _Call:
        return _Call(fn, args, kwargs)

    def wait(self, pending: Sequence[Any]) -> list[Any]:
        done = [c for c in pending if c.finished]
        if done:
            return done
        pending[0].run()
        return [pending[0]]

    def outcome(self, handle: _Call) -> tuple[bool, Any]:
        return handle.ok, handle.value


class LocalProcessExecutor(Executor):
    """Runs tasks in ``workers`` local processes, each pinned to one torch thread and one BLAS / OpenMP
    thread for its whole life.

    Where the platform has it (Linux), workers are forked from a fork server that imported pruneviz's
    task code and torch once (:mod:`pruneviz.sweeps._preload`); :meth:`start` launches that server, so
    it imports while the driver loads the data, and every pool after the first starts at once. Elsewhere
    workers are started with ``spawn``. Either way a worker runs no code of the driver's process state:
    it imports what it needs, so an edit to pruneviz's own code in a running session reaches the
    workers of a later sweep only after the session restarts (the fork server keeps what it imported).

    :meth:`share` pickles an object (a dataset's splits) once into a private temporary folder; tasks
    carry a small reference and each worker reads the file once and keeps the object (see
    :mod:`pruneviz.sweeps._worker`). A worker that dies (killed, out of memory) fails the tasks it
    had; the pool is then replaced, so the driver can retry them.
    """

    name = "processes"
    #: torch and BLAS threads of each worker: one, as every executor computes (identical numbers)
    threads = 1

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or max(1, min(os.cpu_count() or 1, 8))
        self._pool: Any = None
        self._pool_of: dict[Any, Any] = {}  # future -> the pool that runs it
        self._shared_dir: Any = None  # a TemporaryDirectory, made on the first share

    @property
    def workers(self) -> int:
        return self._workers

    @staticmethod
    def _context() -> Any:
        import multiprocessing

        if "forkserver" in multiprocessing.get_all_start_methods():
            return multiprocessing.get_context("forkserver")
        return multiprocessing.get_context("spawn")

    def start(self) -> None:
        """Launch the fork server now (it imports in the background, without blocking); workers are
        forked from it when the first tasks are submitted. Without a fork server this does nothing."""
        ctx = self._context()
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            # '__main__' as multiprocessing preloads it by default; a server already running keeps its own
            ctx.set_forkserver_preload(["__main__", "pruneviz.sweeps._preload"])
            forkserver.ensure_running()

    def _ensure(self) -> Any:
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            from pruneviz.sweeps import _worker

            self.start()
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=self._context(),
                initializer=_worker.init_worker,
                initargs=(self.threads,),
            )
        return self._pool

    def share(self, obj: Any) -> Any:
        import tempfile
        from pathlib import Path

        from pruneviz.sweeps import _worker

        if self._shared_dir is None:
            self._shared_dir = tempfile.TemporaryDirectory(prefix="pruneviz-shared-")
        return _worker.write_shared(obj, Path(self._shared_dir.name))

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        from pruneviz.sweeps._worker import call

        try:
            future = self._ensure().submit(call, fn, args, kwargs)
        except BrokenProcessPool:  # a worker died: start a fresh pool and submit again
            self._discard(self._pool)
            future = self._ensure().submit(call, fn, args, kwargs)
        self._pool_of[future] = self._pool
        return future

    def wait(self, pending: Sequence[Any]) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        return list(done)

    def outcome(self, handle: Any) -> tuple[bool, Any]:
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        pool = self._pool_of.pop(handle, None)
        try:
            exc = handle.exception()
        except CancelledError as cancelled:
            exc = cancelled
        if exc is None:
            return True, handle.result()
        if isinstance(exc, BrokenProcessPool):  # replace the broken pool (once, not a newer one)
            self._discard(pool)
        return False, exc

    def _discard(self, pool: Any) -> None:
        if pool is not None and pool is self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None
        if self._shared_dir is not None:
            self._shared_dir.cleanup()
            self._shared_dir = None


class DaskExecutor(Executor):
    """Runs tasks on a Dask distributed cluster, given a ``Client`` or the scheduler's address.

    Connecting to an address waits at most ``timeout`` seconds, then raises
    :class:`SchedulerUnreachableError`. Workers need pruneviz installed; they return results to this
    process, which alone writes the zoo. Training and pruning tasks never see the zoo; analysis items
    read it, so for those the workers need it at the same path (a shared filesystem). A client passed in
    is left open by :meth:`close`.
    """

    name = "dask"

    def __init__(self, client: Any = None, *, address: str | None = None, timeout: float = 10.0) -> None:
        distributed = require("distributed", "Sweeps on a Dask cluster")
        self._own = client is None
        if client is None:
            try:
                client = distributed.Client(address, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise SchedulerUnreachableError(
                    f"No Dask scheduler answered at {address!r} within {timeout:g} s ({type(exc).__name__}). "
                    "Nothing was written. Fix: start one (`dask scheduler` and `dask worker ADDRESS`), check "
                    "the address and port, or raise the timeout (--timeout)."
                ) from exc
        self.client = client
        self._distributed = distributed
        self._finished: Any = None  # an as_completed iterator over every submitted future

    @property
    def workers(self) -> int:
        info = self.client.scheduler_info()
        return max(1, sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()))

    def share(self, obj: Any) -> Any:
        return self.client.scatter(obj, broadcast=False, hash=False)

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        future = self.client.submit(fn, *args, key=key, pure=False, retries=0, **kwargs)
        if self._finished is None:
            self._finished = self._distributed.as_completed([future], loop=self.client.loop)
        else:
            self._finished.add(future)
        return future

    def wait(self, pending: Sequence[Any]) -> list[Any]:
        first = next(self._finished)
        return [first, *self._finished.next_batch(block=False)]

    def outcome(self, handle: Any) -> tuple[bool, Any]:
        if handle.status == "finished":
            try:
                return True, handle.result()
            except Exception as exc:  # lost between finishing and fetching
                return False, exc
        error: BaseException | None
        try:
            error = handle.exception()
        except Exception as lost:  # cancelled or lost with its worker
            error = lost
        return False, error if error is not None else RuntimeError(f"task ended as {handle.status!r}")

    def close(self, *, cancel: bool = False) -> None:
        if cancel and self._finished is not None:
            left = list(self._finished.futures)
            if left:
                self.client.cancel(left)
        if self._own:
            self.client.close()
