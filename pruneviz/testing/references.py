"""Reference formulas: Wanda's mask and the column-sequential problem SparseGPT solves."""

from __future__ import annotations

import numpy as np
import torch


def wanda_reference(weight: np.ndarray, inputs: np.ndarray, sparsity: float) -> np.ndarray:
    """Wanda (Sun et al. 2023): per output row, drop the ``round(s * d_in)`` smallest ``|W_ij| * ||X_j||``.

    ``inputs`` is ``(tokens, d_in)``. Returns the boolean keep-mask.
    """
    metric = np.abs(weight) * np.linalg.norm(inputs, axis=0)[None, :]
    k = round(sparsity * weight.shape[1])
    keep = np.ones_like(weight, dtype=bool)
    for r in range(weight.shape[0]):
        keep[r, np.argsort(metric[r], kind="stable")[:k]] = False
    return keep


def sequential_obs_reference(
    weight: torch.Tensor, inputs: torch.Tensor, keep: torch.Tensor, damp: float = 0.01
) -> torch.Tensor:
    """The problem SparseGPT solves (Frantar & Alistarh 2023), by dense solves: columns left to right,
    each pruned weight's error spread over the columns not yet processed with the inverse of the damped
    Hessian ``X Xᵀ + λ mean(diag) I`` restricted to them (an optimal brain surgeon step). An input that
    is always zero gets unit curvature before damping, so that H stays invertible (the paper's convention)."""
    W = weight.double().clone()
    X = inputs.double()
    H = X @ X.T
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=torch.float64)
    for i in range(W.shape[1]):
        Hinv = torch.linalg.inv(H[i:, i:])
        for r in torch.nonzero(~keep[:, i]).flatten():
            err = W[r, i] / Hinv[0, 0]
            W[r, i:] -= err * Hinv[0, :]
        W[~keep[:, i], i] = 0.0
    return W
