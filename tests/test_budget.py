"""Sample budgets from a model's counted cost (pruneviz.analysis.budget)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pruneviz.analysis.budget import SECONDS_PER_MAC, budget_samples, forward_macs
from pruneviz.exceptions import ValidationError


def test_forward_macs_counts_the_weights_multiply_accumulates_per_sample():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )  # fmt: skip
    # per output element: in/groups x 3 x 3; outputs 4 x 8 x 8; the linear layer 256 x 10
    want = 4 * 64 * (2 * 9) + 4 * 64 * (2 * 9) + 256 * 10
    assert forward_macs(model, torch.zeros(5, 2, 8, 8)) == want
    with torch.no_grad():  # pruned weights still cost a dense computation
        model[4].weight[:, :100] = 0
    assert forward_macs(model, torch.zeros(1, 2, 8, 8)) == want


def test_budget_samples_is_the_largest_affordable_power_of_two():
    macs = 10_000_000
    per_sample = 30 * macs * SECONDS_PER_MAC["hvp"]
    n = budget_samples(macs, evaluations=30, seconds=8.0)
    assert n & (n - 1) == 0 and n * per_sample <= 8.0 < 2 * n * per_sample
    assert budget_samples(1, evaluations=1, seconds=100.0) == 512  # capped
    assert budget_samples(10**12, evaluations=30, seconds=1.0) == 32  # floor
    assert budget_samples(1, evaluations=1, seconds=1.0, available=100) == 100
    with pytest.raises(ValidationError, match="kind"):
        budget_samples(1, evaluations=1, seconds=1.0, kind="backward")
    with pytest.raises(ValidationError, match="seconds"):
        budget_samples(1, evaluations=1, seconds=0)
