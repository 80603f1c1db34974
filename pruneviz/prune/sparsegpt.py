"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning with second-order weight reconstruction.

For a layer with weights ``W`` (rows = outputs) and calibration inputs ``X`` (columns = tokens), the
layer-wise problem is ``min ||W X - Ŵ X||²`` subject to Ŵ's sparsity pattern. With ``H = X Xᵀ + λI``,
columns are processed left to right in blocks: the mask of a block is chosen by ``w² / [H⁻¹]_jj²``, every
pruned weight's error is pushed onto the not-yet-processed columns through the Cholesky factor of H⁻¹
(the optimal brain surgeon update), and the block's accumulated error updates the remaining columns.
"""

from __future__ import annotations

import torch

from pruneviz._validation import fail
from pruneviz.prune.allocation import Structure


def sparsegpt_layer(
    weight: torch.Tensor,
    inputs: torch.Tensor | None = None,
    *,
    gram: torch.Tensor | None = None,
    sparsity: float | None,
    structure: Structure,
    block_size: int = 128,
    damp: float = 0.01,
    column_order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune and reconstruct one weight matrix.

    Parameters
    ----------
    weight : (rows, cols) tensor
    inputs : (cols, tokens) tensor, the layer's calibration inputs (see ``layer_inputs``); or
    gram : (cols, cols) tensor ``X Xᵀ`` of those inputs (see ``layer_input_gram``) — pass exactly one.
    sparsity : fraction of weights removed (unstructured: exactly ``round(sparsity * numel)``);
        ignored for N:M.
    structure : unstructured or N:M (groups of ``m`` consecutive columns in ``column_order``).
    column_order : optional permutation of the columns to process in (N:M groups follow it).

    Returns ``(new_weight, keep_mask)``, both ``(rows, cols)``; pruned entries are exactly zero.
    """
    if structure.kind not in ("unstructured", "nm"):
        fail("structure", "sparsegpt", "'unstructured' or 'N:M'", structure.name)
    if structure.kind == "nm":
        fraction = 0.0  # unused: N:M fixes the count in every group
    elif sparsity is None:
        fail(
            "sparsity",
            "sparsegpt_layer",
            "a float in [0, 1) for unstructured pruning",
            None,
            "pass e.g. sparsity=0.5.",
        )
    else:
        fraction = sparsity
    w_orig = weight.detach().double()
    rows, cols = w_orig.shape
    perm = torch.arange(cols) if column_order is None else column_order
    inv = torch.argsort(perm)
    W = w_orig[:, perm].clone()
    if gram is not None and inputs is None:
        G = gram.double()
    elif inputs is not None and gram is None:
        G = inputs.double() @ inputs.double().T
    else:
        fail("inputs", "sparsegpt_layer", "given, or gram given instead (exactly one of the two)", None)
    H = G[perm][:, perm].clone()
    # Inputs that are always zero: their weights never affect the output. Unit curvature keeps H
    # invertible; no error flows to or from them (their rows and columns of H are zero elsewhere).
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=torch.float64)
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    U = torch.linalg.cholesky(Hinv, upper=True)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    if structure.kind == "nm":
        block_size = structure.m * max(1, block_size // structure.m)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        Err1 = torch.zeros_like(W1)
        d = torch.diag(U1)
        if structure.kind == "unstructured":
            # prune counts by cumulative rounding, so the layer total is exactly round(sparsity * numel)
            k = round(fraction * i2 * rows) - round(fraction * i1 * rows)
            tmp = (W1**2 / d[None, :] ** 2).flatten()
            mask1 = torch.zeros(W1.numel(), dtype=torch.bool)
            mask1[torch.argsort(tmp, stable=True)[:k]] = True
            mask1 = mask1.reshape(W1.shape)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            w = W1[:, i]
            if structure.kind == "nm" and (i1 + i) % structure.m == 0:
                span = slice(i, i + structure.m)
                tmp = W1[:, span] ** 2 / d[span][None, :] ** 2
                idx = torch.argsort(tmp, dim=1, stable=True)[:, : structure.m - structure.n]
                _scatter_true(mask1, span, idx)
            q = w.clone()
            q[mask1[:, i]] = 0.0
            err = (w - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            W1[:, i] = q
            Err1[:, i] = err
        W[:, i1:i2] = W1
        keep[:, i1:i2] = ~mask1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    W[~keep] = 0.0
    return W[:, inv].to(weight.dtype), keep[:, inv]


def _scatter_true(mask: torch.Tensor, span: slice, idx: torch.Tensor) -> None:
    sub = mask[:, span].clone()
    sub.scatter_(1, idx, True)
    mask[:, span] = sub


def reconstruction_error(weight: torch.Tensor, new_weight: torch.Tensor, inputs: torch.Tensor) -> float:
    """``||W X - Ŵ X||_F²`` in float64."""
    diff = (weight.double() - new_weight.double()) @ inputs.double()
    return float((diff**2).sum())


def optimal_reconstruction(weight: torch.Tensor, keep: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The exact least-squares Ŵ with the given sparsity pattern: per row, ``Ŵ_S = W Xᵀ_S (X_S X_Sᵀ)⁻¹``.

    A dense solve per row — the reference SparseGPT approximates; cost O(rows · k³).
    """
    W = weight.double()
    X = inputs.double()
    G = X @ X.T
    out = torch.zeros_like(W)
    for r in range(W.shape[0]):
        s = torch.nonzero(keep[r]).flatten()
        if s.numel() == 0:
            continue
        rhs = G[s] @ W[r]
        # pseudo-inverse: inputs that are always zero (or collinear) make G_SS singular
        out[r, s] = torch.linalg.pinv(G[s][:, s], hermitian=True) @ rhs
    return out
