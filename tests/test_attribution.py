from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from pruneviz.analysis.attribution import (
    attribute,
    attribution_agreement,
    attribution_maps,
    compare_attributions,
)
from pruneviz.data import Dataset
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.models import build_model
from pruneviz.study import run_attributions
from pruneviz.zoo import Zoo

pytest.importorskip("captum")

METHODS = ["saliency", "integrated_gradients", "gradient_shap"]


def mlp(seed: int = 0, d: int = 6, k: int = 3, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, k)).eval()


def inputs(n: int = 5, d: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed))


def image_data(n: int = 6, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        rng.random((n, 1, 4, 4)),
        np.arange(n) % 3,
        sample_id=np.arange(100, 100 + n),
        groups={"site": ["a", "b"] * (n // 2)},
        name="img",
    )


def image_model(seed: int = 0, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, hidden), nn.Tanh(), nn.Linear(hidden, 3)).eval()


# -- references -----------------------------------------------------------------------------------
@pytest.mark.reference
def test_saliency_is_the_absolute_input_gradient_of_the_target_logit():
    model, x = mlp(), inputs()
    target = torch.tensor([0, 1, 2, 1, 0])
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xr)
    got = attribute(model, x, target=target, method="saliency", batch_size=2)
    torch.testing.assert_close(got, grad.abs(), rtol=0, atol=1e-6)


@pytest.mark.reference
def test_integrated_gradients_on_a_linear_model_is_input_minus_baseline_times_weight():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x, target = inputs(4), torch.tensor([2, 0, 1, 2])
    w = model.weight.detach()[target]
    baseline = torch.full((1, 6), 0.3)
    got = attribute(model, x, target=target, method="integrated_gradients", baseline=baseline, steps=4)
    torch.testing.assert_close(got, (x - baseline) * w, rtol=0, atol=1e-6)
    two = torch.stack([torch.full((6,), 0.1), torch.full((6,), 0.5)])  # averaged over baselines
    got2 = attribute(model, x, target=target, method="integrated_gradients", baseline=two, steps=4)
    torch.testing.assert_close(got2, (x - two.mean(0)) * w, rtol=0, atol=1e-6)


@pytest.mark.reference
def test_integrated_gradients_are_complete_on_a_nonlinear_mlp():
    model, x = mlp(1), inputs(6, seed=1) * 3
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    baseline = torch.zeros(1, 6)
    got = attribute(model, x, target=target, method="integrated_gradients", baseline=baseline, steps=32)
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None])[:, 0] - model(baseline)[0, target]
    assert float(gap.abs().min()) > 1e-2  # a non-trivial case
    # Gauss–Legendre with 32 nodes on a smooth path: the remainder is at float32 rounding level
    torch.testing.assert_close(got.sum(1), gap, rtol=1e-4, atol=1e-4)
    coarse = attribute(model, x, target=target, method="integrated_gradients", baseline=baseline, steps=1)
    assert float((coarse.sum(1) - gap).abs().max()) > float((got.sum(1) - gap).abs().max())


@pytest.mark.reference
def test_gradient_shap_on_a_linear_model_is_input_minus_mean_baseline_times_weight():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x, target = inputs(3), torch.tensor([0, 1, 2])
    baselines = torch.rand(8, 6, generator=torch.Generator().manual_seed(3))
    w = model.weight.detach()[target]
    draws = 400
    got = attribute(model, x, target=target, method="gradient_shap", baseline=baselines, draws=draws)
    expected = (x - baselines.mean(0)) * w
    # each draw gives (x - b_j)·w exactly; the error is that of a mean of `draws` baselines
    se = (baselines.std(0) * w.abs()) / draws**0.5
    assert torch.all((got - expected).abs() <= 5 * se + 1e-6)
    assert not torch.allclose(got, (x - baselines[0]) * w, atol=1e-3)


def test_gradient_shap_is_deterministic_under_seed_and_leaves_global_rng_alone():
    model, x = mlp(), inputs()
    target = torch.tensor([0, 1, 2, 1, 0])
    baselines = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(2), np.random.rand(2)
    torch.manual_seed(123)
    np.random.seed(123)
    a = attribute(model, x, target=target, method="gradient_shap", baseline=baselines, seed=4)
    assert torch.equal(torch.rand(2), expected_torch) and np.array_equal(np.random.rand(2), expected_np)
    b = attribute(model, x, target=target, method="gradient_shap", baseline=baselines, seed=4)
    c = attribute(model, x, target=target, method="gradient_shap", baseline=baselines, seed=5)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_only_gradient_shap_seeds_the_generators(method, monkeypatch):
    import pruneviz.analysis.attribution as mod

    calls = []
    real = mod.seeded

    def spy(seed):
        calls.append(seed)
        return real(seed)

    monkeypatch.setattr(mod, "seeded", spy)
    model, x = mlp(), inputs(4)
    attribute(model, x, target=torch.tensor([0, 1, 2, 0]), method=method, seed=9, draws=2, steps=2)
    assert calls == ([9] if method == "gradient_shap" else [])


@pytest.mark.reference
def test_spearman_equals_scipy_per_sample():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = torch.tensor(np.round(rng.normal(size=(7, 12)), 1))  # rounding makes ties
    b = torch.tensor(np.round(a.numpy() + rng.normal(scale=0.8, size=(7, 12)), 1))
    frame = attribution_agreement(a, b, k=3)
    got = frame[frame.metric == "spearman"].value.to_numpy()
    expected = [spearmanr(np.abs(a[i].numpy()), np.abs(b[i].numpy())).statistic for i in range(7)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert len(set(np.round(got, 6))) > 3


@pytest.mark.reference
def test_topk_overlap_and_cosine_on_a_hand_example():
    a = torch.tensor([[5.0, -4.0, 3.0, 0.0, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    b = torch.tensor([[-5.0, 0.0, 0.1, 4.0, 3.0, 0.2], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    frame = attribution_agreement(a, b, k=3, sample_id=[7, 9]).set_index(["sample_id", "metric"]).value
    # |a| top-3: {0, 1, 2}; |b| top-3: {0, 3, 4} -> 1 shared of 3
    assert frame[(7, "topk_overlap")] == pytest.approx(1 / 3)
    # reversed orders: top-3 {3, 4, 5} vs {0, 1, 2} -> none shared
    assert frame[(9, "topk_overlap")] == 0.0
    an, bn = a.double().numpy(), b.double().numpy()
    cos = (an * bn).sum(1) / np.linalg.norm(an, axis=1) / np.linalg.norm(bn, axis=1)
    assert frame[(7, "cosine")] == pytest.approx(cos[0]) and frame[(9, "cosine")] == pytest.approx(cos[1])
    assert frame[(9, "spearman")] == pytest.approx(-1.0)


def test_constant_attributions_give_nan_not_an_error():
    other = torch.tensor([[0.9, 0.1, 0.8, 0.2]])
    frame = attribution_agreement(torch.zeros(1, 4), other, k=2).set_index("metric").value
    assert np.isnan(frame["spearman"]) and np.isnan(frame["cosine"])
    # ties broken by feature index: {0, 1} for the zero map, {0, 2} for the other
    assert frame["topk_overlap"] == 0.5


@pytest.mark.parametrize("method", METHODS)
def test_a_model_agrees_perfectly_with_itself(method):
    data = image_data()
    model = image_model()
    frame = compare_attributions(model, model, data, methods=[method], k=4)
    assert set(frame.columns) >= {"sample_id", "attribution", "metric", "value", "k"}
    assert (frame.attribution == method).all()
    assert sorted(frame.sample_id.unique()) == list(data.sample_id)
    for metric in ("spearman", "topk_overlap", "cosine"):
        np.testing.assert_allclose(frame[frame.metric == metric].value, 1.0, atol=1e-9)


def test_compare_attributions_of_a_narrower_model_and_chosen_samples():
    data = image_data()
    dense, pruned = image_model(0, hidden=8), image_model(1, hidden=5)  # like a channel-pruned model
    frame = compare_attributions(dense, pruned, data, sample_ids=[104, 101], methods=["saliency"], k=3)
    assert frame.sample_id.tolist()[:2] == [104, 101]
    values = frame.set_index(["sample_id", "metric"]).value
    a = attribute(dense, data.x[[4]], target=data.y[[4]], method="saliency")
    b = attribute(pruned, data.x[[4]], target=data.y[[4]], method="saliency")
    expected = attribution_agreement(a, b, k=3).set_index("metric").value
    assert values[(104, "spearman")] == pytest.approx(expected["spearman"])
    assert values[(104, "spearman")] < 1.0


def test_attribution_maps_long_frame_matches_the_tensor():
    data = image_data()
    model = image_model()
    frame = attribution_maps(model, data, sample_ids=[103, 100], method="saliency")
    assert frame.columns.tolist() == [
        "sample_id",
        "attribution",
        "target",
        "feature",
        "channel",
        "row",
        "col",
        "value",
    ]
    assert len(frame) == 2 * 16
    a = attribute(model, data.x[[3, 0]], target=data.y[[3, 0]], method="saliency")
    row = frame[(frame.sample_id == 103) & (frame.row == 2) & (frame.col == 3)]
    assert row.feature.item() == 2 * 4 + 3 and row.target.item() == int(data.y[3])
    assert row.value.item() == pytest.approx(float(a[0, 0, 2, 3]))
    np.testing.assert_allclose(frame.value.to_numpy(), a.double().numpy().ravel(), rtol=1e-6)


# -- model state and hooks ------------------------------------------------------------------------
class Flaky(nn.Module):
    """Dropout (mode matters) and a forward that raises from its ``fail_on``-th call on."""

    def __init__(self, fail_on: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.drop, self.fc2 = nn.Linear(6, 8), nn.Dropout(0.3), nn.Linear(8, 3)
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise RuntimeError("boom in forward")
        return self.fc2(self.drop(torch.tanh(self.fc1(x))))


def assert_no_hooks(model: nn.Module) -> None:
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not m._backward_hooks and not m._backward_pre_hooks
    from torch.nn.modules import module as mod

    assert not mod._global_forward_hooks and not mod._global_forward_pre_hooks
    assert not mod._global_backward_hooks and not mod._global_backward_pre_hooks


@pytest.mark.parametrize("fail_on", [None, 2])
@pytest.mark.parametrize("method", METHODS)
def test_model_state_and_hooks_after_success_and_exception(method, fail_on):
    model = Flaky(fail_on)
    model.train()
    model.fc1.bias.requires_grad_(False)
    model.fc2.weight.grad = torch.ones_like(model.fc2.weight)
    grad_obj = model.fc2.weight.grad
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, target = inputs(4), torch.tensor([0, 1, 2, 0])
    if fail_on is None:
        out = attribute(model, x, target=target, method=method, draws=4, steps=4)
        assert out.shape == x.shape
    else:
        with pytest.raises(RuntimeError, match="boom in forward"):
            attribute(model, x, target=target, method=method, draws=4, steps=4)
        assert model.calls == 2
    assert model.training and model.drop.training
    assert not model.fc1.bias.requires_grad and model.fc1.weight.requires_grad
    assert model.fc2.weight.grad is grad_obj and model.fc1.weight.grad is None
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert_no_hooks(model)


def test_attributions_are_computed_in_eval_mode():
    model, x, target = Flaky(), inputs(4), torch.tensor([0, 1, 2, 0])
    model.train()
    a = attribute(model, x, target=target, method="saliency")
    model.eval()
    assert torch.equal(a, attribute(model, x, target=target, method="saliency"))


# -- zoo ------------------------------------------------------------------------------------------
def test_run_attributions_on_a_zoo_is_keyed_and_cached(small_zoo, tmp_path):
    shutil.copytree(small_zoo.path, tmp_path / "zoo")
    zoo = Zoo(tmp_path / "zoo")
    a, b = zoo.run_ids()[:2]
    frame = run_attributions(zoo, a, b, methods=["saliency"], samples=5, k=6)
    assert frame.columns.tolist()[:5] == ["run_a", "run_b", "method", "structure", "sparsity"]
    assert (frame.run_a == a).all() and (frame.run_b == b).all() and (frame.method == "dense").all()
    assert frame.sample_id.nunique() == 5 and set(frame.metric) == {"spearman", "topk_overlap", "cosine"}
    test_ids = zoo.splits(zoo.run(a).dataset).test.sample_id
    assert set(frame.sample_id) <= set(test_ids)
    again = run_attributions(zoo, a, b, methods=["saliency"], samples=5, k=6)
    assert again.equals(frame)
    chosen = run_attributions(zoo, a, b, methods=["saliency"], sample_ids=test_ids[:2], k=6)
    assert sorted(chosen.sample_id.unique()) == sorted(test_ids[:2])
    with pytest.raises(DataError, match="'sample_ids' parameter of run_attributions must be ids"):
        run_attributions(zoo, a, b, methods=["saliency"], sample_ids=[-5], k=6)


# -- bad input ------------------------------------------------------------------------------------
def test_unknown_method_gets_a_hint():
    with pytest.raises(ValidationError, match="did you mean 'integrated_gradients'"):
        attribute(mlp(), inputs(), target=torch.zeros(5, dtype=torch.long), method="integrated_gradient")
    with pytest.raises(ValidationError, match="'methods' parameter of compare_attributions .* 'saliency'"):
        compare_attributions(image_model(), image_model(), image_data(), methods=["salency"])
    with pytest.raises(ValidationError, match="'methods' parameter of compare_attributions must be a non"):
        compare_attributions(image_model(), image_model(), image_data(), methods="saliency")


def test_bad_targets():
    model, x = mlp(), inputs()
    with pytest.raises(ValidationError, match="'target' parameter of attribute must be a 1-D tensor of 5"):
        attribute(model, x, target=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValidationError, match="'target' parameter of attribute must be an integer tensor"):
        attribute(model, x, target=None)
    with pytest.raises(DataError, match=r"class indices in \[0, 3\).*Got 3 at index 1"):
        attribute(model, x, target=torch.tensor([0, 3, 0, 0, 0]))


def test_bad_inputs_and_baselines():
    model = mlp()
    x = inputs()
    x[1, 2] = float("nan")
    with pytest.raises(DataError, match="'x' parameter of attribute must be finite values only"):
        attribute(model, x, target=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValidationError, match=r"'baseline' parameter of attribute must be a float tensor"):
        attribute(model, inputs(), target=torch.zeros(5, dtype=torch.long), baseline=torch.zeros(6))
    with pytest.raises(ValidationError, match="same device as the inputs"):
        attribute(model.to("meta"), inputs(), target=torch.zeros(5, dtype=torch.long))


def test_sample_ids_not_in_the_data():
    data = image_data()
    with pytest.raises(DataError, match=r"ids of samples in the data. Got 1 id\(s\) not in it, e.g. 7"):
        attribution_maps(image_model(), data, sample_ids=[100, 7], method="saliency")
    with pytest.raises(ValidationError, match="distinct sample ids"):
        compare_attributions(image_model(), image_model(), data, sample_ids=[100, 100])


@pytest.mark.parametrize("k", [0, 17, 2.5])
def test_bad_k(k):
    a = torch.rand(2, 1, 4, 4)
    with pytest.raises(
        ValidationError, match=r"'k' parameter of attribution_agreement must be an integer in \[1, 16\]"
    ):
        attribution_agreement(a, a, k=k)
    with pytest.raises(ValidationError, match=r"'k' parameter of compare_attributions .*\[1, 16\]"):
        compare_attributions(image_model(), image_model(), image_data(), methods=["saliency"], k=k)


def test_agreement_checks_attributions_in_its_own_words():
    a = torch.rand(3, 4)
    with pytest.raises(
        ValidationError,
        match=r"'a' parameter of attribution_agreement must be a float tensor of attributions of shape "
        r"\(N, \*input_shape\). Got ndarray instead. Fix: pass the output of attribute\(model, x",
    ) as info:
        attribution_agreement(a.numpy(), a)
    assert "Dataset" not in str(info.value) and "data.x" not in str(info.value)
    with pytest.raises(ValidationError, match=r"'b' parameter .* Got a tensor of dtype torch.int64"):
        attribution_agreement(a, torch.ones(3, 4, dtype=torch.int64))
    bad = a.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(DataError, match=r"'b' parameter .* finite attributions .* the first at index 1"):
        attribution_agreement(a, bad)
    with pytest.raises(DataError, match="'a' parameter of attribution_agreement must be attributions of at"):
        attribution_agreement(a[:0], a[:0])


def test_agreement_needs_equal_shapes():
    with pytest.raises(ValidationError, match=r"'b' parameter of attribution_agreement .* same shape"):
        attribution_agreement(torch.rand(2, 4), torch.rand(3, 4))


class Affine(nn.Module):
    """A linear layer that is not an nn.Linear: the same parameter names, another layer type."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, d) * 0.1)
        self.bias = nn.Parameter(torch.zeros(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


def with_affine_layer() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), Affine(16, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


def test_a_model_pruned_with_torch_prune_is_comparable():
    from torch.nn.utils import prune

    data = image_data()
    dense = image_model()
    pruned = copy.deepcopy(dense)
    prune.l1_unstructured(pruned[1], "weight", amount=0.5)  # weight -> weight_orig + weight_mask
    assert "1.weight_orig" in pruned.state_dict() and "1.weight" not in pruned.state_dict()
    frame = compare_attributions(dense, pruned, data, methods=["saliency"], k=4)
    # the same agreement as with the mask folded into the weights (state_dict keys as the dense model's)
    folded = copy.deepcopy(pruned)
    prune.remove(folded[1], "weight")
    expected = compare_attributions(dense, folded, data, methods=["saliency"], k=4)
    np.testing.assert_allclose(frame.value, expected.value, rtol=1e-6)
    assert frame[frame.metric == "spearman"].value.lt(1.0).any()  # pruning changed the attributions


def test_models_of_different_architectures_or_input_shapes_are_refused(digits):
    data = digits.take(np.arange(4))
    mlp_model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(8,))
    cnn_model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValidationError, match="dense model's architecture .* different layers"):
        compare_attributions(mlp_model, cnn_model, data, methods=["saliency"])
    with pytest.raises(
        ValidationError, match=r"different layers \(dense vs pruned\), e.g. \['1: Linear vs Affine"
    ):
        compare_attributions(image_model(), with_affine_layer(), image_data(), methods=["saliency"])
    wrong_input = build_model("mlp", input_shape=(1, 6, 6), num_classes=10, hidden=(8,))
    with pytest.raises(ValidationError, match=r"'pruned_model' .* accepts inputs of shape \(N, 1, 8, 8\)"):
        compare_attributions(mlp_model, wrong_input, data, methods=["saliency"])
    wrong_classes = build_model("mlp", input_shape=(1, 8, 8), num_classes=3, hidden=(8,))
    with pytest.raises(ValidationError, match=r"outputs of shape \(N, 10\)"):
        compare_attributions(mlp_model, wrong_classes, data, methods=["saliency"])
