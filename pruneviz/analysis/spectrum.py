"""Weight spectra of Linear, Conv and Embedding layers: singular values, ranks, condition numbers, power laws.

Conventions (one per question asked of a layer):

- **Matrix view** (ranks, condition numbers, stable / effective rank): a Linear weight as it is, an
  Embedding table as it is (``num_embeddings × dim``), a convolution as its unfolded kernel matrix
  ``W.reshape(out, in * kernel)``.
- **Empirical spectral density (ESD)** for the power-law fit: as weightwatcher 0.7.7 computes it, so α is
  comparable: a Linear (or Embedding) weight's squared singular values; a 2-D convolution split into one
  ``out × in`` matrix per kernel position, all their squared singular values pooled, scaled by ½
  (weightwatcher's ``conv2d_norm``; α does not depend on the scale); a 1-D convolution taken, as
  weightwatcher takes it, as ``out`` matrices ``in × kernel`` (one per output channel), of whose squared
  singular values the largest ``min(out, in, kernel)`` are kept.
- **Power-law fit** of the ESD, weightwatcher's rules: eigenvalues at or below 1e-5 left out; 20 or more
  left, the Clauset–Shalizi–Newman fit; fewer, its small-sample fit (see :func:`power_law_fit`); no
  fit at all for a layer weightwatcher deems too small to report (fewer than ``min_evals = 8``
  eigenvalues by its count, see :func:`weightwatcher_size`).
- **Operator view** of a convolution: the exact singular values of the convolution as a linear map on
  ``n × n`` inputs with circular padding and stride 1, by FFT (Sedghi, Gupta & Long 2019), and the true
  spectral norm of the layer as it runs (its own padding and stride) by power iteration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import check_int, check_model, fail
from pruneviz.models.adapter import adapted

EVALS_THRESH = 1e-5  # eigenvalues at or below this are left out of the power-law fit (as weightwatcher)
SMALL_ESD = 20  # fewer eigenvalues than this above EVALS_THRESH: the small-sample fit (as weightwatcher)
SMALL_ESD_MIN_TAIL = 8  # ... which tries only tails of at least this many eigenvalues
MIN_EVALS = 8  # weightwatcher reports no layer smaller than this (its min_evals default)
EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
#: the layers weightwatcher covers (its conventions for Conv3d and transposed convolutions differ)
SPECTRAL_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
DEGENERATE_LOG_SUM = 1e-12  # a small tail whose Σ ln(x / x_min) is this small has no power law to fit


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power law ``p(x) ∝ x^-α`` for ``x >= xmin`` fitted to the tail of an ESD.

    ``alpha`` is the maximum-likelihood (Hill) estimate; ``xmin`` the start of the tail; ``D`` the
    Kolmogorov–Smirnov distance between the tail and the fitted law; ``sigma = (α - 1) / sqrt(n_tail)``
    its standard error; ``n_tail`` the number of eigenvalues ``>= xmin``; ``n`` the number of
    eigenvalues fitted (those above the threshold); ``small_sample`` whether the small-sample rule chose
    the fit (see :func:`power_law_fit`).
    """

    alpha: float
    xmin: float
    D: float
    sigma: float
    n_tail: int
    n: int
    small_sample: bool = False


def power_law_fit(evals: np.ndarray, *, thresh: float = EVALS_THRESH) -> PowerLawFit:
    """Fit a power law to the eigenvalues above ``thresh`` by weightwatcher 0.7.7's rules, so that α is
    the α weightwatcher reports (to rounding).

    With ``n >= 20`` eigenvalues (Clauset, Shalizi & Newman 2009): every sorted eigenvalue but the largest
    is tried as ``xmin``; for each, ``α = 1 + n_t / Σ ln(x_i / xmin)`` over the ``n_t`` eigenvalues of
    the tail, and the KS distance ``D``; the ``xmin`` with the smallest ``D`` wins (``D = 1`` where
    ``α <= 1``).

    With ``2 <= n < 20`` (small layers, e.g. a classifier with 10 outputs), the small-sample rule: α is
    bias-corrected, ``α = 1 + (n_t - 1) / Σ ln(x_i / xmin)``; only tails of at least 8 eigenvalues are
    tried (with fewer than 8 eigenvalues, the whole ESD is the one tail); of those, the ``xmin`` with the
    smallest ``D`` wins. (weightwatcher's small-sample code also scores each tail by
    ``D - 0.868 / sqrt(n_t)``, but the ``xmin`` it reports is the one with the smallest ``D``.)

    No fit — every field NaN — where nothing is left to fit: no eigenvalue above ``thresh`` (a fully
    pruned layer), a single one, or eigenvalues all equal (``Σ ln(x_i / xmin) <= 1e-12``, e.g. an
    identity-initialised layer). weightwatcher reports placeholders there (``α = -1`` for a failed fit,
    ``α = 0`` for equal eigenvalues), which are not exponents; NaN says so.

    >>> fit = power_law_fit(np.array([0.1, 0.3, 0.4, 0.9, 1.2, 2.0, 3.5, 8.0, 11.0, 30.0]))
    >>> round(fit.alpha, 2), fit.xmin, fit.n_tail, fit.small_sample
    (1.43, 0.3, 9, True)
    """
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > thresh]
    n_all = data.size
    if n_all == 0:
        return PowerLawFit(math.nan, math.nan, math.nan, math.nan, 0, 0)
    if n_all < SMALL_ESD:
        return _small_sample_fit(data)
    logs = np.log(data)
    tail_log_sums = np.cumsum(logs[::-1])[::-1]  # Σ_{j >= i} ln x_j
    counts = n_all - np.arange(n_all)
    idx = np.arange(n_all - 1)
    with np.errstate(divide="ignore"):
        alphas = 1.0 + counts[idx] / (tail_log_sums[idx] - counts[idx] * logs[idx])

    def ks(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """max over ``cols >= i`` of |1 - (x_j / x_i)^(1 - α_i) - (j - i) / n_i| for each candidate ``i``
        in ``rows``, in blocks of bounded memory. With all columns this is D_i; with a subset, a lower
        bound of it."""
        out = np.empty(rows.size)
        block = max(1, 4_000_000 // max(cols.size, 1))
        for start in range(0, rows.size, block):
            r = rows[start : start + block]
            a = alphas[r][:, None]
            steps = cols[None, :] - r[:, None]  # j - i
            with np.errstate(over="ignore", invalid="ignore"):
                gap = np.abs(
                    1.0
                    - np.exp((1.0 - a) * (logs[cols][None, :] - logs[r][:, None]))
                    - steps / counts[r][:, None]
                )
            gap[steps < 0] = 0.0
            out[start : start + block] = gap.max(axis=1)
        return np.where(alphas[rows] > 1, out, 1.0)

    # Exact argmin of D_i without computing every D_i: lower bounds from every 16th column rule out most
    # candidates; D_i is computed exactly for the rest (a candidate is skipped only if its bound already
    # exceeds the best exact D, so the result is the same as the full search).
    every = np.arange(n_all)
    bounds = ks(idx, every[::16]) if n_all > 256 else ks(idx, every)
    ds = np.full(n_all - 1, np.inf)
    promising = idx[np.argsort(bounds, kind="stable")[: min(32, idx.size)]]
    ds[promising] = ks(promising, every)
    rest = idx[(bounds <= ds.min()) & ~np.isfinite(ds)]
    ds[rest] = ks(rest, every)
    best = int(np.argmin(ds))
    n_tail = int(counts[best])
    return PowerLawFit(
        alpha=float(alphas[best]),
        xmin=float(data[best]),
        D=float(ds[best]),
        sigma=float((alphas[best] - 1) / math.sqrt(n_tail)),
        n_tail=n_tail,
        n=n_all,
    )


def _tail_ks(tail: np.ndarray, alpha: float) -> float:
    """KS distance between a sorted tail (its first value the ``xmin``) and ``p(x) ∝ x^-α`` on it."""
    n = tail.size
    model_cdf = 1.0 - (tail / tail[0]) ** (1.0 - alpha)
    return float(np.max(np.abs(model_cdf - np.arange(n) / n)))


def _small_sample_fit(data: np.ndarray) -> PowerLawFit:
    """:func:`power_law_fit` for fewer than ``SMALL_ESD`` sorted eigenvalues (all above the threshold)."""
    n_all = data.size
    nothing = PowerLawFit(math.nan, math.nan, math.nan, math.nan, 0, n_all, small_sample=True)
    if n_all < 2:
        return nothing
    logs = np.log(data)
    # tails of at least SMALL_ESD_MIN_TAIL eigenvalues; with fewer eigenvalues, the whole ESD
    starts = range(n_all - SMALL_ESD_MIN_TAIL + 1) if n_all >= SMALL_ESD_MIN_TAIL else range(1)
    best: tuple[float, int, float] | None = None  # (D, start, alpha)
    for i in starts:
        n_tail = n_all - i
        log_sum = float(np.sum(logs[i:]) - n_tail * logs[i])
        if log_sum <= DEGENERATE_LOG_SUM:
            continue  # identical values: then every later (shorter) tail is degenerate too
        alpha = 1.0 + (n_tail - 1.0) / log_sum  # bias-corrected; > 1 as n_tail >= 2 and log_sum > 0
        d = _tail_ks(data[i:], alpha)
        if best is None or d < best[0]:
            best = (d, i, alpha)
    if best is None:
        return nothing
    d, i, alpha = best
    n_tail = n_all - i
    return PowerLawFit(
        alpha=alpha,
        xmin=float(data[i]),
        D=d,
        sigma=(alpha - 1.0) / math.sqrt(n_tail),
        n_tail=n_tail,
        n=n_all,
        small_sample=True,
    )


def weightwatcher_size(module: nn.Module) -> int:
    """The size weightwatcher 0.7.7 compares with its ``min_evals`` (8) to decide whether it reports a
    layer at all: ``min(weight.shape)`` for Linear, Embedding and Conv1d weights; for a 2-D convolution
    ``(kh · kw) · c``, where ``c`` is the channel count weightwatcher ends up calling ``M``. That is the
    input channel count, except where it guesses the layout as ``(out, in, kh, kw)`` (``out + in >=
    kh + kw``), there are fewer output than input channels and ``kh · kw`` is odd: then the output count.
    (It swaps its two channel counts once per kernel position when ``out < in``, so the parity of the
    kernel size decides; for kernels of 3×3 and larger the rule agrees with the number of eigenvalues.)
    """
    shape = tuple(cast(torch.Tensor, module.weight).shape)
    if len(shape) != 4:
        return min(shape)
    out, cin, kh, kw = shape
    positions = kh * kw
    swapped = out + cin >= kh + kw and out < cin and positions % 2 == 1
    return positions * (out if swapped else cin)


def matrix_view(weight: torch.Tensor) -> np.ndarray:
    """The weight as a 2-D float64 array ``(out, in * kernel)``."""
    w = weight.detach().to("cpu", torch.float64)
    return w.reshape(w.shape[0], -1).numpy()


def _gram_eigenvalues(mats: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of ``AᵀA`` (or ``AAᵀ``, the smaller) of each matrix in a ``(..., m, n)`` batch — the
    squared singular values, from a symmetric eigensolver (several times faster than an SVD)."""
    wide = mats.shape[-2] < mats.shape[-1]
    gram = mats @ mats.transpose(-1, -2) if wide else mats.transpose(-1, -2) @ mats
    return torch.linalg.eigvalsh(gram).clamp_min(0.0)


def singular_values(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """Singular values of a matrix, descending, in float64, from an SVD of the matrix itself: backward
    stable, so each is accurate to about ``ε · σ_1`` and a condition number ``κ`` to about ``ε · κ``
    relative (the eigenvalues of the Gram matrix ``WᵀW`` would lose ``ε · κ²``). A matrix with more than
    1.5 times as many columns as rows (or rows as columns) is first reduced to the square triangular
    factor ``R`` of a Householder QR of its long side (same singular values, several times faster:
    Chan 1982's R-SVD)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    tall = m if m.shape[0] >= m.shape[1] else m.T
    if tall.shape[0] > 1.5 * tall.shape[1]:
        tall = torch.linalg.qr(tall, mode="r")[1]
    return torch.linalg.svdvals(tall).numpy()


def esd(weight: torch.Tensor) -> np.ndarray:
    """Sorted eigenvalues of the layer's correlation matrices (weightwatcher's convention, see above)."""
    w = weight.detach().to("cpu", torch.float64)
    if w.ndim == 2:
        return np.sort(_gram_eigenvalues(w).numpy())
    if w.ndim == 3:  # Conv1d: (out, in, kernel) taken as `out` matrices in × kernel, as weightwatcher does
        per_channel = _gram_eigenvalues(w).numpy().ravel()
        return np.sort(per_channel)[-min(w.shape) :]
    slices = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)  # (kernel positions, out, in)
    return np.sort(0.5 * _gram_eigenvalues(slices).numpy().ravel())


def condition_number(
    sv: np.ndarray, *, rank: int | None = None, tol: float | None = None
) -> tuple[float, int, int]:
    """``(σ_1 / σ_r, r, zeros)``: the condition number at rank ``r`` (default: the numerical rank), that
    rank, and the number of singular values that are zero (``<= tol``; default ``len(sv) · eps · σ_1``;
    :func:`spectrum_table` passes ``max(m, n) · eps · σ_1`` as numpy's ``matrix_rank`` does). A layer
    with no non-zero singular value — fully pruned — has condition number ``inf``."""
    s = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    top = float(s[0]) if s.size else 0.0
    if tol is None:
        tol = max(s.size, 1) * np.finfo(np.float64).eps * top
    zeros = int((s <= tol).sum())
    numerical_rank = s.size - zeros
    r = numerical_rank if rank is None else int(rank)
    if r < 1 or r > s.size or top == 0.0 or s[r - 1] <= tol:
        return math.inf, r, zeros
    return top / float(s[r - 1]), r, zeros


def full_condition_number(sv: np.ndarray, *, tol: float | None = None) -> float:
    """``σ_1 / σ_min`` over all ``min(m, n)`` singular values — ``inf`` when ``σ_min`` is zero, i.e. at or
    below ``tol`` (as in :func:`condition_number`): the matrix is singular to working precision. It is
    what :func:`condition_number` hides when pruning kills whole rows or columns: the condition number
    at the numerical rank stays finite (it can even fall) while the full one is infinite."""
    s = np.sort(np.asarray(sv, dtype=np.float64))[::-1]
    top = float(s[0]) if s.size else 0.0
    if tol is None:
        tol = max(s.size, 1) * np.finfo(np.float64).eps * top
    if top == 0.0 or s[-1] <= tol:
        return math.inf
    return top / float(s[-1])


def stable_rank(sv: np.ndarray) -> float:
    """``||W||_F² / ||W||_2²`` (0 for a zero matrix)."""
    s = np.asarray(sv, dtype=np.float64)
    top = float(s.max()) if s.size else 0.0
    return 0.0 if top == 0.0 else float((s**2).sum() / top**2)


def effective_rank(sv: np.ndarray) -> float:
    """Roy & Vetterli 2007: ``exp(H(p))`` with ``p = σ / Σσ`` (0 for a zero matrix)."""
    s = np.asarray(sv, dtype=np.float64)
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def pq_index(weight: torch.Tensor, *, p: float = 1.0, q: float = 2.0) -> float:
    """PQ Index of compressibility (Diao et al. 2023): ``1 - d^(1/q - 1/p) ||w||_p / ||w||_q`` for
    ``0 < p < q``; 0 for a constant-magnitude vector, towards 1 as the weights concentrate. NaN for zero."""
    if not 0 < p < q:
        fail("p", "pq_index", "0 < p < q", (p, q), "use the default p=1, q=2.")
    w = weight.detach().to("cpu", torch.float64).flatten()
    d = w.numel()
    norm_q = float(torch.linalg.vector_norm(w, ord=q))
    if norm_q == 0.0:
        return math.nan
    return 1.0 - d ** (1.0 / q - 1.0 / p) * float(torch.linalg.vector_norm(w, ord=p)) / norm_q


def conv_operator_singular_values(conv: nn.Conv1d | nn.Conv2d, size: int | Sequence[int]) -> np.ndarray:
    """Exact singular values of a stride-1 convolution as a linear map on inputs of spatial ``size``
    with circular padding (Sedghi, Gupta & Long 2019): the union over frequencies ``ω`` of the singular
    values of ``K̂(ω)``, the ``out × in`` matrix of the kernel's discrete Fourier transform at ``ω``.
    Sorted descending, ``prod(size) · min(in, out)`` values."""
    where = "conv_operator_singular_values"
    if not isinstance(conv, nn.Conv1d | nn.Conv2d):
        fail("conv", where, "an nn.Conv1d or nn.Conv2d", type(conv).__name__)
    if any(s != 1 for s in conv.stride) or conv.groups != 1:
        fail(
            "conv",
            where,
            "a stride-1 convolution with groups=1",
            f"stride={conv.stride}, groups={conv.groups}",
        )
    dims = len(conv.kernel_size)
    sizes = [int(size)] * dims if isinstance(size, int) else [int(s) for s in size]
    if len(sizes) != dims or any(s < k for s, k in zip(sizes, conv.kernel_size, strict=True)):
        fail("size", where, f"{dims} spatial size(s) >= the kernel size {conv.kernel_size}", size)
    w = conv.weight.detach().to("cpu", torch.float64)
    # K̂(-ω) = conj(K̂(ω)) has the same singular values, so each pair {ω, -ω mod n} is solved once, counted
    # twice (self-conjugate frequencies, ω = -ω mod n, once).
    spectrum = torch.fft.fftn(w, s=sizes, dim=tuple(range(2, 2 + dims)))  # (out, in, *freqs)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n) for n in sizes], indexing="ij"), dim=-1).reshape(
        -1, dims
    )
    mirror = (-grid) % torch.tensor(sizes)
    strides = torch.tensor([math.prod(sizes[i + 1 :]) for i in range(dims)])  # row-major frequency index
    own, other = (grid * strides).sum(-1), (mirror * strides).sum(-1)
    chosen = own <= other
    multiplicity = torch.where(own[chosen] == other[chosen], 1, 2)
    per_freq = spectrum.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)[chosen]  # (freqs, out, in)
    wide = per_freq.shape[-2] < per_freq.shape[-1]
    gram = per_freq @ per_freq.mH if wide else per_freq.mH @ per_freq
    sv = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()  # (freqs, min(out, in))
    values = np.repeat(sv.numpy(), multiplicity.numpy(), axis=0).ravel()
    return np.sort(values)[::-1]


def conv_spectral_norm(
    conv: nn.Conv1d | nn.Conv2d,
    input_shape: Sequence[int],
    *,
    iterations: int = 100,
    rtol: float = 1e-6,
    seed: int = 0,
) -> float:
    """Spectral norm of the convolution as it runs — its own padding, stride, dilation and groups — on
    inputs of shape ``input_shape = (in, *spatial)``, by power iteration on ``AᵀA`` (the adjoint from
    autograd). Stops when the estimate changes by less than ``rtol``."""
    iterations = check_int(iterations, "iterations", "conv_spectral_norm", minimum=1)
    gen = torch.Generator().manual_seed(seed)
    w = conv.weight.detach().to("cpu", torch.float64)
    func = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv1d

    def apply(x: torch.Tensor) -> torch.Tensor:
        return func(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)

    if float(w.abs().max()) == 0.0:
        return 0.0
    x = torch.randn((1, *input_shape), generator=gen, dtype=torch.float64)
    x /= x.norm()
    estimate = 0.0
    for _ in range(iterations):
        pulled = torch.func.vjp(apply, x)
        y, vjp = pulled[0], pulled[1]
        (z,) = vjp(y)
        norm = float(z.norm())
        if norm == 0.0:
            return 0.0
        new = math.sqrt(norm)
        x = z / norm
        if abs(new - estimate) <= rtol * new:
            return new
        estimate = new
    return estimate


def _layer_inputs(
    model: nn.Module, input_shape: Sequence[int] | None, names: set[str], example: Any = None
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str):
        def hook(_m, inputs, _o) -> None:
            shapes[name] = tuple(inputs[0].shape[1:])

        return hook

    hooks = [(m, hook_for(n)) for n, m in model.named_modules() if n in names]
    if example is None:
        # a model that looks tokens up in an embedding table takes integer ids (0 is a valid one)
        tokens = any(isinstance(m, EMBEDDING_TYPES) for m in model.modules())
        assert input_shape is not None  # the callers pass an example or the input shape
        example = torch.zeros(1, *input_shape, dtype=torch.long if tokens else torch.float32)
    with forward_hooks(hooks), eval_mode(model), adapted(model), torch.no_grad():
        model(example)
    return shapes


def _spectral_layers(
    model: nn.Module, layers: Sequence[str] | None, embeddings: bool, where: str
) -> dict[str, nn.Module]:
    """The model's Linear and Conv (and, with ``embeddings``, Embedding) layers by name, in model order;
    only ``layers`` where given (checked)."""
    types = (*SPECTRAL_TYPES, *EMBEDDING_TYPES) if embeddings else SPECTRAL_TYPES
    found = {n: m for n, m in model.named_modules() if isinstance(m, types)}
    kinds = "Linear or Conv (or Embedding) layers" if embeddings else "Linear or Conv layers"
    if not found:
        fail("model", where, f"a model with {kinds}", type(model).__name__, "pass such a model.")
    if layers is None:
        return found
    chosen = list(layers)
    unknown = [n for n in chosen if n not in found]
    if unknown:
        fail(
            "layers",
            where,
            f"names of {kinds} ({sorted(found)})",
            unknown if len(unknown) > 1 else unknown[0],
            "copy names from the model's named_modules(), or omit layers for all of them.",
        )
    return {n: found[n] for n in chosen}


def spectrum_table(
    model: nn.Module,
    *,
    input_shape: Sequence[int] | None = None,
    example: Any = None,
    layers: Sequence[str] | None = None,
    operator: bool = True,
    rank: int | None = None,
    min_evals: int = MIN_EVALS,
    embeddings: bool = True,
) -> pd.DataFrame:
    """Per-layer spectral statistics as a tidy frame: ``layer``, ``kind``, ``metric``, ``value``, one
    layer per Linear, Conv1d/Conv2d and (unless ``embeddings=False``) Embedding/EmbeddingBag module, as
    weightwatcher covers them (``kind`` is the module's class name).

    Metrics: ``sparsity``, ``spectral_norm`` (largest singular value of the matrix view),
    ``frobenius_norm``, ``stable_rank``, ``effective_rank``, ``rank``, ``zero_singular_values``,
    ``condition_number`` (``σ_1 / σ_r`` at ``rank``, default the numerical rank; ``inf`` for a fully
    pruned layer), ``condition_number_full`` (``σ_1 / σ_min`` over all ``min(m, n)`` singular values,
    ``inf`` once any is zero: rank collapse, e.g. whole neurons pruned; see
    :func:`full_condition_number`),
    ``alpha``, ``alpha_hat`` (α · log10 λ_max), ``xmin``, ``ks_distance``, ``num_evals``, ``num_tail``,
    ``lambda_max``, ``pq_index``; with ``input_shape`` (or ``example``, a batch of real model inputs
    of any kind, for models that take several inputs) and ``operator=True`` also, for convolutions,
    ``operator_norm`` (power iteration, as the layer runs) and for stride-1 convolutions
    ``circular_operator_norm`` (FFT, circular padding at the layer's input size).

    ``alpha`` is weightwatcher 0.7.7's α on every layer weightwatcher reports (see
    :func:`power_law_fit`); a layer smaller than ``min_evals`` (by :func:`weightwatcher_size`, 8 as in
    weightwatcher, which does not report such layers) gets no fit: ``alpha``, ``alpha_hat``, ``xmin``,
    ``ks_distance`` NaN and ``num_tail`` 0; ``min_evals=1`` fits every layer. NaN also where nothing is
    left to fit (a fully pruned layer; weightwatcher's failure value is ``α = -1``). Unlike
    weightwatcher, large layers (over 15,000 eigenvalues or a side over 50,000) are fitted too.

    >>> from pruneviz.models import build_model
    >>> table = spectrum_table(build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,)))
    >>> sorted(table.layer.unique())
    ['classifier', 'features.1']
    """
    where = "spectrum_table"
    check_model(model, "model", where, half=True)
    min_evals = check_int(min_evals, "min_evals", where, minimum=1)
    chosen = _spectral_layers(model, layers, embeddings, where)
    convs = {n for n, m in chosen.items() if isinstance(m, nn.Conv1d | nn.Conv2d)}
    # the forward pass that finds each convolution's input size is needed only where there are some
    shapes = (
        _layer_inputs(model, input_shape, convs, example)
        if ((input_shape is not None or example is not None) and operator and convs)
        else {}
    )
    rows: list[tuple[str, str, str, float]] = []
    for name, module in chosen.items():
        w = cast(torch.Tensor, module.weight).detach()
        kind = type(module).__name__
        mat = matrix_view(w)
        sv = singular_values(mat)
        tol = max(mat.shape) * np.finfo(np.float64).eps * (float(sv.max()) if sv.size else 0.0)
        cond, r, zeros = condition_number(sv, rank=rank, tol=tol)
        evals = esd(w)
        fit = power_law_fit(evals)
        if weightwatcher_size(module) < min_evals:
            fit = PowerLawFit(math.nan, math.nan, math.nan, math.nan, 0, fit.n)
        lam_max = float(evals.max()) if evals.size else 0.0
        metrics = {
            "sparsity": float((w == 0).sum()) / w.numel(),
            "spectral_norm": float(sv.max()) if sv.size else 0.0,
            "frobenius_norm": float(np.sqrt((sv**2).sum())),
            "stable_rank": stable_rank(sv),
            "effective_rank": effective_rank(sv),
            "rank": float(r),
            "zero_singular_values": float(zeros),
            "condition_number": cond,
            "condition_number_full": full_condition_number(sv, tol=tol),
            "alpha": fit.alpha,
            "alpha_hat": fit.alpha * math.log10(lam_max)
            if lam_max > 0 and not math.isnan(fit.alpha)
            else math.nan,
            "xmin": fit.xmin,
            "ks_distance": fit.D,
            "num_evals": float(fit.n),
            "num_tail": float(fit.n_tail),
            "lambda_max": lam_max,
            "pq_index": pq_index(w),
        }
        if name in shapes and isinstance(module, nn.Conv1d | nn.Conv2d):
            metrics["operator_norm"] = conv_spectral_norm(module, shapes[name])
            if all(s == 1 for s in module.stride) and module.groups == 1:
                spatial = shapes[name][1:]
                if all(s >= k for s, k in zip(spatial, module.kernel_size, strict=True)):
                    metrics["circular_operator_norm"] = float(
                        conv_operator_singular_values(module, spatial)[0]
                    )
        rows += [(name, kind, k, float(v)) for k, v in metrics.items()]
    return pd.DataFrame(rows, columns=["layer", "kind", "metric", "value"])


def lipschitz_upper_bound(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Product over Linear/Conv layers of their operator norms (power iteration for convolutions, largest
    singular value for Linear layers): an upper bound on the Lipschitz constant of a network whose other
    layers are 1-Lipschitz (ReLU, pooling) — BatchNorm and residual additions are not accounted for;
    embedding tables, lookups rather than maps of the input, are left out."""
    table = spectrum_table(model, input_shape=input_shape, embeddings=False)
    wide = table.pivot_table(index="layer", columns="metric", values="value", sort=False)
    norms = (
        wide["operator_norm"].fillna(wide["spectral_norm"])
        if "operator_norm" in wide
        else wide["spectral_norm"]
    )
    return float(np.prod(norms.to_numpy()))


def spectrum_change(dense: pd.DataFrame, pruned: pd.DataFrame) -> pd.DataFrame:
    """Per layer and metric, the dense value, the pruned value, their difference and ratio (tidy):
    columns ``layer``, ``metric``, ``dense``, ``pruned``, ``change``, ``ratio``. Inputs are
    :func:`spectrum_table` frames of the same architecture."""
    keys = ["layer", "metric"]
    merged = dense[[*keys, "value"]].merge(pruned[[*keys, "value"]], on=keys, suffixes=("_dense", "_pruned"))
    if merged.empty:
        fail(
            "pruned",
            "spectrum_change",
            "a spectrum table of the same layers as dense",
            list(pruned.layer.unique()),
        )
    out = merged.rename(columns={"value_dense": "dense", "value_pruned": "pruned"})
    out["change"] = out["pruned"] - out["dense"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = out["pruned"] / out["dense"]
    return out


def marchenko_pastur_edges(weight: torch.Tensor) -> tuple[float, float]:
    """Bulk edges ``(λ-, λ+)`` of the ESD (:func:`esd` convention) that a weight of the same shape with
    i.i.d. entries of the same variance σ² would have: for each ``N × M`` matrix (N ≥ M), eigenvalues of
    ``WᵀW`` fill ``[σ²(√N - √M)², σ²(√N + √M)²]`` (Marchenko & Pastur 1967), halved for 2-D
    convolutions; a 1-D convolution's matrices are its ``in × kernel`` slices."""
    w = weight.detach().to("cpu", torch.float64)
    var = float(w.var(unbiased=False))
    if w.ndim == 2:
        n, m, scale = max(w.shape), min(w.shape), 1.0
    elif w.ndim == 3:
        n, m, scale = max(w.shape[1:]), min(w.shape[1:]), 1.0
    else:
        n, m, scale = max(w.shape[:2]), min(w.shape[:2]), 0.5
    return scale * var * (math.sqrt(n) - math.sqrt(m)) ** 2, scale * var * (math.sqrt(n) + math.sqrt(m)) ** 2


def _ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 or b.size == 0:
        return math.nan
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def randomized_spectrum_table(
    model: nn.Module, *, layers: Sequence[str] | None = None, seed: int = 0, embeddings: bool = True
) -> pd.DataFrame:
    """What is left of each layer's spectrum once its structure is destroyed: the ESD of the weight with
    its entries randomly permuted (``seed``), against the Marchenko–Pastur bulk of a random matrix of the
    same shape and variance. Tidy frame ``layer``, ``kind``, ``metric``, ``value`` with ``lambda_max``,
    ``rand_lambda_max``, ``mp_lambda_plus``, ``mp_softrank`` (λ+ / λ_max, Martin & Mahoney 2021),
    ``num_spikes`` (eigenvalues above λ+) and ``rand_ks_distance`` (KS distance between the ESD and the
    randomized ESD; near 0 when the layer holds no more structure than noise). Layers as in
    :func:`spectrum_table` (Embedding layers unless ``embeddings=False``)."""
    chosen = _spectral_layers(model, layers, embeddings, "randomized_spectrum_table")
    gen = torch.Generator().manual_seed(seed)
    rows: list[tuple[str, str, str, float]] = []
    for name, module in chosen.items():
        w = cast(torch.Tensor, module.weight).detach()
        evals = esd(w)
        shuffled = w.flatten()[torch.randperm(w.numel(), generator=gen)].reshape(w.shape)
        rand = esd(shuffled)
        _, plus = marchenko_pastur_edges(w)
        lam_max = float(evals.max()) if evals.size else 0.0
        metrics = {
            "lambda_max": lam_max,
            "rand_lambda_max": float(rand.max()) if rand.size else 0.0,
            "mp_lambda_plus": plus,
            "mp_softrank": plus / lam_max if lam_max > 0 else math.nan,
            "num_spikes": float((evals > plus).sum()),
            "rand_ks_distance": _ks_two_sample(evals[evals > EVALS_THRESH], rand[rand > EVALS_THRESH]),
        }
        rows += [(name, type(module).__name__, k, float(v)) for k, v in metrics.items()]
    return pd.DataFrame(rows, columns=["layer", "kind", "metric", "value"])


def layer_spectra(model: nn.Module, *, embeddings: bool = True) -> Mapping[str, np.ndarray]:
    """The ESD (weightwatcher convention) of every Linear, Conv and (unless ``embeddings=False``)
    Embedding layer, by name."""
    types = (*SPECTRAL_TYPES, *EMBEDDING_TYPES) if embeddings else SPECTRAL_TYPES
    return {n: esd(cast(torch.Tensor, m.weight)) for n, m in model.named_modules() if isinstance(m, types)}
