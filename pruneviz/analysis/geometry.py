"""Feature geometry: CKA between layers of two models, mutual nearest neighbours, the geometry of the
classification logit, and dense and pruned features embedded in one aligned space.

Centered kernel alignment (Kornblith et al. 2019, "Similarity of neural network representations
revisited") compares two representations of the same ``n`` samples through their ``n × n`` Gram matrices
``K`` and ``L``::

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

with the biased estimator ``HSIC = tr(K H L H) / (n − 1)²`` (``H`` the centring matrix) or the unbiased one
of Song et al. (2012), used by the debiased CKA of Nguyen et al. (2021). Both are computed here as an inner
product of centred Gram matrices: double centring ``H K H`` for the biased estimator and *U-centring*
(Székely & Rizzo 2014) for the unbiased one, whose inner product equals Song et al.'s estimator exactly. A
whole layer × layer grid is then one matrix product of the normalised, centred Grams; minibatch CKA
(Nguyen et al. 2021) accumulates the per-batch inner products. Degenerate representations (constant
features, e.g. a fully pruned layer) share no measurable structure with anything and get CKA 0, never NaN.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from pruneviz._validation import check_choice, check_int, check_positive_float, data_fail, fail
from pruneviz.analysis.activations import check_inputs, check_layers, iter_activations
from pruneviz.data.inputs import Inputs
from pruneviz.prune.weights import is_gpt2_conv1d

KERNELS = ("linear", "rbf")


# -- CKA --------------------------------------------------------------------------------------------
def _as_features(x: torch.Tensor | np.ndarray, param: str, where: str, *, check: bool = True) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim < 2:
        got = f"shape {tuple(t.shape)}"
        fail(param, where, "an (N, D) array of features (one row per sample)", None, got=got)
    t = t.flatten(1)
    if not t.is_floating_point():
        t = t.double()
    if check:
        _check_finite(t, param, where)
    return t


def _check_finite(t: torch.Tensor, param: str, where: str) -> None:
    if not bool(torch.isfinite(t).all()):
        data_fail(
            param,
            where,
            "finite features",
            f"{int((~torch.isfinite(t)).any(1).sum())} sample(s) with NaN/inf",
            "check the model and inputs for NaN/inf.",
        )


def _gram(x: torch.Tensor, kernel: str, sigma: float) -> torch.Tensor:
    """The ``(n, n)`` float64 Gram matrix of features ``x``: linear products of the centred features
    (float32 products for float32 input), or RBF values from float64 distances."""
    if kernel == "linear":
        xc = x - x.mean(0, keepdim=True)  # H K H = (H X)(H X)^T for the linear kernel
        return (xc @ xc.T).double()
    xc = (x - x.mean(0, keepdim=True)).double()  # distances from centred float64 features: no cancellation
    g = xc @ xc.T
    sq = g.diagonal()
    d2 = (sq[:, None] + sq[None, :] - 2 * g).clamp_min(0)
    d2.fill_diagonal_(0)
    iu = torch.triu_indices(len(x), len(x), offset=1)
    dist = d2[iu[0], iu[1]].sqrt().numpy()
    positive = dist[dist > 0]
    if positive.size == 0:  # all samples identical: the kernel is constant
        return torch.ones_like(d2)
    # the median distance (Kornblith et al. 2019); when most pairs coincide (dead units of a pruned
    # layer) the median of the distinct pairs keeps the remaining structure visible
    median = float(np.median(dist))
    if median == 0.0:
        median = float(np.median(positive))
    s = sigma * median
    return torch.exp(-d2 / (2 * s * s))


def _centre(k: torch.Tensor, debiased: bool, double_centred_input: bool = False) -> torch.Tensor:
    """Double centring (biased HSIC) or U-centring (unbiased HSIC) of a Gram matrix."""
    n = k.shape[0]
    if not debiased:
        if double_centred_input:
            return k
        row = k.mean(0, keepdim=True)
        return k - row - row.T + k.mean()
    k = k.clone()
    k.fill_diagonal_(0)
    row = k.sum(0, keepdim=True)
    total = k.sum()
    u = k - row / (n - 2) - row.T / (n - 2) + total / ((n - 1) * (n - 2))
    u.fill_diagonal_(0)
    return u


def centred_gram(
    x: torch.Tensor | np.ndarray, *, kernel: str = "linear", debiased: bool = False, sigma: float = 0.8
) -> torch.Tensor:
    """The centred ``(n, n)`` float64 Gram matrix whose inner products give HSIC (up to a constant).

    ``kernel="rbf"`` uses ``exp(−‖xᵢ − xⱼ‖² / 2σ²)`` with σ = ``sigma`` × the median pairwise distance
    (Kornblith et al. 2019). ``debiased`` U-centres the Gram (zero diagonal), so that
    ``⟨U_K, U_L⟩ / (n (n − 3))`` is the unbiased HSIC of Song et al. (2012); it needs ``n ≥ 4``.
    """
    where = "centred_gram"
    check_choice(kernel, "kernel", where, KERNELS)
    sigma = check_positive_float(sigma, "sigma", where)
    x = _as_features(x, "x", where, check=False)  # checked through the (much smaller) Gram below
    n = len(x)
    if n < (4 if debiased else 2):
        fail(
            "x",
            where,
            f"at least {4 if debiased else 2} samples for this estimator",
            None,
            got=f"{n} sample(s)",
            fix="pass more samples (the debiased estimator divides by n − 3).",
        )
    return _centre(
        _checked_gram(x, kernel, sigma, where), debiased, double_centred_input=(kernel == "linear")
    )


def _checked_gram(x: torch.Tensor, kernel: str, sigma: float, where: str) -> torch.Tensor:
    """:func:`_gram`, naming the samples with NaN/inf features, and in float64 where float32 overflowed."""
    gram = _gram(x, kernel, sigma)
    if not bool(torch.isfinite(gram).all()):
        _check_finite(x, "x", where)  # names the samples with NaN/inf features
        gram = _gram(x.double(), kernel, sigma)  # finite features whose float32 products overflowed
    return gram


def _normalised(u: torch.Tensor) -> torch.Tensor:
    v = u.flatten()
    norm = torch.linalg.vector_norm(v)
    return v / norm if float(norm) > 0 else torch.zeros_like(v)


def cka(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float = 0.8,
) -> float:
    """CKA between two representations of the same samples, ``x: (n, d₁)`` and ``y: (n, d₂)``.

    Invariant to orthogonal transforms and isotropic scaling of either representation; 1 for identical
    representations, 0 when either is constant. Higher-dimensional inputs are flattened per sample.

    >>> import torch
    >>> x = torch.randn(50, 8, dtype=torch.float64)
    >>> round(cka(x, 3 * x @ torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))[0]), 6)
    1.0
    """
    where = "cka"
    xa, ya = _as_features(x, "x", where), _as_features(y, "y", where)
    if len(xa) != len(ya):
        fail(
            "y",
            where,
            f"features of the same {len(xa)} samples as x (one row per sample, same order)",
            None,
            got=f"{len(ya)} rows",
            fix="capture both representations on the same inputs.",
        )
    a = _normalised(centred_gram(xa, kernel=kernel, debiased=debiased, sigma=sigma))
    b = _normalised(centred_gram(ya, kernel=kernel, debiased=debiased, sigma=sigma))
    return float(a @ b)


def cka_matrix(
    features_a: Mapping[str, torch.Tensor],
    features_b: Mapping[str, torch.Tensor],
    *,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float = 0.8,
) -> pd.DataFrame:
    """CKA between every layer of ``features_a`` and every layer of ``features_b`` (dicts of ``(n, d)``
    features of the same samples). Tidy: ``layer_a``, ``layer_b``, ``value``; ``a`` varies slowest.

    Each Gram matrix is centred and normalised once; the grid is one matrix product.
    """
    where = "cka_matrix"
    for param, feats in (("features_a", features_a), ("features_b", features_b)):
        if not isinstance(feats, Mapping) or not feats:
            fail(param, where, "a non-empty dict {layer: (n, d) features}", type(feats).__name__)
    counts = {len(v) for v in [*features_a.values(), *features_b.values()]}
    if len(counts) > 1:
        fail(
            "features_b",
            where,
            "features of the same samples for every layer",
            None,
            got=f"sample counts {sorted(counts)}",
            fix="capture every layer on the same inputs.",
        )
    a = torch.stack(
        [
            _normalised(centred_gram(v, kernel=kernel, debiased=debiased, sigma=sigma))
            for v in features_a.values()
        ]
    )
    b = torch.stack(
        [
            _normalised(centred_gram(v, kernel=kernel, debiased=debiased, sigma=sigma))
            for v in features_b.values()
        ]
    )
    grid = (a @ b.T).numpy()
    return _grid_frame(list(features_a), list(features_b), grid)


def _grid_frame(
    layers_a: list[str], layers_b: list[str], grid: np.ndarray, se: np.ndarray | None = None
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "layer_a": np.repeat(layers_a, len(layers_b)),
            "layer_b": np.tile(layers_b, len(layers_a)),
            "value": np.clip(grid.reshape(-1), -1.0, 1.0),
        }
    )
    if se is not None:
        frame["sample_se"] = se.reshape(-1)
    return frame


def _jackknife_se(estimates: torch.Tensor) -> np.ndarray:
    """The delete-a-group jackknife standard error from the ``g`` estimates that each leave one group
    out (first axis): ``√((g − 1)/g · Σ (θ₍ᵢ₎ − θ̄)²)`` (Efron & Tibshirani 1993, ch. 11)."""
    g = estimates.shape[0]
    if g < 2:
        return np.full(tuple(estimates.shape[1:]), np.nan)
    spread = ((estimates - estimates.mean(0)) ** 2).sum(0)
    return torch.sqrt((g - 1) / g * spread).numpy()


def default_layers(model: nn.Module) -> list[str]:
    """The layers compared by default: every convolution (1-, 2-, 3-D) and linear layer (and GPT-2
    ``Conv1D``), in order, whose output is one tensor.

    An ``nn.MultiheadAttention``'s ``out_proj`` is left out: the attention calls it functionally
    (``F.multi_head_attention_forward`` reads ``out_proj.weight``), so it never runs as a module and has
    no activations of its own; the attention module itself returns a tuple. Pass ``layers_a=`` /
    ``layers_b=`` to compare other modules.
    """
    functional = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    return [
        name
        for name, m in model.named_modules()
        if name
        and id(m) not in functional
        and (isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear) or is_gpt2_conv1d(m))
    ]


def cka_grid(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor | Inputs,
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    kernel: str = "linear",
    debiased: bool = False,
    sigma: float = 0.8,
    batch_size: int | None = None,
    reduction: str = "flatten",
    seed: int = 0,
    groups: int = 8,
) -> pd.DataFrame:
    """CKA between every layer of ``model_a`` and every layer of ``model_b`` on inputs ``x``.

    ``batch_size=None`` computes the exact full-batch CKA (memory: ``8 n² · (len(layers_a) + 2)`` bytes
    of Grams, plus one model's features; refused beyond 8 GiB with a hint). An integer gives minibatch
    CKA (Nguyen et al. 2021): the HSIC inner products are averaged over shuffled minibatches of that
    size (at least 4, shuffled with ``seed``) and the ratio is taken at the end, with memory bounded
    by one batch; with ``debiased=True`` this estimates the same population value as the full-batch
    debiased CKA.
    Layers default to every conv and linear layer (:func:`default_layers`). Tidy: ``layer_a``,
    ``layer_b``, ``value``, ``sample_se``, plus the settings.

    ``sample_se`` is how far each value would move with another draw of as many samples: the
    delete-a-group jackknife over ``groups`` groups of the samples (a seeded shuffle split into
    near-equal parts; each estimate leaves one out), or over the minibatches with ``batch_size``. It
    costs no forward pass: the leave-one-out values come from the Grams already made (an RBF kernel
    keeps the bandwidth of all the samples).

    >>> import torch
    >>> from pruneviz.models import MLP
    >>> m = MLP((4,), 3, hidden=(8,))
    >>> df = cka_grid(m, m, torch.randn(20, 4), layers_a=["classifier"], layers_b=["classifier"])
    >>> round(float(df["value"].iloc[0]), 6)
    1.0
    """
    where = "cka_grid"
    check_choice(kernel, "kernel", where, KERNELS)
    sigma = check_positive_float(sigma, "sigma", where)
    la = check_layers(
        model_a, layers_a if layers_a is not None else default_layers(model_a), where, "layers_a"
    )
    lb = check_layers(
        model_b, layers_b if layers_b is not None else default_layers(model_b), where, "layers_b"
    )
    x = check_inputs(x, where)
    n = len(x)
    minimum = 4 if debiased or batch_size is not None else 2
    if n < minimum:
        fail("x", where, f"at least {minimum} samples", None, got=f"{n} sample(s)", fix="pass more inputs.")
    seed = check_int(seed, "seed", where, minimum=0)
    if batch_size is None:
        groups = min(n, check_int(groups, "groups", where, minimum=2))
        need = 8 * n * n * (len(la) + 2)  # model a's Grams, and one of model b's being made
        if need > 8 * 2**30:
            fail(
                "batch_size",
                where,
                "an integer for this many samples (full-batch CKA keeps n × n Grams of every layer)",
                None,
                got=f"None with {n} samples and {len(la)} layers of model_a ({need / 2**30:.0f} GiB)",
                fix="pass batch_size=512 (minibatch CKA, Nguyen et al. 2021) or fewer samples.",
            )
        parts = np.array_split(np.random.default_rng(seed).permutation(n), groups)
        if n - len(parts[0]) < minimum:  # too few samples to leave a part out: no jackknife
            parts = []
        grid, se = _full_batch_grid(model_a, model_b, x, la, lb, kernel, debiased, sigma, reduction, parts)
    else:
        batch_size = check_int(batch_size, "batch_size", where, minimum=4)
        grid, se = _minibatch_grid(
            model_a, model_b, x, la, lb, kernel, debiased, sigma, reduction, batch_size, seed
        )
    frame = _grid_frame(la, lb, grid, se)
    return frame.assign(
        kernel=kernel,
        debiased=debiased,
        samples=n,
        batch_size=0 if batch_size is None else batch_size,
    )


def _layer_features(
    model: nn.Module, x: torch.Tensor, layers: list[str], reduction: str
) -> dict[str, torch.Tensor]:
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for batch in iter_activations(
        model, x, layers=layers, batch_size=256, reduction=reduction, any_order=True
    ):
        for name, v in batch.items():
            parts[name].append(v)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def _full_batch_grid(
    model_a, model_b, x, la, lb, kernel, debiased, sigma, reduction, parts
) -> tuple[np.ndarray, np.ndarray]:
    """Model a's centred Grams are kept (``layers_a × n²``); model b's are made one layer at a time and
    dotted with them, and each layer's features are dropped once its Gram exists.

    The jackknife needs no Gram of fewer samples: the samples are ordered part by part, so that a part
    is a block of rows, and the HSIC of the samples outside a part follows from sums over the whole
    Grams (:class:`_LeaveOut`), read in the same pass as the grid's inner products."""
    if not parts:  # one part of everything: the grid alone
        parts = [np.arange(len(x))]
        jackknife = False
    else:
        jackknife = True
        x = x[torch.as_tensor(np.concatenate(parts))]  # the grid does not depend on the samples' order
    bounds = np.cumsum([0, *[len(p) for p in parts]])

    def centred(features: torch.Tensor) -> torch.Tensor:
        # a linear Gram is made from centred features: already double-centred
        return _centre(_checked_gram(features, kernel, sigma, "cka_grid"), debiased, kernel == "linear")

    feats = _layer_features(model_a, x, la, reduction)
    stack = torch.empty(len(la), len(x), len(x), dtype=torch.float64)
    for i, name in enumerate(la):
        stack[i] = centred(feats.pop(name))
    left_a = _LeaveOut(stack, bounds, debiased)
    norms_a = torch.linalg.vector_norm(stack.flatten(1), dim=1)
    feats = _layer_features(model_b, x, lb, reduction)
    grid = torch.empty(len(la), len(lb), dtype=torch.float64)
    left_out = torch.empty(len(parts), len(la), len(lb), dtype=torch.float64)
    for j, name in enumerate(lb):
        gram = centred(feats.pop(name))
        inner, removed = left_a.products(gram)
        denom = norms_a * torch.linalg.vector_norm(gram)
        grid[:, j] = torch.where(denom > 0, inner / denom.clamp_min(1e-300), torch.zeros_like(inner))
        if jackknife:
            left_b = _LeaveOut(gram[None], bounds, debiased)
            scale = torch.sqrt((left_a.itself * left_b.itself).clamp_min(0))
            cross = left_a.hsic(left_b, inner, removed)
            left_out[:, :, j] = torch.where(
                scale > 0, cross / scale.clamp_min(1e-300), torch.zeros_like(cross)
            ).T
    if not jackknife:
        return grid.numpy(), np.full(grid.shape, np.nan)
    return grid.numpy(), _jackknife_se(left_out)


class _LeaveOut:
    """HSIC of centred Grams (``(layers, n, n)``, symmetric) on the samples outside each part, the parts
    being consecutive blocks of samples (``bounds``), from sums over the whole Grams.

    On the ``m`` samples ``S`` outside a part, with ``μᵢ = Σ_{j∈S} Kᵢⱼ``: biased HSIC (Gretton et al. 2005)
    ``∝ Σ_{S×S} K∘L − (2/m) Σ_S μᵢνᵢ + (Σ_S μ)(Σ_S ν)/m²``; unbiased (Song et al. 2012, eq. 5, zero
    diagonals) ``∝ Σ_{S×S} K∘L + (Σ_S μ)(Σ_S ν)/((m−1)(m−2)) − 2/(m−2) Σ_S μᵢνᵢ``; the factors common to
    both kernels cancel in CKA. Centring the whole Gram first changes neither: it adds ``aᵢ + aⱼ`` terms,
    which both centrings of ``S`` remove. ``Σ_{S×S} K∘L = Σ K∘L − (2 Σ_{rows of the part} K∘L −
    Σ_{part × part} K∘L)``."""

    def __init__(self, grams: torch.Tensor, bounds: np.ndarray, debiased: bool) -> None:
        self.grams, self.debiased = grams, debiased
        n = grams.shape[-1]
        self.blocks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.m = torch.as_tensor([n - (b - a) for a, b in self.blocks], dtype=torch.float64)
        rows = grams.sum(-1)  # (layers, n)
        outside = torch.ones(n, len(self.blocks), dtype=torch.float64)
        for g, (a, b) in enumerate(self.blocks):
            outside[a:b, g] = 0.0
        # μ on S for every part, (layers, n, parts): the row sums less the part's columns, 0 in the part
        self.mu = torch.stack([rows - grams[:, :, a:b].sum(-1) for a, b in self.blocks], dim=-1) * outside
        self.total = self.mu.sum(1)  # Σ_S μ, (layers, parts)
        # each Gram with itself
        layers = len(grams)

        def sq(block: torch.Tensor) -> torch.Tensor:  # Σ of squares per layer, without a squared copy
            return torch.linalg.vector_norm(block.reshape(layers, -1), dim=1) ** 2

        removed = [2 * sq(grams[:, a:b, :]) - sq(grams[:, a:b, a:b].contiguous()) for a, b in self.blocks]
        square = sq(grams)[:, None] - torch.stack(removed, dim=-1)
        self.itself = self._combine(square, (self.mu * self.mu).sum(1), self.total * self.total)

    def _combine(self, square: torch.Tensor, cross: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
        m = self.m
        if self.debiased:
            return square + totals / ((m - 1) * (m - 2)) - 2 * cross / (m - 2)
        return square - 2 * cross / m + totals / m**2

    def products(self, gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Σ K∘L`` per layer with one more Gram ``L``, and per layer and part what leaving the part
        out removes from it: ``2 Σ_{rows of the part} K∘L − Σ_{part × part} K∘L``."""
        n = gram.shape[-1]
        flat = gram.reshape(-1)
        rows = [
            self.grams[:, a:b, :].reshape(len(self.grams), -1) @ flat[a * n : b * n] for a, b in self.blocks
        ]
        corners = [(self.grams[:, a:b, a:b] * gram[a:b, a:b]).sum((1, 2)) for a, b in self.blocks]
        inner = torch.stack(rows).sum(0)
        return inner, torch.stack([2 * r - c for r, c in zip(rows, corners, strict=True)], dim=-1)

    def hsic(self, other: _LeaveOut, inner: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        """HSIC (up to the common factor) of every Gram here with ``other``'s one Gram on the samples
        outside each part, ``(layers, parts)``, from :meth:`products` with it."""
        cross = torch.einsum("lig,ig->lg", self.mu, other.mu[0])  # Σ_S μᵢνᵢ
        return self._combine(inner[:, None] - removed, cross, self.total * other.total[0])


def _minibatch_grid(
    model_a, model_b, x, la, lb, kernel, debiased, sigma, reduction, batch_size, seed
) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    # shuffled (Nguyen et al. 2021), so that class-sorted inputs do not give one-class batches;
    # near-equal sizes, every one >= 4
    order = np.random.default_rng(seed).permutation(n)
    chunks = np.array_split(order, max(1, n // batch_size))
    cross = torch.zeros(len(chunks), len(la), len(lb), dtype=torch.float64)
    self_a = torch.zeros(len(chunks), len(la), dtype=torch.float64)
    self_b = torch.zeros(len(chunks), len(lb), dtype=torch.float64)
    for c, idx in enumerate(chunks):
        xb = x[torch.as_tensor(idx)]
        ua = torch.stack(
            [
                centred_gram(v, kernel=kernel, debiased=debiased, sigma=sigma).flatten()
                for v in next(
                    iter_activations(
                        model_a, xb, layers=la, batch_size=len(xb), reduction=reduction, any_order=True
                    )
                ).values()
            ]
        )
        ub = torch.stack(
            [
                centred_gram(v, kernel=kernel, debiased=debiased, sigma=sigma).flatten()
                for v in next(
                    iter_activations(
                        model_b, xb, layers=lb, batch_size=len(xb), reduction=reduction, any_order=True
                    )
                ).values()
            ]
        )
        m = len(idx)
        scale = 1.0 / (m * (m - 3)) if debiased else 1.0 / (m - 1) ** 2
        cross[c] = scale * (ua @ ub.T)
        self_a[c] = scale * (ua * ua).sum(1)
        self_b[c] = scale * (ub * ub).sum(1)

    def ratio(cross: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> torch.Tensor:
        denom = torch.sqrt(self_a[..., :, None] * self_b[..., None, :])
        return torch.where(denom > 0, cross / denom.clamp_min(1e-300), torch.zeros_like(cross))

    grid = ratio(cross.sum(0), self_a.sum(0), self_b.sum(0))
    # each jackknife estimate leaves one batch's sums out
    left_out = ratio(cross.sum(0) - cross, self_a.sum(0) - self_a, self_b.sum(0) - self_b)
    return grid.numpy(), _jackknife_se(left_out)


# -- neighbourhoods ---------------------------------------------------------------------------------
def knn_indices(
    x: torch.Tensor | np.ndarray, *, k: int = 10, metric: str = "euclidean", chunk: int = 2048
) -> torch.Tensor:
    """The ``k`` nearest other samples of every sample, ``(n, k)`` indices, nearest first.

    Distances are computed in row chunks, so memory stays ``O(chunk · n)``. Ties are broken by index.
    """
    where = "knn_indices"
    check_choice(metric, "metric", where, ("euclidean", "cosine"))
    feats = _as_features(x, "x", where).double()
    n = len(feats)
    k = check_int(k, "k", where, minimum=1, maximum=max(1, n - 1))
    if n < 2:
        fail("x", where, "at least 2 samples", None, got=f"{n} sample(s)")
    if metric == "cosine":
        feats = feats / feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sq = (feats * feats).sum(1)
    out = []
    for start in range(0, n, chunk):
        rows = feats[start : start + chunk]
        d2 = sq[start : start + chunk, None] + sq[None, :] - 2 * rows @ feats.T
        d2[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = math.inf
        # stable ordering: sort by distance then index (argsort is stable on equal keys)
        order = torch.argsort(d2, dim=1, stable=True)[:, :k]
        out.append(order)
    return torch.cat(out)


def mutual_knn_overlap(
    a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, *, k: int = 10, metric: str = "euclidean"
) -> np.ndarray:
    """Per sample, the fraction of its ``k`` nearest neighbours shared by two representations of the same
    samples (``|N_a(i) ∩ N_b(i)| / k``), in ``[0, 1]``.

    >>> import torch
    >>> x = torch.randn(30, 5)
    >>> float(mutual_knn_overlap(x, 2 * x, k=5).min())
    1.0
    """
    where = "mutual_knn_overlap"
    fa, fb = _as_features(a, "a", where), _as_features(b, "b", where)
    if len(fa) != len(fb):
        fail("b", where, f"features of the same {len(fa)} samples as a", None, got=f"{len(fb)} rows")
    ia = knn_indices(fa, k=k, metric=metric)
    ib = knn_indices(fb, k=k, metric=metric)
    shared = (ia[:, :, None] == ib[:, None, :]).any(2).sum(1)
    return (shared.double() / ia.shape[1]).numpy()


# -- logit geometry ---------------------------------------------------------------------------------
def logit_decomposition(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Split linear logits ``zᵢ꜀ = ‖hᵢ‖ ‖w꜀‖ cos θᵢ꜀ + b꜀`` into their geometric parts.

    ``features: (n, d)`` penultimate features, ``weight: (K, d)``, ``bias: (K,)``. Returns float64
    ``feature_norm (n,)``, ``weight_norm (K,)``, ``cosine (n, K)`` (0 where a norm is 0), ``bias (K,)``
    and ``logits (n, K)``, which the parts reconstruct exactly (to rounding).
    """
    where = "logit_decomposition"
    h = _as_features(features, "features", where).double()
    w = torch.as_tensor(weight).detach().cpu().double()
    if w.ndim != 2 or w.shape[1] != h.shape[1]:
        fail(
            "weight",
            where,
            f"a (K, {h.shape[1]}) matrix matching the features' width",
            None,
            got=f"shape {tuple(w.shape)}",
        )
    b = (
        torch.zeros(w.shape[0], dtype=torch.float64)
        if bias is None
        else torch.as_tensor(bias).detach().cpu().double()
    )
    hn = h.norm(dim=1)
    wn = w.norm(dim=1)
    denom = hn[:, None] * wn[None, :]
    dots = h @ w.T
    cos = torch.where(denom > 0, dots / denom.clamp_min(1e-300), torch.zeros_like(dots)).clamp(-1, 1)
    return {"feature_norm": hn, "weight_norm": wn, "cosine": cos, "bias": b, "logits": dots + b}


def logit_geometry(
    model: nn.Module,
    x: torch.Tensor | Inputs,
    y: torch.Tensor,
    *,
    sample_id: np.ndarray | Sequence[int] | None = None,
    head: str | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Per sample, the geometry of its classification logit (the comparison of pruning methods in
    e.g. Kim et al. 2023; the norm/angle split of Liu et al. 2016's large-margin view):

    ``feature_norm`` ‖h‖ of the penultimate features, ``weight_norm`` ‖w_y‖ of its class weights,
    ``cosine`` and ``angle`` (degrees) between h and w_y, ``bias`` b_y, ``logit`` z_y, the
    ``margin`` z_y − max_{c≠y} z_c and ``nearest_class`` (the other class of largest logit), plus
    ``prediction`` and ``correct``. ``head`` names the final linear layer (found when omitted).
    Rows are keyed by ``sample_id`` (the given ids, or positions in ``x``).
    """
    from pruneviz.analysis.activations import activations, classifier_layer

    where = "logit_geometry"
    head = head if head is not None else classifier_layer(model)
    check_layers(model, [head], where, "head")
    layer = dict(model.named_modules())[head]
    if not isinstance(layer, nn.Linear):
        fail("head", where, "the name of an nn.Linear layer that produces the logits", head)
    y = torch.as_tensor(y).long().cpu()
    if len(y) != len(x):
        fail("y", where, f"{len(x)} labels (one per input)", None, got=f"{len(y)} labels")
    ids = np.arange(len(x)) if sample_id is None else np.asarray(sample_id)
    if len(ids) != len(x) or len(np.unique(ids)) != len(ids):
        fail(
            "sample_id",
            where,
            f"{len(x)} distinct ids (one per input)",
            None,
            got=f"{len(ids)} ids, {len(np.unique(ids))} distinct",
        )
    feats = activations(model, x, layers=[head], batch_size=batch_size, inputs=True)[head]
    parts = logit_decomposition(feats, layer.weight, layer.bias)
    k = parts["logits"].shape[1]
    if int(y.min()) < 0 or int(y.max()) >= k:
        fail("y", where, f"labels in [0, {k - 1}]", None, got=f"labels in [{int(y.min())}, {int(y.max())}]")
    rows = torch.arange(len(y))
    z = parts["logits"]
    others = z.clone()
    others[rows, y] = -math.inf
    nearest = others.argmax(1)
    cos_y = parts["cosine"][rows, y]
    pred = z.argmax(1)
    return pd.DataFrame(
        {
            "sample_id": ids,
            "label": y.numpy(),
            "feature_norm": parts["feature_norm"].numpy(),
            "weight_norm": parts["weight_norm"][y].numpy(),
            "cosine": cos_y.numpy(),
            "angle": torch.rad2deg(torch.arccos(cos_y)).numpy(),
            "bias": parts["bias"][y].numpy(),
            "logit": z[rows, y].numpy(),
            "margin": (z[rows, y] - others.max(1).values).numpy(),
            "nearest_class": nearest.numpy(),
            "prediction": pred.numpy(),
            "correct": (pred == y).numpy(),
        }
    )


GEOMETRY_QUANTITIES = ("feature_norm", "weight_norm", "cosine", "angle", "logit", "margin")


def logit_geometry_change(
    before: pd.DataFrame, after: pd.DataFrame, *, on: Sequence[str] = ("sample_id",)
) -> pd.DataFrame:
    """How each sample's logit geometry moved from ``before`` (e.g. dense, or clean) to ``after``
    (pruned, or corrupted): per sample the two values and their difference for every quantity of
    :func:`logit_geometry`, sorted so that the samples whose margin moved most come first (``rank``).
    Tidy: ``on`` columns, ``label``, ``metric``, ``before``, ``after``, ``change``, ``rank``.
    """
    where = "logit_geometry_change"
    keys = list(on)
    for param, frame in (("before", before), ("after", after)):
        missing = [c for c in [*keys, "label", *GEOMETRY_QUANTITIES] if c not in frame.columns]
        if missing:
            fail(
                param,
                where,
                "a frame from logit_geometry / run_logit_geometry",
                None,
                got=f"missing {missing}",
            )
    for param, frame in (("before", before), ("after", after)):
        if frame.duplicated(keys).any():
            data_fail(
                param,
                where,
                f"one row per {keys}",
                f"{int(frame.duplicated(keys).sum())} repeated key(s)",
                "pass the frame of a single run and split.",
            )
    joined = before[[*keys, "label", *GEOMETRY_QUANTITIES]].merge(
        after[[*keys, "label", *GEOMETRY_QUANTITIES]], on=keys, suffixes=("_before", "_after"), validate="1:1"
    )
    if len(joined) != len(before) or len(joined) != len(after):
        data_fail(
            "after",
            where,
            f"the same samples as before ({len(before)})",
            f"{len(after)} samples, {len(joined)} shared",
            "compare frames computed on the same samples.",
        )
    if not np.array_equal(joined["label_before"].to_numpy(), joined["label_after"].to_numpy()):
        data_fail("after", where, "the same labels as before for every sample", "labels that differ")
    shift = (joined["margin_after"] - joined["margin_before"]).abs().to_numpy()
    order = np.argsort(-shift, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    joined = joined.assign(rank=rank)
    frames = []
    for q in GEOMETRY_QUANTITIES:
        frames.append(
            pd.DataFrame(
                {
                    **{k: joined[k].to_numpy() for k in keys},
                    "label": joined["label_before"].to_numpy(),
                    "metric": q,
                    "before": joined[f"{q}_before"].to_numpy(),
                    "after": joined[f"{q}_after"].to_numpy(),
                    "change": (joined[f"{q}_after"] - joined[f"{q}_before"]).to_numpy(),
                    "rank": rank,
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        .sort_values(["rank", "metric"], kind="stable")
        .reset_index(drop=True)
    )


# -- aligned embeddings -----------------------------------------------------------------------------
def _pca(x: torch.Tensor, q: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(n, q)`` of the top-``q`` principal components (zero columns beyond the data's rank or
    width) and their explained variances. Exact (an eigendecomposition of the smaller Gram/covariance)
    when ``min(n, d) <= 2000``; otherwise randomised with power iterations (Halko et al. 2011)."""
    xc = x.double() - x.double().mean(0, keepdim=True)
    n, d = xc.shape
    if min(n, d) > 2000:
        gen = torch.Generator().manual_seed(seed)
        omega = torch.randn(d, q + 10, dtype=torch.float64, generator=gen)
        basis = torch.linalg.qr(xc @ omega)[0]
        for _ in range(4):
            basis = torch.linalg.qr(xc @ (xc.T @ basis))[0]
        u_small, sv, _ = torch.linalg.svd(basis.T @ xc, full_matrices=False)
        scores = (basis @ u_small[:, :q]) * sv[:q]
        evals = sv[:q] ** 2
    elif d <= n:
        evals, evecs = torch.linalg.eigh(xc.T @ xc)
        evals, evecs = evals.flip(0)[:q], evecs.flip(1)[:, :q]
        scores = xc @ evecs
    else:
        evals, evecs = torch.linalg.eigh(xc @ xc.T)
        evals, evecs = evals.flip(0)[:q], evecs.flip(1)[:, :q]
        scores = evecs * evals.clamp_min(0).sqrt()
    if scores.shape[1] < q:  # fewer components than asked: pad with zero scores
        scores = torch.cat([scores, scores.new_zeros(n, q - scores.shape[1])], dim=1)
        evals = torch.cat([evals, evals.new_zeros(q - len(evals))])
    # a deterministic sign: the largest-magnitude score of each component is positive
    idx = scores.abs().argmax(0)
    signs = torch.sign(scores[idx, torch.arange(scores.shape[1])])
    signs[signs == 0] = 1
    return scores * signs, evals.clamp_min(0) / max(1, len(x) - 1)


def aligned_pca(
    features: Mapping[str, torch.Tensor | np.ndarray],
    *,
    reference: str | None = None,
    components: int = 2,
    dims: int = 50,
) -> pd.DataFrame:
    """Embed several representations of the same samples (e.g. dense and pruned) in one 2-D space.

    Each representation is reduced to its top ``dims`` principal components; every one is then rotated
    onto the ``reference`` (default: the first) by orthogonal Procrustes (Schönemann 1966) in that space,
    and all are shown in the reference's first ``components`` principal axes. Representations may have
    different widths (channel-pruned models); a representation narrower than ``components`` gets zero
    coordinates beyond its width. Wide features use a randomised PCA. Tidy: ``model``, ``sample`` (row
    position), ``x``, ``y``
    (more components as ``c2``, …), ``disparity`` (the relative Procrustes residual of that model,
    0 for the reference).
    """
    where = "aligned_pca"
    if not isinstance(features, Mapping) or not features:
        fail("features", where, "a non-empty dict {name: (n, d) features}", type(features).__name__)
    names = list(features)
    reference = names[0] if reference is None else reference
    if reference not in features:
        fail("reference", where, f"one of the names in features {names}", reference)
    components = check_int(components, "components", where, minimum=1)
    dims = check_int(dims, "dims", where, minimum=components)
    feats = {k: _as_features(v, f"features[{k!r}]", where) for k, v in features.items()}
    counts = {len(v) for v in feats.values()}
    if len(counts) > 1:
        fail(
            "features",
            where,
            "features of the same samples for every model",
            None,
            got=f"sample counts {sorted(counts)}",
        )
    n = counts.pop()
    if n < 3:
        fail("features", where, "at least 3 samples", None, got=f"{n} sample(s)", fix="pass more samples.")
    # components beyond a representation's width or rank are zero (padded), never an error
    q = max(components, min(dims, n - 1, *(v.shape[1] for v in feats.values())))
    scores = {k: _pca(v, q)[0] for k, v in feats.items()}
    ref = scores[reference]
    ref_norm = float(ref.norm()) or 1.0
    frames = []
    for name in names:
        s = scores[name]
        if name == reference:
            aligned, disparity = s, 0.0
        else:
            # orthogonal Procrustes: R = U Vᵀ from the SVD of sᵀ ref, with the scale that fits best
            u, sv, vh = torch.linalg.svd(s.T @ ref)
            r = u @ vh
            scale = float(sv.sum() / (s.norm() ** 2).clamp_min(1e-300))
            aligned = scale * (s @ r)
            disparity = float((aligned - ref).norm()) / ref_norm
        cols = {
            ("x" if i == 0 else "y" if i == 1 else f"c{i}"): aligned[:, i].numpy() for i in range(components)
        }
        frames.append(pd.DataFrame({"model": name, "sample": np.arange(n), **cols, "disparity": disparity}))
    return pd.concat(frames, ignore_index=True)


#: above this many samples the neighbour search of ``aligned_umap`` is approximate (NN-descent through
#: umap-learn, which the peer uses from 4,096 samples); at or below it, exact (chunked distances)
_EXACT_KNN_MAX = 20_000
#: the scale of the initial layout (umap-learn's: the largest coordinate is 10) and the jitter that
#: separates coincident starting points (umap-learn's ``noisy_scale_coords``)
_INIT_EXTENT, _INIT_JITTER = 10.0, 1e-4


def _knn_with_self(x: torch.Tensor, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of every row in Euclidean distance, the row itself first (umap-learn's
    convention for ``knn_indices``): int32 ``(n, k)`` indices and float32 ``(n, k)`` distances, nearest
    first. Candidates come from float64 distances in row chunks (memory ``O(chunk · n)``), their distances
    from the differences themselves."""
    feats = x.double()
    n = len(feats)
    sq = (feats * feats).sum(1)
    idx, dist = [], []
    for start in range(0, n, chunk):
        rows = feats[start : start + chunk]
        d2 = (sq[start : start + chunk, None] + sq[None, :] - 2 * rows @ feats.T).clamp_min_(0)
        own = torch.arange(start, start + len(rows))
        d2[torch.arange(len(rows)), own] = -1.0  # the row itself comes first even among duplicates
        ind = torch.topk(d2, k, dim=1, largest=False, sorted=True).indices
        # the chosen distances directly (the expansion above loses digits: twins would sit 1e-8 apart)
        val = (feats[ind] - rows[:, None, :]).norm(dim=2)
        val, order = torch.sort(val, dim=1, stable=True)
        idx.append(torch.gather(ind, 1, order))
        dist.append(val)
    return torch.cat(idx).numpy().astype(np.int32), torch.cat(dist).numpy().astype(np.float32)


def _fuzzy_graph(x: torch.Tensor, k: int, random_state: np.random.RandomState):
    """umap-learn's fuzzy simplicial set (the symmetrised membership graph, scipy CSR ``(n, n)``) of the
    features ``x`` on their ``k`` nearest neighbours (``k`` counting the sample itself)."""
    from umap.umap_ import fuzzy_simplicial_set, nearest_neighbors

    arr = x.double().numpy()
    if len(arr) <= _EXACT_KNN_MAX:
        knn_idx, knn_dist = _knn_with_self(x, k)
    else:
        knn_idx, knn_dist, _ = nearest_neighbors(arr, k, "euclidean", {}, False, random_state)
    graph, _, _ = fuzzy_simplicial_set(
        arr, k, random_state, "euclidean", knn_indices=knn_idx, knn_dists=knn_dist
    )
    return graph.tocsr()


def _neighbourhood_jaccard(a, b) -> np.ndarray:
    """Per sample ``i``, ``|N_a(i) ∩ N_b(i)| / |N_a(i) ∪ N_b(i)|`` for the neighbours (stored entries) of two
    graphs of the same samples (1 where both are empty): how strongly AlignedUMAP ties the two positions
    of ``i`` together (umap-learn's ``build_neighborhood_similarities`` for linked samples)."""
    pa, pb = (g.copy() for g in (a, b))
    pa.data[:], pb.data[:] = 1.0, 1.0
    inter = np.asarray(pa.multiply(pb).sum(1)).ravel()
    union = np.diff(pa.indptr) + np.diff(pb.indptr) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0).astype(np.float32)


def _aligned_epoch():
    """umap-learn's epoch of aligned SGD (``umap.layouts._optimize_layout_aligned_euclidean_single_epoch``,
    the one ``AlignedUMAP`` runs), compiled once per process for stacked arrays. umap-learn's own driver
    recompiles it on every fit and passes numba typed lists, whose item access dominates an epoch."""
    global _ALIGNED_EPOCH
    if _ALIGNED_EPOCH is None:
        import numba
        from umap import layouts

        _ALIGNED_EPOCH = numba.njit(layouts._optimize_layout_aligned_euclidean_single_epoch, fastmath=True)
    return _ALIGNED_EPOCH


_ALIGNED_EPOCH = None


def _aligned_layout(
    graphs: Sequence, init: np.ndarray, *, n_epochs: int, a: float, b: float, alignment: float, seed: int
) -> np.ndarray:
    """Optimise the ``(m, n, 2)`` layouts ``init`` of ``m`` fuzzy graphs of the same ``n`` samples jointly:
    umap-learn's aligned cross-entropy SGD (attraction along edges, negative sampling, and a pull of each
    sample towards its positions in the neighbouring views weighted by ``alignment`` and the
    neighbourhood overlap), sample ``i`` of every view linked to sample ``i`` of the others."""
    from umap.umap_ import make_epochs_per_sample

    m, n = init.shape[:2]
    window = 3  # AlignedUMAP's alignment window: views up to three apart pull on each other
    edges = []
    for g in graphs:
        coo = g.tocoo(copy=True)
        # as umap-learn: edges too weak to be sampled once in n_epochs are dropped
        coo.data[coo.data < coo.data.max() / float(n_epochs)] = 0.0
        coo.eliminate_zeros()
        edges.append(coo)
    width = max(c.nnz for c in edges)
    heads = np.zeros((m, width), np.int32)
    tails = np.zeros((m, width), np.int32)
    per_sample = np.full((m, width), -1.0)
    for i, c in enumerate(edges):
        heads[i, : c.nnz], tails[i, : c.nnz] = c.row, c.col
        per_sample[i, : c.nnz] = make_epochs_per_sample(c.data, n_epochs)
    # padding edges (views with fewer edges) are scheduled never to be sampled
    never = np.float32(np.finfo(np.float32).max)
    next_sample = np.where(per_sample > 0, per_sample, never).astype(np.float32)
    per_negative = np.where(per_sample > 0, per_sample / 5.0, never).astype(np.float32)
    next_negative = per_negative.copy()
    relations = np.full((m, 2 * window + 1, n), -1, np.int32)
    weights = np.zeros((m, 2 * window + 1, n), np.float32)
    for i in range(m):
        for offset in range(-window, window + 1):
            j = i + offset
            if offset != 0 and 0 <= j < m:
                relations[i, window + offset] = np.arange(n, dtype=np.int32)
                weights[i, window + offset] = _neighbourhood_jaccard(graphs[i], graphs[j])
    rng = np.random.RandomState(seed)
    rng_state = rng.randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3).astype(np.int64)
    layout = np.ascontiguousarray(init, dtype=np.float32)
    epoch = _aligned_epoch()
    for e in range(n_epochs):
        alpha = 1.0 - e / n_epochs  # umap-learn's linearly decaying learning rate
        epoch(
            layout, layout, heads, tails, per_sample, a, b, weights, relations, rng_state,
            1.0, alignment, layout.shape[2], True, alpha, per_negative, next_negative, next_sample, e,
        )  # fmt: skip
    return layout


def aligned_umap(
    features: Mapping[str, torch.Tensor | np.ndarray],
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int = 200,
    alignment: float = 0.01,
    seed: int = 0,
) -> pd.DataFrame:
    """Embed several representations of the same samples with aligned UMAP (McInnes et al. 2018; the
    aligned variant of umap-learn's ``AlignedUMAP``), sample ``i`` of one linked to sample ``i`` of the
    others.

    Each representation gets its own fuzzy neighbour graph (exact neighbours up to 20,000 samples,
    NN-descent beyond); all layouts start from the aligned PCA view (:func:`aligned_pca`, a
    structure-preserving start, Kobak & Linderman 2021) instead of AlignedUMAP's spectral one, and are
    optimised together by umap-learn's aligned SGD, whose pull of a sample towards its positions in the
    other views has weight ``alignment`` (``AlignedUMAP``'s ``alignment_regularisation``). Unlike
    ``AlignedUMAP`` no separate UMAP is fitted per representation first, and the SGD is compiled once per
    process; the layouts are as trustworthy (``benchmarks/embedding.py``). The first call in a process
    compiles (numba, a few seconds); cache the result (see ``run_embedding``).
    Tidy: ``model``, ``sample``, ``x``, ``y``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(60, 8))
    >>> frame = aligned_umap({"dense": x, "pruned": x + 0.1}, n_epochs=20)
    >>> sorted(frame.model.unique())
    ['dense', 'pruned']
    """
    from pruneviz._optional import require

    where = "aligned_umap"
    require("umap", "Aligned UMAP embeddings")
    if not isinstance(features, Mapping) or len(features) < 2:
        fail(
            "features",
            where,
            "a dict of at least two representations {name: (n, d) features}",
            None,
            got=f"{len(features) if isinstance(features, Mapping) else type(features).__name__}",
            fix="pass the dense and the pruned features together.",
        )
    n_neighbors = check_int(n_neighbors, "n_neighbors", where, minimum=2)
    n_epochs = check_int(n_epochs, "n_epochs", where, minimum=1)
    if isinstance(min_dist, bool) or not isinstance(min_dist, int | float) or not 0 <= min_dist <= 1:
        fail("min_dist", where, "a number in [0, 1]", min_dist, "pass e.g. min_dist=0.1.")
    alignment = check_positive_float(alignment, "alignment", where)
    seed = check_int(seed, "seed", where, minimum=0)
    names = list(features)
    feats = [_as_features(features[k], f"features[{k!r}]", where) for k in names]
    n = len(feats[0])
    if any(len(f) != n for f in feats):
        fail(
            "features",
            where,
            "features of the same samples for every model",
            None,
            got=f"sample counts {[len(f) for f in feats]}",
        )
    if n < 3:
        fail("features", where, "at least 3 samples", None, got=f"{n} sample(s)", fix="pass more samples.")
    from umap.umap_ import find_ab_params

    k = min(n_neighbors, n - 1)
    rng = np.random.RandomState(seed)
    graphs = [_fuzzy_graph(f, k, rng) for f in feats]
    view = aligned_pca(dict(zip(names, feats, strict=True)), components=2)
    init = np.stack([view.loc[view.model == name, ["x", "y"]].to_numpy() for name in names])
    extent = float(np.abs(init[0]).max())
    init = init * (_INIT_EXTENT / extent if extent > 0 else 1.0)
    init = init + rng.normal(scale=_INIT_JITTER, size=init.shape)
    a, b = find_ab_params(1.0, float(min_dist))
    layout = _aligned_layout(
        graphs, init, n_epochs=n_epochs, a=float(a), b=float(b), alignment=alignment, seed=seed
    )
    frames = [
        pd.DataFrame({"model": name, "sample": np.arange(n), "x": emb[:, 0], "y": emb[:, 1]})
        for name, emb in zip(names, layout, strict=True)
    ]
    return pd.concat(frames, ignore_index=True)
