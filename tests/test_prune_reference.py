"""Criteria and SparseGPT against independent implementations of the published formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pruneviz.data import Dataset
from pruneviz.prune import compute_masks, layer_inputs, optimal_reconstruction, prunable_layers, score
from pruneviz.prune.allocation import Structure
from pruneviz.prune.sparsegpt import reconstruction_error, sparsegpt_layer
from pruneviz.testing import sequential_obs_reference, wanda_reference

pytestmark = pytest.mark.reference


def tiny_mlp(seed: int = 0, d: int = 5, h: int = 7, k: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k)).double()


def tiny_data(n: int = 40, d: int = 5, k: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.normal(size=(n, d)), rng.integers(0, k, n), class_names=[str(i) for i in range(k)])


def numpy_mlp_grads(model: nn.Sequential, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form gradients of the mean cross-entropy of Linear-ReLU-Linear w.r.t. W1 and W2."""
    w1, b1 = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    w2, b2 = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    z1 = x @ w1.T + b1
    h = np.maximum(z1, 0)
    logits = h @ w2.T + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta2 = p.copy()
    delta2[np.arange(len(y)), y] -= 1
    delta2 /= len(y)
    g2 = delta2.T @ h
    delta1 = (delta2 @ w2) * (z1 > 0)
    g1 = delta1.T @ x
    return g1, g2


def as64(data: Dataset) -> Dataset:
    data.x = data.x.double()
    return data


def test_lamp_matches_the_published_formula():
    model = tiny_mlp()
    layers = prunable_layers(model)
    got = score(model, layers, "lamp")
    for name, m in layers.items():
        w = m.weight.detach().numpy().ravel()
        ref = np.array([wu**2 / sum(wv**2 for wv in w if abs(wv) >= abs(wu)) for wu in w])
        np.testing.assert_allclose(got[name].numpy().ravel(), ref, rtol=1e-6)
    # the largest weight of every layer has score 1, so LAMP never empties a layer before the others
    assert all(float(s.max()) == pytest.approx(1.0) for s in got.values())


def test_snip_matches_closed_form_gradients():
    model, data = tiny_mlp(), as64(tiny_data())
    got = score(model, prunable_layers(model), "snip", data=data)
    g1, g2 = numpy_mlp_grads(model, data.x.numpy(), data.y.numpy())
    np.testing.assert_allclose(got["0"].numpy(), np.abs(g1 * model[0].weight.detach().numpy()), rtol=1e-9)
    np.testing.assert_allclose(got["2"].numpy(), np.abs(g2 * model[2].weight.detach().numpy()), rtol=1e-9)


def test_taylor_averages_squared_first_order_terms_over_batches():
    model, data = tiny_mlp(), as64(tiny_data(n=30))
    got = score(model, prunable_layers(model), "taylor", data=data, batch_size=10)
    w1 = model[0].weight.detach().numpy()
    ref = np.zeros_like(w1)
    for i in range(0, 30, 10):
        part = data.take(np.arange(i, i + 10))
        g1, _ = numpy_mlp_grads(model, part.x.numpy(), part.y.numpy())
        ref += (g1 * w1) ** 2 / 3
    np.testing.assert_allclose(got["0"].numpy(), ref, rtol=1e-9)


def test_grasp_matches_the_hessian_gradient_product():
    # single softmax layer: closed-form Hessian of the mean cross-entropy
    rng = np.random.default_rng(1)
    data = as64(tiny_data(n=25, d=4, k=3, seed=2))
    model = nn.Sequential(nn.Linear(4, 3, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(rng.normal(size=(3, 4))))
    w = model[0].weight.detach().numpy()
    x, y = data.x.numpy(), data.y.numpy()
    logits = x @ w.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y]
    g = ((p - onehot).T @ x) / len(y)  # (3, 4)
    hess = sum(
        np.kron(np.diag(pi) - np.outer(pi, pi), np.outer(xi, xi)) for pi, xi in zip(p, x, strict=True)
    ) / len(y)
    hg = (hess @ g.ravel()).reshape(3, 4)
    got = score(model, prunable_layers(model), "grasp", data=data)
    np.testing.assert_allclose(got["0"].numpy(), w * hg, rtol=1e-9, atol=1e-14)


def test_grasp_on_a_hidden_layer_matches_autograd_full_hessian():
    model, data = tiny_mlp(d=3, h=4, k=2), as64(tiny_data(n=20, d=3, k=2))
    params = [model[0].weight, model[2].weight]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        w1, w2 = flat[: sizes[0]].reshape(shapes[0]), flat[sizes[0] :].reshape(shapes[1])
        hidden = torch.relu(data.x @ w1.T + model[0].bias)
        return nn.functional.cross_entropy(hidden @ w2.T + model[2].bias, data.y)

    flat = torch.cat([p.detach().flatten() for p in params])
    grad = torch.autograd.functional.jacobian(loss_of, flat)
    hess = torch.autograd.functional.hessian(loss_of, flat)
    ref = flat * (hess @ grad)
    got = score(model, prunable_layers(model), "grasp", data=data)
    np.testing.assert_allclose(
        torch.cat([got["0"].flatten(), got["2"].flatten()]).numpy(), ref.numpy(), rtol=1e-8, atol=1e-14
    )


def test_synflow_matches_its_closed_form():
    model = tiny_mlp()
    got = score(model, prunable_layers(model), "synflow", input_shape=(5,))
    w1, b1 = model[0].weight.detach().abs().numpy(), model[0].bias.detach().abs().numpy()
    w2 = model[2].weight.detach().abs().numpy()
    hidden = w1 @ np.ones(5) + b1  # all positive, so the ReLU passes everything
    np.testing.assert_allclose(got["0"].numpy(), w1 * w2.sum(0)[:, None], rtol=1e-6)
    np.testing.assert_allclose(got["2"].numpy(), w2 * hidden[None, :], rtol=1e-6)


@pytest.mark.parametrize("calibration", ["dense", "sequential"])
def test_wanda_masks_on_a_linear_layer(calibration):
    model, data = tiny_mlp(d=5, h=8), as64(tiny_data(n=50))
    masks = compute_masks(model, method="wanda", sparsity=0.5, data=data, calibration=calibration)
    x = data.x.numpy()
    w1 = model[0].weight.detach().numpy()
    keep1 = wanda_reference(w1, x, 0.5)
    np.testing.assert_array_equal(masks["0"].numpy(), keep1)
    if calibration == "sequential":  # the second layer sees the outputs of the pruned first one
        w1 = w1 * keep1
    hidden = np.maximum(x @ w1.T + model[0].bias.detach().numpy(), 0)
    np.testing.assert_array_equal(
        masks["2"].numpy(), wanda_reference(model[2].weight.detach().numpy(), hidden, 0.5)
    )


def test_wanda_masks_on_a_convolution_use_patch_norms():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    ).double()
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(6, 2, 5, 5)), rng.integers(0, 3, 6))
    data.x = data.x.double()
    masks = compute_masks(model, method="wanda", sparsity=0.5, data=data)
    x = np.pad(data.x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    patches = [x[b, :, i : i + 3, j : j + 3].ravel() for b in range(6) for i in range(5) for j in range(5)]
    w = model[0].weight.detach().numpy().reshape(4, -1)
    np.testing.assert_array_equal(
        masks["0"].numpy().reshape(4, -1), wanda_reference(w, np.array(patches), 0.5)
    )


@pytest.mark.parametrize("structure", [Structure("unstructured"), Structure("nm", n=2, m=4)])
def test_sparsegpt_equals_a_dense_solve_of_its_problem(structure):
    torch.manual_seed(0)
    weight = torch.randn(12, 24, dtype=torch.float64)
    mixing = torch.randn(24, 24, dtype=torch.float64) / 5 + torch.eye(24, dtype=torch.float64)
    inputs = mixing @ torch.randn(24, 300, dtype=torch.float64)
    inputs[5] = 0.0  # an input that is always zero (a dead ReLU upstream)
    new, keep = sparsegpt_layer(weight, inputs, sparsity=0.6, structure=structure, block_size=8)
    ref = sequential_obs_reference(weight, inputs, keep)
    err, ref_err = reconstruction_error(weight, new, inputs), reconstruction_error(weight, ref, inputs)
    assert abs(err - ref_err) <= 0.01 * ref_err
    torch.testing.assert_close(new, ref, rtol=1e-7, atol=1e-9)
    # reconstruction beats keeping the surviving weights as they are, and never beats the least-squares optimum
    assert err < reconstruction_error(weight, weight * keep, inputs)
    assert reconstruction_error(weight, optimal_reconstruction(weight, keep, inputs), inputs) <= err * (
        1 + 1e-9
    )
    assert bool((new[~keep] == 0).all())
    if structure.kind == "nm":
        assert bool((keep.reshape(12, -1, 4).sum(-1) == 2).all())
    else:
        assert int((~keep).sum()) == round(0.6 * keep.numel())


def test_layer_inputs_are_the_im2col_columns():
    conv = nn.Conv1d(2, 3, 3, padding=1).double()
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(12, 2)).double()
    data = Dataset(np.random.default_rng(0).normal(size=(4, 2, 4)), [0, 1, 0, 1])
    data.x = data.x.double()
    cols = layer_inputs(model, {"0": conv}, data)["0"]
    out = (conv.weight.detach().reshape(3, -1) @ cols).reshape(3, 4, 4).permute(1, 0, 2) + conv.bias.detach()[
        None, :, None
    ]
    torch.testing.assert_close(out, conv(data.x).detach())
