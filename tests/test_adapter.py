"""Any nn.Module as a classifier: input unpacking, logits extraction, text datasets, training through it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from pruneviz.data import Dataset, Inputs
from pruneviz.exceptions import PrunevizError, ValidationError
from pruneviz.models import adapt, adapted, is_adapted, to_logits, unadapt
from pruneviz.testing.models import TinyEncoder, token_dataset
from pruneviz.train import TrainConfig, evaluate, fit


@dataclass
class _Output:
    logits: torch.Tensor
    hidden_states: tuple = ()


class _DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return {"logits": self.fc(x), "features": x}


class _TupleIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, x, z):
        return self.a(x) + self.b(z), x


class _ObjectOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, pixel_values):
        return _Output(self.fc(pixel_values))


def test_to_logits_takes_every_output_kind():
    t = torch.randn(2, 3)
    assert to_logits(t) is t
    assert to_logits((t, None)) is t
    assert to_logits([t]) is t
    assert to_logits({"logits": t, "loss": None}) is t
    assert to_logits(_Output(t)) is t


@pytest.mark.parametrize(
    "output, shown",
    [({"scores": torch.zeros(1)}, "keys ['scores']"), ("text", "type str"), ((), "type tuple")],
)
def test_to_logits_names_an_output_that_is_not_logits(output, shown):
    with pytest.raises(ValidationError, match="'model'") as info:
        to_logits(output)
    assert shown in str(info.value)
    assert "Fix:" in str(info.value) or "fix" in str(info.value).lower()


def test_adapt_unpacks_inputs_and_picks_the_logits():
    x = torch.randn(5, 4)
    m = _DictOut()
    ref = m.fc(x)
    assert torch.equal(adapt(m)(x), ref)
    two = adapt(_TupleIn())
    z = torch.randn(5, 2)
    assert torch.equal(two((x, z)), two.a(x) + two.b(z))
    kw = adapt(_ObjectOut())
    assert torch.equal(kw({"pixel_values": x}), kw.fc(x))
    assert torch.equal(kw(Inputs({"pixel_values": x})), kw.fc(x))


def test_adapt_keeps_names_is_idempotent_and_survives_deepcopy():
    m = _DictOut()
    names = list(m.state_dict())
    adapt(m)
    adapt(m)
    assert list(m.state_dict()) == names
    assert len(m._forward_hooks) == 1 and len(m._forward_pre_hooks) == 1
    twin = copy.deepcopy(m)
    assert is_adapted(twin) and isinstance(twin(torch.randn(2, 4)), torch.Tensor)
    unadapt(twin)
    assert not is_adapted(twin) and isinstance(twin(torch.randn(2, 4)), dict)
    assert is_adapted(m), "unadapting the copy leaves the original adapted"


def test_adapted_scope_removes_its_hooks_also_on_error():
    m = _DictOut()
    with pytest.raises(RuntimeError), adapted(m):
        assert isinstance(m(torch.randn(2, 4)), torch.Tensor)
        raise RuntimeError("midway")
    assert not is_adapted(m) and not m._forward_hooks and not m._forward_pre_hooks
    adapt(m)
    with adapted(m):
        pass
    assert is_adapted(m), "a model adapted before the block stays adapted"


def test_inputs_index_like_a_tensor():
    ids = torch.arange(12).reshape(4, 3)
    x = Inputs({"input_ids": ids, "attention_mask": torch.ones(4, 3)})
    assert len(x) == 4 and x.shape == (4, 3) and x.primary == "input_ids"
    assert torch.equal(x[np.array([3, 1])]["input_ids"], ids[[3, 1]])
    assert torch.equal(x[torch.tensor([True, False, True, False])]["input_ids"], ids[[0, 2]])
    joined = Inputs.cat([x[:1], x[1:]])
    assert all(torch.equal(joined[k], x[k]) for k in x)
    with pytest.raises(ValidationError, match="same number of rows"):
        Inputs({"a": torch.zeros(3), "b": torch.zeros(2)})
    with pytest.raises(KeyError, match="token_type_ids"):
        x["token_type_ids"]


def test_text_dataset_keeps_token_ids_and_splits_them_with_their_masks():
    data = token_dataset(n=60, length=7, vocab=30, seed=1)
    assert data.info.modality == "text" and data.info.input_shape == (7,)
    assert data.x["input_ids"].dtype == torch.int64
    train, val, test = data.split(seed=0)
    assert len(train) + len(val) + len(test) == 60
    for part in (train, val, test):
        ids, mask = part.x["input_ids"], part.x["attention_mask"]
        assert torch.equal(mask.bool(), ids != 0), "the mask travels with its own rows"
    assert data.fingerprint() == token_dataset(n=60, length=7, vocab=30, seed=1).fingerprint()
    assert data.fingerprint() != token_dataset(n=60, length=7, vocab=30, seed=2).fingerprint()
    plain = Dataset(data.x["input_ids"], data.y, modality="text")
    assert plain.x.dtype == torch.int64
    with pytest.raises(ValidationError, match="token ids"):
        Dataset(torch.randn(4, 3), np.zeros(4, dtype=int), modality="text")


def test_training_and_evaluation_go_through_the_adapter_and_leave_no_hooks():
    data = token_dataset(n=120, length=8, vocab=25, seed=0)
    model = TinyEncoder(vocab=25, dim=16, num_classes=data.num_classes, seed=0)
    before = evaluate(model, data)
    history = fit(model, data, config=TrainConfig(epochs=15, lr=1e-2, batch_size=32), progress=False)
    after = evaluate(model, data)
    assert not is_adapted(model) and not model._forward_hooks
    assert (
        history.query("metric == 'train_loss'")["value"].iloc[-1]
        < history.query("metric == 'train_loss'")["value"].iloc[0]
    )
    assert after["correct"].mean() > max(before["correct"].mean(), 0.8)
    # the logits in the frame are the model's own, called the way it wants
    with torch.no_grad():
        direct = model(**data.x[:3].as_dict()).logits
    np.testing.assert_allclose(after.filter(like="logit_").to_numpy()[:3], direct.numpy(), rtol=1e-5)


def test_padding_does_not_change_an_encoders_logits():
    """The mask reaches the model: extra padding changes nothing (a check of the wiring, not the model)."""
    data = token_dataset(n=8, length=6, vocab=20, seed=3)
    longer = Inputs(
        {
            "input_ids": torch.cat([data.x["input_ids"], torch.zeros(8, 4, dtype=torch.int64)], 1),
            "attention_mask": torch.cat([data.x["attention_mask"], torch.zeros(8, 4, dtype=torch.int64)], 1),
        }
    )
    model = TinyEncoder(vocab=20, dim=8, num_classes=data.num_classes, seed=0)
    with adapted(model), torch.no_grad():
        torch.testing.assert_close(model(data.x), model(longer))


def test_a_model_with_the_wrong_inputs_or_outputs_is_named():
    data = token_dataset(n=10, length=5, vocab=20, seed=0)
    with pytest.raises(ValidationError, match="keyword inputs"):
        evaluate(_ObjectOut(), data)

    class Scores(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return {"scores": self.fc(x)}

    with pytest.raises(PrunevizError, match="'logits' entry"):
        evaluate(Scores(), Dataset(torch.randn(6, 4), np.array([0, 1] * 3)))


def test_token_activations_are_averaged_over_real_tokens_only():
    from pruneviz.analysis import activations, cka_grid

    data = token_dataset(n=12, length=9, vocab=20, seed=4)
    model = TinyEncoder(vocab=20, dim=8, num_classes=2, seed=1)
    feats = activations(model, data.x, layers=["layers.0", "classifier"])
    assert not is_adapted(model), "activations adapts the model for its own scope only"
    with torch.no_grad():
        hidden = model(**data.x.as_dict()).hidden_states[1]  # output of layers.0: (N, L, D)
    mask = data.x["attention_mask"].float()
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(feats["layers.0"], expected)
    assert feats["classifier"].shape == (12, 2), "activations without a token axis are kept as they are"
    grid = cka_grid(model, model, data.x, layers_a=["layers.1"], layers_b=["layers.1"])
    assert float(grid["value"].iloc[0]) == pytest.approx(1.0)
