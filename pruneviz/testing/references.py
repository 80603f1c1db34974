"""Reference formulas written as plainly as the papers state them: Wanda's mask, the column-sequential
problem SparseGPT solves, and HSIC/CKA (biased and unbiased)."""

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


def hsic_reference(k: np.ndarray, m: np.ndarray, *, unbiased: bool) -> float:
    """HSIC of two ``n × n`` kernel matrices, term by term as published.

    Biased (Gretton et al. 2005): ``tr(K H L H) / (n − 1)²`` with ``H = I − 11ᵀ/n``.
    Unbiased (Song et al. 2012, eq. 5): with ``K̃``, ``L̃`` the kernels with zeroed diagonals (here K and M),
    ``[tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n − 1)(n − 2)) − 2/(n − 2) · 1ᵀK̃L̃1] / (n (n − 3))``.
    """
    k = np.asarray(k, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    n = k.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return float(np.trace(k @ h @ m @ h) / (n - 1) ** 2)
    kt = k - np.diag(np.diag(k))
    lt = m - np.diag(np.diag(m))
    one = np.ones(n)
    term1 = np.trace(kt @ lt)
    term2 = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term3 = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float((term1 + term2 - term3) / (n * (n - 3)))


def cka_reference(
    x: np.ndarray, y: np.ndarray, *, kernel: str = "linear", unbiased: bool = False, sigma: float = 0.8
) -> float:
    """CKA (Kornblith et al. 2019) ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` from explicit kernels:
    linear ``X Xᵀ`` or RBF ``exp(−‖xᵢ − xⱼ‖² / 2σ²)`` with σ = ``sigma`` × median pairwise distance."""

    def kern(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
        if kernel == "linear":
            return z @ z.T
        d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        dist = np.sqrt(d2[~np.eye(len(z), dtype=bool)])
        s = sigma * np.median(dist)
        return np.exp(-d2 / (2 * s * s))

    k, m = kern(x), kern(y)
    return hsic_reference(k, m, unbiased=unbiased) / np.sqrt(
        hsic_reference(k, k, unbiased=unbiased) * hsic_reference(m, m, unbiased=unbiased)
    )
