"""Feature geometry: activations, CKA, mutual kNN, logit geometry, aligned embeddings."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pruneviz.analysis.activations import activations, capturing, classifier_layer, iter_activations
from pruneviz.analysis.geometry import (
    aligned_pca,
    cka,
    cka_grid,
    cka_matrix,
    default_layers,
    knn_indices,
    logit_decomposition,
    logit_geometry,
    logit_geometry_change,
    mutual_knn_overlap,
)
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.models import MLP, LeNet
from pruneviz.testing.references import cka_reference


def _pair(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12))
    y = np.tanh(x @ rng.normal(size=(12, 7))) + 0.3 * rng.normal(size=(n, 7))
    return x, y


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.reference
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_equals_the_published_formula(kernel, debiased):
    x, y = _pair()
    ref = cka_reference(x, y, kernel=kernel, unbiased=debiased)
    assert cka(x, y, kernel=kernel, debiased=debiased) == pytest.approx(ref, abs=1e-10)
    # float32 features (the usual case) stay within the 1e-6
    got32 = cka(x.astype(np.float32), y.astype(np.float32), kernel=kernel, debiased=debiased)
    assert got32 == pytest.approx(
        cka_reference(x.astype(np.float32), y.astype(np.float32), kernel=kernel, unbiased=debiased), abs=1e-6
    )


@pytest.mark.reference
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(kernel, debiased):
    x, y = _pair(seed=1)
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    base = cka(x, y, kernel=kernel, debiased=debiased)
    assert cka(4.5 * x @ q, y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-9)
    assert cka(x, 0.01 * y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-9)
    assert cka(x, x @ q, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-9)
    # ... but not to an arbitrary linear map (so the test can fail)
    skew = np.diag(np.linspace(0.1, 10, 12))
    assert abs(cka(x @ skew, y, kernel=kernel, debiased=debiased) - base) > 1e-3


@pytest.mark.parametrize("n", [4, 5, 6, 9])
def test_cka_never_nan_for_batches_of_four_or_more(n):
    rng = np.random.default_rng(n)
    cases = [
        (rng.normal(size=(n, 3)), rng.normal(size=(n, 5))),
        (np.ones((n, 3)), rng.normal(size=(n, 5))),  # constant features (a fully pruned layer)
        (np.zeros((n, 3)), np.zeros((n, 2))),
        (np.outer(np.arange(n), [1.0, 2.0]), rng.normal(size=(n, 2))),  # rank one
        (1e-20 * rng.normal(size=(n, 3)), 1e20 * rng.normal(size=(n, 3))),
    ]
    for a, b in cases:
        for kernel in ("linear", "rbf"):
            for debiased in (False, True):
                value = cka(a, b, kernel=kernel, debiased=debiased)
                assert np.isfinite(value) and -1.0 - 1e-9 <= value <= 1.0 + 1e-9
    assert cka(np.ones((n, 3)), rng.normal(size=(n, 2))) == 0.0
    model = MLP((3,), 2, hidden=(4,))
    grid = cka_grid(model, model, torch.randn(n, 3), batch_size=4, debiased=True)
    assert grid["value"].notna().all()


def test_cka_matrix_equals_pairwise_cka_and_grid_equals_captured_features():
    torch.manual_seed(0)
    model_a, model_b = LeNet((1, 8, 8), 10), LeNet((1, 8, 8), 10)
    x = torch.randn(48, 1, 8, 8)
    layers = ["features.0", "features.3", "head.0", "classifier"]
    fa = activations(model_a, x, layers=layers)
    fb = activations(model_b, x, layers=layers)
    grid = cka_grid(model_a, model_b, x, layers_a=layers, layers_b=layers, kernel="rbf")
    mat = cka_matrix(fa, fb, kernel="rbf")
    assert np.allclose(grid["value"], mat["value"], atol=1e-12)
    for _, row in mat.sample(5, random_state=0).iterrows():
        assert row["value"] == pytest.approx(
            cka(fa[row["layer_a"]], fb[row["layer_b"]], kernel="rbf"), abs=1e-9
        )
    diag = cka_grid(model_a, model_a, x, layers_a=layers, layers_b=layers)
    assert np.allclose(diag.query("layer_a == layer_b")["value"], 1.0)
    assert list(grid.columns[:3]) == ["layer_a", "layer_b", "value"]


@pytest.mark.reference
def test_minibatch_cka_with_one_batch_equals_full_batch_and_averages_hsic_over_batches():
    torch.manual_seed(1)
    model_a, model_b = LeNet((1, 8, 8), 10), LeNet((1, 8, 8), 10)
    x = torch.randn(64, 1, 8, 8)
    full = cka_grid(model_a, model_b, x, debiased=True)
    one = cka_grid(model_a, model_b, x, debiased=True, batch_size=64)
    assert np.allclose(full["value"], one["value"], atol=1e-9)
    # the minibatch estimate averages HSIC over batches (Nguyen et al. 2021): check it against that formula
    fa = activations(model_a, x, layers=["features.0"])["features.0"].double()
    fb = activations(model_b, x, layers=["classifier"])["classifier"].double()
    from pruneviz.testing.references import hsic_reference

    xy = xx = yy = 0.0
    for idx in np.array_split(np.random.default_rng(0).permutation(64), 4):  # cka_grid shuffles with seed=0
        ka, kb = (fa[idx] @ fa[idx].T).numpy(), (fb[idx] @ fb[idx].T).numpy()
        xy += hsic_reference(ka, kb, unbiased=True)
        xx += hsic_reference(ka, ka, unbiased=True)
        yy += hsic_reference(kb, kb, unbiased=True)
    mb = cka_grid(
        model_a, model_b, x, layers_a=["features.0"], layers_b=["classifier"], debiased=True, batch_size=16
    )
    assert float(mb["value"].iloc[0]) == pytest.approx(xy / np.sqrt(xx * yy), abs=1e-6)


def _jackknife(values: list[float]) -> float:
    v = np.asarray(values)
    return float(np.sqrt((len(v) - 1) / len(v) * ((v - v.mean()) ** 2).sum()))


@pytest.mark.reference
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_sample_se_is_the_jackknife_over_groups_of_the_samples(debiased):
    torch.manual_seed(2)
    model_a, model_b = LeNet((1, 8, 8), 10).double(), LeNet((1, 8, 8), 10).double()
    x = torch.randn(60, 1, 8, 8, dtype=torch.float64)
    layers_a, layers_b = ["features.0", "head.0"], ["features.3", "classifier"]
    grid = cka_grid(model_a, model_b, x, layers_a=layers_a, layers_b=layers_b, debiased=debiased, groups=5)
    fa = {k: v.numpy() for k, v in activations(model_a, x, layers=layers_a).items()}
    fb = {k: v.numpy() for k, v in activations(model_b, x, layers=layers_b).items()}
    parts = np.array_split(np.random.default_rng(0).permutation(60), 5)  # cka_grid's groups for seed=0
    for _, row in grid.iterrows():
        a, b = fa[row.layer_a], fb[row.layer_b]
        assert row.value == pytest.approx(cka_reference(a, b, unbiased=debiased), abs=1e-10)
        left_out = [cka_reference(np.delete(a, p, 0), np.delete(b, p, 0), unbiased=debiased) for p in parts]
        assert row.sample_se == pytest.approx(_jackknife(left_out), rel=1e-8)
    # minibatch CKA: the jackknife over its batches, each estimate the HSIC sums less one batch's
    mb = cka_grid(
        model_a, model_b, x, layers_a=["head.0"], layers_b=["classifier"], debiased=True, batch_size=15
    )
    from pruneviz.testing.references import hsic_reference

    terms = []
    for idx in np.array_split(np.random.default_rng(0).permutation(60), 4):
        ka, kb = fa["head.0"][idx] @ fa["head.0"][idx].T, fb["classifier"][idx] @ fb["classifier"][idx].T
        terms.append(
            [
                hsic_reference(ka, kb, unbiased=True),
                hsic_reference(ka, ka, unbiased=True),
                hsic_reference(kb, kb, unbiased=True),
            ]
        )
    sums = np.asarray(terms)
    rest = sums.sum(0) - sums
    assert float(mb.sample_se.iloc[0]) == pytest.approx(
        _jackknife(list(rest[:, 0] / np.sqrt(rest[:, 1] * rest[:, 2]))), rel=1e-6
    )


def test_full_batch_cka_beyond_8_gib_of_grams_is_refused_before_any_forward_pass():
    m = MLP((4,), 3, hidden=(8,))
    x = torch.zeros(19000, 4)  # 8 · 19000² · (1 + 2) bytes of Grams: 8.1 GiB
    with pytest.raises(ValidationError, match=r"batch_size.*1 layers of model_a \(8 GiB\).*batch_size=512"):
        cka_grid(m, m, x, layers_a=["classifier"], layers_b=["classifier"])


@pytest.mark.reference
def test_cka_sample_se_matches_the_spread_between_independent_draws():
    # the jackknife error of one draw of 120 samples against the standard deviation of the value over
    # 40 independent draws from the same distribution
    torch.manual_seed(3)
    model_a = MLP((6,), 4, hidden=(16, 16)).double().eval()
    model_b = copy.deepcopy(model_a)
    with torch.no_grad():
        for p in model_b.parameters():
            p.mul_((torch.rand_like(p) > 0.6).double())  # a pruned copy
    gen = torch.Generator().manual_seed(0)
    values, ses = [], []
    for _ in range(40):
        x = torch.randn(120, 6, generator=gen, dtype=torch.float64) ** 3  # heavy tails
        g = cka_grid(model_a, model_b, x, layers_a=["classifier"], layers_b=["classifier"])
        values.append(float(g.value.iloc[0]))
        ses.append(float(g.sample_se.iloc[0]))
    spread = float(np.std(values, ddof=1))
    assert 0.6 < float(np.median(ses)) / spread < 1.6


def test_capture_removes_hooks_and_restores_mode_even_when_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x)
            if len(x) > 2:
                raise RuntimeError("boom")
            return self.b(h)

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        activations(model, torch.randn(5, 3), layers=["a", "b"], batch_size=5)
    assert _hooks(model) == 0 and model.training
    with pytest.raises(RuntimeError, match="boom"), capturing(model, ["a"]):
        model(torch.randn(4, 3))
    assert _hooks(model) == 0
    # abandoning the iterator early also cleans up
    it = iter_activations(model, torch.randn(4, 3), layers=["a"], batch_size=1)
    next(it)
    it.close()
    assert _hooks(model) == 0 and model.training


def test_activations_mean_reduction_and_inputs():
    model = LeNet((1, 8, 8), 10)
    x = torch.randn(6, 1, 8, 8)
    full = activations(model, x, layers=["features.0"])["features.0"]
    pooled = activations(model, x, layers=["features.0"], reduction="mean")["features.0"]
    assert full.shape == (6, 16 * 64) and pooled.shape == (6, 16)
    assert torch.allclose(pooled, full.view(6, 16, 64).mean(2), atol=1e-6)
    penult = activations(model, x, layers=["classifier"], inputs=True)["classifier"]
    head = activations(model, x, layers=["head"])["head"]
    assert torch.equal(penult, head)


def test_any_order_features_are_a_fixed_permutation_of_the_nchw_features():
    model = LeNet((3, 8, 8), 10)
    x = torch.randn(5, 3, 8, 8)
    nchw = next(iter_activations(model, x, layers=["features.0"]))["features.0"]
    loose = next(iter_activations(model, x, layers=["features.0"], any_order=True))["features.0"]
    # the default keeps (C, H, W) order; any_order gives the channels-last (H, W, C) order, uncopied
    assert torch.equal(nchw, activations(model, x, layers=["features.0"])["features.0"].contiguous())
    assert torch.equal(loose, nchw.view(5, 16, 8, 8).permute(0, 2, 3, 1).reshape(5, -1))
    assert not torch.equal(loose, nchw)
    assert torch.allclose(loose @ loose.T, nchw @ nchw.T, rtol=1e-5, atol=1e-4)


def test_layer_name_not_in_model_is_a_clear_error():
    model = LeNet((1, 8, 8), 10)
    with pytest.raises(
        ValidationError, match=r"'layers' parameter of activations.*did you mean \['classifier'\]"
    ):
        activations(model, torch.randn(2, 1, 8, 8), layers=["clasifier"])
    with pytest.raises(ValidationError, match="'layers_b' parameter of cka_grid"):
        cka_grid(model, model, torch.randn(8, 1, 8, 8), layers_a=["classifier"], layers_b=["nope"])


def test_cka_features_of_different_sample_counts_is_a_clear_error():
    with pytest.raises(
        ValidationError, match=r"'y' parameter of cka must be features of the same 10 samples.*Got 9 rows"
    ):
        cka(np.ones((10, 3)), np.ones((9, 3)))
    with pytest.raises(ValidationError, match="'features_b' parameter of cka_matrix.*sample counts"):
        cka_matrix({"a": torch.ones(10, 2)}, {"b": torch.ones(8, 2)})
    with pytest.raises(ValidationError, match="at least 4 samples"):
        cka(np.random.default_rng(0).normal(size=(3, 2)), np.ones((3, 2)), debiased=True)
    with pytest.raises(DataError, match="finite features"):
        cka(np.full((5, 2), np.nan), np.ones((5, 2)))
    with pytest.raises(ValidationError, match="'kernel' parameter of centred_gram.*did you mean 'linear'"):
        cka(np.ones((5, 2)), np.ones((5, 2)), kernel="linar")


@pytest.mark.reference
def test_knn_and_mutual_overlap_match_a_brute_force_reference():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(60, 5))
    b = a + 0.5 * rng.normal(size=(60, 5))
    k = 6
    ref_a = np.argsort(
        ((a[:, None] - a[None]) ** 2).sum(-1) + np.diag(np.full(60, np.inf)), axis=1, kind="stable"
    )[:, :k]
    assert np.array_equal(knn_indices(a, k=k, chunk=7).numpy(), ref_a)
    ref_b = np.argsort(
        ((b[:, None] - b[None]) ** 2).sum(-1) + np.diag(np.full(60, np.inf)), axis=1, kind="stable"
    )[:, :k]
    expected = np.array([len(set(ref_a[i]) & set(ref_b[i])) / k for i in range(60)])
    assert np.allclose(mutual_knn_overlap(a, b, k=k), expected)
    assert np.allclose(mutual_knn_overlap(a, 3 * a, k=k), 1.0)
    assert 0 < expected.mean() < 1


@pytest.mark.reference
def test_logit_decomposition_reconstructs_the_logits_exactly():
    torch.manual_seed(0)
    model = LeNet((1, 8, 8), 10).double()
    x = torch.randn(32, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (32,))
    feats = activations(model, x, layers=["classifier"], inputs=True)["classifier"]
    parts = logit_decomposition(feats, model.classifier.weight, model.classifier.bias)
    rebuilt = parts["feature_norm"][:, None] * parts["weight_norm"][None, :] * parts["cosine"] + parts["bias"]
    with torch.no_grad():
        logits = model(x)
    assert torch.allclose(rebuilt, logits, atol=1e-12, rtol=0)
    frame = logit_geometry(model, x, y)
    z = logits.numpy()
    idx = np.arange(32)
    assert np.allclose(frame["logit"], z[idx, y.numpy()], atol=1e-12)
    other = z.copy()
    other[idx, y.numpy()] = -np.inf
    assert np.allclose(frame["margin"], z[idx, y.numpy()] - other.max(1), atol=1e-12)
    assert np.array_equal(frame["nearest_class"], other.argmax(1))
    recon = frame["feature_norm"] * frame["weight_norm"] * np.cos(np.deg2rad(frame["angle"])) + frame["bias"]
    assert np.allclose(recon, frame["logit"], atol=1e-9)
    assert (frame["correct"] == (frame["margin"] > 0)).all()


def test_logit_geometry_change_ranks_the_samples_that_move_most():
    torch.manual_seed(0)
    model = MLP((4,), 3, hidden=(8,))
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    before = logit_geometry(model, x, y, sample_id=np.arange(100, 120))
    pruned = MLP((4,), 3, hidden=(8,))
    pruned.load_state_dict(model.state_dict())
    with torch.no_grad():
        pruned.classifier.weight[:, :4] = 0
    after = logit_geometry(pruned, x, y, sample_id=np.arange(100, 120))
    change = logit_geometry_change(before, after)
    margins = change[change.metric == "margin"]
    top = margins.iloc[0]
    assert top["rank"] == 1
    assert abs(top["change"]) == pytest.approx(np.abs(after["margin"] - before["margin"]).max())
    assert np.allclose(margins["after"] - margins["before"], margins["change"])
    with pytest.raises(DataError, match="same samples"):
        logit_geometry_change(before, after.iloc[:10])
    with pytest.raises(DataError, match="repeated key"):
        logit_geometry_change(pd.concat([before, before]), after)
    # positions serve as ids when none are given, so the two functions compose directly
    direct = logit_geometry_change(logit_geometry(model, x, y), logit_geometry(pruned, x, y))
    assert np.allclose(direct["change"].to_numpy(), change["change"].to_numpy())


@pytest.mark.reference
def test_aligned_pca_recovers_a_rotated_copy_exactly():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 6)) * np.array([5, 3, 2, 1, 0.5, 0.2])
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    rotated = 2.0 * base @ q
    wider = np.concatenate([base @ q, np.zeros((300, 4))], axis=1)  # a different width
    frame = aligned_pca({"dense": base, "pruned": rotated, "wide": wider})
    ref = frame[frame.model == "dense"][["x", "y"]].to_numpy()
    for name in ("pruned", "wide"):
        part = frame[frame.model == name]
        assert np.allclose(part[["x", "y"]].to_numpy(), ref, atol=1e-8)
        assert part["disparity"].iloc[0] < 1e-10
    # PCA coordinates of the reference are its principal-component scores (up to sign)
    centred = base - base.mean(0)
    assert np.allclose(np.abs(ref[:, 0]), np.abs(centred[:, 0]), atol=1e-6) or np.var(ref[:, 0]) > np.var(
        ref[:, 1]
    )
    noisy = aligned_pca({"dense": base, "noisy": base + rng.normal(size=base.shape)})
    assert noisy.groupby("model")["disparity"].first()["noisy"] > 0.05


def test_classifier_layer_finds_the_logit_layer():
    assert classifier_layer(LeNet((1, 8, 8), 10)) == "classifier"
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert classifier_layer(seq) == "2"
    with pytest.raises(ValidationError, match="nn.Linear"):
        classifier_layer(nn.Sequential(nn.Conv1d(1, 1, 1)))


def test_between_batches_the_caller_sees_the_model_unchanged():
    model = LeNet((1, 8, 8), 10).train()
    model.head.eval()  # a mixed state must come back exactly
    it = iter_activations(model, torch.randn(6, 1, 8, 8), layers=["features.0"], batch_size=2)
    first = next(it)
    assert first["features.0"].shape == (2, 16 * 64)
    assert _hooks(model) == 0 and torch.is_grad_enabled()
    assert model.training and not model.head.training and model.features.training
    rest = list(it)
    assert len(rest) == 2 and _hooks(model) == 0


def test_layers_that_do_not_run_once_are_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 3)
            self.unused = nn.Linear(3, 3)
            self.act = nn.ReLU()
            self.out = nn.Linear(3, 2)

        def forward(self, x):
            return self.out(self.act(self.used(self.act(x))))

    model = Odd()
    x = torch.randn(4, 3)
    assert activations(model, x, layers=["used", "out"])["out"].shape == (4, 2)
    with pytest.raises(ValidationError, match="layers that run in the model's forward pass.*'unused'"):
        activations(model, x, layers=["unused"])
    with pytest.raises(ValidationError, match="runs 2 times"):
        activations(model, x, layers=["act"])
    assert _hooks(model) == 0


def test_aligned_pca_accepts_representations_narrower_than_the_view():
    rng = np.random.default_rng(1)
    frame = aligned_pca({"a": rng.normal(size=(12, 1)), "b": rng.normal(size=(12, 3))})
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert (frame.loc[frame.model == "a", "y"] == 0).all()
    with pytest.raises(ValidationError, match="at least 3 samples"):
        aligned_pca({"a": rng.normal(size=(2, 4))})


@pytest.mark.reference
def test_rbf_cka_keeps_float64_precision_for_offset_float32_features():
    rng = np.random.default_rng(5)
    x = (30 + 0.05 * rng.normal(size=(60, 6))).astype(np.float32)
    y = np.tanh(x @ rng.normal(size=(6, 4))).astype(np.float32)
    ref = cka_reference(x.astype(np.float64) - x.mean(0), y.astype(np.float64), kernel="rbf")
    assert cka(x, y, kernel="rbf") == pytest.approx(ref, abs=1e-6)
    # mostly identical samples (dead units): the distinct pairs still set the bandwidth
    dead = np.zeros((20, 3))
    dead[:4] = rng.normal(size=(4, 3))
    assert cka(dead, dead + 0.0, kernel="rbf") == pytest.approx(1.0)
    assert 0 < cka(dead, rng.normal(size=(20, 3)), kernel="rbf") < 1


class TinyViT(nn.Module):
    """torchvision-style ViT in miniature: patch-embedding conv, class token, encoder layer, head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.encoder = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, dropout=0.0)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
        return self.head(self.encoder(tokens)[:, 0])


def test_cka_grid_default_layers_on_a_vit_with_multihead_attention():
    from pruneviz.prune import prune_

    torch.manual_seed(0)
    dense = TinyViT()
    # out_proj is called functionally inside the attention: it never runs as a module, so it is no default
    assert default_layers(dense) == ["patch", "encoder.linear1", "encoder.linear2", "head"]
    pruned = copy.deepcopy(dense)
    masks = prune_(pruned, method="magnitude", sparsity=0.5)
    assert "encoder.self_attn.in_proj_weight" in masks and "encoder.self_attn.out_proj" in masks
    x = torch.randn(12, 1, 8, 8)
    grid = cka_grid(dense, pruned, x)
    assert len(grid) == 16
    self_grid = cka_grid(dense, dense, x)
    diagonal = self_grid[self_grid.layer_a == self_grid.layer_b]
    np.testing.assert_allclose(diagonal.value, 1.0, atol=1e-5)
    assert bool(((grid.value >= 0) & (grid.value <= 1)).all())
