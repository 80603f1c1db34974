from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import FAST
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.models import build_model
from pruneviz.train import TrainConfig, evaluate, fit, logits_of


def train_once(data, seed):
    model = build_model("cnn", input_shape=data.info.input_shape, num_classes=data.num_classes, seed=seed)
    history = fit(model, data, config=FAST, seed=seed, progress=False)
    return model, history


def test_same_seed_gives_bit_identical_weights_and_outputs(digits):
    part = digits.take(np.arange(400))
    a, ha = train_once(part, seed=1)
    b, hb = train_once(part, seed=1)
    c, _ = train_once(part, seed=2)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ha.equals(hb)
    oa, ob = evaluate(a, part), evaluate(b, part)
    assert oa.equals(ob)
    assert not torch.equal(a.state_dict()["classifier.weight"], c.state_dict()["classifier.weight"])


def test_fit_leaves_global_rng_untouched(tiny):
    torch.manual_seed(7)
    state = torch.get_rng_state()
    fit(build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,)), tiny, config=FAST, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_training_learns(tiny):
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(16,))
    history = fit(model, tiny, config=TrainConfig(epochs=60, lr=1e-2), val=tiny, progress=False)
    acc = history[history.metric == "val_accuracy"].value.to_numpy()
    assert acc[-1] > 0.95 and acc[-1] > acc[0]  # the blobs are linearly separable
    assert set(history.metric) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}


@pytest.mark.reference
def test_evaluate_matches_a_numpy_reference(tiny):
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,), seed=3)
    out = evaluate(model, tiny, split="clean", subset="val", batch_size=7)
    with torch.no_grad():
        logits = model(tiny.x).double().numpy()
    y = tiny.y.numpy()
    m = logits.max(1, keepdims=True)
    log_z = (m + np.log(np.exp(logits - m).sum(1, keepdims=True)))[:, 0]
    ref_loss = log_z - logits[np.arange(len(y)), y]
    np.testing.assert_allclose(out["loss"].to_numpy(), ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits_of(out), logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["prediction"], logits.argmax(1))
    np.testing.assert_allclose(out["confidence"], np.exp(logits.max(1) - log_z), rtol=1e-5)
    assert (out["split"] == "clean").all() and (out["subset"] == "val").all()
    np.testing.assert_array_equal(out["sample_id"], tiny.sample_id)


def test_nan_logits_are_reported(tiny):
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    with pytest.raises(DataError, match=r"finite logits.*NaN/inf logits for 120 sample"):
        evaluate(model, tiny)


def test_model_data_mismatch_is_explained(tiny, digits):
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValidationError, match=r"accepts inputs of shape \(N, 4\).*input_shape=\(4,\)"):
        fit(model, tiny, progress=False)
    wrong = build_model("cnn", input_shape=(1, 8, 8), num_classes=4)
    with pytest.raises(ValidationError, match=r"outputs of shape \(N, 10\).*num_classes=10"):
        evaluate(wrong, digits)


def test_divergence_is_reported_not_hidden(tiny):
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(model, tiny, config=FAST, progress=False)


def test_bad_training_settings():
    with pytest.raises(
        ValidationError, match=r"'epochs' parameter of TrainConfig must be an integer >= 0. Got -1"
    ):
        TrainConfig(epochs=-1)
    with pytest.raises(ValidationError, match=r"'lr' parameter of TrainConfig must be a finite number > 0"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(ValidationError, match=r"'optimizer' parameter.*did you mean 'adam'"):
        TrainConfig(optimizer="adamw")
