"""CPU paths for ``y = x @ W.T + b`` (the ``F.linear`` convention) with a sparse weight ``W (out, in)``.

Four ways to multiply by a pruned weight on a CPU, each a pure function of ``(x, packed weight, bias)``:

- :func:`block_ell_linear` — pruneviz's block-sparse kernel for the memory-bound regime (small batch).
  The non-zero ``(bo, bi)`` blocks of each block row are packed side by side into one ``(K·bi, bo)``
  panel, block rows are *bucketed* by their number of blocks ``K`` (padding each bucket to its largest
  ``K`` with zero blocks, the buckets chosen by a small dynamic programme that trades padding against the
  cost of one more call), the matching ``bi``-wide slices of ``x`` are gathered once per bucket with
  ``index_select``, and one ``torch.bmm`` per bucket multiplies them. It reads about
  ``density × weight bytes``, which is what makes a small-batch matmul faster than dense. The layout is
  ELLPACK over blocks with rows grouped by length before padding, as SELL-C-σ sorts rows into
  slices (Kreutzer, Hager, Wellein, Fehske & Bishop 2014).
- :func:`torch_csr_linear` / :func:`torch_bsr_linear` — ``torch.addmm`` with a ``torch.sparse_csr`` or
  ``torch.sparse_bsr`` weight (MKL sparse BLAS on CPU).
- :func:`shrunk_linear` — structurally shrunk dense: all-zero output rows dropped (their outputs are
  the bias) and all-zero input columns dropped (``index_select`` on ``x``), then a dense matmul.

Dtypes: the sparse paths (block ELL, torch CSR, torch BSR) run in float32 and float64 only — torch's
CPU sparse BLAS has no bfloat16/float16 kernel — and raise a :class:`~pruneviz.exceptions.ValidationError`
for bfloat16/float16 inputs rather than silently changing precision; cast with ``.float()`` or use the
dense or shrunk path (which :func:`pruneviz.kernels.sparsify` does on its own for such layers).

Example::

    >>> w = torch.randn(128, 64) * (torch.rand(4, 1, 2, 1) < 0.5).expand(4, 32, 2, 32).reshape(128, 64)
    >>> x = torch.randn(3, 64)
    >>> torch.allclose(block_ell_linear(x, BlockELL.from_dense(w, block=32)), x @ w.T, atol=1e-5)
    True
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pruneviz._validation import fail
from pruneviz.kernels.formats import _check_weight as check_weight

__all__ = [
    "SPARSE_DTYPES",
    "BlockELL",
    "Shrunk",
    "block_ell_linear",
    "check_block",
    "shrunk_linear",
    "to_torch_bsr",
    "to_torch_csr",
    "torch_bsr_linear",
    "torch_csr_linear",
]

SPARSE_DTYPES = (torch.float32, torch.float64)
"""Dtypes the CPU sparse paths run in (torch's CPU sparse BLAS has no half-precision kernels)."""

BLOCK_RANGE = (16, 128)
# One more bucket is worth this many padded weight elements: each bucket is one more torch.bmm (a
# parallel region: ~15 µs, and much more when other processes hold the cores) against ~0.1 ns per
# weight element streamed from memory. Measured on a 2-core EPYC (4096², 32x32 blocks, batch 1-16):
# 2^15 .. 2^19 are within ~15 % of each other; 2^17 was best under contention.
_BUCKET_COST = 1 << 17
# Up to this many rows of x the gathered activations are laid out batch-major (measured faster).
_ROW_MAJOR_UP_TO = 64


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight as the ``(out, in * kernel)`` matrix (conv kernels flattened as ``F.unfold`` orders)."""
    return weight.detach().reshape(weight.shape[0], -1)


def _check_weight(weight: Any, where: str, param: str = "weight") -> torch.Tensor:
    return _matrix(check_weight(weight, where, param))


def check_block(block: Any, shape: tuple[int, int], where: str) -> tuple[int, int]:
    """``block`` as ``(bo, bi)``: integers in 16..128 that divide the matrix ``shape`` (out, in)."""
    lo, hi = BLOCK_RANGE
    sides = tuple(block) if isinstance(block, tuple | list) else (block, block)
    ok = len(sides) == 2 and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and lo <= s <= hi for s in sides
    )
    if not ok:
        fail(
            "block",
            where,
            f"an integer or a pair (bo, bi) of integers, each in [{lo}, {hi}]",
            block,
            "pass block=32 or block=(64, 32).",
        )
    bo, bi = int(sides[0]), int(sides[1])
    out, inp = shape
    if out % bo or inp % bi:
        fail(
            "block",
            where,
            f"a block size dividing the weight matrix {(out, inp)} (out, in)",
            block,
            f"pick bo dividing {out} and bi dividing {inp}, or use an unstructured path for this layer.",
        )
    return bo, bi


def check_device(x: torch.Tensor, device: torch.device, where: str, other: str) -> None:
    """``x`` must be on the weight's ``device``; ``other`` completes the fix ("move x, or …")."""
    if x.device != device:
        fail(
            "x",
            where,
            f"on the weight's device ({device})",
            None,
            got=f"a tensor on {x.device}",
            fix=f"move one of them: x.to('{device}'), {other}.",
        )


def _check_input(
    x: Any, in_features: int, device: torch.device, dtype: torch.dtype, where: str, *, sparse: bool
) -> torch.Tensor:
    """``x`` (..., in) on the weight's device and of its dtype; returned as a 2-D (M, in) view."""
    if not isinstance(x, torch.Tensor):
        fail("x", where, "a torch.Tensor of shape (batch, in)", None, got=type(x).__name__)
    check_device(x, device, where, f"or build the weight on {x.device}")
    if x.ndim < 1 or x.shape[-1] != in_features:
        fail(
            "x",
            where,
            f"a tensor of shape (..., {in_features}) (the weight's in_features last)",
            None,
            got=f"shape {tuple(x.shape)}",
            fix="flatten the input the way the layer expects.",
        )
    if sparse and x.dtype not in SPARSE_DTYPES:
        fail(
            "x",
            where,
            "float32 or float64 (CPU sparse paths have no half-precision kernels)",
            None,
            got=f"dtype {x.dtype}",
            fix="cast with x.float() and a float32 weight, or use the dense path for bfloat16/float16 "
            "(pruneviz.kernels.sparsify does so by itself).",
        )
    if x.dtype != dtype:
        fail(
            "x",
            where,
            f"of the weight's dtype ({dtype})",
            None,
            got=f"dtype {x.dtype}",
            fix=f"cast with x.to({dtype}).",
        )
    return x.reshape(-1, in_features)


def _check_bias(bias: Any, out_features: int, ref: torch.Tensor, where: str) -> torch.Tensor | None:
    if bias is None:
        return None
    if (
        not isinstance(bias, torch.Tensor)
        or tuple(bias.shape) != (out_features,)
        or bias.device != ref.device
        or bias.dtype != ref.dtype
    ):
        got = (
            f"shape {tuple(bias.shape)}, {bias.dtype} on {bias.device}"
            if isinstance(bias, torch.Tensor)
            else type(bias).__name__
        )
        fail(
            "bias",
            where,
            f"None or a tensor of shape ({out_features},) with x's dtype and device",
            None,
            got=got,
            fix="pass the layer's .bias.",
        )
    return bias


def _unflatten(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return y if x.ndim == 2 else y.reshape(*x.shape[:-1], y.shape[-1])


# --------------------------------------------------------------------------------------------------
# block ELL: padded, bucketed blocks


def _buckets(counts: np.ndarray, block_elems: int, bucket_cost: int) -> list[tuple[int, int]]:
    """Split the sorted distinct block counts into contiguous ranges (lo, hi) of ``values`` indices that
    minimise ``Σ rows_in_bucket · max_count · block_elems + bucket_cost`` (O(D²) over D distinct counts).
    """
    values, mult = np.unique(counts, return_counts=True)
    d = len(values)
    csum = np.concatenate([[0], np.cumsum(mult)])
    best = np.zeros(d + 1)
    back = np.zeros(d + 1, dtype=np.int64)
    for j in range(1, d + 1):
        i = np.arange(1, j + 1)  # bucket covers values[i-1 .. j-1]
        cost = best[i - 1] + (csum[j] - csum[i - 1]) * values[j - 1] * float(block_elems) + bucket_cost
        k = int(np.argmin(cost))
        best[j], back[j] = cost[k], i[k]
    ranges = []
    j = d
    while j > 0:
        first = int(back[j])
        ranges.append((int(values[first - 1]), int(values[j - 1])))
        j = first - 1
    return ranges[::-1]


@dataclass(frozen=True)
class BlockELL:
    """A block-sparse weight packed for :func:`block_ell_linear`: block rows bucketed by their number
    of non-zero blocks, each bucket a padded ELL panel.

    ``shape`` is ``(out, in)``, ``block`` ``(bo, bi)``. Bucket ``b`` holds ``rows[b]`` (its block-row
    indices, int64, ascending) and ``values[b]`` ``(len(rows[b]), K_b · bi, bo)``: each row's ``K_b``
    blocks transposed and stacked, zero blocks as padding. ``cols`` (int64) lists the block column of
    every stored block, bucket after bucket and row by row (padding points at column 0). ``order``
    maps each block row to its place in the buckets' concatenated output (block rows without any block
    point one past the end, at a zero row), or is ``None`` when that is the identity. ``nnz_blocks``
    counts the kept blocks (padding excluded).
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    rows: tuple[torch.Tensor, ...]
    cols: torch.Tensor
    values: tuple[torch.Tensor, ...]
    order: torch.Tensor | None
    nnz_blocks: int
    dtype: torch.dtype

    @classmethod
    def from_dense(
        cls, weight: torch.Tensor, *, block: int | tuple[int, int], bucket_cost: int = _BUCKET_COST
    ) -> BlockELL:
        """Pack the blocks of ``weight`` (``(out, in)`` or a conv weight) that hold any non-zero.

        ``bucket_cost`` is the padding (in weight elements) one more bucket is worth; 0 gives one
        bucket per distinct block count (no padding), a huge value one bucket (plain padded ELL).
        """
        where = "BlockELL.from_dense"
        mat = _check_weight(weight, where)
        bo, bi = check_block(block, (mat.shape[0], mat.shape[1]), where)
        out, inp = mat.shape
        blocks = mat.reshape(out // bo, bo, inp // bi, bi).permute(0, 2, 1, 3)  # (R, C, bo, bi)
        keep = (blocks != 0).any(dim=(2, 3))
        return cls._pack(blocks, keep, (out, inp), (bo, bi), bucket_cost)

    @classmethod
    def from_block_sparse(cls, bsr: Any, *, bucket_cost: int = _BUCKET_COST) -> BlockELL:
        """Repack a :class:`pruneviz.kernels.formats.BlockSparse` (its stored blocks, zero or not)."""
        (out, inp), (bo, bi) = tuple(bsr.shape), tuple(bsr.block)
        rows_n, cols_n = out // bo, inp // bi
        counts = (bsr.crow[1:] - bsr.crow[:-1]).long()
        brow = torch.repeat_interleave(torch.arange(rows_n, device=bsr.values.device), counts)
        blocks = bsr.values.new_zeros(rows_n, cols_n, bo, bi)
        keep = torch.zeros(rows_n, cols_n, dtype=torch.bool, device=bsr.values.device)
        blocks[brow, bsr.col.long()] = bsr.values
        keep[brow, bsr.col.long()] = True
        return cls._pack(blocks, keep, (out, inp), (bo, bi), bucket_cost)

    @classmethod
    def _pack(
        cls,
        blocks: torch.Tensor,
        keep: torch.Tensor,
        shape: tuple[int, int],
        block: tuple[int, int],
        bucket_cost: int,
    ) -> BlockELL:
        bo, bi = block
        device = blocks.device
        counts = keep.sum(1).cpu().numpy()
        nonempty = counts > 0
        rows_out: list[torch.Tensor] = []
        cols_out: list[torch.Tensor] = []
        vals_out: list[torch.Tensor] = []
        if nonempty.any():
            for lo, hi in _buckets(counts[nonempty], bo * bi, bucket_cost):
                rows = np.flatnonzero((counts >= lo) & (counts <= hi))
                rows_t = torch.as_tensor(rows, dtype=torch.long, device=device)
                sub = keep[rows_t]  # (Rb, C)
                # column indices of the kept blocks first (ascending), then padding (stable sort)
                order = torch.argsort((~sub).to(torch.int8), dim=1, stable=True)[:, :hi]
                valid = torch.gather(sub, 1, order)  # (Rb, hi)
                cols = torch.where(valid, order, torch.zeros_like(order))
                vals = blocks[rows_t.unsqueeze(1), order] * valid[..., None, None]  # (Rb, hi, bo, bi)
                # panel of row r: blocks transposed and stacked along K·bi -> (Rb, hi·bi, bo)
                rows_out.append(rows_t)
                cols_out.append(cols.reshape(-1))
                vals_out.append(vals.transpose(2, 3).reshape(len(rows), hi * bi, bo).contiguous())
        n_rows = len(counts)
        placed = torch.cat(rows_out) if rows_out else torch.zeros(0, dtype=torch.long, device=device)
        order = torch.full((n_rows,), len(placed), dtype=torch.long, device=device)
        order[placed] = torch.arange(len(placed), device=device)
        order_t: torch.Tensor | None = order
        if len(placed) == n_rows and bool((placed == torch.arange(n_rows, device=device)).all()):
            order_t = None
        cols_all = torch.cat(cols_out) if cols_out else torch.zeros(0, dtype=torch.long, device=device)
        return cls(
            shape,
            block,
            tuple(rows_out),
            cols_all.contiguous(),
            tuple(vals_out),
            order_t,
            int(counts.sum()),
            blocks.dtype,
        )

    @property
    def density(self) -> float:
        """Kept blocks / all blocks."""
        (out, inp), (bo, bi) = self.shape, self.block
        return self.nnz_blocks / ((out // bo) * (inp // bi))

    @property
    def padding(self) -> float:
        """Stored blocks (padding included) / kept blocks; 1.0 means no padding."""
        return len(self.cols) / max(self.nnz_blocks, 1)

    @property
    def device(self) -> torch.device:
        return self.cols.device

    @property
    def nbytes(self) -> int:
        tensors = [*self.rows, self.cols, *self.values, *([self.order] if self.order is not None else [])]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to_dense(self) -> torch.Tensor:
        """The ``(out, in)`` matrix."""
        (out, inp), (bo, bi) = self.shape, self.block
        dense = torch.zeros(out // bo, inp // bi, bo, bi, dtype=self.dtype, device=self.device)
        start = 0
        for rows, panel in zip(self.rows, self.values, strict=True):
            k = panel.shape[1] // bi
            cols = self.cols[start : start + len(rows) * k]
            start += len(rows) * k
            blocks = panel.reshape(len(rows), k, bi, bo).transpose(2, 3)  # (Rb, K, bo, bi)
            # padding blocks are zero and point at column 0: add, so they never overwrite a real block
            dense.index_put_((rows.repeat_interleave(k), cols), blocks.reshape(-1, bo, bi), accumulate=True)
        return dense.permute(0, 2, 1, 3).reshape(out, inp)

    def to(self, dtype: torch.dtype) -> BlockELL:
        """A copy with values of ``dtype``."""
        values = tuple(v.to(dtype) for v in self.values)
        return dataclasses.replace(self, values=values, dtype=dtype)


def block_ell_linear(x: torch.Tensor, w: BlockELL, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` packed as :class:`BlockELL`: ``x`` ``(..., in)`` → ``(..., out)``.

    One ``index_select`` gathers the ``bi``-wide slices of ``x`` that all stored blocks need; per
    bucket one ``torch.bmm`` of the gathered ``(Rb, M, K·bi)`` slices with the ``(Rb, K·bi, bo)``
    panels writes that bucket's ``(Rb, M, bo)`` outputs into one buffer; one more ``index_select``
    puts the block rows back in order. float32/float64 only (see the module docstring).

    Example::

        >>> w = torch.zeros(64, 64); w[:32, 32:] = 1.0
        >>> block_ell_linear(torch.ones(1, 64), BlockELL.from_dense(w, block=32))[0, :2].tolist()
        [32.0, 32.0]
    """
    where = "block_ell_linear"
    if not isinstance(w, BlockELL):
        fail("w", where, "a BlockELL", None, got=type(w).__name__, fix="build it with BlockELL.from_dense.")
    (out, inp), (bo, bi) = w.shape, w.block
    x2 = _check_input(x, inp, w.device, w.dtype, where, sparse=True)
    bias = _check_bias(bias, out, x2, where)
    m = x2.shape[0]
    n_cols = inp // bi
    placed = sum(len(r) for r in w.rows)
    extra = 1 if w.order is not None and placed < out // bo else 0  # a zero row for empty block rows
    buf = torch.empty(placed + extra, m, bo, dtype=x2.dtype, device=x2.device)
    if extra:
        buf[placed:].zero_()
    row_major = m <= _ROW_MAJOR_UP_TO
    if row_major:  # (M, T, bi): cheap to gather when M is small
        gathered = x2.reshape(m, n_cols, bi).index_select(1, w.cols)
    else:  # (T, bi, M): each block's slice contiguous when M is large
        gathered = x2.t().contiguous().reshape(n_cols, bi, m).index_select(0, w.cols)
    row = col = 0
    for panel in w.values:
        rb, kbi = panel.shape[0], panel.shape[1]
        k = kbi // bi
        if row_major:
            g = gathered[:, col : col + rb * k].reshape(m, rb, kbi).transpose(0, 1)  # (Rb, M, K·bi)
        else:
            g = gathered[col : col + rb * k].reshape(rb, kbi, m).transpose(1, 2)
        torch.bmm(g, panel, out=buf[row : row + rb])
        row += rb
        col += rb * k
    if w.order is None:
        y = buf.transpose(0, 1).reshape(m, out)
    else:
        y = buf.transpose(0, 1).index_select(1, w.order).reshape(m, out)
    if bias is not None:
        y = y + bias
    return _unflatten(y, x)


# --------------------------------------------------------------------------------------------------
# torch CSR / BSR


def to_torch_csr(weight: torch.Tensor) -> torch.Tensor:
    """The weight matrix as a ``torch.sparse_csr`` tensor (zeros dropped); float32/float64."""
    mat = _check_weight(weight, "to_torch_csr")
    _check_sparse_dtype(mat.dtype, "to_torch_csr")
    with warnings.catch_warnings():  # torch flags CSR as beta; the conversion is exact
        warnings.simplefilter("ignore", UserWarning)
        return mat.to_sparse_csr()


def to_torch_bsr(weight: torch.Tensor, *, block: int | tuple[int, int]) -> torch.Tensor:
    """The weight matrix as a ``torch.sparse_bsr`` tensor of ``block`` blocks (all-zero blocks dropped)."""
    mat = _check_weight(weight, "to_torch_bsr")
    _check_sparse_dtype(mat.dtype, "to_torch_bsr")
    bo, bi = check_block(block, (mat.shape[0], mat.shape[1]), "to_torch_bsr")
    with warnings.catch_warnings():  # torch flags BSR as beta; the conversion is exact
        warnings.simplefilter("ignore", UserWarning)
        return mat.to_sparse_bsr((bo, bi))


def _check_sparse_dtype(dtype: torch.dtype, where: str) -> None:
    if dtype not in SPARSE_DTYPES:
        fail(
            "weight",
            where,
            "float32 or float64 (CPU sparse paths have no half-precision kernels)",
            None,
            got=f"dtype {dtype}",
            fix="convert with weight.float(), or keep this layer dense for bfloat16/float16.",
        )


def _torch_sparse_linear(
    x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, layout: torch.layout, where: str
) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.layout != layout:
        got = str(w.layout) if isinstance(w, torch.Tensor) else type(w).__name__
        fail("w", where, f"a {layout} tensor", None, got=got, fix="build it with to_torch_csr/to_torch_bsr.")
    out, inp = w.shape
    x2 = _check_input(x, inp, w.device, w.dtype, where, sparse=True)
    bias = _check_bias(bias, out, x2, where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yt = torch.sparse.mm(w, x2.t()) if bias is None else torch.addmm(bias.unsqueeze(1), w, x2.t())
    return _unflatten(yt.t(), x)


def torch_csr_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` a ``torch.sparse_csr`` matrix (:func:`to_torch_csr`)."""
    return _torch_sparse_linear(x, w, bias, torch.sparse_csr, "torch_csr_linear")


def torch_bsr_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` a ``torch.sparse_bsr`` matrix (:func:`to_torch_bsr`)."""
    return _torch_sparse_linear(x, w, bias, torch.sparse_bsr, "torch_bsr_linear")


# --------------------------------------------------------------------------------------------------
# structurally shrunk dense


@dataclass(frozen=True)
class Shrunk:
    """A dense weight without its all-zero output rows and all-zero input columns.

    ``weight`` ``(len(rows), len(cols))``; ``rows`` / ``cols`` (int64) index the kept rows / columns of
    the full ``shape`` ``(out, in)``, or are ``None`` when nothing was removed along that side.
    """

    shape: tuple[int, int]
    weight: torch.Tensor
    rows: torch.Tensor | None
    cols: torch.Tensor | None

    @classmethod
    def from_dense(cls, weight: torch.Tensor) -> Shrunk:
        """Drop the all-zero rows and columns of ``weight`` (``(out, in)`` or a conv weight)."""
        mat = _check_weight(weight, "Shrunk.from_dense")
        nz = mat != 0
        rows = nz.any(1).nonzero().flatten()
        cols = nz.any(0).nonzero().flatten()
        keep_rows = None if len(rows) == mat.shape[0] else rows
        keep_cols = None if len(cols) == mat.shape[1] else cols
        w = mat if keep_rows is None else mat.index_select(0, keep_rows)
        w = w if keep_cols is None else w.index_select(1, keep_cols)
        return cls((mat.shape[0], mat.shape[1]), w.contiguous(), keep_rows, keep_cols)

    @property
    def density(self) -> float:
        """Kept matrix size / full matrix size."""
        return self.weight.numel() / (self.shape[0] * self.shape[1])

    @property
    def nbytes(self) -> int:
        extra = sum(t.numel() * t.element_size() for t in (self.rows, self.cols) if t is not None)
        return self.weight.numel() * self.weight.element_size() + extra

    def to_dense(self) -> torch.Tensor:
        """The ``(out, in)`` matrix."""
        out = self.weight.new_zeros(self.shape)
        rows = self.rows if self.rows is not None else torch.arange(self.shape[0], device=out.device)
        cols = self.cols if self.cols is not None else torch.arange(self.shape[1], device=out.device)
        out[rows.unsqueeze(1), cols] = self.weight
        return out


def shrunk_linear(x: torch.Tensor, w: Shrunk, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ W.T + bias`` with ``W`` shrunk (:class:`Shrunk`): kept inputs selected, a dense matmul,
    outputs scattered back into place (removed rows give the bias). Any dtype dense ``F.linear`` takes.

    Example::

        >>> w = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> shrunk_linear(torch.ones(1, 2), Shrunk.from_dense(w), torch.tensor([0.5, 0.5])).tolist()
        [[1.5, 0.5]]
    """
    where = "shrunk_linear"
    if not isinstance(w, Shrunk):
        fail("w", where, "a Shrunk", None, got=type(w).__name__, fix="build it with Shrunk.from_dense.")
    out, inp = w.shape
    x2 = _check_input(x, inp, w.weight.device, w.weight.dtype, where, sparse=False)
    bias = _check_bias(bias, out, x2, where)
    xs = x2 if w.cols is None else x2.index_select(1, w.cols)
    if w.rows is None:
        return _unflatten(F.linear(xs, w.weight, bias), x)
    ys = F.linear(xs, w.weight)
    if bias is None:
        y = x2.new_zeros(x2.shape[0], out)
        y.index_copy_(1, w.rows, ys)
    else:
        y = bias.expand(x2.shape[0], out).clone()
        y.index_add_(1, w.rows, ys)
    return _unflatten(y, x)
