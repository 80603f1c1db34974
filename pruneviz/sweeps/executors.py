"""Where a sweep's tasks run: in this process, in local processes, or on a Dask distributed cluster.

An executor only computes: it takes a function and its arguments and hands back the value or the
error. It never writes anything; the driver (:func:`pruneviz.sweeps.run_sweep`) stores the results.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
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

    :meth:`start` makes the pool in a background thread: forking from a fork server waits until the
    server has imported (a few seconds in a fresh session), and nothing need wait for that. Tasks
    submitted meanwhile are queued and handed to the pool once it is up; until then, :meth:`wait`
    computes queued tasks in this process, oldest first, as the in-process executor would (one thread:
    the same numbers). A sweep starts with its dense tasks, which everything else waits for, so the core
    the imports leave free trains them.
    """

    name = "processes"
    #: torch and BLAS threads of each worker: one, as every executor computes (identical numbers)
    threads = 1

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or max(1, min(os.cpu_count() or 1, 8))
        self._pool: Any = None
        self._pool_of: dict[Any, Any] = {}  # future -> the pool that runs it
        self._shared_dir: Any = None  # a TemporaryDirectory, made on the first share
        self._shared: dict[str, Any] = {}  # digest -> the object shared (for the task computed here)
        self._lock = threading.Lock()
        self._starter: threading.Thread | None = None  # makes the pool; set while workers start
        self._queued: list[tuple[Future, Callable[..., Any], tuple, dict]] = []  # for the pool to come

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def ready(self) -> bool:
        """Whether the workers are up (tasks submitted now go straight to them)."""
        return self._pool is not None

    @staticmethod
    def _context() -> Any:
        import multiprocessing

        if "forkserver" in multiprocessing.get_all_start_methods():
            return multiprocessing.get_context("forkserver")
        return multiprocessing.get_context("spawn")

    def start(self) -> None:
        """Launch the fork server (it imports in the background) and make the pool in a background
        thread, so that nothing here waits for either; submitting starts them anyway."""
        ctx = self._context()
        if ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            # '__main__' as multiprocessing preloads it by default; a server already running keeps its own
            ctx.set_forkserver_preload(["__main__", "pruneviz.sweeps._preload"])
            forkserver.ensure_running()
        with self._lock:
            if self._pool is None and self._starter is None:
                self._starter = threading.Thread(target=self._start_pool, name="pruneviz-pool", daemon=True)
                self._starter.start()

    def _start_pool(self) -> None:
        """Make the pool, fork its workers (each runs a no-op), then hand it the queued tasks."""
        from concurrent.futures import ProcessPoolExecutor

        from pruneviz.sweeps import _worker

        pool = ProcessPoolExecutor(
            self._workers,
            mp_context=self._context(),
            initializer=_worker.init_worker,
            initargs=(self.threads,),
        )
        try:
            for future in [pool.submit(os.getpid) for _ in range(self._workers)]:
                future.result()
        except Exception:  # a pool that cannot start fails the tasks handed to it instead
            pass
        with self._lock:
            self._pool, self._starter = pool, None
            queued, self._queued = self._queued, []
        for placeholder, fn, args, kwargs in queued:
            self._forward(pool, placeholder, fn, args, kwargs)

    def _forward(
        self, pool: Any, placeholder: Future, fn: Callable[..., Any], args: tuple, kwargs: dict
    ) -> None:
        """Submit a queued task to ``pool``; its outcome becomes the placeholder's."""
        from pruneviz.sweeps._worker import call

        try:
            real = pool.submit(call, fn, args, kwargs)
        except Exception as exc:  # a broken pool: the task fails, and the driver may retry it
            placeholder.set_exception(exc)
            return
        self._pool_of[placeholder] = pool

        def settle(done: Future) -> None:
            if done.cancelled():
                placeholder.cancel()
                placeholder.set_running_or_notify_cancel()
            elif done.exception() is not None:
                placeholder.set_exception(done.exception())
            else:
                placeholder.set_result(done.result())

        real.add_done_callback(settle)

    def _ensure(self) -> Any:
        if self._pool is None:
            self.start()
            starter = self._starter
            if starter is not None:
                starter.join()
        return self._pool

    def _here(self, value: Any) -> Any:
        from pruneviz.sweeps._worker import SharedFile

        return self._shared.get(value.digest, value) if isinstance(value, SharedFile) else value

    def share(self, obj: Any) -> Any:
        import tempfile
        from pathlib import Path

        from pruneviz.sweeps import _worker

        if self._shared_dir is None:
            self._shared_dir = tempfile.TemporaryDirectory(prefix="pruneviz-shared-")
        ref = _worker.write_shared(obj, Path(self._shared_dir.name))
        self._shared[ref.digest] = obj
        return ref

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        from pruneviz.sweeps._worker import call

        with self._lock:
            if self._pool is None and self._starter is not None:  # the workers are still starting
                placeholder: Future = Future()
                self._queued.append((placeholder, fn, args, kwargs))
                return placeholder
        try:
            future = self._ensure().submit(call, fn, args, kwargs)
        except BrokenProcessPool:  # a worker died: start a fresh pool and submit again
            self._discard(self._pool)
            future = self._ensure().submit(call, fn, args, kwargs)
        self._pool_of[future] = self._pool
        return future

    def wait(self, pending: Sequence[Any]) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done = [f for f in pending if f.done()]
        if done:
            return done
        with self._lock:  # the workers are still starting: take the oldest queued task of these
            waited = set(pending)
            mine = [q for q in self._queued if q[0] in waited] if self._pool is None else []
            if mine:
                self._queued.remove(mine[0])
        if mine:
            self._compute_here(*mine[0])
            return [f for f in pending if f.done()]
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        return list(finished)

    def _compute_here(self, placeholder: Future, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Compute a queued task in this process (with the shared objects themselves, not their files)."""
        from pruneviz.sweeps._worker import call

        if not placeholder.set_running_or_notify_cancel():
            return
        try:
            value = call(
                fn, tuple(self._here(a) for a in args), {k: self._here(v) for k, v in kwargs.items()}
            )
        except Exception as exc:
            placeholder.set_exception(exc)
        else:
            placeholder.set_result(value)

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
        starter = self._starter
        if starter is not None:  # a pool still starting: let it come up (and take its queue) first
            starter.join()
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None
        self._shared.clear()
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
