"""The engine's contracts: exact masks, valid structures, schedules, channel removal, export, errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import blobs
from pruneviz.exceptions import ValidationError
from pruneviz.models import build_model
from pruneviz.prune import (
    Masks,
    allocate,
    apply_channel_plan,
    compute_masks,
    count_macs,
    cubic_sparsity,
    erk_densities,
    export_inference,
    fold_batchnorm,
    fold_masks,
    gradual,
    iterative_magnitude,
    mask_channels_,
    measure_latency,
    method_names,
    movement_prune,
    one_shot,
    parse_structure,
    prunable_layers,
    prune_,
    prune_channels,
    sparsity_by_layer,
    to_bsr,
    to_csr,
    to_nm,
    weights_at_step,
)
from pruneviz.prune.sparsegpt import sparsegpt_layer
from pruneviz.train import TrainConfig, evaluate

FAST = TrainConfig(epochs=2, batch_size=32, lr=3e-3)


@pytest.fixture()
def mlp():
    return build_model("mlp", input_shape=(4,), num_classes=3, hidden=(16, 8), seed=0)


@pytest.fixture()
def data():
    return blobs(n=90)


def random_scores(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {f"l{i}": torch.rand(s, generator=gen) for i, s in enumerate(shapes)}


class FakeLayer(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))


shape_st = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3)),
)


# -- exact masks --------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(shape_st, min_size=1, max_size=4), sparsity=st.floats(0, 0.99), seed=st.integers(0, 99)
)
def test_uniform_and_global_counts_are_exact(shapes, sparsity, seed):
    scores = random_scores(shapes, seed)
    uni = allocate(scores, sparsity=sparsity, structure=parse_structure("unstructured"), allocation="uniform")
    for name, s in scores.items():
        assert int((~uni[name]).sum()) == round(sparsity * s.numel())
    glob = allocate(scores, sparsity=sparsity, structure=parse_structure("unstructured"), allocation="global")
    total = sum(s.numel() for s in scores.values())
    assert sum(int((~m).sum()) for m in glob.values()) == round(sparsity * total)
    # global keeps exactly the highest scores
    flat_scores = torch.cat([scores[n].flatten() for n in scores])
    flat_keep = torch.cat([glob[n].flatten() for n in scores])
    if flat_keep.any() and (~flat_keep).any():
        assert float(flat_scores[flat_keep].min()) >= float(flat_scores[~flat_keep].max())


@settings(max_examples=40, deadline=None)
@given(shapes=st.lists(shape_st, min_size=2, max_size=4), sparsity=st.floats(0, 0.9), seed=st.integers(0, 99))
def test_global_floor_and_erk_are_exact_and_never_empty_a_layer(shapes, sparsity, seed):
    scores = random_scores(shapes, seed)
    layers = {n: FakeLayer(s.shape) for n, s in scores.items()}
    total = sum(s.numel() for s in scores.values())
    reserved = sum(min(s.numel(), max(1, math.ceil(0.05 * s.numel()))) for s in scores.values())
    kwargs = {"structure": parse_structure("unstructured"), "allocation": "global_floor", "floor": 0.05}
    if round(sparsity * total) > total - reserved:  # the floors leave too little to prune: said so
        with pytest.raises(ValidationError, match="'sparsity' parameter of prune must be at most"):
            allocate(scores, sparsity=sparsity, **kwargs)
        return
    floor = allocate(scores, sparsity=sparsity, **kwargs)
    assert sum(int((~m).sum()) for m in floor.values()) == round(sparsity * total)
    for m in floor.values():
        assert int(m.sum()) >= min(m.numel(), max(1, math.ceil(0.05 * m.numel())))
    erk = allocate(
        scores, sparsity=sparsity, structure=parse_structure("unstructured"), allocation="erk", layers=layers
    )
    assert sum(int((~m).sum()) for m in erk.values()) == round(sparsity * total)


@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 6),
    groups=st.integers(1, 4),
    kernel=st.sampled_from([(), (1,), (3,), (2, 2)]),
    nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (4, 8), (2, 8)]),
    seed=st.integers(0, 99),
)
def test_every_nm_mask_is_valid(out, groups, kernel, nm, seed):
    n, m = nm
    shape = (out, groups * m, *kernel)
    scores = random_scores([shape], seed)
    mask = allocate(scores, sparsity=None, structure=parse_structure(f"{n}:{m}"), allocation="uniform")["l0"]
    along_input = mask.movedim(1, -1).reshape(out, -1, m) if mask.ndim > 2 else mask.reshape(out, -1, m)
    assert bool((along_input.sum(-1) == n).all())
    # the kept entries are the best n of their group
    s = scores["l0"]
    s_view = s.movedim(1, -1).reshape(out, -1, m) if s.ndim > 2 else s.reshape(out, -1, m)
    kept_min = torch.where(along_input, s_view, torch.inf).min(-1).values
    dropped_max = torch.where(~along_input, s_view, -torch.inf).max(-1).values
    assert bool((kept_min >= dropped_max).all())
    w = torch.randn(shape) * mask
    torch.testing.assert_close(to_nm(w, n, m).to_dense(), w)


def test_block_masks_remove_whole_blocks():
    scores = random_scores([(8, 12), (4, 2, 2, 2)])
    masks = allocate(scores, sparsity=0.5, structure=parse_structure("block:2x4"), allocation="uniform")
    blocks = masks["l0"].reshape(4, 2, 3, 4)
    assert bool((blocks.all(dim=(1, 3)) | (~blocks).all(dim=(1, 3))).all())
    assert int((~blocks.all(dim=(1, 3))).sum()) == 6
    bsr = to_bsr(torch.randn(8, 12) * masks["l0"], (2, 4))
    assert bsr.values().shape == (6, 2, 4)


def test_per_row_allocation_prunes_every_row_equally():
    scores = random_scores([(5, 10)])
    mask = allocate(scores, sparsity=0.3, structure=parse_structure("unstructured"), allocation="per_row")[
        "l0"
    ]
    assert (mask.sum(1) == 7).all()


@pytest.mark.reference
def test_erk_densities_follow_the_formula():
    layers = {"a": FakeLayer((10, 20)), "b": FakeLayer((30, 40))}
    dens = erk_densities(layers, 0.8)
    raw = {"a": 30 / 200, "b": 70 / 1200}
    eps = 0.2 * 1400 / (raw["a"] * 200 + raw["b"] * 1200)
    assert dens["a"] == pytest.approx(eps * raw["a"]) and dens["b"] == pytest.approx(eps * raw["b"])
    # a tiny layer whose ERK density would exceed 1 is kept dense and the rest rescaled
    dens2 = erk_densities({"tiny": FakeLayer((2, 2)), "big": FakeLayer((100, 100))}, 0.5)
    assert dens2["tiny"] == 1.0 and dens2["big"] == pytest.approx((0.5 * 10004 - 4) / 10000)


@pytest.mark.parametrize("method", method_names())
def test_every_method_gives_exact_masks_and_leaves_the_model_alone(method, mlp, data):
    before = copy.deepcopy(mlp.state_dict())
    masks = compute_masks(mlp, method=method, sparsity=0.75, data=data, seed=1, synflow_iterations=5)
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k]), f"{method} changed {k}"
    assert all(p.grad is None for p in mlp.parameters())
    layer_sizes = {n: m.weight.numel() for n, m in prunable_layers(mlp).items()}
    pruned = sum(int((~masks[n]).sum()) for n in layer_sizes)
    if method == "wanda":  # per row
        assert pruned == sum(
            round(0.75 * m.weight.shape[1]) * m.weight.shape[0] for m in prunable_layers(mlp).values()
        )
    elif method in ("magnitude", "random", "sparsegpt"):  # per layer
        assert pruned == sum(round(0.75 * s) for s in layer_sizes.values())
    else:
        assert pruned == round(0.75 * sum(layer_sizes.values()))
    again = compute_masks(mlp, method=method, sparsity=0.75, data=data, seed=1, synflow_iterations=5)
    assert all(torch.equal(masks[n], again[n]) for n in masks), "the same seed must give the same masks"


def test_prune_applies_masks_and_sparsegpt_reconstructs(mlp, data):
    masked = copy.deepcopy(mlp)
    masks = prune_(masked, method="global_magnitude", sparsity=0.5)
    for name, m in prunable_layers(masked).items():
        assert bool((m.weight[~masks[name]] == 0).all())
    recon = copy.deepcopy(mlp)
    masks = prune_(recon, method="sparsegpt", sparsity=0.5, data=data)
    w0, w1 = mlp.features[1].weight, recon.features[1].weight
    assert bool((w1[~masks["features.1"]] == 0).all())
    assert not torch.equal(w1[masks["features.1"]], w0[masks["features.1"]]), (
        "kept weights were reconstructed"
    )


# -- errors -------------------------------------------------------------------------------------
def test_bad_pruning_requests_are_explained(mlp, data):
    with pytest.raises(
        ValidationError, match=r"'sparsity' parameter of compute_masks must be a float in \[0, 1\). Got 1.0"
    ):
        compute_masks(mlp, method="lamp", sparsity=1.0)
    with pytest.raises(ValidationError, match=r"Got -0.1"):
        compute_masks(mlp, method="lamp", sparsity=-0.1)
    with pytest.raises(ValidationError, match=r"N:M with 0 < N < M.*Got '4:4'"):
        compute_masks(mlp, method="lamp", structure="4:4")
    with pytest.raises(ValidationError, match=r"layer 'features.1' has 4 inputs, not divisible by M=8"):
        compute_masks(mlp, method="lamp", structure="2:8")
    with pytest.raises(ValidationError, match=r"block size that divides.*'features.1' is \(16, 4\)"):
        compute_masks(mlp, method="lamp", sparsity=0.5, structure="block:3x3")
    with pytest.raises(
        ValidationError,
        match=r"'method' parameter of compute_masks must be one of.*Got 'lmap'.*did you mean 'lamp'",
    ):
        compute_masks(mlp, method="lmap", sparsity=0.5)
    with pytest.raises(
        ValidationError,
        match=r"'data' parameter of compute_masks must be a calibration Dataset for method 'snip'",
    ):
        compute_masks(mlp, method="snip", sparsity=0.5)
    with pytest.raises(ValidationError, match=r"'exclude' parameter.*Got 'fc9'"):
        compute_masks(mlp, method="lamp", sparsity=0.5, exclude=["fc9"])
    with pytest.raises(ValidationError, match=r"at least one prunable layer"):
        compute_masks(nn.Sequential(nn.ReLU()), method="lamp", sparsity=0.5)
    with pytest.raises(ValidationError, match=r"None or 0.5 for structure '2:4'"):
        compute_masks(mlp, method="lamp", sparsity=0.9, structure="2:4", exclude=["features.1"])
    broken = copy.deepcopy(mlp)
    with torch.no_grad():
        broken.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ValidationError, match=r"finite weights.*'classifier'"):
        compute_masks(broken, method="lamp", sparsity=0.5)
    with pytest.raises(ValidationError, match=r"'structure' parameter.*Got 'rows'"):
        compute_masks(mlp, method="lamp", sparsity=0.5, structure="rows")


# -- schedules ----------------------------------------------------------------------------------
def test_one_shot_keeps_zeros_through_fine_tuning(mlp, data):
    before = copy.deepcopy(mlp.state_dict())
    result = one_shot(mlp, data, method="lamp", sparsity=0.8, finetune=FAST)
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    table = sparsity_by_layer(result.model)
    assert table.set_index("layer").loc["total", "zeros"] >= round(0.8 * table.params.iloc[:-1].sum())
    for name, m in prunable_layers(result.model).items():
        assert bool((m.weight[~result.masks[name]] == 0).all())
    assert not result.history.empty


def test_imp_rewinds_survivors_to_initialisation(mlp, data):
    no_training = TrainConfig(epochs=0)
    trained = copy.deepcopy(mlp)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    result = iterative_magnitude(mlp, data, sparsity=0.75, rounds=2, config=no_training, trained=trained)
    for name, m in prunable_layers(result.model).items():
        init = dict(mlp.named_modules())[name].weight
        torch.testing.assert_close(m.weight, init * result.masks[name])
    assert result.masks.sparsity() == pytest.approx(round(0.75 * 148) / 148)
    # the mask came from the trained weights' magnitudes, not the initial ones
    expected = compute_masks(trained, method="global_magnitude", sparsity=0.5)
    first_round = iterative_magnitude(mlp, data, sparsity=0.5, rounds=1, config=no_training, trained=trained)
    assert all(torch.equal(first_round.masks[n], expected[n]) for n in expected)


def test_imp_with_training_and_late_rewinding(mlp, data):
    result = iterative_magnitude(mlp, data, sparsity=0.6, rounds=2, config=FAST, rewind_step=3)
    assert set(result.history["round"]) == {1, 2}
    assert result.schedule["rewind_step"] == 3
    state = weights_at_step(mlp, data, config=FAST, seed=0, step=3)
    again = weights_at_step(mlp, data, config=FAST, seed=0, step=3)
    assert all(torch.equal(state[k], again[k]) for k in state)
    assert not torch.equal(state["classifier.weight"], mlp.state_dict()["classifier.weight"])
    with pytest.raises(ValidationError, match="at most the number of training steps"):
        weights_at_step(mlp, data, config=FAST, seed=0, step=10_000)


@pytest.mark.reference
def test_cubic_schedule_closed_form():
    assert cubic_sparsity(0, final=0.9, initial=0.0, start=10, end=110) == 0.0
    assert cubic_sparsity(60, final=0.9, initial=0.0, start=10, end=110) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(500, final=0.9, initial=0.0, start=10, end=110) == 0.9


@pytest.mark.parametrize("schedule", [gradual, movement_prune])
def test_gradual_schedules_reach_the_exact_target(schedule, mlp, data):
    result = schedule(mlp, data, sparsity=0.7, config=TrainConfig(epochs=4, batch_size=16))
    assert result.masks.sparsity() == pytest.approx(round(0.7 * 148) / 148, abs=0.02)
    for name, m in prunable_layers(result.model).items():
        assert bool((m.weight[~result.masks[name]] == 0).all())


# -- channels -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "shape"), [("resnet20", (3, 16, 16)), ("cnn", (1, 8, 8)), ("mlp", (6,)), ("resnet20", (2, 20))]
)
def test_channel_removal_computes_what_the_masked_model_computes(arch, shape):
    model = build_model(arch, input_shape=shape, num_classes=4, seed=0).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    result = prune_channels(model, sparsity=0.5, input_shape=shape)
    x = torch.randn(5, *shape)
    masked = mask_channels_(copy.deepcopy(model), result.plan, input_shape=shape)
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), masked(x), rtol=1e-4, atol=1e-5)
    before, after = count_macs(model, shape), count_macs(result.model, shape)
    assert after.dense_macs.iloc[-1] < 0.5 * before.dense_macs.iloc[-1]
    # the plan replays on a fresh copy of the dense architecture
    fresh = build_model(arch, input_shape=shape, num_classes=4, seed=7)
    apply_channel_plan(fresh, result.plan, input_shape=shape)
    fresh.load_state_dict(result.model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), result.model(x))


def test_channel_removal_handles_depthwise_convolutions():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    ).eval()  # fmt: skip
    result = prune_channels(model, sparsity=0.5, input_shape=(3, 6, 6))
    assert result.model[3].groups == result.model[3].out_channels == 4
    x = torch.randn(2, 3, 6, 6)
    masked = mask_channels_(copy.deepcopy(model), result.plan, input_shape=(3, 6, 6))
    with torch.no_grad():
        torch.testing.assert_close(result.model(x), masked(x), rtol=1e-4, atol=1e-5)


def test_channel_pruning_errors():
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=3)
    with pytest.raises(ValidationError, match=r"'sparsity' parameter of prune_channels"):
        prune_channels(model, sparsity=1.5, input_shape=(1, 8, 8))
    with pytest.raises(ValidationError, match=r"'criterion' parameter of prune_channels"):
        prune_channels(model, sparsity=0.5, input_shape=(1, 8, 8), criterion="lamp")
    with pytest.raises(ValidationError, match=r"calibration Dataset for criterion 'taylor'"):
        prune_channels(model, sparsity=0.5, input_shape=(1, 8, 8), criterion="taylor")


# -- accounting and export ----------------------------------------------------------------------
@pytest.mark.reference
def test_macs_closed_form():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 5 * 5, 4))
    with torch.no_grad():
        model[0].weight[0] = 0.0
    macs = count_macs(model, (2, 5, 5)).set_index("layer")
    assert macs.loc["0", "dense_macs"] == 25 * 3 * 2 * 9
    assert macs.loc["0", "effective_macs"] == 25 * 2 * 2 * 9
    assert macs.loc["2", "dense_macs"] == 75 * 4
    assert macs.loc["total", "dense_macs"] == 25 * 54 + 300


def test_latency_and_sparsity_tables(mlp):
    lat = measure_latency(mlp, (4,), batch_size=2, repeats=5, warmup=1)
    assert lat["median_s"] > 0 and lat["iqr_s"] >= 0
    masks = Masks({"features.1": torch.zeros(16, 4, dtype=torch.bool)})
    folded = fold_masks(mlp, masks)
    assert float(mlp.features[1].weight.detach().abs().sum()) > 0
    table = sparsity_by_layer(folded).set_index("layer")
    assert table.loc["features.1", "sparsity"] == 1.0
    assert masks.sparsity_by_layer().sparsity.tolist() == [1.0]


def test_csr_round_trip():
    w = torch.randn(6, 8) * (torch.rand(6, 8) > 0.7)
    torch.testing.assert_close(to_csr(w).to_dense(), w)


def test_masks_store_as_tensors_and_check_shapes(mlp):
    masks = compute_masks(mlp, method="global_magnitude", sparsity=0.5)
    again = Masks.from_tensors(masks.to_tensors())
    assert all(torch.equal(again[n], masks[n]) for n in masks)
    other = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(9, 8))
    with pytest.raises(
        ValidationError, match=r"layer 'features.1' of weight shape \(16, 4\).*Got weight shape \(9, 4\)"
    ):
        masks.apply_(other)


def test_pruning_keeps_accuracy_at_moderate_sparsity(data):
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(32,), seed=0)
    from pruneviz.train import fit

    fit(model, data, config=TrainConfig(epochs=40, lr=1e-2), progress=False)
    dense = evaluate(model, data)["correct"].mean()
    pruned = one_shot(model, data, method="lamp", sparsity=0.5, finetune=TrainConfig(epochs=5, lr=1e-3))
    assert evaluate(pruned.model, data)["correct"].mean() >= dense - 0.05
    assert np.isclose(pruned.masks.sparsity(), 0.5, atol=0.01)


def test_fold_batchnorm_keeps_the_function_and_the_zeros():
    model = build_model("resnet20", input_shape=(3, 12, 12), num_classes=4, seed=0).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    masks = prune_(model, method="global_magnitude", sparsity=0.7)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    folded_convs = dict(folded.named_modules())
    for name, mask in masks.items():
        if name in folded_convs and isinstance(folded_convs[name], nn.Conv2d):
            assert bool((folded_convs[name].weight[~mask] == 0).all())


def test_exported_inference_model_matches_the_pruned_model():
    model = build_model("resnet20", input_shape=(3, 12, 12), num_classes=4, seed=0).eval()
    small = prune_channels(model, sparsity=0.5, input_shape=(3, 12, 12)).model
    exported = export_inference(small, (3, 12, 12), batch_size=2)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), small(x), rtol=1e-4, atol=1e-5)


def test_sparsegpt_checks_everything_before_changing_a_weight(data):
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8, 6), seed=0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValidationError, match=r"layer 'classifier' has 6 inputs, not divisible by M=4"):
        prune_(model, method="sparsegpt", structure="2:4", data=data, exclude=["features.1"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValidationError, match=r"non-empty calibration Dataset"):
        prune_(model, method="sparsegpt", sparsity=0.5, data=data.take([]))
    with pytest.raises(ValidationError, match=r"'data' parameter of prune_ must be a pruneviz Dataset"):
        prune_(model, method="sparsegpt", sparsity=0.5, data=data.x)
    with pytest.raises(
        ValidationError, match=r"'allocation' parameter of prune_ must be 'uniform' for SparseGPT"
    ):
        prune_(model, method="sparsegpt", sparsity=0.5, data=data, allocation="global")


def test_sparsegpt_layer_needs_a_sparsity_and_exactly_one_of_inputs_and_gram():
    weight, inputs = torch.randn(4, 8, dtype=torch.float64), torch.randn(8, 20, dtype=torch.float64)
    unstructured = parse_structure("unstructured")
    with pytest.raises(ValidationError, match=r"'sparsity' parameter of sparsegpt_layer.*Got None"):
        sparsegpt_layer(weight, inputs, sparsity=None, structure=unstructured)
    with pytest.raises(ValidationError, match=r"'inputs' parameter of sparsegpt_layer.*exactly one"):
        sparsegpt_layer(weight, inputs, gram=inputs @ inputs.T, sparsity=0.5, structure=unstructured)
    with pytest.raises(ValidationError, match=r"'inputs' parameter of sparsegpt_layer.*exactly one"):
        sparsegpt_layer(weight, sparsity=0.5, structure=unstructured)
    # N:M fixes the count itself: no sparsity needed, and inputs or their gram give the same result
    nm = parse_structure("2:4")
    new, keep = sparsegpt_layer(weight, inputs, sparsity=None, structure=nm)
    new_g, keep_g = sparsegpt_layer(weight, gram=inputs @ inputs.T, sparsity=None, structure=nm)
    assert bool((keep.reshape(4, -1, 4).sum(-1) == 2).all())
    assert torch.equal(keep, keep_g)
    torch.testing.assert_close(new, new_g)


class _WithUnusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


@pytest.mark.parametrize("method", ["snip", "taylor"])
def test_gradient_criteria_name_a_layer_the_forward_never_calls(method, data):
    model = _WithUnusedLayer()
    with pytest.raises(
        ValidationError, match=rf"'layers' parameter of prune \(method='{method}'\).*'unused'"
    ):
        compute_masks(model, method=method, sparsity=0.5, data=data)
    masks = compute_masks(model, method=method, sparsity=0.5, data=data, exclude=["unused"])
    assert list(masks) == ["used"]


@pytest.mark.parametrize("method", ["snip", "taylor", "grasp", "synflow"])
def test_gradient_criteria_work_under_no_grad_and_with_frozen_weights(method, mlp, data):
    mlp.features[1].weight.requires_grad_(False)
    mlp.train()
    with torch.no_grad():
        masks = compute_masks(mlp, method=method, sparsity=0.5, data=data, synflow_iterations=2)
    assert masks.sparsity() == pytest.approx(0.5, abs=0.01)
    assert mlp.training and not mlp.features[1].weight.requires_grad and mlp.classifier.weight.requires_grad
    assert torch.is_grad_enabled()


def test_erk_at_zero_sparsity_keeps_everything():
    shapes = [(43, 32), (45, 42), (6, 23), (40, 21)]
    layers = {f"l{i}": FakeLayer(s) for i, s in enumerate(shapes)}
    assert all(d == pytest.approx(1.0) for d in erk_densities(layers, 0.0).values())
    scores = random_scores(shapes)
    masks = allocate(
        scores, sparsity=0.0, structure=parse_structure("unstructured"), allocation="erk", layers=layers
    )
    assert masks.sparsity() == 0.0


def test_channel_exclude_may_be_any_iterable_and_latency_leaves_rng_alone():
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=3, seed=0)
    result = prune_channels(model, sparsity=0.5, input_shape=(1, 8, 8), exclude=(n for n in ["features.0"]))
    assert result.model.features[0].out_channels == model.features[0].out_channels
    torch.manual_seed(3)
    state = torch.get_rng_state()
    measure_latency(model, (1, 8, 8), repeats=3, warmup=1)
    assert torch.equal(torch.get_rng_state(), state)
