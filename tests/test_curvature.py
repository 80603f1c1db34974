from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pruneviz.analysis import HessianOperator, hessian_density, hessian_eigenvalues, hessian_trace
from pruneviz.analysis.curvature import lanczos
from pruneviz.data import Dataset
from pruneviz.exceptions import ValidationError
from pruneviz.prune import compute_masks


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4), nn.Tanh(), nn.Linear(4, 3)
    ).double()  # fmt: skip


def tiny_data(n: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    ds = Dataset(rng.normal(size=(n, 1, 4, 4)), rng.integers(0, 3, n))
    ds.x = ds.x.double()
    return ds


def exact_hessian(model: nn.Module, data: Dataset) -> torch.Tensor:
    """Reference: autograd's double-backward Hessian of the mean loss over a flat parameter vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for n, shape, size in zip(names, shapes, sizes, strict=True):
            params[n] = theta[start : start + size].reshape(shape)
            start += size
        logits = torch.func.functional_call(model, params, (data.x,))
        return nn.functional.cross_entropy(logits, data.y)

    return torch.autograd.functional.hessian(loss, flat)


@pytest.fixture(scope="module")
def setting():
    model, data = tiny_cnn(), tiny_data()
    return model, data, exact_hessian(model, data)


@pytest.mark.reference
def test_operator_equals_the_autograd_hessian(setting):
    model, data, exact = setting
    op = HessianOperator(model, data, dtype=torch.float64, batch_size=17)
    torch.testing.assert_close(op.dense(), exact, rtol=1e-9, atol=1e-11)


@pytest.mark.reference
def test_masked_operator_is_the_hessian_restricted_to_kept_coordinates(setting):
    model, data, exact = setting
    masks = compute_masks(model, method="global_magnitude", sparsity=0.5)
    op = HessianOperator(model, data, masks=masks, dtype=torch.float64)
    keep = torch.cat([masks[n.removesuffix(".weight")].flatten() if n.removesuffix(".weight") in masks else torch.ones(p.numel(), dtype=torch.bool)
                      for n, p in model.named_parameters()])  # fmt: skip
    assert op.dim == int(keep.sum())
    torch.testing.assert_close(op.dense(), exact[keep][:, keep], rtol=1e-9, atol=1e-11)


@pytest.mark.reference
def test_top_eigenvalues_within_targets(setting):
    model, data, exact = setting
    truth = np.sort(np.linalg.eigvalsh(exact.numpy()))[::-1]
    op = HessianOperator(model, data, dtype=torch.float64)
    top1 = hessian_eigenvalues(op, k=1, iterations=10)
    assert top1.hvps[0] <= 10
    assert abs(top1.eigenvalue[0] - truth[0]) <= 1e-3 * abs(truth[0])
    assert abs(top1.eigenvalue[0] - truth[0]) <= top1.residual[0] + 1e-12
    top5 = hessian_eigenvalues(op, k=5, iterations=20)
    assert (top5.hvps <= 20).all()
    # every Ritz value is within its residual of some true eigenvalue (the bound is honest)
    for theta, res in zip(top5.eigenvalue, top5.residual, strict=True):
        assert np.min(np.abs(truth - theta)) <= res + 1e-12
    converged = hessian_eigenvalues(op, k=5, iterations=80)
    np.testing.assert_allclose(converged.eigenvalue.to_numpy(), truth[:5], rtol=1e-8)
    assert (converged.residual < 1e-6).all()


@pytest.mark.reference
def test_hutchpp_trace_is_unbiased_with_an_honest_standard_error(setting):
    model, data, exact = setting
    truth = float(torch.trace(exact))
    op = HessianOperator(model, data, dtype=torch.float64)
    estimates = [hessian_trace(op, hvps=30, seed=s) for s in range(10)]
    values = np.array([e.value[0] for e in estimates])
    ses = np.array([e.se[0] for e in estimates])
    assert np.mean(np.abs(values - truth) <= 4 * ses + 1e-9) >= 0.9
    assert abs(values.mean() - truth) <= 4 * values.std(ddof=1) / np.sqrt(10) + 1e-9
    full = hessian_trace(op, hvps=3 * op.dim, seed=0)  # sketch of the whole space: exact
    assert full.value[0] == pytest.approx(truth, rel=1e-8)


@pytest.mark.reference
def test_lanczos_quadrature_reproduces_the_moments(setting):
    model, data, exact = setting
    op = HessianOperator(model, data, dtype=torch.float64)
    nodes, density = hessian_density(op, vectors=2, iterations=6, seed=3)
    h = exact.numpy()
    for v in range(2):
        gen = torch.Generator().manual_seed(3 + 1000 * v)
        q = torch.randn(op.dim, generator=gen, dtype=torch.float64).numpy()
        q /= np.linalg.norm(q)
        rule = nodes[nodes.vector == v]
        for j in range(1, 2 * 6):
            exact_moment = q @ np.linalg.matrix_power(h, j) @ q
            assert (rule.weight * rule.node**j).sum() == pytest.approx(exact_moment, rel=1e-6, abs=1e-9)
    assert density.density.min() >= 0
    step = density.eigenvalue.diff().iloc[1]
    assert (density.density.sum() * step) == pytest.approx(1.0, rel=0.02)


def test_model_is_untouched_even_when_the_loss_raises(setting):
    model, data, _ = setting
    model.train()
    before = copy.deepcopy(model.state_dict())
    calls = {"n": 0}

    def flaky(logits, y):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("loss failed midway")
        return nn.functional.cross_entropy(logits, y, reduction="sum")

    op = HessianOperator(model, data, loss=flaky, batch_size=20, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="midway"):
        op.matvec(torch.ones(op.dim, dtype=torch.float64))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_nan_loss_and_bad_requests_are_explained(setting):
    model, data, _ = setting
    op = HessianOperator(
        model, data, loss=lambda logits, y: (logits * float("nan")).sum(), dtype=torch.float64
    )
    with pytest.raises(FloatingPointError, match="NaN or inf.*Fix"):
        op.matvec(torch.ones(op.dim, dtype=torch.float64))
    good = HessianOperator(model, data, dtype=torch.float64)
    with pytest.raises(
        ValidationError,
        match=r"'k' parameter of hessian_eigenvalues must be at most the number of unpruned parameters \(\d+\)",
    ):
        hessian_eigenvalues(good, k=good.dim + 1)
    with pytest.raises(
        ValidationError, match=r"'data' parameter of HessianOperator must be a non-empty Dataset"
    ):
        HessianOperator(model, data.take([]))
    with pytest.raises(ValidationError, match=r"'params' parameter.*Got 'fc.weight'"):
        HessianOperator(model, data, params=["fc.weight"])


def test_a_layer_block_is_the_diagonal_block_of_the_full_hessian(setting):
    model, data, exact = setting
    op = HessianOperator(model, data, params=["3.weight"], dtype=torch.float64)
    offset = sum(p.numel() for p in list(model.parameters())[:2])
    block = exact[offset : offset + op.dim, offset : offset + op.dim]
    torch.testing.assert_close(op.dense(), block, rtol=1e-9, atol=1e-11)
    _, _, basis = lanczos(op, 5, seed=0)
    assert basis.shape == (op.dim, 5) and np.allclose(basis.T @ basis, np.eye(5), atol=1e-10)


# -- real-size curvature: affine norms, grouped products, one Lanczos run for eigenvalues and trace ---
def bn_cnn(seed: int = 0) -> nn.Module:
    """tiny_cnn with an eval-mode BatchNorm whose statistics and affine part are far from identity."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4),
        nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3),
    ).double()  # fmt: skip
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.reference
@pytest.mark.parametrize("batch_size", [17, 512])
def test_batchnorm_models_give_the_autograd_hessian(batch_size):
    """The operator evaluates eval-mode BatchNorms as affine maps: both product paths (cached
    double-backward graph, per-batch forward-over-reverse) still give autograd's Hessian."""
    model, data = bn_cnn(), tiny_data()
    before = copy.deepcopy(model)
    exact = exact_hessian(model, data)
    op = HessianOperator(model, data, dtype=torch.float64, batch_size=batch_size)
    torch.testing.assert_close(op.dense(), exact, rtol=1e-9, atol=1e-11)
    assert isinstance(model[1], nn.BatchNorm2d)  # the user's model keeps its modules and values
    for a, b in zip(model.state_dict().values(), before.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_grouped_products_are_the_groups_hessian_products():
    from pruneviz.analysis import GroupedHessian

    model, data = bn_cnn(), tiny_data(61)
    grouped = GroupedHessian(model, data, groups=3, dtype=torch.float64)
    v = torch.randn(grouped.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    parts = grouped.matvec_groups(v)
    sizes = [len(op.data) for op in grouped.ops]
    assert sizes == [20, 21, 20] and parts.shape == (grouped.dim, 3)
    start = 0
    for g, n in enumerate(sizes):  # each column: the Hessian of that group's mean loss
        alone = HessianOperator(model, data.take(np.arange(start, start + n)), dtype=torch.float64)
        torch.testing.assert_close(parts[:, g], alone.matvec(v), rtol=1e-10, atol=1e-12)
        start += n
    whole = HessianOperator(model, data, dtype=torch.float64).matvec(v)
    torch.testing.assert_close(grouped.matvec(v), whole, rtol=1e-10, atol=1e-12)


@pytest.mark.reference
def test_curvature_summary_gives_the_exact_spectrum_and_an_honest_trace():
    from pruneviz.analysis import GroupedHessian, curvature_summary

    model, data = bn_cnn(), tiny_data()
    exact = torch.linalg.eigvalsh(exact_hessian(model, data)).flip(0).numpy()
    misses, ses = 0, []
    for seed in range(12):
        op = GroupedHessian(model, data, groups=4, dtype=torch.float64)
        out = curvature_summary(op, k=3, iterations=40, probes=8, seed=seed).set_index("metric")
        eig = out.loc[["eigenvalue_1", "eigenvalue_2", "eigenvalue_3"], "value"].to_numpy()
        np.testing.assert_allclose(eig, exact[:3], rtol=1e-8)
        trace = out.loc["trace"]
        assert trace.hvps == 48  # the eigenvalues' 40 products are the trace's low-rank part
        misses += abs(trace.value - exact.sum()) > 2.5 * trace.se
        ses.append(trace.se)
    assert misses <= 2 and min(ses) > 0  # a 2.5σ interval covers the exact trace about 99 % of the time
    # with as many Lanczos steps as variables the basis is complete: the trace is exact, with no error
    full = curvature_summary(
        GroupedHessian(model, data, dtype=torch.float64), k=1, iterations=op.dim, probes=2
    )
    trace = full.set_index("metric").loc["trace"]
    assert trace.value == pytest.approx(exact.sum(), rel=1e-8) and trace.se < 1e-12


@pytest.mark.reference
def test_sample_se_is_the_spread_between_draws_of_samples():
    """sample_se, from four groups of one draw, against the actual spread of the exact top eigenvalue
    and trace over 24 disjoint draws of the same size."""
    from pruneviz.analysis import GroupedHessian, curvature_summary

    model, data = bn_cnn(), tiny_data(24 * 40, seed=1)
    tops, traces, se_top, se_trace = [], [], [], []
    for i in range(24):
        draw = data.take(np.arange(40 * i, 40 * (i + 1)))
        h = HessianOperator(model, draw, dtype=torch.float64).dense()  # autograd's, as tested above
        tops.append(float(torch.linalg.eigvalsh(h)[-1]))
        traces.append(float(torch.trace(h)))
        op = GroupedHessian(model, draw, groups=4, dtype=torch.float64)
        out = curvature_summary(op, k=1, iterations=50, probes=30).set_index("metric")
        se_top.append(out.loc["eigenvalue_1", "sample_se"])
        se_trace.append(out.loc["trace", "sample_se"])
    for spread, se in ((np.std(tops, ddof=1), se_top), (np.std(traces, ddof=1), se_trace)):
        assert 0.5 < np.median(se) / spread < 2.0, (np.median(se), spread)
