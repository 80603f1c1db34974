"""From scores to exact masks: structures (unstructured, N:M, blocks) and allocations across layers.

Counts are exact: a layer (uniform allocation) or the whole model (global allocations) loses exactly
``round(sparsity * n)`` of its ``n`` prunable units (weights or blocks); ties are broken by position, so
the same scores always give the same mask.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruneviz._validation import check_choice, fail
from pruneviz.kernels._layout import nm_unview as _nm_unview
from pruneviz.kernels._layout import nm_view as _nm_view
from pruneviz.prune.masks import Masks
from pruneviz.prune.weights import PrunableWeight, as_weights

ALLOCATIONS = ("uniform", "global", "global_floor", "erk", "per_row")


@dataclass(frozen=True)
class Structure:
    """What is removed together: single weights, ``n`` of every ``m`` along the input, blocks, or channels.

    Parse one from a string with :func:`parse_structure`: ``"unstructured"``, ``"2:4"`` (N:M),
    ``"block:16x16"`` (or ``"block:16"``), ``"channel"``.
    """

    kind: str  # "unstructured" | "nm" | "block" | "channel"
    n: int = 0
    m: int = 0
    block: tuple[int, int] = (1, 1)

    @property
    def name(self) -> str:
        if self.kind == "nm":
            return f"{self.n}:{self.m}"
        if self.kind == "block":
            return f"block:{self.block[0]}x{self.block[1]}"
        return self.kind

    @property
    def fixed_sparsity(self) -> float | None:
        return 1.0 - self.n / self.m if self.kind == "nm" else None


def parse_structure(structure: str | Structure, *, where: str = "prune") -> Structure:
    """Parse ``"unstructured"``, ``"N:M"``, ``"block:HxW"`` / ``"block:B"`` or ``"channel"``."""
    if isinstance(structure, Structure):
        return structure
    expected = "'unstructured', 'N:M' (e.g. '2:4'), 'block:HxW' (e.g. 'block:16x16') or 'channel'"
    if not isinstance(structure, str):
        fail("structure", where, expected, structure, "pass a string such as structure='2:4'.")
    s = structure.strip().lower()
    if s in ("unstructured", "channel"):
        return Structure(s)
    if mo := re.fullmatch(r"(\d+):(\d+)", s):
        n, m = int(mo[1]), int(mo[2])
        if not 0 < n < m:
            fail("structure", where, "N:M with 0 < N < M (e.g. '2:4', '4:8')", structure, "keep N below M.")
        return Structure("nm", n=n, m=m)
    if mo := re.fullmatch(r"block:(\d+)(?:x(\d+))?", s):
        h = int(mo[1])
        w = int(mo[2]) if mo[2] else h
        if h < 1 or w < 1:
            fail("structure", where, "positive block sizes", structure, "use e.g. 'block:16x16'.")
        return Structure("block", block=(h, w))
    fail("structure", where, expected, structure, "check the spelling, e.g. 'block:16x16' or '2:4'.")


def _matrix(t: torch.Tensor) -> torch.Tensor:
    """A weight as ``(out, in * kernel)``; for N:M the input channel is made the fastest axis."""
    return t.reshape(t.shape[0], -1)


def _prune_lowest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of ``scores``'s shape with exactly the ``k`` lowest entries removed (ties by position)."""
    flat = scores.flatten()
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    return keep.reshape(scores.shape)


def check_nm_divisible(in_channels: int, structure: Structure, name: str, where: str) -> None:
    """N:M groups run along the input dimension, which must be a multiple of M."""
    if in_channels % structure.m:
        fail(
            "structure",
            where,
            f"N:M groups that divide every layer's input dimension; layer {name!r} has {in_channels} inputs, "
            f"not divisible by M={structure.m}",
            structure.name,
            f"exclude the layer (exclude=[{name!r}, ...]) or choose an M that divides {in_channels}.",
        )


def nm_mask(
    scores: torch.Tensor, n: int, m: int, *, name: str = "layer", where: str = "prune"
) -> torch.Tensor:
    """Keep the ``n`` highest scores in every group of ``m`` consecutive inputs of each output row."""
    check_nm_divisible(scores.shape[1], Structure("nm", n=n, m=m), name, where)
    view = _nm_view(scores)
    groups = view.reshape(view.shape[0], -1, m)
    order = torch.argsort(groups, dim=-1, stable=True)  # ascending within each group
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., : m - n], False)
    return _nm_unview(keep.reshape(view.shape), scores.shape)


def _block_scores(scores: torch.Tensor, block: tuple[int, int], name: str, where: str) -> torch.Tensor:
    mat = _matrix(scores)
    bh, bw = block
    if mat.shape[0] % bh or mat.shape[1] % bw:
        fail(
            "structure",
            where,
            f"a block size that divides every layer's weight; layer {name!r} is {tuple(mat.shape)} "
            "as (out, in*kernel)",
            f"block:{bh}x{bw}",
            f"exclude the layer (exclude=[{name!r}, ...]) or pick a block size dividing {tuple(mat.shape)}.",
        )
    return mat.reshape(mat.shape[0] // bh, bh, mat.shape[1] // bw, bw).mean(dim=(1, 3))


def _expand_blocks(keep_blocks: torch.Tensor, block: tuple[int, int], shape: torch.Size) -> torch.Tensor:
    bh, bw = block
    full = keep_blocks.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return full.reshape(shape)


def erk_densities(layers: Mapping[str, PrunableWeight | nn.Module], sparsity: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020): density ∝ sum(shape) / prod(shape), scaled so the
    total density is ``1 - sparsity``; layers that would exceed density 1 are kept dense."""
    weights = as_weights(layers)
    sizes = {n: w.weight.numel() for n, w in weights.items()}
    raw = {n: sum(w.shape) / math.prod(w.shape) for n, w in weights.items()}
    total_keep = (1.0 - sparsity) * sum(sizes.values())
    dense: set[str] = set()
    eps = 0.0
    while True:
        budget = total_keep - sum(sizes[n] for n in dense)
        free = [n for n in layers if n not in dense]
        if not free or budget <= 0:
            break
        eps = budget / sum(raw[n] * sizes[n] for n in free)
        over = [n for n in free if eps * raw[n] > 1.0 + 1e-12]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else min(1.0, eps * raw[n]) for n in layers}


def _exact_counts(
    sizes: Mapping[str, int], densities: Mapping[str, float], total_prune: int
) -> dict[str, int]:
    """Per-layer prune counts near ``(1 - density) * size`` that add up to ``total_prune`` exactly."""
    want = {n: (1.0 - densities[n]) * sizes[n] for n in sizes}
    counts = {n: min(sizes[n], max(0, math.floor(v))) for n, v in want.items()}
    short = total_prune - sum(counts.values())
    by_fraction = sorted(sizes, key=lambda n: (-(want[n] - math.floor(want[n])), n))
    for n in by_fraction:
        if short <= 0:
            break
        if counts[n] < sizes[n] and densities[n] < 1.0:
            counts[n] += 1
            short -= 1
    return counts


def allocate(
    scores: Mapping[str, torch.Tensor],
    *,
    sparsity: float | None,
    structure: Structure,
    allocation: str,
    layers: Mapping[str, PrunableWeight | nn.Module] | None = None,
    floor: float = 0.01,
    where: str = "prune",
) -> Masks:
    """Turn per-weight ``scores`` into exact keep-masks under a structure and an allocation.

    ``uniform``: every layer loses ``round(sparsity * n_layer)`` units. ``global``: one ranking across
    layers. ``global_floor``: global, but each layer keeps at least ``max(1, ceil(floor * n_layer))``
    units. ``erk``: per-layer sparsities from Erdős–Rényi-Kernel. ``per_row``: every output row loses
    ``round(sparsity * row_length)`` weights (Wanda's comparison group). N:M ignores the allocation.

    Rows, N:M groups and blocks are taken in each weight's ``(out, in)`` orientation
    (:meth:`~pruneviz.prune.weights.PrunableWeight.oriented`) when ``layers`` gives the prunable weights;
    without ``layers`` the scores are taken as ``(out, in, *kernel)`` already.
    """
    check_choice(allocation, "allocation", where, ALLOCATIONS)
    weights = as_weights(layers) if layers is not None else {}
    oriented = {n: weights[n].oriented(s) if n in weights else s for n, s in scores.items()}
    masks = _allocate(oriented, sparsity, structure, allocation, layers, floor, where)
    return Masks({n: weights[n].from_oriented(m) if n in weights else m for n, m in masks.items()})


def _allocate(
    scores: Mapping[str, torch.Tensor],
    sparsity: float | None,
    structure: Structure,
    allocation: str,
    layers: Mapping[str, PrunableWeight | nn.Module] | None,
    floor: float,
    where: str,
) -> dict[str, torch.Tensor]:
    """:func:`allocate` on scores in ``(out, in, *kernel)`` orientation; plain dict of keep-masks."""
    if structure.kind == "nm":
        return {n: nm_mask(s, structure.n, structure.m, name=n, where=where) for n, s in scores.items()}
    if sparsity is None:
        fail("sparsity", where, "a float in [0, 1) for this structure", None, "pass e.g. sparsity=0.9.")
    if structure.kind == "block":
        units = {n: _block_scores(s, structure.block, n, where) for n, s in scores.items()}
    elif structure.kind == "unstructured":
        units = dict(scores)
    else:
        fail(
            "structure",
            where,
            "'unstructured', 'N:M' or 'block:HxW' for mask pruning",
            structure.name,
            "use pruneviz.prune.prune_channels to remove channels.",
        )

    def expand(name: str, keep_units: torch.Tensor) -> torch.Tensor:
        if structure.kind == "block":
            return _expand_blocks(keep_units, structure.block, scores[name].shape)
        return keep_units

    if allocation == "per_row":
        out = {}
        for n, u in units.items():
            mat = _matrix(u)
            k = round(sparsity * mat.shape[1])
            order = torch.argsort(mat, dim=1, stable=True)
            keep = torch.ones_like(mat, dtype=torch.bool)
            keep.scatter_(1, order[:, :k], False)
            out[n] = expand(n, keep.reshape(u.shape))
        return out
    if allocation == "uniform":
        return {n: expand(n, _prune_lowest(u, round(sparsity * u.numel()))) for n, u in units.items()}
    if allocation == "erk":
        if layers is None:
            fail(
                "layers",
                where,
                "the prunable layers (needed for ERK)",
                None,
                "pass layers=prunable_layers(model).",
            )
        dens = erk_densities(layers, sparsity)
        sizes = {n: u.numel() for n, u in units.items()}
        counts = _exact_counts(sizes, dens, round(sparsity * sum(sizes.values())))
        return {n: expand(n, _prune_lowest(u, counts[n])) for n, u in units.items()}

    names = list(units)
    flat = torch.cat([units[n].flatten().float() for n in names])
    unit_sizes = [units[n].numel() for n in names]
    total_prune = round(sparsity * flat.numel())
    if allocation == "global":
        keep_flat = _prune_lowest(flat, total_prune)
    else:  # global_floor: reserve each layer's best units, rank the rest globally
        reserved = torch.zeros(flat.numel(), dtype=torch.bool)
        start = 0
        for size, n in zip(unit_sizes, names, strict=True):
            k_keep = min(size, max(1, math.ceil(floor * size)))
            top = torch.argsort(units[n].flatten().float(), stable=True, descending=True)[:k_keep]
            reserved[start + top] = True
            start += size
        if total_prune > int((~reserved).sum()):
            fail(
                "sparsity",
                where,
                f"at most {1 - int(reserved.sum()) / flat.numel():.4f} with a per-layer floor of {floor}",
                sparsity,
                "lower the sparsity or the floor.",
            )
        ranked = flat.clone()
        ranked[reserved] = float("inf")
        keep_flat = _prune_lowest(ranked, total_prune)
    out, start = {}, 0
    for size, n in zip(unit_sizes, names, strict=True):
        out[n] = expand(n, keep_flat[start : start + size].reshape(units[n].shape))
        start += size
    return out
