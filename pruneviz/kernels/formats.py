"""Compressed weight formats that :mod:`pruneviz.kernels` multiplies with dense activations.

Every format stores the 2-D matrix ``W`` of shape ``(out, in)`` that ``F.linear`` uses (``y = x @ W.T``);
all its tensors live on one device. A convolution weight ``(out, in, kh, kw)`` is stored as a matrix too:

- :class:`BlockSparse` and :class:`Bitmap` use :func:`pruneviz.kernels._layout.as_matrix`,
  ``(out, in * kh * kw)`` with the kernel position fastest — the column order of ``F.unfold``;
- :class:`NMSparse` uses the N:M view of :mod:`pruneviz.prune.allocation`, ``(out, kh * kw * in)``
  with the input channel fastest, because N:M groups run along input channels (as in NVIDIA's ASP).

``weight_shape`` keeps the original shape and :meth:`to_weight` restores it.

The three formats:

- **BSR** (:class:`BlockSparse`): ``(bo, bi)`` blocks, each side in 16..128 (``tl.dot`` needs at least 16
  and a block fits in on-chip memory); ``crow`` (out / bo + 1) indexes ``col`` and ``values``
  ``(nnz_blocks, bo, bi)`` per block row, as ``torch.sparse_bsr_tensor`` does. For block masks.
- **N:M** (:class:`NMSparse`, Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks"): ``values``
  ``(out, in * n / m)`` holds the ``n`` kept weights of every group of ``m`` consecutive inputs, and
  ``indices`` (uint8, same shape) each value's position 0..m-1 in its group, ascending within a group.
- **Bitmap** (:class:`Bitmap`): one bit per weight — ``bits`` ``(out, ceil(in / 32))`` int32, bit ``j`` of
  word ``w`` (least significant first) is column ``32 w + j`` — and the kept values row-major in
  ``values`` (nnz,). ``row_ptr`` (out + 1) and ``word_ptr`` (out, words) give the offset into ``values`` of
  a row's and of a word's first kept value, so a kernel can start decoding at any multiple of 32
  columns. For unstructured sparsity in the memory-bound regime (small batch), where loading fewer bytes
  is what makes a kernel faster.

Example::

    >>> w = torch.randn(64, 96) * (torch.rand(64, 96) < 0.3)
    >>> Bitmap.from_dense(w).to_dense().equal(w)
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from pruneviz._validation import check_choice, check_int, fail
from pruneviz.kernels._layout import as_matrix, compress_nm
from pruneviz.kernels._layout import nm_unview as _nm_unview
from pruneviz.kernels._layout import nm_view as _nm_view

__all__ = ["BLOCK_RANGE", "FORMATS", "Bitmap", "BlockSparse", "NMSparse", "from_mask", "pack_indices"]

BLOCK_RANGE = (16, 128)
"""Smallest and largest side of a :class:`BlockSparse` block."""

FORMATS = ("bitmap", "bsr", "nm")
"""Format names :func:`from_mask` accepts."""

_INT32_MAX = 2**31 - 1


def _check_weight(weight: Any, where: str, param: str = "weight") -> torch.Tensor:
    """A floating-point weight of at least 2 dimensions and no zero-sized axis, detached."""
    if not isinstance(weight, torch.Tensor):
        fail(param, where, "a torch.Tensor", type(weight).__name__, got=type(weight).__name__)
    if weight.ndim < 2 or weight.numel() == 0:
        fail(
            param,
            where,
            "a non-empty weight of shape (out, in) or (out, in, *kernel)",
            None,
            got=f"shape {tuple(weight.shape)}",
            fix="pass a Linear or Conv layer's .weight.",
        )
    if not weight.is_floating_point():
        fail(
            param,
            where,
            "a floating-point tensor",
            None,
            got=f"dtype {weight.dtype}",
            fix="convert it with weight.float().",
        )
    return weight.detach()


def _check_block(block: Any, where: str) -> tuple[int, int]:
    lo, hi = BLOCK_RANGE
    sides = block if isinstance(block, tuple | list) else (block, block)
    ok = len(sides) == 2 and all(
        isinstance(s, int) and not isinstance(s, bool) and lo <= s <= hi for s in sides
    )
    if not ok:
        fail(
            "block",
            where,
            f"an integer or a pair (bo, bi) of integers, each in [{lo}, {hi}]",
            block,
            "pass block=32 or block=(64, 64); smaller blocks are not worth a block-sparse kernel "
            "(use the 'bitmap' format) and larger ones do not fit on chip.",
        )
    return int(sides[0]), int(sides[1])


def _block_rows(crow: torch.Tensor) -> torch.Tensor:
    """The block-row index of every stored block."""
    counts = (crow[1:] - crow[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)


def _nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class BlockSparse:
    """Block-sparse row (BSR) matrix: the non-zero ``(bo, bi)`` blocks of a weight, row by block row.

    ``shape`` is the matrix ``(out, in)``, ``block`` is ``(bo, bi)`` (each dividing its side), ``crow``
    ``(out // bo + 1,)`` int32, ``col`` ``(nnz_blocks,)`` int32 (block-column of each stored block,
    ascending within a block row) and ``values`` ``(nnz_blocks, bo, bi)``. Build one with
    :meth:`from_dense` or :func:`from_mask`.

    Example::

        >>> w = torch.zeros(64, 64); w[:32, 32:] = 1.0
        >>> bsr = BlockSparse.from_dense(w, block=32)
        >>> bsr.col.tolist(), bsr.density
        ([1], 0.25)
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    weight_shape: tuple[int, ...] = ()

    @classmethod
    def from_dense(cls, weight: torch.Tensor, *, block: int | tuple[int, int]) -> BlockSparse:
        """Keep every block that holds a non-zero; ``weight`` is ``(out, in)`` or a conv weight."""
        return _bsr(weight, block, "BlockSparse.from_dense")

    @property
    def nnz_blocks(self) -> int:
        return int(self.col.numel())

    @property
    def density(self) -> float:
        """Kept blocks / all blocks."""
        bo, bi = self.block
        return self.nnz_blocks / ((self.shape[0] // bo) * (self.shape[1] // bi))

    @property
    def nbytes(self) -> int:
        return _nbytes(self.crow, self.col, self.values)

    def to_dense(self) -> torch.Tensor:
        """The ``(out, in)`` matrix, zeros outside the stored blocks."""
        (out, inp), (bo, bi) = self.shape, self.block
        blocks = self.values.new_zeros(out // bo, inp // bi, bo, bi)
        blocks[_block_rows(self.crow), self.col.long()] = self.values
        return blocks.permute(0, 2, 1, 3).reshape(out, inp)

    def to_weight(self) -> torch.Tensor:
        """The dense weight in its original shape (e.g. ``(out, in, kh, kw)`` for a convolution)."""
        return self.to_dense().reshape(self.weight_shape or self.shape)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> BlockSparse:
        """A copy on ``device`` with values of ``dtype`` (indices keep their integer type)."""
        return dataclasses.replace(
            self,
            crow=self.crow.to(device),
            col=self.col.to(device),
            values=self.values.to(device=device, dtype=dtype),
        )


def _bsr(weight: torch.Tensor, block: Any, where: str) -> BlockSparse:
    w = _check_weight(weight, where)
    bo, bi = _check_block(block, where)
    mat = as_matrix(w)
    out, inp = mat.shape
    if out % bo or inp % bi:
        fail(
            "block",
            where,
            f"a block size dividing the weight matrix {(out, inp)} (out, in * kernel)",
            block,
            f"pick a block (bo, bi) with bo dividing {out} and bi dividing {inp}, "
            "or use the 'bitmap' format for this layer.",
        )
    blocks = mat.reshape(out // bo, bo, inp // bi, bi).permute(0, 2, 1, 3)
    keep = (blocks != 0).any(dim=(2, 3))
    crow = torch.zeros(out // bo + 1, dtype=torch.int32, device=mat.device)
    crow[1:] = keep.sum(1).cumsum(0)
    col = keep.nonzero()[:, 1].to(torch.int32)  # row-major order: block rows, then columns ascending
    values = blocks[keep].contiguous()
    return BlockSparse((out, inp), (bo, bi), crow, col, values, tuple(w.shape))


@dataclass(frozen=True)
class NMSparse:
    """N:M-compressed matrix: the ``n`` kept weights of every group of ``m`` consecutive inputs.

    ``values`` ``(out, in * n // m)`` holds the kept weights of each group in column order; ``indices``
    (uint8, same shape) holds each value's position ``0..m-1`` within its group. A group with fewer than
    ``n`` non-zeros is padded with stored zeros. ``shape`` is ``(out, in)``; for a convolution the columns
    run with the input channel fastest (see the module docstring).

    ``meta`` holds the same positions packed for the kernels (:func:`pack_indices`): ``meta_bits`` bits
    each (2 for m = 4), ``32 // meta_bits`` per int32 word, least significant first, each row starting a
    new word — a quarter of the bytes of ``indices``, which matters when loading is the bottleneck.

    Example::

        >>> w = torch.tensor([[0.0, 1.0, 0.0, 2.0]])
        >>> nm = NMSparse.from_dense(w, n=2, m=4)
        >>> nm.values.tolist(), nm.indices.tolist()
        ([[1.0, 2.0]], [[1, 3]])
    """

    shape: tuple[int, int]
    n: int
    m: int
    values: torch.Tensor
    indices: torch.Tensor
    weight_shape: tuple[int, ...] = ()
    meta: torch.Tensor | None = None

    @classmethod
    def from_dense(cls, weight: torch.Tensor, *, n: int = 2, m: int = 4) -> NMSparse:
        """Compress a weight with at most ``n`` non-zeros in every group of ``m`` consecutive inputs."""
        return _nm(weight, n, m, "NMSparse.from_dense")

    @property
    def density(self) -> float:
        """Stored values / all weights (``n / m``; padded zeros count as stored)."""
        return self.n / self.m

    @property
    def meta_bits(self) -> int:
        return _meta_bits(self.m)

    @property
    def nbytes(self) -> int:
        """Bytes a kernel reads: values and packed positions (``indices`` is the readable copy)."""
        return _nbytes(self.values, self.meta if self.meta is not None else self.indices)

    def to_dense(self) -> torch.Tensor:
        """The ``(out, in)`` matrix."""
        out, inp = self.shape
        groups = inp // self.m
        dense = self.values.new_zeros(out, groups, self.m)
        dense.scatter_(
            2,
            self.indices.long().reshape(out, groups, self.n),
            self.values.reshape(out, groups, self.n),
        )
        return dense.reshape(out, inp)

    def to_weight(self) -> torch.Tensor:
        """The dense weight in its original shape (conv columns moved back to channel-first)."""
        return _nm_unview(self.to_dense(), torch.Size(self.weight_shape or self.shape))

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> NMSparse:
        """A copy on ``device`` with values of ``dtype`` (indices stay uint8)."""
        return dataclasses.replace(
            self,
            values=self.values.to(device=device, dtype=dtype),
            indices=self.indices.to(device),
            meta=None if self.meta is None else self.meta.to(device),
        )


def _meta_bits(m: int) -> int:
    return next(b for b in (1, 2, 4, 8) if 2**b >= m)


def pack_indices(indices: torch.Tensor, m: int) -> torch.Tensor:
    """N:M positions ``(out, k)`` (uint8, each < m) packed into int32 words ``(out, ceil(k / per_word))``:
    ``bits`` = 1, 2, 4 or 8 bits each (the fewest that hold m - 1), ``per_word = 32 // bits``, entry
    ``e`` of a row in word ``e // per_word`` at bit ``(e % per_word) * bits``."""
    bits = _meta_bits(m)
    per_word = 32 // bits
    out, k = indices.shape
    words = -(-k // per_word)
    padded = torch.zeros(out, words * per_word, dtype=torch.int64, device=indices.device)
    padded[:, :k] = indices.long()
    shifts = torch.arange(per_word, device=indices.device) * bits
    packed = (padded.reshape(out, words, per_word) << shifts).sum(-1)
    return torch.where(packed > _INT32_MAX, packed - 2**32, packed).to(torch.int32)


def _check_nm(n: Any, m: Any, where: str) -> tuple[int, int]:
    m = check_int(m, "m", where, minimum=2, maximum=255)
    n = check_int(n, "n", where, minimum=1, maximum=m - 1)
    return n, m


def _check_groups(keep: torch.Tensor, n: int, m: int, param: str, where: str) -> None:
    """``keep`` (out, in) bool in the N:M view: at most ``n`` True in every group of ``m``."""
    counts = keep.reshape(keep.shape[0], -1, m).sum(-1)
    bad = counts > n
    if bool(bad.any()):
        row, group = (int(i) for i in bad.nonzero()[0])
        fail(
            param,
            where,
            f"{n}:{m} sparse (at most {n} non-zeros in every group of {m} consecutive inputs)",
            None,
            got=(
                f"{int(bad.sum())} groups with more than {n} non-zeros; the first is row {row}, columns "
                f"{group * m}..{group * m + m - 1}, with {int(counts[row, group])}"
            ),
            fix=f"prune with structure='{n}:{m}' (pruneviz.prune.allocation.nm_mask), or store this layer "
            "in the 'bsr' or 'bitmap' format.",
        )


def _nm(weight: torch.Tensor, n: Any, m: Any, where: str, mask: torch.Tensor | None = None) -> NMSparse:
    w = _check_weight(weight, where)
    n, m = _check_nm(n, m, where)
    if w.shape[1] % m:
        fail(
            "weight",
            where,
            f"an input dimension divisible by m={m}",
            None,
            got=f"shape {tuple(w.shape)} with {w.shape[1]} inputs",
            fix=f"choose an m that divides {w.shape[1]}, or store this layer in the 'bitmap' format.",
        )
    if mask is not None:
        _check_groups(_nm_view(mask), n, m, "mask", where)
        w = torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
    _check_groups(_nm_view(w) != 0, n, m, "weight", where)
    values, indices = compress_nm(_nm_view(w), n, m)
    out = w.shape[0]
    return NMSparse(
        (out, w[0].numel()),
        n,
        m,
        values.contiguous(),
        indices.contiguous(),
        tuple(w.shape),
        pack_indices(indices, m),
    )


@dataclass(frozen=True)
class Bitmap:
    """Bitmap-compressed matrix: one bit per weight and the kept values, row-major.

    ``bits`` ``(out, ceil(in / 32))`` int32 (bit ``j`` of word ``w`` is column ``32 w + j``; padding bits
    are 0), ``values`` ``(nnz,)``, ``row_ptr`` ``(out + 1,)`` int32 and ``word_ptr`` ``(out, words)``
    int32, the offset into ``values`` of each row's and each word's first kept value.

    Example::

        >>> w = torch.tensor([[0.0, 3.0, 0.0, 4.0]])
        >>> bm = Bitmap.from_dense(w)
        >>> bm.bits.tolist(), bm.values.tolist()
        ([[10]], [3.0, 4.0])
    """

    shape: tuple[int, int]
    bits: torch.Tensor
    values: torch.Tensor
    row_ptr: torch.Tensor
    word_ptr: torch.Tensor
    weight_shape: tuple[int, ...] = ()

    @classmethod
    def from_dense(cls, weight: torch.Tensor) -> Bitmap:
        """Keep every non-zero of ``weight`` (``(out, in)`` or a conv weight)."""
        return _bitmap(weight, "Bitmap.from_dense")

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def density(self) -> float:
        """Kept weights / all weights."""
        return self.nnz / (self.shape[0] * self.shape[1])

    @property
    def nbytes(self) -> int:
        return _nbytes(self.bits, self.values, self.row_ptr, self.word_ptr)

    def keep(self) -> torch.Tensor:
        """The ``(out, in)`` bool mask of kept weights."""
        shifts = torch.arange(32, device=self.bits.device)
        unpacked = (self.bits.long().unsqueeze(-1) >> shifts) & 1
        return unpacked.reshape(self.shape[0], -1)[:, : self.shape[1]].bool()

    def to_dense(self) -> torch.Tensor:
        """The ``(out, in)`` matrix."""
        dense = self.values.new_zeros(self.shape)
        dense[self.keep()] = self.values
        return dense

    def to_weight(self) -> torch.Tensor:
        """The dense weight in its original shape."""
        return self.to_dense().reshape(self.weight_shape or self.shape)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Bitmap:
        """A copy on ``device`` with values of ``dtype`` (bits and offsets keep their integer type)."""
        return dataclasses.replace(
            self,
            bits=self.bits.to(device),
            values=self.values.to(device=device, dtype=dtype),
            row_ptr=self.row_ptr.to(device),
            word_ptr=self.word_ptr.to(device),
        )


def _bitmap(weight: torch.Tensor, where: str) -> Bitmap:
    w = _check_weight(weight, where)
    mat = as_matrix(w)
    out, inp = mat.shape
    keep = mat != 0
    nnz = int(keep.sum())
    if nnz > _INT32_MAX:
        fail(
            "weight",
            where,
            f"a matrix with at most {_INT32_MAX} non-zeros (int32 offsets)",
            None,
            got=f"{nnz}",
            fix="split the layer, or use the 'bsr' format.",
        )
    words = -(-inp // 32)
    padded = torch.zeros(out, words * 32, dtype=torch.int64, device=mat.device)
    padded[:, :inp] = keep
    weights = torch.ones(32, dtype=torch.int64, device=mat.device) << torch.arange(32, device=mat.device)
    packed = (padded.reshape(out, words, 32) * weights).sum(-1)
    bits = torch.where(packed > _INT32_MAX, packed - 2**32, packed).to(torch.int32)
    per_word = padded.reshape(out, words, 32).sum(-1).flatten()
    word_ptr = (per_word.cumsum(0) - per_word).reshape(out, words).to(torch.int32)
    row_ptr = torch.zeros(out + 1, dtype=torch.int32, device=mat.device)
    row_ptr[1:] = keep.sum(1).cumsum(0)
    return Bitmap((out, inp), bits, mat[keep].contiguous(), row_ptr, word_ptr, tuple(w.shape))


_FORMAT_OPTIONS = {"bsr": {"block"}, "nm": {"n", "m"}, "bitmap": set()}


def from_mask(
    weight: torch.Tensor, mask: torch.Tensor, fmt: str, **options: Any
) -> BlockSparse | NMSparse | Bitmap:
    """Apply a keep-mask (bool, the weight's shape, as in :class:`pruneviz.prune.masks.Masks`) to a
    weight and store the result in ``fmt``: ``"bsr"`` (needs ``block=``), ``"nm"`` (``n=2, m=4`` by
    default; the *mask* must be N:M, whatever the weights) or ``"bitmap"``.

    Example::

        >>> w = torch.randn(32, 32)
        >>> mask = torch.zeros(32, 32, dtype=torch.bool); mask[:16] = True
        >>> from_mask(w, mask, "bsr", block=16).density
        0.5
    """
    where = "from_mask"
    fmt = check_choice(fmt, "fmt", where, FORMATS)
    w = _check_weight(weight, where)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != w.shape:
        got = (
            f"dtype {mask.dtype}, shape {tuple(mask.shape)}"
            if isinstance(mask, torch.Tensor)
            else type(mask).__name__
        )
        fail(
            "mask",
            where,
            f"a bool tensor of the weight's shape {tuple(w.shape)}",
            None,
            got=got,
            fix="pass masks[layer_name] from a pruneviz Masks (True keeps a weight).",
        )
    unknown = sorted(set(options) - _FORMAT_OPTIONS[fmt])
    if unknown:
        fail(
            unknown[0],
            where,
            f"one of the options of the {fmt!r} format ({sorted(_FORMAT_OPTIONS[fmt]) or 'none'})",
            options[unknown[0]],
            f"drop {unknown[0]}=... for fmt={fmt!r}.",
        )
    mask = mask.to(w.device)
    if fmt == "nm":
        return _nm(w, options.get("n", 2), options.get("m", 4), where, mask=mask)
    masked = torch.where(mask, w, torch.zeros((), dtype=w.dtype, device=w.device))
    if fmt == "bsr":
        if "block" not in options:
            fail("block", where, "given for fmt='bsr'", None, "pass block=32 or (bo, bi).", got="nothing")
        return _bsr(masked, options["block"], where)
    return _bitmap(masked, where)
