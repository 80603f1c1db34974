from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz.analysis import (
    condition_number,
    conv_operator_singular_values,
    conv_spectral_norm,
    effective_rank,
    esd,
    lipschitz_upper_bound,
    marchenko_pastur_edges,
    power_law_fit,
    pq_index,
    randomized_spectrum_table,
    spectrum_change,
    spectrum_table,
    stable_rank,
)
from pruneviz.exceptions import ValidationError
from pruneviz.models import build_model
from pruneviz.prune import prune_


def circular_conv_matrix(conv: nn.Conv2d, n: int) -> np.ndarray:
    """The dense matrix of a stride-1 convolution with circular padding on n×n inputs, column by column."""
    c_in = conv.in_channels
    cols = []
    for i in range(c_in * n * n):
        e = torch.zeros(1, c_in, n, n, dtype=torch.float64)
        e.view(-1)[i] = 1.0
        k = conv.kernel_size[0]
        padded = F.pad(e, (k // 2, k // 2, k // 2, k // 2), mode="circular")
        cols.append(F.conv2d(padded, conv.weight.detach().double()).flatten())
    return torch.stack(cols, dim=1).numpy()


def zero_padded_conv_matrix(conv: nn.Conv2d, n: int) -> np.ndarray:
    c_in = conv.in_channels
    cols = []
    for i in range(c_in * n * n):
        e = torch.zeros(1, c_in, n, n, dtype=torch.float64)
        e.view(-1)[i] = 1.0
        cols.append(F.conv2d(e, conv.weight.detach().double(), None, conv.stride, conv.padding).flatten())
    return torch.stack(cols, dim=1).numpy()


@pytest.mark.reference
@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "n"), [(2, 3, 3, 5), (3, 2, 3, 4), (1, 4, 1, 3), (2, 2, 5, 6)]
)
def test_fft_conv_spectrum_equals_the_dense_operator(c_in, c_out, k, n):
    torch.manual_seed(0)
    conv = nn.Conv2d(c_in, c_out, k, bias=False)
    dense = np.linalg.svd(circular_conv_matrix(conv, n), compute_uv=False)
    fft = conv_operator_singular_values(conv, n)
    np.testing.assert_allclose(np.sort(fft)[::-1][: dense.size], dense[: fft.size], rtol=1e-9, atol=1e-12)


@pytest.mark.reference
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 1), (1, 0)])
def test_power_iteration_finds_the_zero_padded_operator_norm(stride, padding):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, bias=False)
    exact = np.linalg.svd(zero_padded_conv_matrix(conv, 6), compute_uv=False)[0]
    assert conv_spectral_norm(conv, (2, 6, 6), iterations=500, rtol=1e-12) == pytest.approx(exact, rel=1e-6)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("n", "kind", "seed"), [(300, "pareto", 0), (700, "pareto", 1), (900, "mp", 2), (40, "mp", 3)]
)
def test_power_law_fit_matches_a_direct_clauset_search(n, kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "pareto":
        x = (1 - rng.random(n)) ** (-1 / 2.5)  # Pareto with α = 3.5 in density terms (x^-3.5)
    else:  # a Marchenko-Pastur bulk with a few spikes, like a weight matrix's ESD
        w = rng.normal(size=(n, n // 2)) + np.outer(rng.normal(size=n), rng.normal(size=n // 2)) * 0.3
        x = np.linalg.eigvalsh(w.T @ w)
    fit = power_law_fit(x)
    best = None
    data = np.sort(x)
    for i in range(len(data) - 1):
        tail = data[i:]
        a = 1 + len(tail) / np.sum(np.log(tail / data[i]))
        cdf = 1 - (tail / data[i]) ** (1 - a)
        d = np.max(np.abs(cdf - np.arange(len(tail)) / len(tail)))
        if best is None or d < best[0]:
            best = (d, a, data[i])
    assert pytest.approx(best[0]) == fit.D and fit.alpha == pytest.approx(best[1]) and fit.xmin == best[2]
    if kind == "pareto":
        assert 3.0 < fit.alpha < 4.0


@pytest.mark.reference
@pytest.mark.slow
def test_alpha_matches_weightwatcher():
    ww = pytest.importorskip("weightwatcher")
    model = build_model("resnet20", input_shape=(3, 16, 16), num_classes=10, width=2, seed=0)
    prune_(model, method="global_magnitude", sparsity=0.5)
    details = ww.WeightWatcher(model=model).analyze(randomize=False, mp_fit=False, plot=False)
    ours = spectrum_table(model).pivot_table(index="layer", columns="metric", values="value", sort=False)
    compared = 0
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for _, row in details.iterrows():
        name = row["longname"] if "longname" in row else names[compared]
        if name not in ours.index or ours.loc[name, "num_evals"] < 50:
            continue
        assert ours.loc[name, "alpha"] == pytest.approx(row["alpha"], abs=1e-6), name
        assert ours.loc[name, "alpha_hat"] == pytest.approx(row["alpha_weighted"], abs=1e-5), name
        compared += 1
    assert compared >= 10


def test_fully_pruned_layer_is_reported_not_a_crash():
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    with torch.no_grad():
        model.features[1].weight.zero_()
    table = spectrum_table(model).pivot_table(index="layer", columns="metric", values="value")
    assert math.isinf(table.loc["features.1", "condition_number"])
    assert table.loc["features.1", "zero_singular_values"] == 4 and table.loc["features.1", "sparsity"] == 1.0
    assert math.isnan(table.loc["features.1", "alpha"])


@pytest.mark.reference
def test_rank_statistics_closed_forms():
    sv = np.array([4.0, 2.0, 1.0, 0.0])
    assert condition_number(sv) == (4.0, 3, 1)
    assert condition_number(sv, rank=2) == (2.0, 2, 1)
    assert stable_rank(sv) == pytest.approx(21 / 16)
    p = np.array([4, 2, 1]) / 7
    assert effective_rank(sv) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert pq_index(torch.ones(10)) == pytest.approx(0.0, abs=1e-12)
    assert pq_index(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(1 - 4 ** (-0.5))


def test_esd_pools_kernel_slices_like_weightwatcher():
    conv = nn.Conv2d(3, 5, 3, bias=False)
    evals = esd(conv.weight)
    slices = [
        np.linalg.svd(conv.weight.detach().double()[:, :, i, j].numpy(), compute_uv=False)
        for i in range(3)
        for j in range(3)
    ]
    np.testing.assert_allclose(evals, np.sort(0.5 * np.concatenate(slices) ** 2), rtol=1e-12)


def test_table_operator_norms_and_lipschitz_bound():
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0)
    table = spectrum_table(model, input_shape=(1, 8, 8)).pivot_table(
        index="layer", columns="metric", values="value"
    )
    conv = model.features[0]
    exact = np.linalg.svd(zero_padded_conv_matrix(conv, 8), compute_uv=False)[0]
    assert table.loc["features.0", "operator_norm"] == pytest.approx(exact, rel=1e-4)
    assert table.loc["features.0", "circular_operator_norm"] >= table.loc["features.0", "operator_norm"] * 0.5
    bound = lipschitz_upper_bound(model, (1, 8, 8))
    x, y = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        ratio = float((model(x) - model(y)).norm() / (x - y).norm())
    assert ratio <= bound


def test_spectrum_change_and_errors():
    dense = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(16,), seed=0)
    pruned = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(16,), seed=0)
    prune_(pruned, method="magnitude", sparsity=0.8)
    change = spectrum_change(spectrum_table(dense), spectrum_table(pruned))
    row = change[(change.layer == "features.1") & (change.metric == "sparsity")].iloc[0]
    assert row.dense == 0.0 and row.pruned == pytest.approx(0.8, abs=0.02)
    with pytest.raises(
        ValidationError, match=r"'model' parameter of spectrum_table must be a model with Linear or Conv"
    ):
        spectrum_table(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValidationError, match=r"'layers' parameter.*Got 'fc9'"):
        spectrum_table(dense, layers=["fc9"])
    with pytest.raises(ValidationError, match=r"stride-1 convolution"):
        conv_operator_singular_values(nn.Conv2d(1, 1, 3, stride=2), 8)


@pytest.mark.reference
def test_random_matrices_fill_the_marchenko_pastur_bulk():
    torch.manual_seed(0)
    layer = nn.Linear(200, 800, bias=False)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.5)
    lo, hi = marchenko_pastur_edges(layer.weight)
    root_n, root_m = 800**0.5, 200**0.5
    assert hi == pytest.approx(0.25 * (root_n + root_m) ** 2, rel=0.02)
    assert lo == pytest.approx(0.25 * (root_n - root_m) ** 2, rel=0.02)
    evals = esd(layer.weight)
    assert evals.max() == pytest.approx(hi, rel=0.05) and evals.min() == pytest.approx(lo, rel=0.1)
    table = randomized_spectrum_table(nn.Sequential(layer)).set_index("metric").value
    assert table["num_spikes"] <= 2 and table["rand_ks_distance"] < 0.15


def test_structure_shows_as_spikes_above_the_bulk():
    torch.manual_seed(0)
    layer = nn.Linear(100, 400, bias=False)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.1)
        layer.weight += 3.0 * torch.randn(400, 3) @ torch.randn(3, 100) / 10  # rank-3 signal
    table = randomized_spectrum_table(nn.Sequential(layer)).set_index("metric").value
    assert table["num_spikes"] >= 3 and table["mp_softrank"] < 0.5 and table["rand_ks_distance"] > 0.005
