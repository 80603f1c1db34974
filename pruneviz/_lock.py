"""A portable exclusive lock on a file (the ``filelock`` package: ``flock`` on POSIX, ``msvcrt`` on
Windows), held by one process at a time, with a side file saying who holds it."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["LockTaken", "exclusive"]


class LockTaken(Exception):
    """The lock is held by another process (``holder`` says which, when it wrote it)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextlib.contextmanager
def exclusive(path: Path, *, wait: bool = True, role: str = "writer") -> Iterator[None]:
    """Hold the lock ``path`` for the block: wait for it, or with ``wait=False`` raise
    :class:`LockTaken` at once, naming the holder from the side file ``path + ".holder"``."""
    lock = FileLock(str(path), timeout=-1 if wait else 0)
    holder_file = Path(f"{path}.holder")
    try:
        lock.acquire()
    except Timeout:
        try:
            holder = holder_file.read_text(encoding="utf-8").strip()
        except OSError:
            holder = ""
        raise LockTaken(holder or "another process") from None
    try:
        stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        with contextlib.suppress(OSError):
            holder_file.write_text(
                f"{role} pid {os.getpid()} on {socket.gethostname()} since {stamp}", "utf-8"
            )
        yield
    finally:
        with contextlib.suppress(OSError):
            holder_file.unlink()
        lock.release()
