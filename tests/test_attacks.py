from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import blobs
from pruneviz.analysis.attacks import (
    AttackSettings,
    attack,
    fgsm,
    pgd,
    robust_accuracy,
)
from pruneviz.data import Dataset
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.models import build_model

torchattacks = pytest.importorskip("torchattacks")


def small_net(seed: int = 1) -> nn.Module:
    """A small ReLU network on 1×8×8 images (linear layers only: fast on CPU)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def image_batch(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


class Stateful(nn.Module):
    """BatchNorm + Dropout (mode matters) and a forward that can raise on its ``fail_on``-th call."""

    def __init__(self, fail_on: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(8, 3)
        self.calls, self.fail_on = 0, fail_on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise RuntimeError("boom in forward")
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert set(after) == set(before["state"])
    for k, v in before["state"].items():
        assert torch.equal(after[k], v), k
    assert {n: m.training for n, m in model.named_modules()} == before["training"]
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before["requires_grad"]
    for n, p in model.named_parameters():
        assert p.grad is before["grad"][n], n
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        assert not m._backward_pre_hooks


def prepared_stateful(fail_on: int | None = None) -> nn.Module:
    model = Stateful(fail_on)
    model.train()
    model.drop.eval()  # a mixed state that a plain model.train(was) would not restore
    model.fc1.weight.requires_grad_(False)
    model.fc2.weight.grad = torch.full_like(model.fc2.weight, 7.0)
    return model


# -- references -----------------------------------------------------------------------------------
@pytest.mark.reference
@pytest.mark.parametrize("random_start", [True, False])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_equals_torchattacks(norm, random_start):
    model = small_net()
    x, y = image_batch()
    eps = 0.1 if norm == "linf" else 0.7
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    torch.manual_seed(5)
    expected = cls(model, eps=eps, alpha=eps / 4, steps=4, random_start=random_start)(x, y)
    got = pgd(
        model,
        x,
        y,
        eps=eps,
        step_size=eps / 4,
        steps=4,
        norm=norm,
        random_start=random_start,
        seed=5,
        batch_size=10,  # batches of another size than the reference: same result
    )
    assert not torch.equal(got, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.reference
def test_fgsm_equals_torchattacks():
    model = small_net(2)
    x, y = image_batch(seed=3)
    expected = torchattacks.FGSM(model, eps=0.05)(x, y)
    torch.testing.assert_close(fgsm(model, x, y, eps=0.05, batch_size=7), expected, rtol=0, atol=1e-6)


@pytest.mark.reference
def test_fgsm_on_a_linear_model_equals_the_closed_form():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x = torch.rand(12, 5)
    y = torch.arange(12) % 3
    w, b = model.weight.detach().double().numpy(), model.bias.detach().double().numpy()
    z = x.double().numpy() @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y.numpy()]) @ w  # ∂ CE / ∂x = Wᵀ (softmax - onehot)
    expected = np.clip(x.double().numpy() + 0.2 * np.sign(grad), 0, 1)
    got = fgsm(model, x, y, eps=0.2)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, x.numpy())


@pytest.mark.reference
def test_pgd_l2_single_step_from_x_is_the_normalised_gradient_step():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, y = torch.full((4, 5), 0.5), torch.tensor([0, 1, 2, 0])
    w = model.weight.detach().double()
    p = torch.softmax(x.double() @ w.T + model.bias.detach().double(), 1)
    g = (p - torch.eye(3, dtype=torch.float64)[y]) @ w
    step = 0.3 * g / g.norm(dim=1, keepdim=True)  # |step| = 0.3 < eps: no projection, no clamp
    got = pgd(model, x, y, eps=0.5, step_size=0.3, steps=1, norm="l2", random_start=False)
    torch.testing.assert_close(got.double(), x.double() + step, rtol=0, atol=1e-6)


# -- properties -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.08), ("l2", 0.5)])
def test_adversarial_inputs_stay_in_the_ball_and_the_clamp_range(norm, eps):
    model = small_net()
    x, y = image_batch(20)
    adv = pgd(model, x, y, eps=eps, steps=4, norm=norm, batch_size=8)
    diff = (adv - x).flatten(1)
    size = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(size.max()) > 0.5 * eps  # it did move
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert adv.shape == x.shape and adv.dtype == x.dtype


def test_clamp_none_lets_unbounded_inputs_through():
    data = blobs()
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    adv = pgd(model, data.x, data.y, eps=0.5, steps=3, clamp=None)
    assert float(data.x.min()) < 0 and float(adv.min()) < 0  # not clamped to [0, 1]
    assert float((adv - data.x).abs().max()) <= 0.5 + 1e-5


def test_random_start_is_reproducible_and_seed_dependent():
    model = small_net()
    x, y = image_batch(10)
    a = pgd(model, x, y, eps=0.1, steps=2, seed=3)
    b = pgd(model, x, y, eps=0.1, steps=2, seed=3)
    c = pgd(model, x, y, eps=0.1, steps=2, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_random_state_is_not_touched():
    model = small_net()
    x, y = image_batch(10)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    pgd(model, x, y, eps=0.1, steps=2, seed=3)
    assert torch.equal(torch.rand(3), expected)


@pytest.fixture(scope="module")
def trained_blobs():
    """A nearest-class-mean classifier on blobs, built by hand: logits_c = x·μ_c - |μ_c|²/2."""
    data = blobs(n=150)
    means = torch.stack([data.x[data.y == c].mean(0) for c in range(3)])
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.copy_(means)
        model.bias.copy_(-0.5 * (means**2).sum(1))
    return model.eval(), data


def test_robust_accuracy_is_at_most_clean_accuracy(trained_blobs):
    model, data = trained_blobs
    with torch.no_grad():
        clean = float((model(data.x).argmax(1) == data.y).float().mean())
    settings = [
        AttackSettings("fgsm", eps=0.0, clamp=None),
        AttackSettings("fgsm", eps=1.5, clamp=None),
        AttackSettings("pgd", eps=1.5, steps=10, clamp=None),
        AttackSettings("pgd", norm="l2", eps=3.0, steps=10, clamp=None),
    ]
    frame = robust_accuracy(model, data, attacks=settings)
    assert list(frame.columns[:10]) == [
        "split",
        "attack",
        "norm",
        "eps",
        "step_size",
        "steps",
        "random_start",
        "attack_seed",
        "metric",
        "value",
    ]
    assert "seed" not in frame.columns  # in zoo tables ``seed`` is the run's training seed
    assert frame["split"].tolist() == [s.split for s in settings]
    assert (frame["metric"] == "accuracy").all()
    assert clean > 0.8
    assert frame["value"].iloc[0] == pytest.approx(clean)  # eps = 0 changes nothing
    assert (frame["value"].iloc[1:] < clean).all()
    assert frame.loc[2, "step_size"] == pytest.approx(2.5 * 1.5 / 10)
    assert frame.loc[1, "steps"] == 1 and not frame.loc[1, "random_start"]
    seeded = robust_accuracy(
        model, data, attacks=[AttackSettings("pgd", eps=0.5, steps=2, seed=7, clamp=None)]
    )
    assert seeded["attack_seed"].tolist() == [7]


def test_attack_dataset_keeps_ids_labels_groups_and_info(trained_blobs):
    model, data = trained_blobs
    x_before = data.x.clone()
    adv = attack(model, data, AttackSettings("pgd", eps=0.3, steps=3, clamp=None))
    assert isinstance(adv, Dataset)
    assert adv.x.shape == data.x.shape and not torch.equal(adv.x, data.x)
    assert torch.equal(data.x, x_before)  # the input dataset is unchanged
    assert torch.equal(adv.y, data.y)
    np.testing.assert_array_equal(adv.sample_id, data.sample_id)
    pd.testing.assert_frame_equal(adv.groups, data.groups)
    assert adv.info == data.info
    assert adv.x.dtype == torch.float32 and adv.x.device == data.x.device


def test_attack_returns_float32_on_the_datasets_device_like_corrupt(trained_blobs):
    model, data = trained_blobs
    wide = data.take(np.arange(len(data)))
    wide.x = data.x.double()  # a float64 dataset tensor (and model) still gives float32 inputs back
    double = copy.deepcopy(model).double()
    adv = attack(double, wide, AttackSettings("fgsm", eps=0.1, clamp=None))
    assert adv.x.dtype == torch.float32 and adv.x.device == wide.x.device
    expected = fgsm(double, wide.x, wide.y, eps=0.1, clamp=None)
    assert expected.dtype == torch.float64  # the tensor attack keeps its input's dtype; attack() casts
    assert torch.equal(adv.x, expected.float())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attack_keeps_a_cuda_dataset_on_cuda(trained_blobs):
    from pruneviz.analysis.corruptions import corrupt

    model, data = trained_blobs
    gpu = data.take(np.arange(len(data)))
    gpu.x, gpu.y = data.x.cuda(), data.y.cuda()
    adv = attack(copy.deepcopy(model).cuda(), gpu, AttackSettings("pgd", eps=0.1, steps=2, clamp=None))
    assert adv.x.device == gpu.x.device and adv.x.dtype == torch.float32
    images = Dataset(torch.rand(4, 1, 8, 8), np.arange(4) % 2, modality="image")
    images.x = images.x.cuda()
    assert corrupt(images, "fog", severity=1).x.device == adv.x.device  # the same convention


# -- model state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["fgsm", "pgd"])
def test_model_is_left_exactly_as_it_was(which):
    model = prepared_stateful()
    before = snapshot(model)
    x, y = torch.rand(9, 4), torch.arange(9) % 3
    fn = fgsm if which == "fgsm" else pgd
    adv = fn(model, x, y, eps=0.1, batch_size=4)
    assert adv.shape == x.shape
    assert_untouched(model, before)
    assert model.fc2.weight.grad is not None and torch.all(model.fc2.weight.grad == 7.0)


@pytest.mark.parametrize("which", ["fgsm", "pgd", "robust_accuracy"])
def test_model_is_restored_after_an_exception_midway(which):
    model = prepared_stateful(fail_on=2)
    before = snapshot(model)
    data = Dataset(torch.rand(9, 4), torch.arange(9) % 3)
    with pytest.raises(RuntimeError, match="boom in forward"):
        if which == "fgsm":
            fgsm(model, data.x, data.y, eps=0.1, batch_size=4)
        elif which == "pgd":
            pgd(model, data.x, data.y, eps=0.1, steps=3)
        else:
            robust_accuracy(model, data, attacks=[AttackSettings("fgsm", eps=0.1)], batch_size=4)
    assert model.calls == 2
    assert_untouched(model, before)


def test_pgd_runs_in_eval_mode():
    model = prepared_stateful()
    x, y = torch.rand(6, 4), torch.arange(6) % 3
    a = pgd(model, x, y, eps=0.1, steps=2)
    model.eval()
    b = pgd(model, x, y, eps=0.1, steps=2)
    assert torch.equal(a, b)  # dropout and batch statistics played no part


# -- settings -------------------------------------------------------------------------------------
def test_settings_resolve_defaults_and_give_unique_readable_splits():
    s = AttackSettings("pgd", eps=0.1)
    assert s.step_size == pytest.approx(0.025) and s.split == "pgd-linf-eps0.1-steps10-seed0"
    f = AttackSettings("fgsm", eps=0.05, steps=7, seed=3)
    assert (f.steps, f.step_size, f.random_start, f.seed) == (1, 0.05, False, 0)
    assert f.split == "fgsm-linf-eps0.05"
    variants = [
        AttackSettings("fgsm", eps=0.1),
        AttackSettings("fgsm", eps=8 / 255),
        AttackSettings("fgsm", eps=0.1, clamp=None),
        AttackSettings("pgd", eps=0.1),
        AttackSettings("pgd", eps=0.1, steps=20),
        AttackSettings("pgd", eps=0.1, step_size=0.01),
        AttackSettings("pgd", eps=0.1, random_start=False),
        AttackSettings("pgd", eps=0.1, seed=1),
        AttackSettings("pgd", norm="l2", eps=0.1),
        AttackSettings("pgd", eps=0.1, clamp=(-1.0, 1.0)),
        AttackSettings("pgd", eps=0.1 + 1e-12),
    ]
    splits = [v.split for v in variants]
    assert len(set(splits)) == len(variants)
    assert all(" " not in t for t in splits)
    for v in variants:
        assert AttackSettings.from_json(v.to_json()) == v


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), "0.1"])
def test_bad_eps(eps):
    x, y = image_batch(4)
    with pytest.raises(ValidationError, match="'eps' parameter of pgd must be a finite number >= 0"):
        pgd(small_net(), x, y, eps=eps)
    with pytest.raises(ValidationError, match="'eps' parameter of AttackSettings"):
        AttackSettings("fgsm", eps=eps)


def test_bad_steps_step_size_and_norm():
    x, y = image_batch(4)
    model = small_net()
    with pytest.raises(ValidationError, match="'steps' parameter of pgd must be a positive integer"):
        pgd(model, x, y, eps=0.1, steps=0)
    with pytest.raises(ValidationError, match="'step_size' parameter of pgd must be a finite number > 0"):
        pgd(model, x, y, eps=0.1, step_size=-1.0)
    with pytest.raises(ValidationError, match="'norm' parameter of pgd .* did you mean 'linf'"):
        pgd(model, x, y, eps=0.1, norm="Linf")
    with pytest.raises(ValidationError, match="'name' parameter of AttackSettings .* did you mean 'pgd'"):
        AttackSettings("pdg")
    with pytest.raises(ValidationError, match="'norm' parameter of AttackSettings must be 'linf' for FGSM"):
        AttackSettings("fgsm", norm="l2")


def test_length_mismatch_and_bad_labels():
    x, y = image_batch(4)
    model = small_net()
    with pytest.raises(ValidationError, match=r"'y' parameter of fgsm must be a 1-D tensor of 4 class"):
        fgsm(model, x, y[:3], eps=0.1)
    with pytest.raises(ValidationError, match="'y' parameter of pgd must be an integer tensor"):
        pgd(model, x, y.float(), eps=0.1)
    with pytest.raises(DataError, match=r"class indices in \[0, 10\).*Got 12 at index 0"):
        pgd(model, x, torch.tensor([12, 0, 0, 0]), eps=0.1)


def test_nan_inputs_are_refused():
    x, y = image_batch(4)
    x[2, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="finite values only .* the first at index 2"):
        pgd(small_net(), x, y, eps=0.1)


def test_inputs_outside_the_clamp_range_are_refused():
    x, y = image_batch(4)
    with pytest.raises(DataError, match=r"within clamp=\(0, 1\).*Fix: .*clamp=None"):
        fgsm(small_net(), x * 3, y, eps=0.1)
    with pytest.raises(ValidationError, match="'clamp' parameter of fgsm must be a pair"):
        fgsm(small_net(), x, y, eps=0.1, clamp=(1.0, 0.0))


def test_model_on_another_device_is_refused():
    x, y = image_batch(4)
    model = small_net().to("meta")
    with pytest.raises(ValidationError, match=r"same device as the inputs \(cpu\).*a model on meta"):
        pgd(model, x, y, eps=0.1)


def test_robust_accuracy_needs_a_list_of_settings(trained_blobs):
    model, data = trained_blobs
    with pytest.raises(ValidationError, match="'attacks' parameter of robust_accuracy must be a non-empty"):
        robust_accuracy(model, data, attacks=AttackSettings("fgsm", eps=0.1, clamp=None))
    with pytest.raises(ValidationError, match="'attacks' parameter of robust_accuracy must be a non-empty"):
        robust_accuracy(model, data, attacks=[])


def test_tabular_attacks_keep_every_feature_in_its_training_range():
    from pruneviz.analysis import FEATURE_RANGE, feature_range

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5)).astype(np.float32)
    x[:, 2] = np.abs(x[:, 2])  # a feature that is never negative
    data = Dataset(x, (x[:, 0] > 0).astype(int))
    train, test = data.take(np.arange(60)), data.take(np.arange(60, 80))
    lo, hi = feature_range(train)
    torch.testing.assert_close(lo, torch.from_numpy(x[:60].min(0)))
    torch.testing.assert_close(hi, torch.from_numpy(x[:60].max(0)))
    inside = test.take(np.flatnonzero(((test.x >= lo) & (test.x <= hi)).all(1).numpy()))
    settings = AttackSettings("pgd", eps=0.5, clamp=FEATURE_RANGE)
    assert settings.split.endswith("-featurerange")
    assert AttackSettings.from_json(settings.to_json()) == settings
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    adv = attack(model, inside, settings, feature_range=(lo, hi))
    assert bool(((adv.x >= lo) & (adv.x <= hi)).all())
    assert bool(((adv.x - inside.x).abs() <= 0.5 + 1e-6).all())
    assert float((adv.x - inside.x).abs().max()) > 0, "the attack moved the inputs"
    with pytest.raises(ValidationError, match="feature_range"):
        attack(model, inside, settings)
