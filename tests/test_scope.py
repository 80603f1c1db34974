"""Scoped eval mode and hooks: put back as they were, also when the model raises halfway."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneviz._scope import eval_mode, forward_hooks


class Boom(nn.Module):
    def forward(self, x):
        raise RuntimeError("halfway")


def test_eval_mode_restores_each_module_flag_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), Boom()).train()
    model[1].eval()  # a module with its own flag
    with pytest.raises(RuntimeError, match="halfway"), eval_mode(model):
        assert not any(m.training for m in model.modules())
        model(torch.zeros(1, 2))
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_forward_hooks_are_removed_after_an_error_and_see_every_call():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), Boom())
    seen: list[str] = []
    hooks = [(model[0], lambda m, i, o: seen.append("post")), (model[1], lambda m, i: seen.append("pre"))]
    with (
        pytest.raises(RuntimeError, match="halfway"),
        forward_hooks(hooks[:1]),
        forward_hooks(hooks[1:], pre=True),
    ):
        model(torch.zeros(1, 2))
    assert seen == ["post", "pre"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_forward_hooks_registered_before_a_failing_registration_are_removed():
    model = nn.Linear(2, 2)

    def pairs():
        yield model, lambda m, i, o: None
        raise ValueError("bad hook list")

    with pytest.raises(ValueError, match="bad hook list"), forward_hooks(pairs()):
        pass
    assert not model._forward_hooks


def test_analyses_leave_no_hook_and_the_mode_as_it_was():
    from pruneviz.analysis import activations, layer_names
    from pruneviz.prune.accounting import count_macs

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(), nn.Linear(3, 2)).train()
    activations(model, torch.randn(5, 4), layers=layer_names(model))
    count_macs(model, input_shape=(4,))
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
