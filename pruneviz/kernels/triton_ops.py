"""Triton kernels: sparse weight × dense activation, ``y = x @ W.T + b`` as ``F.linear`` computes it.

- :func:`bsr_linear` — block-sparse (:class:`~pruneviz.kernels.formats.BlockSparse`) weights. Each program
  computes one ``(BLOCK_M, bo)`` output tile: it walks its block row's stored blocks through ``crow`` /
  ``col``, loads the matching ``(BLOCK_M, bi)`` slice of ``x`` and the ``(bo, bi)`` block, and accumulates
  ``tl.dot`` in fp32, so the work is proportional to the kept blocks (Gray, Radford & Kingma 2017,
  "GPU Kernels for Block-Sparse Weights"). Programs are ordered in groups of ``GROUP_M`` row tiles so that
  the ``x`` tiles and weight block rows in use at once stay in L2.
- :func:`nm_linear` — N:M weights (:class:`~pruneviz.kernels.formats.NMSparse`, 2:4 first; Mishra et al.
  2021). Aimed at small batches (decode), where a GEMM is bound by loading the weight: each K tile loads
  the compressed values and the packed 2-bit positions (1.125 bytes per fp16 weight instead of 2),
  expands them to a dense ``(BLOCK_N, BLOCK_K)`` tile in registers and uses a dense ``tl.dot``.
- :func:`bitmap_linear` — unstructured weights (:class:`~pruneviz.kernels.formats.Bitmap`) for the same
  memory-bound regime: per K tile it loads one 32-bit word per 32 weights and the offset of the tile's
  first kept value per row, finds each kept weight's place in ``values`` by population counts (prefix
  over words, SWAR popcount within a word), gathers the kept values into a dense tile and uses ``tl.dot``.

Upstream Triton has no sparse tensor-core path, so all three expand to dense tiles on chip; the saving is
in bytes loaded (N:M, bitmap) or in blocks skipped (BSR).

Where the kernels run. Triton fixes its mode when it is first imported: with ``TRITON_INTERPRET=1`` in
the environment at that moment, every Triton kernel of the process runs in its interpreter (on CPU
tensors, and on CUDA tensors through host copies), otherwise every kernel is compiled. ``triton`` is
imported on the first kernel call, never by ``import pruneviz.kernels``, so setting the variable at any
time before that call is enough (a test module does it at its top).

- **Compiled (CUDA tensors)**: fp16 / bf16 / fp32 (fp32 ``tl.dot`` uses TF32 where
  ``torch.backends.cuda.matmul.allow_tf32`` allows it, as ``torch.matmul`` does, else 3xTF32). Launch
  configurations are fixed tables keyed by batch size ``M`` (:func:`_bsr_config`,
  :func:`_dense_tile_config`), chosen for Hopper (H100/H200) from the usual Triton GEMM settings and
  checked to compile for sm_90 without register spills; no autotuning.
- **Interpreted (CPU tensors)**: only with ``TRITON_INTERPRET=1`` (slow; for tests); fp16 and fp32 only —
  bfloat16 is refused because the interpreter's bf16 ``tl.dot`` is wrong. A CPU tensor without the
  variable gets an error saying so, before triton is imported; the dispatcher of :mod:`pruneviz.kernels`
  uses torch's CPU paths instead.

Example (on a machine with CUDA, or with ``TRITON_INTERPRET=1``)::

    >>> w = torch.randn(128, 256) * (torch.rand(128, 256) < 0.3)
    >>> x = torch.randn(4, 256)
    >>> y = bitmap_linear(x, Bitmap.from_dense(w))  # doctest: +SKIP
    >>> torch.allclose(y, x @ w.T, atol=1e-4)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from types import SimpleNamespace
from typing import Any, NoReturn, cast

import torch

from pruneviz._optional import require
from pruneviz._validation import fail
from pruneviz.kernels.formats import Bitmap, BlockSparse, NMSparse

__all__ = ["available", "bitmap_linear", "bsr_linear", "nm_linear"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOCK = threading.Lock()
_STATE: SimpleNamespace | None = None  # the wrapped kernels and Triton's mode, set by _kernels()

tl: Any = None  # triton.language, set by _kernels(); the kernel bodies below look it up as a global


def available() -> bool:
    """Whether the kernels can run here: triton is installed and CUDA is present, or Triton runs (or,
    not imported yet, will run) in interpreter mode, ``TRITON_INTERPRET=1``, on CPU."""
    if importlib.util.find_spec("triton") is None:
        return False
    if torch.cuda.is_available():
        return True
    return _STATE.interpret if _STATE is not None else _interpret_env()


def _interpret_env() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# --------------------------------------------------------------------------------------------------------
# Kernel bodies (Triton language), plain functions until _kernels() wraps them; they reach `tl` through
# this module's globals and call no helpers of their own (each would need wrapping too).
# --------------------------------------------------------------------------------------------------------


def _bsr_kernel(
    x_ptr, w_ptr, crow_ptr, col_ptr, b_ptr, y_ptr,
    M, N, stride_xm, stride_ym,
    BO: tl.constexpr, BI: tl.constexpr, PO: tl.constexpr, PI: tl.constexpr,
    BLOCK_M: tl.constexpr, GROUP_M: tl.constexpr, SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr, NUM_STAGES: tl.constexpr,
):  # fmt: skip
    # one program: rows [pid_m * BLOCK_M, +BLOCK_M) of x times block row pid_n of W -> a (BLOCK_M, BO) tile;
    # with SPLIT > 1, program pid_k takes every SPLIT-th share of the block row and adds atomically (fp32 y)
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = N // BO
    per_group = GROUP_M * num_pid_n
    first_m = (pid // per_group) * GROUP_M
    size_m = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % size_m
    pid_n = (pid % per_group) // size_m

    # pointers are a scalar 64-bit base plus 32-bit offset tiles: 64-bit pointer tiles cost registers
    row0 = pid_m * BLOCK_M
    lm = tl.arange(0, BLOCK_M)
    ro = tl.arange(0, PO)
    ri = tl.arange(0, PI)
    m_ok = row0 + lm < M
    x_mask = m_ok[:, None]
    if PI != BI:  # blocks that are not a power of two are padded to one on chip
        x_mask = x_mask & (ri[None, :] < BI)
    w_mask = (ri[:, None] < BI) & (ro[None, :] < BO)
    x_tile = x_ptr + row0.to(tl.int64) * stride_xm
    x_offs = lm[:, None] * stride_xm + ri[None, :]
    w_offs = ri[:, None] + ro[None, :] * BI  # the block transposed: (PI, PO), contiguous along PI

    start = tl.load(crow_ptr + pid_n)
    end = tl.load(crow_ptr + pid_n + 1)
    if SPLIT > 1:
        share = tl.cdiv(end - start, SPLIT)
        start = tl.minimum(start + pid_k * share, end)
        end = tl.minimum(start + share, end)
    w_block = w_ptr + start.to(tl.int64) * (BO * BI)
    acc = tl.zeros((BLOCK_M, PO), dtype=tl.float32)
    for i in tl.range(start, end, num_stages=NUM_STAGES):
        c = tl.load(col_ptr + i)
        xt = tl.load(x_tile + c * BI + x_offs, mask=x_mask, other=0.0)
        if PO == BO and PI == BI:
            wt = tl.load(w_block + w_offs)
        else:
            wt = tl.load(w_block + w_offs, mask=w_mask, other=0.0)
        acc = tl.dot(xt, wt, acc, input_precision=PRECISION)
        w_block += BO * BI

    cols = pid_n * BO + ro
    if HAS_BIAS:
        b = tl.load(b_ptr + cols, mask=ro < BO, other=0.0).to(tl.float32)
        if SPLIT > 1:
            b = tl.where(pid_k == 0, b, 0.0)
        acc += b[None, :]
    y = y_ptr + row0.to(tl.int64) * stride_ym + lm[:, None] * stride_ym + cols[None, :]
    y_mask = m_ok[:, None] & (ro[None, :] < BO)
    if SPLIT > 1:
        tl.atomic_add(y, acc, mask=y_mask, sem="relaxed")
    else:
        tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


def _nm_kernel(
    x_ptr, v_ptr, meta_ptr, b_ptr, y_ptr,
    M, N, K, K_SPLIT, stride_xm, stride_v, stride_meta, stride_ym,
    NN: tl.constexpr, MM: tl.constexpr, BITS: tl.constexpr, GROUPS: tl.constexpr, WORDS: tl.constexpr,
    PER_WORD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, NUM_STAGES: tl.constexpr,
):  # fmt: skip
    # one program: a (BLOCK_M, BLOCK_N) output tile over inputs [pid_k * K_SPLIT, +K_SPLIT); per K tile,
    # GROUPS groups of MM inputs whose NN kept values are contiguous in v and whose positions fill WORDS
    # packed words exactly (tiles start on word boundaries)
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    col0 = pid_n * BLOCK_N
    row0 = pid_m * BLOCK_M
    ln = tl.arange(0, BLOCK_N)
    lm = tl.arange(0, BLOCK_M)
    n_ok = col0 + ln < N
    m_ok = row0 + lm < M
    g = tl.arange(0, GROUPS)
    j = tl.arange(0, NN)
    p = tl.arange(0, MM)
    wd = tl.arange(0, WORDS)
    shifts = tl.arange(0, PER_WORD) * BITS
    rk = tl.arange(0, BLOCK_K)
    n_groups = K // MM
    n_meta = stride_meta  # packed words per row

    v_tile = v_ptr + col0.to(tl.int64) * stride_v
    v_offs = ln[:, None, None] * stride_v + (g[None, :, None] * NN + j[None, None, :])
    meta_tile = meta_ptr + col0.to(tl.int64) * stride_meta
    meta_offs = ln[:, None] * stride_meta + wd[None, :]
    x_tile = x_ptr + row0.to(tl.int64) * stride_xm
    x_offs = lm[:, None] * stride_xm + rk[None, :]
    k_begin = pid_k * K_SPLIT
    k_end = tl.minimum(k_begin + K_SPLIT, K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(k_begin, k_end, BLOCK_K, num_stages=NUM_STAGES):
        g0 = k0 // MM
        v_mask = n_ok[:, None, None] & (g0 + g < n_groups)[None, :, None]
        vals = tl.load(v_tile + g0 * NN + v_offs, mask=v_mask, other=0.0)  # (BLOCK_N, GROUPS, NN)
        w0 = (g0 * NN) // PER_WORD
        words = tl.load(meta_tile + w0 + meta_offs, mask=n_ok[:, None] & (w0 + wd < n_meta)[None, :], other=0)
        pos = (words[:, :, None] >> shifts[None, None, :]) & ((1 << BITS) - 1)  # (BLOCK_N, WORDS, PER_WORD)
        pos = tl.reshape(pos, (BLOCK_N, GROUPS, NN))
        hit = pos[:, :, :, None] == p[None, None, None, :]  # (BLOCK_N, GROUPS, NN, MM)
        dense = tl.sum(tl.where(hit, vals[:, :, :, None], 0.0), axis=2)  # at most one hit per position
        wt = tl.reshape(dense, (BLOCK_N, BLOCK_K)).to(x_ptr.dtype.element_ty)
        xt = tl.load(x_tile + k0 + x_offs, mask=m_ok[:, None] & (k0 + rk < K)[None, :], other=0.0)
        acc = tl.dot(xt, tl.trans(wt), acc, input_precision=PRECISION)

    # + bias (once), then store in y's dtype, or add atomically into an fp32 y when K is split
    if HAS_BIAS:
        b = tl.load(b_ptr + col0 + ln, mask=n_ok, other=0.0).to(tl.float32)
        if SPLIT > 1:
            b = tl.where(pid_k == 0, b, 0.0)
        acc += b[None, :]
    y = y_ptr + row0.to(tl.int64) * stride_ym + lm[:, None] * stride_ym + (col0 + ln)[None, :]
    if SPLIT > 1:
        tl.atomic_add(y, acc, mask=m_ok[:, None] & n_ok[None, :], sem="relaxed")
    else:
        tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def _bitmap_kernel(
    x_ptr, v_ptr, bits_ptr, wptr_ptr, b_ptr, y_ptr,
    M, N, K, K_SPLIT, n_words, stride_xm, stride_ym,
    WORDS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, PRECISION: tl.constexpr, NUM_STAGES: tl.constexpr,
):  # fmt: skip
    # one program: a (BLOCK_M, BLOCK_N) output tile over inputs [pid_k * K_SPLIT, +K_SPLIT); per K tile of
    # WORDS 32-bit words, the place of each kept weight in `values` = offset of the tile's first kept value
    # in its row (word_ptr) + kept weights in the tile's earlier words (prefix sum of popcounts) + kept
    # weights below it in its own word (popcount)
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    pid_k = tl.program_id(2)
    col0 = pid_n * BLOCK_N
    row0 = pid_m * BLOCK_M
    ln = tl.arange(0, BLOCK_N)
    lm = tl.arange(0, BLOCK_M)
    n_ok = col0 + ln < N
    m_ok = row0 + lm < M
    wd = tl.arange(0, WORDS)
    bit = tl.arange(0, 32).to(tl.uint32)
    below = (tl.full((32,), 1, tl.uint32) << bit) - 1  # the bits under each position
    rk = tl.arange(0, BLOCK_K)

    words_tile = col0.to(tl.int64) * n_words
    bits_tile = bits_ptr + words_tile
    wptr_tile = wptr_ptr + words_tile
    bits_offs = ln[:, None] * n_words + wd[None, :]
    x_tile = x_ptr + row0.to(tl.int64) * stride_xm
    x_offs = lm[:, None] * stride_xm + rk[None, :]
    k_begin = pid_k * K_SPLIT
    k_end = tl.minimum(k_begin + K_SPLIT, K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(k_begin, k_end, BLOCK_K, num_stages=NUM_STAGES):
        w0 = k0 // 32
        w_mask = n_ok[:, None] & (w0 + wd < n_words)[None, :]
        words = tl.load(bits_tile + w0 + bits_offs, mask=w_mask, other=0).to(tl.uint32, bitcast=True)
        start = tl.load(wptr_tile + w0 + ln * n_words, mask=n_ok, other=0)

        c = words - ((words >> 1) & 0x55555555)  # SWAR popcount of each word
        c = (c & 0x33333333) + ((c >> 2) & 0x33333333)
        c = (((c + (c >> 4)) & 0x0F0F0F0F) * 0x01010101) >> 24
        word_count = c.to(tl.int32)
        before = tl.cumsum(word_count, axis=1) - word_count  # kept weights in earlier words of the tile

        low = words[:, :, None] & below[None, None, :]  # (BLOCK_N, WORDS, 32)
        c = low - ((low >> 1) & 0x55555555)
        c = (c & 0x33333333) + ((c >> 2) & 0x33333333)
        c = (((c + (c >> 4)) & 0x0F0F0F0F) * 0x01010101) >> 24
        pos = start[:, None, None] + before[:, :, None] + c.to(tl.int32)
        kept = ((words[:, :, None] >> bit[None, None, :]) & 1) != 0
        vals = tl.load(v_ptr + pos, mask=kept, other=0.0)
        wt = tl.reshape(vals, (BLOCK_N, BLOCK_K))
        xt = tl.load(x_tile + k0 + x_offs, mask=m_ok[:, None] & (k0 + rk < K)[None, :], other=0.0)
        acc = tl.dot(xt, tl.trans(wt), acc, input_precision=PRECISION)

    # + bias (once), then store in y's dtype, or add atomically into an fp32 y when K is split
    if HAS_BIAS:
        b = tl.load(b_ptr + col0 + ln, mask=n_ok, other=0.0).to(tl.float32)
        if SPLIT > 1:
            b = tl.where(pid_k == 0, b, 0.0)
        acc += b[None, :]
    y = y_ptr + row0.to(tl.int64) * stride_ym + lm[:, None] * stride_ym + (col0 + ln)[None, :]
    if SPLIT > 1:
        tl.atomic_add(y, acc, mask=m_ok[:, None] & n_ok[None, :], sem="relaxed")
    else:
        tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def _kernels() -> SimpleNamespace:
    """The three kernels, wrapped once for the mode Triton was imported in (``interpret`` says which)."""
    global _STATE, tl
    with _LOCK:
        if _STATE is None:
            triton = require("triton", "Sparse Triton kernels")
            from triton.runtime.interpreter import InterpretedFunction
            from triton.runtime.jit import JITFunction

            tl = triton.language
            # triton.language's helpers were wrapped for one mode when triton was imported; ours must match
            helpers = [getattr(tl, name, None) for name in ("zeros", "cdiv", "sum")]
            if any(isinstance(h, InterpretedFunction) for h in helpers):
                interpret = True
            elif any(isinstance(h, JITFunction) for h in helpers):
                interpret = False
            else:
                interpret = _interpret_env()
            wrap = InterpretedFunction if interpret else JITFunction
            _STATE = SimpleNamespace(
                interpret=interpret,
                bsr=wrap(_bsr_kernel),
                nm=wrap(_nm_kernel),
                bitmap=wrap(_bitmap_kernel),
                cdiv=triton.cdiv,
            )
        return _STATE


# --------------------------------------------------------------------------------------------------------
# Launch configurations (fixed; no autotuning — the interpreter has none and tables are predictable)
# --------------------------------------------------------------------------------------------------------


def _pow2(v: int) -> int:
    return 1 << max(0, v - 1).bit_length()


def _bsr_config(m: int, dtype: torch.dtype, interpret: bool) -> dict[str, int]:
    """BLOCK_M and launch options of :func:`bsr_linear`; the N tile is the block height ``bo``.

    On CUDA: decode-sized batches (M <= 16) use BLOCK_M = 16, the smallest ``tl.dot`` tile; up to 64 rows
    BLOCK_M = 64; larger batches BLOCK_M = 128 (a 128 x 64 tile per program with block 64 feeds Hopper's
    wgmma from one warp group of 4 warps). num_stages = 5 (the loop pipelines the ``col`` load one stage
    ahead of the ``x`` / block loads, so 5 stages keep 3 tiles in flight; 72 KiB of shared memory at
    BLOCK_M = 128), GROUP_M = 8 row tiles per L2 group. fp32 stops at BLOCK_M = 64 and 4 stages, where
    3xTF32 tiles still fit in registers.
    """
    if interpret:
        return {"BLOCK_M": max(16, min(64, _pow2(m))), "GROUP_M": 8, "NUM_STAGES": 1}
    if dtype == torch.float32:
        return {
            "BLOCK_M": 16 if m <= 16 else 64,
            "GROUP_M": 8,
            "NUM_STAGES": 4,
            "num_warps": 4,
            "num_stages": 4,
        }
    block_m = 16 if m <= 16 else 64 if m <= 64 else 128
    return {"BLOCK_M": block_m, "GROUP_M": 8, "NUM_STAGES": 5, "num_warps": 4, "num_stages": 5}


def _dense_tile_config(m: int, n: int, dtype: torch.dtype, interpret: bool) -> dict[str, int]:
    """Tiles of :func:`nm_linear` and :func:`bitmap_linear` (which expand a dense tile of W on chip).

    On CUDA, decode (M <= 16): BLOCK_M = 16 (smallest ``tl.dot``), BLOCK_N = 16 for up to 8192 outputs
    else 32, BLOCK_K = 256 so each step moves a few KiB per row tile; K is split across programs
    (:func:`_split`) so that even a 4096-row layer runs enough programs to keep HBM busy. Medium M
    (<= 128): 64 x 64 x 64 tiles; large M: 128 x 128 x 64 with 8 warps (compute-bound; the dispatcher
    prefers cuBLAS or PyTorch's semi-structured 2:4 path there). num_stages = 3. fp32 uses 16 x 16 x 64
    (decode) and 32 x 64 x 32 tiles: larger expanded fp32 tiles with 3xTF32 spill registers.
    """
    if interpret:
        return {"BLOCK_M": max(16, min(64, _pow2(m))), "BLOCK_N": 64, "BLOCK_K": 64, "NUM_STAGES": 1}
    if dtype == torch.float32:
        small = m <= 16
        tiles = {
            "BLOCK_M": 16 if small else 32,
            "BLOCK_N": 16 if small else 64,
            "BLOCK_K": 64 if small else 32,
        }
        tiles["num_warps"] = 4
    elif m <= 16:
        tiles = {"BLOCK_M": 16, "BLOCK_N": 16 if n <= 8192 else 32, "BLOCK_K": 256, "num_warps": 4}
    elif m <= 128:
        tiles = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "num_warps": 4}
    else:
        tiles = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8}
    return {**tiles, "NUM_STAGES": 3, "num_stages": 3}


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _split(programs: int, k_steps: int, device: torch.device, interpret: bool) -> int:
    """Into how many parts to split the reduction so that a launch of ``programs`` output tiles still has
    about 4 programs per SM (each part keeps at least 2 of the ``k_steps`` steps; at most 16 parts).
    Split parts add into an fp32 result atomically, so their order of summation may vary between runs.
    1 in the interpreter, which runs programs one after another."""
    if interpret or device.type != "cuda":
        return 1
    target = 4 * _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    if programs >= target:
        return 1
    return max(1, min(-(-target // programs), k_steps // 2, 16))


def _output(x: torch.Tensor, out: int, split: int) -> torch.Tensor:
    """The result buffer: in x's dtype, or fp32 zeros that split programs add into."""
    if split > 1:
        return torch.zeros(x.shape[0], out, dtype=torch.float32, device=x.device)
    return torch.empty(x.shape[0], out, dtype=x.dtype, device=x.device)


def _launch_options(cfg: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """(constexpr tile sizes, compile options num_warps / num_stages)."""
    opts: dict[str, int] = {k: cfg[k] for k in ("num_warps", "num_stages") if k in cfg}
    return {k: v for k, v in cfg.items() if k not in opts}, opts


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision for fp32: TF32 where torch allows it for matmuls, else 3xTF32 (about
    fp32 accuracy on tensor cores; plain fp32 FMA tiles spill registers). fp16 / bf16 ignore it."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"


# --------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------


def _prepare(
    x: Any, w: Any, bias: Any, kind: type, where: str
) -> tuple[torch.Tensor, torch.Tensor | None, SimpleNamespace, bool]:
    """Check the inputs; return (x contiguous, bias or None, kernels, interpret)."""
    if not isinstance(w, kind):
        fail(
            "w",
            where,
            f"a pruneviz.kernels.formats.{kind.__name__}",
            None,
            got=type(w).__name__,
            fix=f"build one with {kind.__name__}.from_dense(weight, ...) or from_mask(...).",
        )
    w = cast(Any, w)  # one of the formats: shape and values
    out, inp = w.shape
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != inp:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        fail(
            "x",
            where,
            f"a 2-D tensor (batch, {inp}) matching the weight's {inp} inputs",
            None,
            got=got,
            fix="flatten leading batch dimensions with x.reshape(-1, x.shape[-1]).",
        )
    if w.values.device != x.device:
        fail(
            "w",
            where,
            f"on the input's device ({x.device})",
            None,
            got=f"a weight on {w.values.device}",
            fix="move the weight with w.to(x.device), or the input with x.to(...).",
        )
    if x.dtype not in _DTYPES:
        fail(
            "x",
            where,
            "float16, bfloat16 or float32",
            None,
            got=f"dtype {x.dtype}",
            fix="cast it with x.half() or x.float().",
        )
    if w.values.dtype != x.dtype:
        fail(
            "w",
            where,
            f"values of the input's dtype ({x.dtype})",
            None,
            got=f"dtype {w.values.dtype}",
            fix="convert once with w.to(dtype=x.dtype).",
        )
    if x.device.type not in ("cpu", "cuda"):
        fail(
            "x",
            where,
            "a CUDA or CPU tensor",
            None,
            got=f"a tensor on {x.device}",
            fix="move it with x.cuda().",
        )
    if x.device.type == "cpu" and _STATE is None and not _interpret_env():  # before triton is imported
        _no_interpreter(where)
    k = _kernels()
    if x.device.type == "cpu" and not k.interpret:
        _no_interpreter(where, imported=True)
    if k.interpret and x.dtype == torch.bfloat16:
        fail(
            "x",
            where,
            "float16 or float32 under TRITON_INTERPRET=1 (the interpreter's bfloat16 tl.dot is wrong)",
            None,
            got="dtype torch.bfloat16",
            fix="run bfloat16 compiled on CUDA, or test with x.float() and w.to(dtype=torch.float32).",
        )
    if bias is not None:
        ok = isinstance(bias, torch.Tensor) and bias.shape == (out,) and bias.is_floating_point()
        if not ok or bias.device != x.device:
            got = (
                f"shape {tuple(bias.shape)}, dtype {bias.dtype}, device {bias.device}"
                if isinstance(bias, torch.Tensor)
                else type(bias).__name__
            )
            fail(
                "bias",
                where,
                f"None or a floating-point tensor of shape ({out},) on {x.device}",
                None,
                got=got,
                fix="pass the layer's .bias (or None).",
            )
        bias = bias.contiguous()
    return (x if x.stride(1) == 1 else x.contiguous()), bias, k, k.interpret


def _no_interpreter(where: str, imported: bool = False) -> NoReturn:
    got = (
        "a CPU tensor, but triton was imported without TRITON_INTERPRET=1, so it only compiles for GPUs"
        if imported
        else "a CPU tensor without TRITON_INTERPRET=1"
    )
    fail(
        "x",
        where,
        "a CUDA tensor (Triton compiles for GPUs only), or a CPU tensor with the environment variable "
        "TRITON_INTERPRET=1 set before triton is first imported",
        None,
        got=got,
        fix="move x and w to CUDA; to test on CPU set TRITON_INTERPRET=1 (slow) at the start of the process; "
        "for CPU inference use pruneviz.kernels' dispatcher, which picks torch's CPU paths.",
    )


def bsr_linear(x: torch.Tensor, w: BlockSparse, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` for a block-sparse ``W``: x ``(M, in)``, result ``(M, out)`` in x's dtype.

    Work and weight traffic scale with the kept blocks; the kernel is described in the module docstring
    (Gray, Radford & Kingma 2017). On CUDA fp16, blocks of 64 x 64 suit Hopper (BLOCK_N = bo = 64,
    BLOCK_M from :func:`_bsr_config`); block sides that are not powers of two are padded on chip.

    Example::

        >>> w = torch.randn(128, 128); w[:64] = 0
        >>> bsr_linear(torch.randn(3, 128), BlockSparse.from_dense(w, block=64)).shape  # doctest: +SKIP
        torch.Size([3, 128])
    """
    x, bias, k, interpret = _prepare(x, w, bias, BlockSparse, "bsr_linear")
    (out, inp), (bo, bi) = w.shape, w.block
    if x.shape[0] == 0:
        return x.new_empty(0, out)
    consts, opts = _launch_options(_bsr_config(x.shape[0], x.dtype, interpret))
    programs = k.cdiv(x.shape[0], consts["BLOCK_M"]) * (out // bo)
    split = _split(programs, inp // bi, x.device, interpret)
    y = _output(x, out, split)
    k.bsr[(programs, split)](
        x,
        w.values,
        w.crow,
        w.col,
        bias if bias is not None else y,
        y,
        x.shape[0],
        out,
        x.stride(0),
        y.stride(0),
        BO=bo,
        BI=bi,
        PO=_pow2(bo),
        PI=_pow2(bi),
        SPLIT=split,
        HAS_BIAS=bias is not None,
        PRECISION=_precision(x.dtype),
        **consts,
        **opts,
    )
    return y.to(x.dtype)


def nm_linear(x: torch.Tensor, w: NMSparse, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` for an N:M-compressed ``W`` (2:4, or any N:M with N and M powers of two):
    x ``(M, in)``, result ``(M, out)`` in x's dtype.

    Loads ``values`` and the packed positions ``meta`` of :class:`~pruneviz.kernels.formats.NMSparse`
    and expands each tile on chip (see the module docstring; Mishra et al. 2021). For decode-sized
    batches on CUDA (M <= 16) it uses 16 x 16..32 x 256 tiles and splits K (:func:`_dense_tile_config`).

    Example::

        >>> from pruneviz.prune.allocation import nm_mask
        >>> w = torch.randn(64, 128); w = w * nm_mask(w.abs(), 2, 4)
        >>> nm_linear(torch.randn(1, 128), NMSparse.from_dense(w)).shape  # doctest: +SKIP
        torch.Size([1, 64])
    """
    x, bias, k, interpret = _prepare(x, w, bias, NMSparse, "nm_linear")
    n, m = w.n, w.m
    if n & (n - 1) or m & (m - 1) or w.meta is None:
        fail(
            "w",
            "nm_linear",
            "N:M with N and M powers of two (2:4, 1:4, 4:8, ...) built by from_dense",
            None,
            got=f"{n}:{m}",
            fix="store this layer in the 'bitmap' format instead.",
        )
    out, inp = w.shape
    if x.shape[0] == 0:
        return x.new_empty(0, out)
    consts, opts = _launch_options(_dense_tile_config(x.shape[0], out, x.dtype, interpret))
    per_word = 32 // w.meta_bits
    # a K tile must hold whole packed words: BLOCK_K * n / m a multiple of 32 / bits
    consts["BLOCK_K"] = block_k = max(consts["BLOCK_K"], per_word * m // n, 16)
    groups = block_k // m
    tiles = (k.cdiv(out, consts["BLOCK_N"]), k.cdiv(x.shape[0], consts["BLOCK_M"]))
    steps = k.cdiv(inp, block_k)
    split = _split(tiles[0] * tiles[1], steps, x.device, interpret)
    k_split = k.cdiv(steps, split) * block_k
    y = _output(x, out, split)
    k.nm[(*tiles, k.cdiv(inp, k_split))](
        x,
        w.values,
        w.meta,
        bias if bias is not None else y,
        y,
        x.shape[0],
        out,
        inp,
        k_split,
        x.stride(0),
        w.values.stride(0),
        w.meta.shape[1],
        y.stride(0),
        NN=n,
        MM=m,
        BITS=w.meta_bits,
        GROUPS=groups,
        WORDS=groups * n // per_word,
        PER_WORD=per_word,
        SPLIT=split,
        HAS_BIAS=bias is not None,
        PRECISION=_precision(x.dtype),
        **consts,
        **opts,
    )
    return y.to(x.dtype)


def bitmap_linear(x: torch.Tensor, w: Bitmap, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` for a bitmap-compressed ``W``: x ``(M, in)``, result ``(M, out)`` in x's dtype.

    Loads one bit per weight plus the kept values and expands each tile on chip (see the module
    docstring). Worth it where loading W dominates: small batches at high sparsity — at 70 % sparsity an
    fp16 weight costs about 0.6 + 0.125 bytes instead of 2. Tiles and K splitting as :func:`nm_linear`.

    Example::

        >>> w = torch.randn(64, 100) * (torch.rand(64, 100) < 0.3)
        >>> bitmap_linear(torch.randn(2, 100), Bitmap.from_dense(w)).shape  # doctest: +SKIP
        torch.Size([2, 64])
    """
    x, bias, k, interpret = _prepare(x, w, bias, Bitmap, "bitmap_linear")
    out, inp = w.shape
    if x.shape[0] == 0:
        return x.new_empty(0, out)
    consts, opts = _launch_options(_dense_tile_config(x.shape[0], out, x.dtype, interpret))
    block_k = consts["BLOCK_K"]
    tiles = (k.cdiv(out, consts["BLOCK_N"]), k.cdiv(x.shape[0], consts["BLOCK_M"]))
    steps = k.cdiv(inp, block_k)
    split = _split(tiles[0] * tiles[1], steps, x.device, interpret)
    k_split = k.cdiv(steps, split) * block_k
    y = _output(x, out, split)
    k.bitmap[(*tiles, k.cdiv(inp, k_split))](
        x,
        w.values,
        w.bits,
        w.word_ptr,
        bias if bias is not None else y,
        y,
        x.shape[0],
        out,
        inp,
        k_split,
        w.bits.shape[1],
        x.stride(0),
        y.stride(0),
        WORDS=block_k // 32,
        SPLIT=split,
        HAS_BIAS=bias is not None,
        PRECISION=_precision(x.dtype),
        **consts,
        **opts,
    )
    return y.to(x.dtype)
