"""Landscapes and sharpness: restored models, untouched pruned weights, and closed-form cross-checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pruneviz.analysis import (
    HessianOperator,
    average_sharpness,
    interpolation,
    landscape_1d,
    landscape_2d,
    pac_bayes_sigma,
    sam_sharpness,
    worst_case_adaptive_sharpness,
)
from pruneviz.analysis.perturb import gaussian_direction, loss_and_accuracy, perturbed
from pruneviz.data import Dataset
from pruneviz.exceptions import ValidationError
from pruneviz.models import build_model
from pruneviz.prune import compute_masks


@pytest.fixture()
def setting():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).double()
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(40, 1, 4, 4)), rng.integers(0, 3, 40))
    data.x = data.x.double()
    masks = compute_masks(model, method="global_magnitude", sparsity=0.5)
    masks.apply_(model)
    return model, data, masks


def watch_pruned(model, masks):
    """A forward pre-hook on every masked layer that records whether any pruned weight is non-zero."""
    seen = {"violations": 0, "calls": 0}
    modules = dict(model.named_modules())

    def hook_for(name):
        def hook(module, _inputs):
            seen["calls"] += 1
            if bool((module.weight.detach()[~masks[name]] != 0).any()):
                seen["violations"] += 1

        return hook

    handles = [modules[n].register_forward_pre_hook(hook_for(n)) for n in masks]
    return seen, handles


ANALYSES = {
    "landscape_1d": lambda m, d, k: landscape_1d(m, d, steps=5, masks=k),
    "landscape_2d": lambda m, d, k: landscape_2d(m, d, steps=3, masks=k),
    "sam": lambda m, d, k: sam_sharpness(m, d, rho=0.1, masks=k, steps=3),
    "asam": lambda m, d, k: sam_sharpness(m, d, rho=0.1, adaptive=True),
    "average": lambda m, d, k: average_sharpness(m, d, sigma=0.05, samples=3, masks=k, adaptive=False),
    "worst_case": lambda m, d, k: worst_case_adaptive_sharpness(m, d, rho=0.05, steps=3),
    "pac_bayes": lambda m, d, k: pac_bayes_sigma(m, d, samples=2, iterations=3, masks=k),
}


@pytest.mark.parametrize("name", list(ANALYSES))
def test_every_perturbation_keeps_pruned_weights_at_zero_and_restores_the_model(name, setting):
    model, data, masks = setting
    model.train()
    before = copy.deepcopy(model.state_dict())
    seen, handles = watch_pruned(model, masks)
    try:
        frame = ANALYSES[name](model, data, masks)
    finally:
        for h in handles:
            h.remove()
    assert not frame.empty and seen["calls"] > 0
    assert seen["violations"] == 0, f"{name} moved a pruned weight"
    assert model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} left {k} changed"


def test_the_model_is_restored_when_evaluation_raises_midway(setting):
    model, data, masks = setting
    before = copy.deepcopy(model.state_dict())
    calls = {"n": 0}

    def explode(_module, inputs):
        calls["n"] += inputs[0].shape[0] > 2  # grid points, not the two-sample probes before them
        if calls["n"] == 3:
            raise RuntimeError("evaluation failed midway")

    handle = model[0].register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="midway"):
            landscape_1d(model, data, steps=5, masks=masks)
    finally:
        handle.remove()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_grid_centre_is_the_model_and_odd_grids_are_required(setting):
    model, data, masks = setting
    base = loss_and_accuracy(model, data)["loss"]
    line = landscape_1d(model, data, steps=7, radius=0.5, masks=masks)
    assert line.alpha.tolist()[3] == 0.0 and line.loss[3] == base
    assert line.alpha.iloc[0] == -0.5 and line.alpha.iloc[-1] == 0.5
    plane = landscape_2d(model, data, steps=3, masks=masks)
    assert plane[(plane.alpha == 0) & (plane.beta == 0)].loss.iloc[0] == base
    with pytest.raises(
        ValidationError, match=r"'steps' parameter of landscape_2d must be an odd number.*Got 20.*steps=21"
    ):
        landscape_2d(model, data, steps=20)


def test_filter_normalisation_matches_filter_norms_and_respects_masks(setting):
    model, _, masks = setting
    d = gaussian_direction(model, masks=masks, seed=3)
    w = model[0].weight.detach()
    np.testing.assert_allclose(
        d["0.weight"].reshape(4, -1).norm(dim=1), w.reshape(4, -1).norm(dim=1), rtol=1e-10
    )
    assert bool((d["0.weight"][~masks["0"]] == 0).all()) and bool((d["0.bias"] == 0).all())


@pytest.mark.reference
def test_second_difference_along_a_direction_equals_the_hessian_quadratic_form(setting):
    _, data, _ = setting
    torch.manual_seed(1)  # a smooth model: a ReLU kink inside [-h, h] would add to the second difference
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(64, 3)).double()
    masks = compute_masks(model, method="global_magnitude", sparsity=0.5)
    masks.apply_(model)
    d = gaussian_direction(model, masks=masks, normalization="none", seed=1)
    h = 1e-3
    line = landscape_1d(model, data, steps=3, radius=h, masks=masks, normalization="none", seed=1)
    curvature = (line.loss[0] - 2 * line.loss[1] + line.loss[2]) / h**2
    op = HessianOperator(model, data, masks=masks, dtype=torch.float64)
    v = op._to_vector(d)
    assert curvature == pytest.approx(float(v @ op.matvec(v)), rel=1e-4)


@pytest.mark.reference
def test_one_step_sam_is_the_normalised_gradient_step(setting):
    model, data, masks = setting
    op = HessianOperator(model, data, masks=masks, dtype=torch.float64)
    g = op.gradient()
    rho = 0.05
    step = op._to_tensors(rho * g / g.norm())
    with perturbed(model, step):
        manual = loss_and_accuracy(model, data)["loss"]
    with perturbed(model, step):
        moved = torch.nn.functional.cross_entropy(model(data.x), data.y, reduction="none")
    result = sam_sharpness(model, data, rho=rho, masks=masks)
    base = loss_and_accuracy(model, data)["loss"]
    assert result.value[0] == pytest.approx(manual - base, rel=1e-9, abs=1e-12)
    assert result.value[0] > 0 and result.rho[0] == rho and not result.adaptive[0]
    # the sampling error: of the mean of the per-sample rises, the perturbation held
    with torch.no_grad():
        rises = (moved - torch.nn.functional.cross_entropy(model(data.x), data.y, reduction="none")).numpy()
    assert result.sample_se[0] == pytest.approx(rises.std(ddof=1) / np.sqrt(len(rises)), rel=1e-9)


def test_average_sharpness_sample_se_is_the_spread_of_the_per_sample_rises(setting):
    model, data, masks = setting
    # the draws depend on the model and the seed only, so one sample at a time gives each sample's rise
    # averaged over the same draws
    whole = average_sharpness(model, data, sigma=0.05, samples=3, masks=masks, seed=4)
    each = [
        average_sharpness(model, data.take(np.array([i])), sigma=0.05, samples=3, masks=masks, seed=4).value[
            0
        ]
        for i in range(len(data))
    ]
    assert whole.value[0] == pytest.approx(np.mean(each), rel=1e-9)
    assert whole.sample_se[0] == pytest.approx(np.std(each, ddof=1) / np.sqrt(len(each)), rel=1e-9)
    assert whole.se[0] > 0 and whole.sample_se[0] > 0


def test_sharpness_measures_are_ordered_and_pac_bayes_is_monotone(setting):
    model, data, masks = setting
    worst = worst_case_adaptive_sharpness(model, data, rho=0.05, steps=5, masks=masks).value[0]
    avg = average_sharpness(model, data, sigma=0.05, samples=5, masks=masks).value[0]
    assert worst >= avg
    loose = pac_bayes_sigma(model, data, target=0.5, samples=2, iterations=6, masks=masks).value[0]
    tight = pac_bayes_sigma(model, data, target=0.01, samples=2, iterations=6, masks=masks).value[0]
    assert loose >= tight


def test_interpolation_ends_are_the_two_models_and_architectures_must_match():
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(30, 6)), rng.integers(0, 3, 30))
    a = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(8,), seed=0)
    b = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(8,), seed=1)
    line = interpolation(a, b, data, steps=5, extend=0.5)
    assert line.t.iloc[0] == -0.5 and line.t.iloc[-1] == 1.5
    at = dict(zip(line.t, line.loss, strict=True))
    assert at[0.0] == pytest.approx(loss_and_accuracy(a, data)["loss"])
    assert at[1.0] == pytest.approx(loss_and_accuracy(b, data)["loss"])
    other = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(9,), seed=1)
    with pytest.raises(ValidationError, match=r"same architecture as start.*channel-pruned"):
        interpolation(a, other, data)


# -- the point engine under the landscapes: BatchNorm folded, points in parallel ---------------------
def _bn_model_and_data(seed: int = 0):
    """A small ResNet with BatchNorm statistics far from (0, 1), so that folding has work to do."""
    model = build_model("resnet", input_shape=(1, 8, 8), num_classes=4, seed=seed, depth=8)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5, generator=gen)
                m.running_var.uniform_(0.3, 3.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.2, generator=gen)
    data = Dataset(torch.randn(96, 1, 8, 8, generator=gen), torch.randint(0, 4, (96,), generator=gen))
    return model.eval(), data


def _reference_points(model, data, directions, points):
    """Point by point on the user's model itself: move it, evaluate, restore."""
    out = []
    with perturbed(model) as m:
        base = {n: p.detach().clone() for n, p in m.named_parameters()}
        for coefficients in points:
            with torch.no_grad():
                for n, p in m.named_parameters():
                    p.copy_(base[n] + sum(c * d[n] for d, c in zip(directions, coefficients, strict=True)))
            out.append(loss_and_accuracy(m, data, batch_size=32))
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_folded_parallel_points_equal_the_point_by_point_grid(workers):
    from pruneviz.analysis._points import PointEvaluator

    model, data = _bn_model_and_data()
    before = copy.deepcopy(model.state_dict())
    d1, d2 = gaussian_direction(model, seed=0), gaussian_direction(model, seed=1)
    points = [(a, b) for a in (-0.5, 0.0, 0.7) for b in (-0.3, 0.4)]
    engine = PointEvaluator(model, data, [d1, d2], batch_size=32, workers=workers)
    assert len(engine.pairs) >= 9  # the stem and both convolutions of each block are folded
    assert engine.fused  # gaussian directions leave the norms' scales alone: one update per point
    got = engine.evaluate(points)
    want = _reference_points(model, data, [d1, d2], points)
    for g, w in zip(got, want, strict=True):
        assert g["loss"] == pytest.approx(w["loss"], rel=1e-6)
        assert g["accuracy"] == w["accuracy"]
        assert g["loss_se"] == pytest.approx(w["loss_se"], rel=1e-5)
    for k, v in model.state_dict().items():  # the user's model never moved
        assert torch.equal(v, before[k])


def test_folding_follows_directions_that_move_the_norms():
    """A direction with non-zero BatchNorm scale and shift entries: the fold is redone at each point."""
    from pruneviz.analysis._points import PointEvaluator

    model, data = _bn_model_and_data(seed=1)
    gen = torch.Generator().manual_seed(3)
    direction = {n: 0.1 * torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    assert any(n.endswith("bn1.weight") for n in direction)
    points = [(-1.0,), (0.5,), (2.0,)]
    engine = PointEvaluator(model, data, [direction], batch_size=32, workers=1)
    assert not engine.fused
    got = engine.evaluate(points)
    want = _reference_points(model, data, [direction], points)
    assert [g["loss"] for g in got] == pytest.approx([w["loss"] for w in want], rel=1e-6)


class _Branchy(nn.Module):
    """Data-dependent control flow (torch.fx refuses it) and, with ``reuse``, a convolution output that
    is used besides its BatchNorm (folding it would change the model)."""

    def __init__(self, reuse: bool = False):
        super().__init__()
        self.reuse = reuse
        self.conv, self.bn, self.fc = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Linear(32, 3)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.4)
            self.bn.running_var.fill_(2.5)

    def forward(self, x):
        c = self.conv(x)
        h = self.bn(c)
        if h.sum() > 0:
            h = h * 2
        if self.reuse:
            h = h + c
        return {"logits": self.fc(h.flatten(1))}


@pytest.mark.parametrize("reuse", [False, True])
def test_only_norms_whose_convolution_feeds_nothing_else_are_folded(reuse):
    from pruneviz.analysis._points import PointEvaluator
    from pruneviz.prune.formats import conv_batchnorm_pairs

    model = _Branchy(reuse).eval()
    x = torch.randn(2, 1, 4, 4)
    assert conv_batchnorm_pairs(model, x) == ({} if reuse else {"conv": "bn"})

    class Logits(nn.Module):  # loss_and_accuracy wants logits; the pairs keep the inner names
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)["logits"]

    wrapped = Logits(model).eval()
    data = Dataset(torch.randn(20, 1, 4, 4), torch.randint(0, 3, (20,)))
    d = gaussian_direction(wrapped, seed=0)
    engine = PointEvaluator(wrapped, data, [d], workers=2)
    assert engine.pairs == ({} if reuse else {"inner.conv": "inner.bn"})
    got = engine.evaluate([(0.3,), (-0.3,)])
    want = _reference_points(wrapped, data, [d], [(0.3,), (-0.3,)])
    assert [g["loss"] for g in got] == pytest.approx([w["loss"] for w in want], rel=1e-6)


def test_finding_the_pairs_leaves_module_calls_alone():
    """The app runs analyses in threads: finding what to fold must not patch ``nn.Module.__call__``
    (a torch.fx trace does, and a model called in another thread meanwhile fails)."""
    from pruneviz.analysis._points import PointEvaluator

    original, seen = nn.Module.__call__, []

    class Watch(nn.Module):
        def forward(self, x):
            seen.append(nn.Module.__call__ is original)
            return x

    resnet, data = _bn_model_and_data()
    model = nn.Sequential(Watch(), resnet).eval()
    engine = PointEvaluator(model, data, [gaussian_direction(model, seed=0)], batch_size=32, workers=1)
    assert engine.pairs and seen and all(seen)


def test_landscape_2d_does_not_depend_on_the_number_of_workers():
    model, data = _bn_model_and_data()
    one = landscape_2d(model, data, steps=3, workers=1)
    two = landscape_2d(model, data, steps=3, workers=2)
    np.testing.assert_allclose(two.loss, one.loss, rtol=1e-6)
    assert (two.accuracy == one.accuracy).all()
