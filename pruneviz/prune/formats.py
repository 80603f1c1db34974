"""Export: masks folded into weights, and the sparse formats ``pruneviz.kernels`` consumes.

The formats, in one place (weights are ``(out, in)`` matrices; convolutions are flattened to
``(out, in * kernel)``, N:M with the input channel fastest as in :mod:`pruneviz.prune.allocation`):

- **CSR**: ``torch.sparse_csr_tensor`` — ``crow_indices`` (out + 1), ``col_indices`` and ``values``
  (one per non-zero). Suits unstructured sparsity at high sparsity.
- **BSR**: ``torch.sparse_bsr_tensor`` with ``(bh, bw)`` blocks — ``crow_indices`` over block rows,
  ``col_indices`` of non-zero blocks, ``values`` of shape ``(nnz_blocks, bh, bw)``. Suits block masks.
- **N:M**: :class:`NMCompressed` — ``values (out, in * N / M)`` holding the kept weights of each group in
  order, and ``indices (out, in * N / M)`` (uint8) giving each value's position 0..M-1 in its group.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from pruneviz._validation import fail
from pruneviz.kernels._layout import as_matrix, compress_nm, nm_unview, nm_view
from pruneviz.prune.allocation import Structure, check_nm_divisible
from pruneviz.prune.masks import Masks


def fold_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """A copy of ``model`` with the masks multiplied into its weights (no masks or hooks left)."""
    return masks.apply_(copy.deepcopy(model))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` with every BatchNorm that directly follows a convolution folded
    into it (``w' = w·γ/σ``, ``b' = (b - μ)·γ/σ + β``), traced with ``torch.fx``. Fewer operators per
    forward pass — the export step before measuring latency. Pruned weights stay exactly zero.
    """
    return fold_batchnorm_pairs(model)[0]


def fold_batchnorm_pairs(model: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """:func:`fold_batchnorm`, and which BatchNorm went into which convolution (``{conv: norm}``, by the
    modules' qualified names in ``model``; the folded copy keeps the convolution's name), so that a
    caller can fold again after moving the weights."""
    import torch.fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:  # data-dependent control flow and the like
        raise fail(
            "model",
            "fold_batchnorm",
            "a model torch.fx can trace (no data-dependent control flow)",
            type(model).__name__,
            f"measure the eager model instead ({type(exc).__name__}: {exc}).",
        ) from exc
    modules = dict(graph.named_modules())
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    pairs: dict[str, str] = {}
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], norms):
            continue
        prev = node.args[0]
        if not (isinstance(prev, torch.fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        target = prev.target  # a call_module node's target is the module's qualified name
        if not isinstance(target, str):
            continue
        conv = modules[target]
        if not isinstance(conv, nn.Conv1d | nn.Conv2d):
            continue
        fused = fuse_conv_bn_eval(conv, modules[node.target])
        parent, _, name = target.rpartition(".")
        setattr(graph.get_submodule(parent) if parent else graph, name, fused)
        pairs[target] = str(node.target)
        node.replace_all_uses_with(prev)
        graph.graph.erase_node(node)
    graph.graph.lint()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph.eval(), pairs


def export_inference(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1) -> nn.Module:
    """The deployable CPU form of a (shrunk) model: BatchNorm folded (:func:`fold_batchnorm`), then traced
    and frozen with TorchScript on an input of ``(batch_size, *input_shape)``.

    Freezing removes the per-module Python overhead that dominates small-batch CPU latency. TorchScript
    is deprecated upstream in favour of ``torch.compile``, but measured here (``benchmarks/structured.py``)
    it is the faster CPU path for small CNNs: ``torch.compile`` took ~40 s to compile ResNet-20 and its
    batch-1 speedup of a 50 %-channel-pruned ResNet-20 was 1.4x against 1.9-2.1x for a frozen trace.
    """
    folded = fold_batchnorm(model)
    example = torch.zeros(batch_size, *input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(folded, example))


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """CSR of the weight matrix (zeros dropped)."""
    return as_matrix(weight).to_sparse_csr()


def to_bsr(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """BSR of the weight matrix with ``block`` = (rows, cols) blocks; all-zero blocks are dropped."""
    mat = as_matrix(weight)
    bh, bw = block
    if mat.shape[0] % bh or mat.shape[1] % bw:
        fail("block", "to_bsr", f"a block size dividing the weight matrix {tuple(mat.shape)}", block)
    with warnings.catch_warnings():  # torch marks BSR as beta; the conversion itself is exact
        warnings.simplefilter("ignore", UserWarning)
        return mat.to_sparse_bsr((bh, bw))


@dataclass(frozen=True)
class NMCompressed:
    """N:M-compressed weight: the kept values and their positions within each group of M."""

    values: torch.Tensor
    indices: torch.Tensor
    shape: tuple[int, ...]
    n: int
    m: int

    def to_dense(self) -> torch.Tensor:
        rows = self.values.shape[0]
        groups = self.values.shape[1] // self.n
        dense = torch.zeros(rows, groups, self.m, dtype=self.values.dtype)
        dense.scatter_(
            2, self.indices.long().reshape(rows, groups, self.n), self.values.reshape(rows, groups, self.n)
        )
        return nm_unview(dense.reshape(rows, groups * self.m), torch.Size(self.shape))


def to_nm(weight: torch.Tensor, n: int, m: int) -> NMCompressed:
    """Compress a weight that satisfies N:M (at most N non-zeros in every group of M along the input)."""
    w = weight.detach()
    check_nm_divisible(w.shape[1], Structure("nm", n=n, m=m), "weight", "to_nm")
    flat = nm_view(w)
    groups = flat.reshape(flat.shape[0], -1, m)
    nonzero = (groups != 0).sum(-1)
    if bool((nonzero > n).any()):
        fail(
            "weight",
            "to_nm",
            f"at most {n} non-zeros in every group of {m}",
            None,
            got=f"up to {int(nonzero.max())}",
        )
    values, indices = compress_nm(flat, n, m)
    return NMCompressed(values, indices, tuple(w.shape), n, m)
