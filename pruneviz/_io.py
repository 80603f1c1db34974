"""File writes that are all-or-nothing, and weight files that never execute code.

Writers go to a temporary file in the destination folder, are flushed to disk, and are renamed into place,
so a reader sees either the old file or the whole new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from pruneviz.exceptions import CheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


def current_umask() -> int:
    """The process's file-creation mask (read from ``/proc`` where it is, else set and put back)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. The file ends with the
    permissions a plain ``open(path, "w")`` would give it (``0o666`` less the umask), not the ``0o600``
    of a temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Save tensors as a safetensors file, atomically. Tensors are made contiguous CPU copies."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(flat, str(tmp), metadata=dict(metadata or {})))


def load_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file into CPU tensors and its metadata.

    Raises :class:`CheckpointError` (naming the file and the fix) if it is missing, truncated or corrupt.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"The weights file {str(p)!r} does not exist. Fix: check the path, or rebuild the run "
            "that should have written it."
        )
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no items()
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError subclasses
        raise CheckpointError(
            f"The weights file {str(p)!r} ({p.stat().st_size} bytes) is truncated or corrupt and cannot "
            f"be read as safetensors ({exc}). Fix: delete it and rebuild the run, "
            "or restore it from a copy."
        ) from exc
    return tensors, metadata


def load_state_dict_file(
    path: str | os.PathLike[str], *, trust_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file, or from a pickle checkpoint only if trusted.

    Pickle files (``.pt``, ``.pth``, ...) can run arbitrary code when loaded, so they are refused unless
    ``trust_pickle=True``; even then they are read with ``torch.load(weights_only=True)``.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        return load_tensors(p)[0]
    if p.suffix in PICKLE_SUFFIXES or not p.suffix:
        if not trust_pickle:
            raise CheckpointError(
                f"Refusing to load {str(p)!r}: it is a pickle checkpoint, and unpickling can run "
                "arbitrary code. Fix: convert it to safetensors "
                "(safetensors.torch.save_file(state_dict, 'model.safetensors')), or pass "
                "trust_pickle=True if you trust where the file came from."
            )
        if not p.is_file():
            raise CheckpointError(f"The checkpoint {str(p)!r} does not exist. Fix: check the path.")
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"The checkpoint {str(p)!r} cannot be read ({type(exc).__name__}: {exc}). Fix: check that "
                "the file is complete and holds a plain state dict of tensors."
            ) from exc
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(
                f"The checkpoint {str(p)!r} does not hold a state dict (a mapping of names to tensors). "
                "Fix: save model.state_dict() rather than the model object."
            )
        return obj
    raise CheckpointError(
        f"The weights file {str(p)!r} has the unknown suffix {p.suffix!r}. Fix: use a .safetensors file."
    )
