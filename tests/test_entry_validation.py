"""Validation at the public entry points (issue 20): each wrong input answers with one of pruneviz's own
exceptions whose message names the parameter, the expectation, the value and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pruneviz
from pruneviz import Dataset, TrainConfig, evaluate, fit
from pruneviz.exceptions import DataError, DivergenceError, PrunevizError, ValidationError
from pruneviz.prune import Masks, compute_masks, prune_
from pruneviz.zoo import prune_population

TINY = TrainConfig(epochs=1, batch_size=16, lr=1e-3)


def _data(n: int = 40, scale: float = 1.0) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset((rng.normal(size=(n, 4)) * scale).astype(np.float32), np.arange(n) % 2)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _house_style(exc: BaseException, param: str) -> None:
    text = str(exc)
    assert f"The '{param}' parameter of" in text and "Got" in text and "Fix:" in text, text


# -- the first argument of each entry point ----------------------------------------------------------
@pytest.mark.parametrize("model", [None, "cnn"])
def test_compute_masks_refuses_a_model_that_is_not_a_module(model):
    with pytest.raises(
        ValidationError, match="'model' parameter of compute_masks must be a torch nn.Module"
    ) as info:
        compute_masks(model, method="magnitude", sparsity=0.5)
    _house_style(info.value, "model")
    assert repr(model) in str(info.value)


def test_evaluate_refuses_a_dataset_name_for_data():
    with pytest.raises(
        ValidationError, match="'data' parameter of evaluate must be a pruneviz Dataset"
    ) as info:
        evaluate(_mlp(), data="digits")
    _house_style(info.value, "data")
    assert "'digits'" in str(info.value) and "load_dataset('digits')" in str(info.value)


def test_fit_refuses_a_dict_config():
    with pytest.raises(
        ValidationError, match="'config' parameter of fit must be a pruneviz TrainConfig"
    ) as info:
        fit(_mlp(), _data(), config=dict(epochs=1), progress=False)
    _house_style(info.value, "config")
    assert "TrainConfig(**d)" in str(info.value)


@pytest.mark.parametrize("zoo", ["path", None])
def test_prune_population_refuses_a_zoo_that_is_not_a_zoo(zoo):
    with pytest.raises(
        ValidationError, match="'zoo' parameter of prune_population must be an open pruneviz Zoo"
    ):
        prune_population(zoo, methods=["lamp"], sparsities=[0.5])


# -- half precision and the meta device ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("entry", ["fit", "evaluate", "snip"])
def test_half_precision_models_are_refused_where_float32_data_runs_through_them(dtype, entry):
    model = _mlp().to(dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(
        ValidationError, match=f"float32 or float64 weights. Got a Sequential with {name}"
    ) as info:
        if entry == "fit":
            fit(model, _data(), config=TINY, progress=False)
        elif entry == "evaluate":
            evaluate(model, _data())
        else:
            compute_masks(model, method="snip", sparsity=0.5, data=_data())
    assert "model.float()" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["magnitude", "global_magnitude", "lamp", "random"])
def test_half_precision_models_are_supported_by_weight_only_criteria(dtype, method):
    model = _mlp().to(dtype)
    masks = compute_masks(model, method=method, sparsity=0.5)
    assert masks.sparsity() == pytest.approx(0.5, abs=0.05)
    prune_(model, method=method, sparsity=0.5)
    assert model[0].weight.dtype == dtype


@pytest.mark.parametrize("entry", ["fit", "evaluate", "compute_masks"])
def test_meta_device_models_are_refused(entry):
    model = _mlp().to("meta")
    with pytest.raises(
        ValidationError, match="weights hold values. Got a Sequential with 4 tensor.s. on the meta"
    ):
        if entry == "fit":
            fit(model, _data(), config=TINY, progress=False)
        elif entry == "evaluate":
            evaluate(model, _data())
        else:
            compute_masks(model, method="magnitude", sparsity=0.5)


# -- fit: frozen models, empty validation parts, divergence --------------------------------------------
def test_fit_refuses_a_model_whose_every_parameter_is_frozen():
    model = _mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValidationError, match="at least one trainable parameter") as info:
        fit(model, _data(), config=TINY, progress=False)
    _house_style(info.value, "model")
    assert "all 4 parameter(s) frozen" in str(info.value)


def test_fit_trains_a_partly_frozen_model():
    model = _mlp()
    model[0].requires_grad_(False)
    before = model[0].weight.clone()
    fit(model, _data(), config=TINY, progress=False)
    assert torch.equal(model[0].weight, before)


def test_val_fraction_zero_gives_an_empty_val_part_that_fit_and_evaluate_refuse_clearly():
    val = _data().split(seed=0, val_fraction=0.0).val
    assert len(val) == 0
    with pytest.raises(DataError, match="'val' parameter of fit must be a non-empty Dataset") as info:
        fit(_mlp(), _data(), config=TINY, val=val, progress=False)
    assert "val_fraction > 0" in str(info.value)
    with pytest.raises(DataError, match="'data' parameter of evaluate must be a non-empty Dataset"):
        evaluate(_mlp(), val)
    fit(_mlp(), _data(), config=TINY, val=None, progress=False)  # val=None is the way to train without


def test_training_that_blows_up_stops_naming_epoch_and_step():
    with pytest.raises(
        DivergenceError, match=r"Training diverged.*in epoch \d+, step \d+.*Fix: lower"
    ) as info:
        fit(_mlp(), _data(scale=1e4), config=TrainConfig(epochs=5, lr=1e3, batch_size=64), progress=False)
    assert isinstance(info.value, PrunevizError) and isinstance(info.value, FloatingPointError)


def test_training_with_a_nan_loss_stops_naming_epoch_and_step():
    model = _mlp()
    with torch.no_grad():
        model[2].bias.fill_(float("nan"))
    with pytest.raises(DivergenceError, match=r"loss became nan \(non-finite\) in epoch 0, step 0"):
        fit(model, _data(), config=TINY, progress=False)


# -- Dataset: reserved group columns --------------------------------------------------------------------
@pytest.mark.parametrize("column", ["subset", "sample_id", "run", "split", "label", "prediction"])
def test_dataset_refuses_a_group_column_named_like_a_reserved_column(column):
    with pytest.raises(ValidationError, match=f"reserved column name.s. \\['{column}'\\]") as info:
        Dataset(np.zeros((4, 3)), [0, 1, 0, 1], groups={column: list("abab")})
    _house_style(info.value, "groups")


def test_dataset_accepts_a_group_column_with_a_reserved_word_inside_its_name():
    ds = Dataset(np.zeros((4, 3)), [0, 1, 0, 1], groups={"label_source": list("abab")})
    assert "label_source" in ds.groups.columns


# -- masks and the weights being pruned -----------------------------------------------------------------
@pytest.mark.parametrize("value", [0.3, 2.0, float("nan"), -1.0])
def test_masks_with_values_other_than_zero_or_one_are_refused(value):
    model = _mlp()
    shapes = {k: m.shape for k, m in compute_masks(model, method="magnitude", sparsity=0.5).items()}
    before = model[0].weight.clone()
    with pytest.raises(ValidationError, match="keep-masks of only 0/1") as info:
        Masks({k: torch.full(s, value) for k, s in shapes.items()}).apply_(model)
    _house_style(info.value, "masks")
    assert "'0'" in str(info.value)  # the layer
    assert torch.equal(model[0].weight, before)


def test_masks_of_zeros_and_ones_in_any_dtype_still_apply():
    model = _mlp()
    masks = Masks({"0": torch.zeros(8, 4, dtype=torch.float32), "2": torch.ones(2, 8, dtype=torch.uint8)})
    masks.apply_(model)
    assert bool((model[0].weight == 0).all()) and masks.sparsity() == pytest.approx(32 / 48)


@pytest.mark.parametrize(("layer", "part"), [(0, "weight"), (2, "bias")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_weight_or_bias_is_refused_with_the_layer_name(layer, part, bad):
    model = _mlp()
    with torch.no_grad():
        getattr(model[layer], part).view(-1)[0] = bad
    for call in (compute_masks, prune_):
        with pytest.raises(ValidationError, match=f"non-finite values in the {part} of layer '{layer}'"):
            call(model, method="lamp", sparsity=0.5)


def test_the_messages_name_the_function_they_come_from():
    with pytest.raises(PrunevizError, match="parameter of prune_ must"):
        prune_(None, method="magnitude", sparsity=0.5)
    with pytest.raises(PrunevizError, match="parameter of fit must"):
        pruneviz.fit("model", _data())


def test_a_zoo_built_with_val_fraction_zero_stores_dense_and_pruned_runs_without_val_rows(tmp_path):
    from pruneviz.zoo import build_dense_population

    rng = np.random.default_rng(0)
    ds = Dataset(rng.normal(size=(90, 4)).astype(np.float32), np.arange(90) % 3, name="v0")
    zoo = pruneviz.Zoo.create(tmp_path / "zoo")
    one = TrainConfig(epochs=1, batch_size=32)
    dense = build_dense_population(zoo, ds, arch="mlp", seeds=1, config=one, val_fraction=0.0, progress=False)
    pruned = prune_population(zoo, methods=["lamp"], sparsities=[0.5], finetune=one, progress=False)
    for rows in (dense, pruned):
        assert len(rows) == 1 and np.isnan(rows.val_accuracy.iloc[0]) and rows.test_accuracy.iloc[0] > 0


@pytest.mark.parametrize("path", [None, 3, "", ["zoo"]])
def test_a_zoo_is_opened_and_created_from_a_folder_path_only(path):
    from pruneviz.zoo import Zoo

    with pytest.raises(ValidationError, match=r"'path' parameter of Zoo must be a folder path"):
        Zoo(path)
    with pytest.raises(ValidationError, match=r"'path' parameter of Zoo.create must be a folder path"):
        Zoo.create(path)
