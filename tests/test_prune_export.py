"""Inference export of channel-pruned models: BatchNorm folding, the timed probe that picks memory format,
graph optimisation and thread count (:func:`pruneviz.prune.tune_inference`), on the torchvision-layout
ResNet-18 and MobileNetV2 of :mod:`pruneviz.testing.models`. No timing assertions: only that the probe
returns a valid choice and that every candidate computes what the pruned model computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pruneviz.exceptions import ValidationError
from pruneviz.models import build_model
from pruneviz.prune import (
    InferenceModule,
    fold_batchnorm,
    mask_channels_,
    prune_channels,
    tune_inference,
)
from pruneviz.prune.formats import _frozen
from pruneviz.testing.models import MobileNetV2, resnet18, trained_like

SHAPE = (3, 64, 64)  # the full networks at a small resolution: the same layers, faster tests


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def pruned(request):
    """(dense model, its 50 %-channel-pruned model, the plan) for each torchvision-layout network."""
    dense = trained_like(resnet18(seed=0) if request.param == "resnet18" else MobileNetV2(seed=0), seed=1)
    result = prune_channels(dense, sparsity=0.5, input_shape=SHAPE)
    return dense, result.model.eval(), result.plan


def test_the_torchvision_layouts_have_torchvision_sizes():
    """torchvision's published parameter counts (resnet18: 11,689,512; mobilenet_v2: 3,504,872)."""
    for model, params in ((resnet18(), 11_689_512), (MobileNetV2(), 3_504_872)):
        assert sum(p.numel() for p in model.parameters()) == params
        assert model.eval()(torch.zeros(1, *SHAPE)).shape == (1, 1000)
    assert sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in MobileNetV2().modules()) == 17


def test_pruned_torchvision_models_compute_what_the_masked_models_compute(pruned):
    dense, small, plan = pruned
    assert sum(p.numel() for p in small.parameters()) < 0.4 * sum(p.numel() for p in dense.parameters())
    masked = mask_channels_(copy.deepcopy(dense), plan, input_shape=SHAPE)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert _rel_err(small(x), masked(x)) < 1e-5


def test_batchnorm_folding_equals_the_unfolded_model(pruned):
    _, small, _ = pruned
    folded = fold_batchnorm(small)
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in small.modules())
    assert n_norms > 15 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _rel_err(folded(x), small(x)) < 1e-5
        small64 = copy.deepcopy(small).double()  # in float64 the folding is exact to rounding
        assert _rel_err(fold_batchnorm(small64)(x.double()), small64(x.double())) < 1e-12


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("optimize", [False, True])
def test_every_probed_candidate_equals_the_pruned_model(pruned, memory_format, optimize):
    _, small, _ = pruned
    work = fold_batchnorm(small)
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    example = torch.zeros(2, *SHAPE).contiguous(memory_format=fmt)
    module = InferenceModule(
        _frozen(work.to(memory_format=fmt), example, optimize=optimize),
        memory_format=memory_format,
        threads=1,
    )
    for batch in (2, 5):  # the probed batch size and another one
        x = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert _rel_err(module(x), small(x)) < 1e-5


def test_tune_inference_returns_a_valid_choice_and_leaves_everything_as_it_was(pruned):
    _, small, _ = pruned
    before = {k: v.clone() for k, v in small.state_dict().items()}
    threads_before = torch.get_num_threads()
    tuned = tune_inference(small, SHAPE, batch_size=2, threads=[1, 2], repeats=2)
    probe = tuned.probe
    assert len(probe) == 2 * 2 * 2  # memory formats x optimised or not x thread counts
    assert set(probe.memory_format) == {"contiguous", "channels_last"} and set(probe.threads) == {1, 2}
    assert int(probe.chosen.sum()) == 1 and (probe.median_s > 0).all()
    row = probe[probe.chosen].iloc[0]
    assert (row.memory_format, row.threads, row.optimized) == (
        tuned.memory_format,
        tuned.threads,
        tuned.optimized,
    )
    assert tuned.median_s == row.median_s == probe.median_s.min()
    assert (tuned.model.memory_format, tuned.model.threads) == (tuned.memory_format, tuned.threads)
    assert tuned.memory_format in tuned.describe()
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert _rel_err(tuned.model(x), small(x)) < 1e-5
    assert torch.get_num_threads() == threads_before
    assert all(torch.equal(v, before[k]) for k, v in small.state_dict().items())


def test_the_thread_count_is_restored_when_a_call_fails():
    model = build_model("resnet20", input_shape=(3, 8, 8), num_classes=3, seed=0).eval()
    tuned = tune_inference(model, (3, 8, 8), threads=[1], repeats=1)
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            tuned.model(torch.zeros(1, 5, 8, 8))  # wrong number of channels
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(2)


def test_tune_inference_on_non_image_inputs_probes_the_contiguous_format_only():
    model = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(8,), seed=0).eval()
    tuned = tune_inference(model, (6,), batch_size=4, threads=[1], repeats=1)
    assert set(tuned.probe.memory_format) == {"contiguous"} and tuned.threads == 1
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(tuned.model(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threads": [0]}, r"'threads' parameter of tune_inference must be a positive integer"),
        ({"threads": "2"}, r"'threads' parameter of tune_inference must be a non-empty sequence"),
        ({"threads": []}, r"'threads' parameter of tune_inference must be a non-empty sequence"),
        ({"batch_size": 0}, r"'batch_size' parameter of tune_inference"),
        ({"repeats": 1.5}, r"'repeats' parameter of tune_inference"),
    ],
)
def test_tune_inference_errors(kwargs, match):
    model = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(8,), seed=0)
    with pytest.raises(ValidationError, match=match):
        tune_inference(model, (6,), **kwargs)


def test_tune_inference_refuses_a_bad_model_or_shape():
    with pytest.raises(
        ValidationError, match=r"'model' parameter of tune_inference must be a torch nn.Module"
    ):
        tune_inference("resnet18", (3, 8, 8))
    model = build_model("mlp", input_shape=(6,), num_classes=3, hidden=(8,), seed=0)
    with pytest.raises(ValidationError, match=r"'input_shape' parameter of tune_inference"):
        tune_inference(model, "6")
    with pytest.raises(ValidationError, match=r"'input_shape' parameter of tune_inference"):
        tune_inference(model, (6, 0))
