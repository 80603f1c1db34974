"""Sparse kernels for pruned weights, and a dispatcher that never makes a layer slower than dense.

- Formats (:mod:`pruneviz.kernels.formats`): :class:`BlockSparse` (BSR), :class:`NMSparse` (2:4 and
  other N:M), :class:`Bitmap` (unstructured), built from a weight or with :func:`from_mask`.
- CPU paths (:mod:`pruneviz.kernels.cpu`): pruneviz's block kernel :func:`block_ell_linear` on a
  :class:`BlockELL`, torch's CSR/BSR (:func:`torch_csr_linear`, :func:`torch_bsr_linear`) and
  structurally shrunk dense (:func:`shrunk_linear` on a :class:`Shrunk`).
- Triton kernels (:mod:`pruneviz.kernels.triton_ops`; CUDA, or ``TRITON_INTERPRET=1`` on CPU):
  ``bsr_linear``, ``nm_linear``, ``bitmap_linear`` — loaded on first attribute access, and ``triton``
  itself only when a kernel first runs.
- The dispatcher (:mod:`pruneviz.kernels.dispatch`): :func:`select_path` times the applicable paths per
  layer and batch size and caches the choice per machine; :func:`choose_path` is its rule.
- Modules (:mod:`pruneviz.kernels.modules`): :func:`sparsify` swaps a pruned model's layers for
  :class:`SparseLinear` / :class:`SparseConv2d`; :func:`speedup_table` reports measured vs
  theoretical speedup per layer.

Example::

    >>> from pruneviz.kernels import sparsify, speedup_table
    >>> fast = sparsify(pruned_model, batch_size=[1, 16])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from pruneviz.kernels.cpu import (
    BlockELL,
    Shrunk,
    block_ell_linear,
    shrunk_linear,
    to_torch_bsr,
    to_torch_csr,
    torch_bsr_linear,
    torch_csr_linear,
)
from pruneviz.kernels.dispatch import (
    PATHS,
    Selection,
    Structure,
    cache_path,
    choose_path,
    machine_fingerprint,
    select_path,
    structure_of,
)
from pruneviz.kernels.formats import Bitmap, BlockSparse, NMSparse, from_mask
from pruneviz.kernels.modules import SparseConv2d, SparseLinear, sparsify, speedup_table

__all__ = [
    "PATHS",
    "Bitmap",
    "BlockELL",
    "BlockSparse",
    "NMSparse",
    "Selection",
    "Shrunk",
    "SparseConv2d",
    "SparseLinear",
    "Structure",
    "bitmap_linear",
    "block_ell_linear",
    "bsr_linear",
    "cache_path",
    "choose_path",
    "from_mask",
    "machine_fingerprint",
    "nm_linear",
    "select_path",
    "shrunk_linear",
    "sparsify",
    "speedup_table",
    "structure_of",
    "to_torch_bsr",
    "to_torch_csr",
    "torch_bsr_linear",
    "torch_csr_linear",
    "triton_available",
]

_TRITON = {"bsr_linear": "bsr_linear", "nm_linear": "nm_linear", "bitmap_linear": "bitmap_linear"}
_TRITON["triton_available"] = "available"


def __getattr__(name: str) -> Any:
    """The Triton kernels, imported on first access (their module loads ``triton`` only when run)."""
    if name in _TRITON:
        from pruneviz.kernels import triton_ops

        return getattr(triton_ops, _TRITON[name])
    raise AttributeError(f"module 'pruneviz.kernels' has no attribute {name!r}")
