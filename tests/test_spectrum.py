from __future__ import annotations

import contextlib
import io
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz.analysis import (
    condition_number,
    conv_operator_singular_values,
    conv_spectral_norm,
    effective_rank,
    full_condition_number,
    lipschitz_upper_bound,
    power_law_fit,
    pq_index,
    randomized_spectrum_table,
    spectrum_change,
    spectrum_table,
    stable_rank,
)
from pruneviz.analysis.spectrum import esd, marchenko_pastur_edges, weightwatcher_size
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


def weightwatcher_details(model: nn.Module) -> pd.DataFrame:
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):  # its small-sample fit prints a line per layer
        return ww.WeightWatcher(model=model).analyze(randomize=False, mp_fit=False, plot=False)


def assert_alpha_as_weightwatcher(model: nn.Module) -> pd.DataFrame:
    """α, α̂ and x_min equal weightwatcher's on every layer it reports; no fit on the layers it does not
    report; NaN where it reports a placeholder (-1: failed, 0: all eigenvalues equal). Returns the
    compared rows (our layer name, our num_evals, |Δα|)."""
    details = weightwatcher_details(model)
    ours = spectrum_table(model).set_index(["layer", "metric"])["value"].unstack()
    reported = dict(zip(details["longname"], details.index, strict=True))
    assert set(reported) <= set(ours.index), "weightwatcher reports a layer missing from the table"
    genuine = {name for name, i in reported.items() if details.loc[i, "alpha"] > 0}
    assert set(ours.index[ours["alpha"].notna()]) == genuine
    rows = []
    for name in genuine:
        row = details.loc[reported[name]]
        diff = abs(ours.loc[name, "alpha"] - row["alpha"])
        assert diff <= 1e-6, (name, ours.loc[name, "alpha"], row["alpha"])
        assert ours.loc[name, "alpha_hat"] == pytest.approx(row["alpha_weighted"], abs=1e-6), name
        assert ours.loc[name, "xmin"] == pytest.approx(row["xmin"], rel=1e-9), name
        assert ours.loc[name, "num_tail"] == row["num_pl_spikes"], name
        rows.append((name, ours.loc[name, "num_evals"], diff))
    return pd.DataFrame(rows, columns=["layer", "num_evals", "diff"])


class TinyText(nn.Module):
    """Token and position embeddings, a 1-D convolution, two Linear layers (the classifier too small for
    weightwatcher to report)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(100, 16, padding_idx=0)
        self.positions = nn.Embedding(12, 16)
        self.conv = nn.Conv1d(16, 24, 9, padding=4)
        self.hidden = nn.Linear(24, 12)
        self.classifier = nn.Linear(12, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))
        x = self.conv(x.transpose(1, 2)).relu().mean(-1)
        return self.classifier(self.hidden(x).relu())


def reference_model(name: str) -> nn.Module:
    """Seeded models with small layers (10-20 eigenvalues), built without touching the global RNG."""
    if name == "mlp":  # the classifier is nn.Linear(84, 10)
        return build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(120, 84), seed=0)
    if name == "cnn":  # pruned, and a classifier with rows zeroed: 6 eigenvalues left of 10
        model = build_model(
            "cnn", input_shape=(1, 16, 16), num_classes=10, channels=(6, 16), hidden=(120, 84), seed=1
        )
        prune_(model, method="global_magnitude", sparsity=0.7)
        with torch.no_grad():
            model.classifier.weight[:4] = 0.0
        return model
    with torch.random.fork_rng():
        torch.manual_seed(2)
        if name == "text":
            return TinyText()
        # layers at weightwatcher's size limits: 8 eigenvalues (reported), 7 (not), a 2×2 kernel whose
        # size weightwatcher counts as in · 4 = 16 though it has 4 eigenvalues, a 1×1 kernel of size 2
        identity = nn.Linear(12, 12)
        nn.init.eye_(identity.weight)
        return nn.ModuleDict(
            {
                "eight": nn.Linear(8, 30),
                "seven": nn.Linear(10, 7),
                "even_kernel": nn.Conv2d(4, 1, 2),
                "wide_even_kernel": nn.Conv2d(16, 6, 2),
                "point": nn.Conv2d(3, 2, 1),
                "identity": identity,  # 12 equal eigenvalues: weightwatcher reports α = 0
                "conv1d_small": nn.Conv1d(16, 32, 3),
                "conv1d": nn.Conv1d(10, 12, 16),
            }
        )


@pytest.mark.reference
@pytest.mark.parametrize("name", ["mlp", "cnn", "text", "edges"])
def test_alpha_matches_weightwatcher_on_every_layer_it_reports(name):
    compared = assert_alpha_as_weightwatcher(reference_model(name))
    assert len(compared) >= 3 and (compared["num_evals"] < 20).any()
    if name == "mlp":
        assert compared.set_index("layer").loc["classifier", "num_evals"] == 10


@pytest.mark.reference
@pytest.mark.slow
def test_alpha_matches_weightwatcher_on_a_pruned_resnet():
    model = build_model("resnet20", input_shape=(3, 16, 16), num_classes=10, width=2, seed=0)
    prune_(model, method="global_magnitude", sparsity=0.5)
    assert len(assert_alpha_as_weightwatcher(model)) >= 20


@pytest.mark.reference
def test_small_sample_fit_closed_form():
    # 10 eigenvalues: tails of 10, 9 and 8 are tried with the bias-corrected α; the smallest D wins
    x = np.array([0.1, 0.3, 0.4, 0.9, 1.2, 2.0, 3.5, 8.0, 11.0, 30.0])
    best = None
    for i in range(3):
        tail = x[i:]
        a = 1 + (len(tail) - 1) / np.sum(np.log(tail / tail[0]))
        d = np.max(np.abs(1 - (tail / tail[0]) ** (1 - a) - np.arange(len(tail)) / len(tail)))
        best = (d, a, tail[0]) if best is None or d < best[0] else best
    fit = power_law_fit(x)
    assert fit.small_sample and (fit.D, fit.xmin) == (pytest.approx(best[0]), best[2])
    assert fit.alpha == pytest.approx(best[1], rel=1e-12)
    few = power_law_fit(x[:5])  # fewer than 8: the whole ESD is the tail
    assert few.xmin == 0.1 and few.n_tail == 5
    assert few.alpha == pytest.approx(1 + 4 / np.sum(np.log(x[:5] / 0.1)), rel=1e-12)
    for nothing in ([], [0.0, 1e-6], [2.0], [3.0] * 12):
        fit = power_law_fit(np.array(nothing))
        assert math.isnan(fit.alpha) and math.isnan(fit.D) and fit.n_tail == 0


def test_weightwatcher_size_and_min_evals():
    assert weightwatcher_size(nn.Linear(84, 10)) == 10 and weightwatcher_size(nn.Embedding(50, 6)) == 6
    assert weightwatcher_size(nn.Conv1d(16, 32, 9)) == 9
    assert weightwatcher_size(nn.Conv2d(6, 16, 5)) == 150 and weightwatcher_size(nn.Conv2d(16, 6, 3)) == 54
    assert weightwatcher_size(nn.Conv2d(16, 6, 2)) == 64  # even kernel: in · kh · kw
    assert weightwatcher_size(nn.Conv2d(1, 2, 5)) == 25
    model = nn.Sequential(nn.Linear(10, 7), nn.Linear(7, 30))
    table = spectrum_table(model).set_index(["layer", "metric"])["value"].unstack()
    assert table["alpha"].isna().all() and (table["num_evals"] == 7).all() and (table["num_tail"] == 0).all()
    table = spectrum_table(model, min_evals=1).set_index(["layer", "metric"])["value"].unstack()
    assert table["alpha"].notna().all()
    with pytest.raises(ValidationError, match=r"'min_evals' parameter of spectrum_table"):
        spectrum_table(model, min_evals=0)


def test_embeddings_are_in_the_spectra_unless_left_out():
    model = reference_model("text")
    table = spectrum_table(model, input_shape=(7,))  # token ids: no convolution input size to find
    kinds = table.drop_duplicates("layer").set_index("layer")["kind"]
    assert list(kinds.index) == ["tokens", "positions", "conv", "hidden", "classifier"]
    assert kinds["tokens"] == "Embedding" and kinds["positions"] == "Embedding"
    wide = table.set_index(["layer", "metric"])["value"].unstack()
    sv = np.linalg.svd(model.tokens.weight.detach().double().numpy(), compute_uv=False)
    assert wide.loc["tokens", "spectral_norm"] == pytest.approx(sv[0], rel=1e-12)
    assert wide.loc["tokens", "num_evals"] == 16 and wide.loc["positions", "num_evals"] == 12
    assert wide.loc["conv", "operator_norm"] > 0 and math.isnan(wide.loc["tokens", "operator_norm"])
    without = spectrum_table(model, embeddings=False)
    assert set(without.layer) == {"conv", "hidden", "classifier"}
    assert set(randomized_spectrum_table(model).layer) >= {"tokens", "positions"}
    assert not {"tokens", "positions"} & set(randomized_spectrum_table(model, embeddings=False).layer)
    bag = nn.Sequential(nn.EmbeddingBag(40, 9))
    assert spectrum_table(bag).kind.unique().tolist() == ["EmbeddingBag"]
    with pytest.raises(
        ValidationError, match=r"'model' parameter of spectrum_table must be a model with Lin"
    ):
        spectrum_table(bag, embeddings=False)
    with pytest.raises(ValidationError, match=r"'layers' parameter of spectrum_table.*Got 'tokens'"):
        spectrum_table(model, layers=["tokens"], embeddings=False)


def test_fully_pruned_layer_is_reported_not_a_crash():
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    with torch.no_grad():
        model.features[1].weight.zero_()
    table = spectrum_table(model).set_index(["layer", "metric"])["value"].unstack()
    assert math.isinf(table.loc["features.1", "condition_number"])
    assert math.isinf(table.loc["features.1", "condition_number_full"])
    assert table.loc["features.1", "zero_singular_values"] == 4 and table.loc["features.1", "sparsity"] == 1.0
    assert math.isnan(table.loc["features.1", "alpha"])


def test_rank_collapse_shows_in_the_full_condition_number():
    model = reference_model("mlp")
    layer = model.classifier  # nn.Linear(84, 10)
    before = spectrum_table(model).set_index(["layer", "metric"])["value"].unstack().loc["classifier"]
    assert before["condition_number_full"] == pytest.approx(before["condition_number"], rel=1e-12)
    with torch.no_grad():
        layer.weight[[1, 4, 7]] = 0.0  # three output neurons pruned away
    after = spectrum_table(model).set_index(["layer", "metric"])["value"].unstack().loc["classifier"]
    sv = np.linalg.svd(layer.weight.detach().double().numpy(), compute_uv=False)
    assert math.isinf(after["condition_number_full"])
    assert after["rank"] == 7 and after["zero_singular_values"] == 3
    assert after["condition_number"] == pytest.approx(sv[0] / sv[6], rel=1e-10)
    assert after["condition_number"] < before["condition_number"]  # what the numerical-rank κ alone shows
    assert math.isinf(full_condition_number(np.zeros(4))) and full_condition_number(np.array([4.0, 2.0])) == 2


def test_spectrum_chart_marks_rank_collapse():
    charts = pytest.importorskip("pruneviz.charts")
    model = reference_model("mlp")
    dense = spectrum_table(model).assign(run="dense", method="dense", sparsity=0.0)
    with torch.no_grad():
        model.classifier.weight[[1, 4, 7]] = 0.0
    collapsed = spectrum_table(model).assign(run="pruned", method="magnitude", sparsity=0.3)
    frame = pd.concat([dense, collapsed], ignore_index=True)
    chart = charts.spectrum_chart(frame)
    data = charts.chart_data(chart)
    rings = data[data["collapsed"]]
    assert list(rings["layer"]) == ["classifier"] and (rings["metric"] == "condition_number").all()
    assert np.isfinite(rings["shown"]).all() and rings["model"].nunique() == 1
    spec = chart.to_dict()
    assert "Rings: rank collapse" in " ".join(spec["title"]["subtitle"])
    assert "condition_number_full" not in set(data["metric"])  # marks the panel, is no panel of its own
    # the full condition number as a panel of its own: the collapsed layer a triangle (infinite)
    full = charts.chart_data(charts.spectrum_chart(frame, metrics=["condition_number_full"]))
    assert list(full.loc[full["infinite"], "layer"]) == ["classifier"]
    plain = charts.chart_data(charts.spectrum_chart(dense))
    assert not plain["collapsed"].any()
    assert "Rings" not in " ".join(charts.spectrum_chart(dense).to_dict()["title"]["subtitle"])


@pytest.mark.reference
@pytest.mark.parametrize("shape", [(512, 512), (160, 800)])
def test_condition_number_is_accurate_to_1e_10(shape):
    # a full-rank layer with κ = 1e4: the Gram-matrix route would lose ε·κ² ≈ 2e-8 relative
    gen = torch.Generator().manual_seed(0)
    m, n = shape
    left, _ = torch.linalg.qr(torch.randn(m, m, dtype=torch.float64, generator=gen))
    right, _ = torch.linalg.qr(torch.randn(n, m, dtype=torch.float64, generator=gen))
    layer = nn.Linear(n, m, bias=False)
    with torch.no_grad():
        layer.weight.copy_((left * torch.logspace(0, -4, m, dtype=torch.float64)) @ right.T)
    reference = np.linalg.svd(layer.weight.detach().double().numpy(), compute_uv=False)
    table = spectrum_table(nn.Sequential(layer)).set_index("metric")["value"]
    for metric in ("condition_number", "condition_number_full"):
        assert table[metric] == pytest.approx(reference[0] / reference[-1], rel=1e-10)
    assert table["spectral_norm"] == pytest.approx(reference[0], rel=1e-12)


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
