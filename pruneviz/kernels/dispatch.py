"""The dispatcher: per layer and batch size, the fastest way to multiply by a pruned weight — measured.

For a weight ``W (out, in)`` (zeros are pruned weights), a dtype, a device and a batch size it:

1. lists the *paths* that apply (:data:`PATHS`): on CPU ``dense``, ``dense_t`` (the same dense product
   computed as ``(W @ x.T).T``, which some BLAS builds run much faster for a few rows), ``shrunk``
   (all-zero rows/columns removed), ``torch_csr``, ``torch_bsr`` and ``block_ell`` (pruneviz's block
   kernel, :mod:`pruneviz.kernels.cpu`); on CUDA ``dense``, ``shrunk``, the Triton kernels ``triton_bsr``,
   ``triton_nm`` (2:4) and ``triton_bitmap`` (:mod:`pruneviz.kernels.triton_ops`), and torch's
   semi-structured 2:4 ``semi_structured`` (cuSPARSELt / CUTLASS, where the GPU has it);
2. times them on a random ``(batch, in)`` input — or on the caller's: :func:`pruneviz.kernels.sparsify`
   times each layer's module call on its input as recorded in the model (shape, strides, bias) —
   interleaved (every round runs each path once), median of the rounds; a path slower than 2x dense
   on its warm-up call is dropped early;
3. keeps ``dense`` unless another path is at least 2 % faster (:func:`choose_path`), and confirms a
   winner head to head against dense: it is kept only if its slower median of the two runs still beats
   dense's faster one by 2 %, so the chosen path is never slower than dense by the measurements that
   chose it;
4. caches the outcome per machine in a JSON file (:func:`cache_path`): the key is the layer's shape,
   structure (:func:`structure_of`), density (5 % buckets), dtype and batch size (next power of two);
   the file is named by a fingerprint of the machine (CPU model, cores, threads, torch version, GPU
   name) and replaced atomically (temp file + ``os.replace``). A second call with the same key does not
   measure again.

The cache directory is ``cache_dir`` if given, else ``$PRUNEVIZ_CACHE_DIR/kernels`` if that variable is
set, else ``kernels`` in the platform's cache folder for pruneviz (``platformdirs``: ``~/.cache/pruneviz`` on
Linux).

Example::

    >>> import tempfile
    >>> w = torch.randn(256, 256) * (torch.rand(256, 256) < 0.1)
    >>> sel = select_path(w, batch_size=1, cache_dir=tempfile.mkdtemp())
    >>> sel.path in sel.timings_ms and sel.chosen_ms <= sel.dense_ms
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from pruneviz._validation import check_int, fail
from pruneviz.kernels import cpu

__all__ = [
    "CPU_PATHS",
    "CUDA_PATHS",
    "PATHS",
    "Selection",
    "batch_bucket",
    "cache_path",
    "choose_path",
    "machine_fingerprint",
    "prepare",
    "run",
    "select_path",
    "structure_of",
]

CPU_PATHS = ("dense", "dense_t", "shrunk", "torch_csr", "torch_bsr", "block_ell")
CUDA_PATHS = ("dense", "shrunk", "triton_bsr", "triton_nm", "triton_bitmap", "semi_structured")
PATHS = tuple(dict.fromkeys(CPU_PATHS + CUDA_PATHS))
"""Every path name the dispatcher knows."""

MARGIN = 0.02
"""A path replaces dense only if it is at least this much faster (time × (1 + MARGIN) <= dense)."""

CACHE_VERSION = 1
BLOCKS = (128, 64, 32, 16)
# relative cost per kept weight of the block kernels by block side (measured on CPU at batch 1-16)
_BLOCK_COST = {16: 1.25, 32: 1.0, 64: 1.0, 128: 1.15}
_MAX_BLOCK_DENSITY = 0.9  # block paths are not tried when more blocks than this are kept


# --------------------------------------------------------------------------------------------------
# structure


@dataclass(frozen=True)
class Structure:
    """What the zeros of a weight matrix look like.

    ``kind`` is ``"dense"`` (no zeros), ``"channel"`` (zeros are whole rows/columns), ``"block"``
    (zeros fill whole ``block × block`` tiles), ``"2:4"`` (at most 2 non-zeros in every group of 4
    inputs) or ``"unstructured"``. ``density`` is the fraction of non-zero weights; ``block`` the block
    side the block paths use (``None`` when none fits) and ``block_density`` its fraction of kept blocks;
    ``shrunk_density`` the kept fraction after removing all-zero rows and columns.
    """

    kind: str
    density: float
    block: int | None
    block_density: float
    shrunk_density: float
    nm_ok: bool

    @property
    def label(self) -> str:
        return f"block{self.block}" if self.kind == "block" else self.kind


def structure_of(matrix: torch.Tensor) -> Structure:
    """Classify the zeros of a ``(out, in)`` matrix (see :class:`Structure`)."""
    nz = matrix.detach() != 0
    out, inp = nz.shape
    density = float(nz.float().mean())
    shrunk = float(nz.any(1).float().mean()) * float(nz.any(0).float().mean())
    best: tuple[float, int, float] | None = None
    for b in BLOCKS:
        if out % b or inp % b:
            continue
        bd = float(nz.reshape(out // b, b, inp // b, b).any(dim=(1, 3)).float().mean())
        score = bd * _BLOCK_COST[b]
        if best is None or score < best[0]:
            best = (score, b, bd)
    block, block_density = (best[1], best[2]) if best is not None else (None, 1.0)
    nm_ok = inp % 4 == 0 and bool((nz.reshape(out, inp // 4, 4).sum(-1) <= 2).all())
    tol = 1.05
    if density >= 1.0:
        kind = "dense"
    elif shrunk < 1.0 and shrunk <= density * tol + 1e-9:
        kind = "channel"
    elif block is not None and block_density <= density * tol + 1e-9:
        kind = "block"
    elif nm_ok and density > 0.4:
        kind = "2:4"
    else:
        kind = "unstructured"
    return Structure(kind, density, block, block_density, shrunk, nm_ok)


# --------------------------------------------------------------------------------------------------
# paths: applicability, preparation, running


def _triton_ops() -> Any:
    from pruneviz.kernels import triton_ops  # imports triton itself only when a kernel first runs

    return triton_ops


def _triton_ready(device: torch.device) -> bool:
    if device.type != "cuda":
        return False  # the interpreter on CPU is for tests, never faster than torch
    try:
        return bool(_triton_ops().available())
    except Exception:
        return False


def _semi_structured_ready(device: torch.device, dtype: torch.dtype, shape: tuple[int, int]) -> bool:
    if device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16):
        return False
    if torch.cuda.get_device_capability(device) < (8, 0):
        return False
    out, inp = shape
    return out % 64 == 0 and inp % 128 == 0 and hasattr(torch.sparse, "to_sparse_semi_structured")


def applicable_paths(
    structure: Structure, *, shape: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> list[str]:
    """The path names worth timing for a matrix of this ``structure`` on ``device`` (``dense`` first)."""
    paths = ["dense"]
    if structure.kind == "dense":
        return paths
    if device.type == "cpu":
        paths.append("dense_t")
    if structure.shrunk_density < 1.0:
        paths.append("shrunk")
    has_block = structure.block is not None and structure.block_density <= _MAX_BLOCK_DENSITY
    if device.type == "cpu":
        if dtype in cpu.SPARSE_DTYPES:  # torch's CPU sparse BLAS has no half-precision kernels
            paths.append("torch_csr")
            if has_block:
                paths += ["torch_bsr", "block_ell"]
    elif device.type == "cuda":
        if _triton_ready(device):
            if has_block:
                paths.append("triton_bsr")
            if structure.nm_ok:
                paths.append("triton_nm")
            paths.append("triton_bitmap")
        if structure.nm_ok and _semi_structured_ready(device, dtype, shape):
            paths.append("semi_structured")
    return paths


def prepare(path: str, matrix: torch.Tensor, *, block: int | None = None) -> Any:
    """The packed weight ``path`` runs on, built from the (masked) ``(out, in)`` matrix."""
    mat = matrix.detach()
    if path in ("dense", "dense_t"):
        return mat.contiguous()
    if path == "shrunk":
        return cpu.Shrunk.from_dense(mat)
    if path == "torch_csr":
        return cpu.to_torch_csr(mat)
    if path == "torch_bsr":
        return cpu.to_torch_bsr(mat, block=_need_block(block, path))
    if path == "block_ell":
        return cpu.BlockELL.from_dense(mat, block=_need_block(block, path))
    if path == "triton_bsr":
        from pruneviz.kernels.formats import BlockSparse

        return BlockSparse.from_dense(mat, block=_need_block(block, path))
    if path == "triton_nm":
        from pruneviz.kernels.formats import NMSparse

        return NMSparse.from_dense(mat, n=2, m=4)
    if path == "triton_bitmap":
        from pruneviz.kernels.formats import Bitmap

        return Bitmap.from_dense(mat)
    if path == "semi_structured":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse.to_sparse_semi_structured(mat.contiguous())
    fail("path", "prepare", f"one of {list(PATHS)}", path, "pick a name from pruneviz.kernels.PATHS.")


def _need_block(block: int | None, path: str) -> int:
    if block is None:
        fail("block", "prepare", f"a block side for path {path!r}", None, "pass block=32.", got="None")
    return block


def run(path: str, x: torch.Tensor, packed: Any, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` by ``path`` with the weight packed by :func:`prepare`."""
    if path == "dense":
        _check_device(x, packed.device, "run")
        return F.linear(x, packed, bias)
    if path == "dense_t":
        _check_device(x, packed.device, "run")
        lead = x.shape[:-1]
        out = torch.mm(packed, x.reshape(-1, x.shape[-1]).t()).t()
        if bias is not None:
            out = out + bias
        return out.reshape(*lead, packed.shape[0])
    if path == "shrunk":
        return cpu.shrunk_linear(x, packed, bias)
    if path == "torch_csr":
        return cpu.torch_csr_linear(x, packed, bias)
    if path == "torch_bsr":
        return cpu.torch_bsr_linear(x, packed, bias)
    if path == "block_ell":
        return cpu.block_ell_linear(x, packed, bias)
    if path == "triton_bsr":
        return _triton_ops().bsr_linear(x, packed, bias)
    if path == "triton_nm":
        return _triton_ops().nm_linear(x, packed, bias)
    if path == "triton_bitmap":
        return _triton_ops().bitmap_linear(x, packed, bias)
    if path == "semi_structured":
        _check_device(x, packed.device, "run")
        lead = x.shape[:-1]
        return F.linear(x.reshape(-1, x.shape[-1]), packed, bias).reshape(*lead, -1)
    fail("path", "run", f"one of {list(PATHS)}", path, "pick a name from pruneviz.kernels.PATHS.")


def _check_device(x: torch.Tensor, device: torch.device, where: str) -> None:
    cpu.check_device(x, device, where, f"or sparsify the model with device='{x.device}'")


# --------------------------------------------------------------------------------------------------
# choosing


def choose_path(timings: Mapping[str, float], *, margin: float = MARGIN) -> str:
    """The fastest path in ``timings`` (seconds, or any unit, by name; must hold ``"dense"``) — but
    ``"dense"`` unless that path is at least ``margin`` faster: ``t * (1 + margin) <= t_dense``.
    By construction the chosen path's time is never above dense's.

    >>> choose_path({"dense": 1.0, "block_ell": 0.99, "shrunk": 1.2})
    'dense'
    >>> choose_path({"dense": 1.0, "block_ell": 0.5})
    'block_ell'
    """
    if "dense" not in timings:
        fail("timings", "choose_path", "a mapping that includes 'dense'", sorted(timings))
    t_dense = float(timings["dense"])
    finite = {k: float(v) for k, v in timings.items() if math.isfinite(float(v))}
    best = min(finite, key=lambda k: (finite[k], k != "dense"))
    return best if finite[best] * (1.0 + margin) <= t_dense else "dense"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fns: Mapping[str, Callable[[], object]],
    *,
    device: torch.device,
    repeats: int = 25,
    min_repeats: int = 5,
    budget_s: float = 0.4,
    drop_above: float = 2.0,
) -> dict[str, float]:
    """Median seconds of each callable, timed interleaved (one call of each per round) after two
    warm-up rounds. Paths whose warm-up calls are above ``drop_above`` × dense's are not timed further
    (reported as their warm-up time). Up to ``repeats`` rounds; they stop once ``budget_s`` is spent
    and at least ``min_repeats`` rounds ran (slow layers get few rounds, fast ones many)."""

    def once(fn: Callable[[], object]) -> float:
        _synchronize(device)
        t0 = time.perf_counter()
        fn()
        _synchronize(device)
        return time.perf_counter() - t0

    with torch.no_grad():
        warm = {k: once(fn) for k, fn in fns.items()}
        ref = warm.get("dense", min(warm.values()))
        # a path far slower than dense on its first call (which may include one-time costs) is dropped
        # at once: at large batches one call of a hopeless path can cost seconds
        live = {k: fn for k, fn in fns.items() if warm[k] <= 2 * drop_above * ref or k == "dense"}
        warm.update({k: min(warm[k], once(fn)) for k, fn in live.items()})  # caches, allocator warm
        ref = warm.get("dense", min(warm.values()))
        live = {k: fn for k, fn in live.items() if warm[k] <= drop_above * ref or k == "dense"}
        times: dict[str, list[float]] = {k: [] for k in live}
        start = time.perf_counter()
        for r in range(repeats):
            for k, fn in live.items():
                times[k].append(once(fn))
            if r + 1 >= min_repeats and time.perf_counter() - start > budget_s:
                break
    out = {k: warm[k] for k in fns}
    out.update({k: statistics.median(v) for k, v in times.items()})
    return out


# --------------------------------------------------------------------------------------------------
# cache


def machine_fingerprint(device: torch.device | str | None = None) -> dict[str, object]:
    """What makes timings of this machine comparable: CPU model, cores, torch threads and version,
    and the GPU's name when ``device`` is CUDA."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cache_path(
    cache_dir: str | os.PathLike[str] | None = None, device: torch.device | str | None = None
) -> Path:
    """The JSON file holding this machine's crossover points (see the module docstring)."""
    if cache_dir is not None:
        root = Path(cache_dir)
    elif os.environ.get("PRUNEVIZ_CACHE_DIR"):
        root = Path(os.environ["PRUNEVIZ_CACHE_DIR"]) / "kernels"
    else:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("pruneviz")) / "kernels"
    fp = json.dumps(machine_fingerprint(device), sort_keys=True)
    return root / f"crossovers-{hashlib.sha1(fp.encode()).hexdigest()[:12]}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path, key: str, entry: dict[str, Any], device: torch.device) -> None:
    """Merge ``entry`` into the file and replace it atomically (temp file in the same folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = _read_cache(path)
    entries[key] = entry
    data = {"version": CACHE_VERSION, "fingerprint": machine_fingerprint(device), "entries": entries}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------
# selection


def batch_bucket(batch_size: int) -> int:
    """The power of two at or above ``batch_size`` — the batch sizes one cache entry stands for."""
    return 1 << max(int(batch_size) - 1, 0).bit_length()


@dataclass(frozen=True)
class Selection:
    """The dispatcher's choice for one layer and batch size.

    ``timings_ms`` holds the median milliseconds of every path timed (dense always), ``cached`` says
    whether they came from the cache, ``key`` is the cache key.
    """

    path: str
    block: int | None
    structure: Structure
    batch_size: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    key: str = ""

    @property
    def dense_ms(self) -> float:
        return self.timings_ms.get("dense", math.nan)

    @property
    def chosen_ms(self) -> float:
        return self.timings_ms.get(self.path, math.nan)


def _check_matrix(weight: Any, where: str) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.numel() == 0:
        got = f"shape {tuple(weight.shape)}" if isinstance(weight, torch.Tensor) else type(weight).__name__
        fail("weight", where, "a non-empty 2-D (out, in) tensor", None, got=got, fix="pass layer.weight.")
    if not weight.is_floating_point():
        fail(
            "weight", where, "a floating-point tensor", None, got=f"dtype {weight.dtype}", fix="use .float()."
        )
    return weight.detach()


def select_path(
    weight: torch.Tensor,
    *,
    batch_size: int,
    mask: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    paths: Sequence[str] | None = None,
    key_extra: str = "",
    make_input: Callable[[int], torch.Tensor] | None = None,
    runner: Callable[[str, Any, torch.Tensor], torch.Tensor] | None = None,
    prepare_fn: Callable[[str, torch.Tensor, int | None], Any] | None = None,
    timer: Callable[..., Mapping[str, float]] | None = None,
) -> Selection:
    """Choose how to multiply by ``weight`` (``(out, in)``; zeros are pruned, or ``mask`` keeps) for
    ``batch_size`` rows in ``dtype`` on ``device`` (defaults: the weight's): measured, or read from the
    cache.

    ``paths`` restricts the candidates (``dense`` is always timed). The remaining keywords let a caller
    time something other than a plain linear layer (:mod:`pruneviz.kernels.modules` times convolutions
    with them): ``key_extra`` is appended to the cache key, ``make_input(batch)`` builds the timing
    input, ``prepare_fn(path, matrix, block)`` packs the weight and ``runner(path, packed, x)`` runs a
    path; ``timer(fns, device=...)`` replaces :func:`measure` (tests inject timings through it).

    Returns a :class:`Selection`. Example::

        >>> keep = (torch.rand(16, 1, 16, 1) < 0.1).expand(16, 32, 16, 32).reshape(512, 512)
        >>> w = torch.randn(512, 512) * keep
        >>> select_path(w, batch_size=1).path  # doctest: +SKIP
        'block_ell'
    """
    where = "select_path"
    w = _check_matrix(weight, where)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    dev = torch.device(device) if device is not None else w.device
    if dev.type not in ("cpu", "cuda"):
        fail(
            "device",
            where,
            "a CPU or CUDA device",
            str(dev),
            "pass device='cpu' or 'cuda' (meta tensors cannot be timed).",
        )
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.shape != w.shape:
            fail("mask", where, f"a bool tensor of shape {tuple(w.shape)}", None, got=repr(mask)[:60])
        w = torch.where(mask.to(w.device, torch.bool), w, torch.zeros((), dtype=w.dtype, device=w.device))
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        fail("dtype", where, "a floating-point torch.dtype", dtype, "pass dtype=torch.float32.")
    w = w.to(device=dev, dtype=dtype or w.dtype)
    structure = structure_of(w)
    candidates = applicable_paths(structure, shape=(w.shape[0], w.shape[1]), dtype=w.dtype, device=dev)
    if paths is not None:
        unknown = [p for p in paths if p not in PATHS]
        if unknown:
            fail("paths", where, f"names from {list(PATHS)}", unknown[0], "pick from pruneviz.kernels.PATHS.")
        candidates = [p for p in candidates if p == "dense" or p in paths]
    bucket = batch_bucket(batch_size)
    key = "|".join(
        [
            "x".join(map(str, w.shape)),
            structure.label,
            f"d{round(structure.density * 20) / 20:.2f}",
            str(w.dtype).removeprefix("torch."),
            f"m{bucket}",
            ",".join(candidates),
            key_extra,
        ]
    )
    file = cache_path(cache_dir, dev)
    hit = _read_cache(file).get(key)
    if isinstance(hit, dict) and hit.get("path") in candidates:
        return Selection(
            hit["path"], structure.block, structure, batch_size, dict(hit.get("timings_ms", {})), True, key
        )

    x = make_input(bucket) if make_input is not None else _random_input(bucket, w.shape[1], w.dtype, dev)
    fns: dict[str, Callable[[], object]] = {}
    # a path that cannot run this layer here is left out, not fatal: each runs once first (on CUDA with
    # the real input, which also compiles its kernel; on CPU with one row, cheap even for a slow path)
    probe = x if dev.type == "cuda" or x.ndim < 2 else x[:1]
    run_path = runner or _default_runner
    for p in candidates:
        try:
            packed = (prepare_fn or _default_prepare)(p, w, structure.block)
            if p != "dense":
                with torch.no_grad():
                    run_path(p, packed, probe)
            fn = _bind(run_path, p, packed, x)
        except Exception as exc:
            if p == "dense":
                raise
            warnings.warn(
                f"pruneviz.kernels: path {p!r} failed on a {tuple(w.shape)} {w.dtype} layer and is not "
                f"considered ({type(exc).__name__}: {exc})",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        fns[p] = fn
    timer = timer or measure
    timings_ms = {k: float(v) * 1e3 for k, v in timer(fns, device=dev).items()}
    chosen = choose_path(timings_ms)
    if chosen != "dense":
        # confirm the win head to head and keep it only if it holds pessimistically (the slower of the
        # path's two medians against the faster of dense's), so that a burst of load cannot pick it
        again = timer({p: fns[p] for p in ("dense", chosen)}, device=dev)
        timings_ms["dense"] = min(timings_ms["dense"], float(again["dense"]) * 1e3)
        timings_ms[chosen] = max(timings_ms[chosen], float(again[chosen]) * 1e3)
        chosen = choose_path({"dense": timings_ms["dense"], chosen: timings_ms[chosen]})
    entry = {"path": chosen, "timings_ms": timings_ms, "structure": structure.label, "when": time.time()}
    _write_cache(file, key, entry, dev)
    return Selection(chosen, structure.block, structure, batch_size, timings_ms, False, key)


def _default_prepare(path: str, w: torch.Tensor, block: int | None) -> Any:
    return prepare(path, w, block=block)


def reusing_prepare() -> Callable[[str, torch.Tensor, int | None], Any]:
    """A ``prepare_fn`` for :func:`select_path` that packs each path once and reuses it — for timing
    one weight at several batch sizes (it assumes the same matrix every call)."""
    store: dict[tuple[str, int | None], Any] = {}

    def prep(path: str, matrix: torch.Tensor, block: int | None) -> Any:
        if (path, block) not in store:
            store[path, block] = prepare(path, matrix, block=block)
        return store[path, block]

    return prep


def _default_runner(path: str, packed: Any, x: torch.Tensor) -> torch.Tensor:
    return run(path, x, packed)


def _bind(
    runner: Callable[[str, Any, torch.Tensor], torch.Tensor], path: str, packed: Any, x: torch.Tensor
) -> Callable[[], object]:
    return lambda: runner(path, packed, x)


def _random_input(batch: int, features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    gen = torch.Generator(device="cpu").manual_seed(0)  # the caller's random state is left alone
    return torch.randn(batch, features, generator=gen).to(device=device, dtype=dtype)
