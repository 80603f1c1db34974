"""Sample budgets from a model's cost: how many samples an expensive analysis uses by default.

The analyses that evaluate a model many times (Hessian-vector products, landscape grids) cost about
``evaluations × samples × cost of one sample``. The cost of one sample is counted, not timed: the
multiply-accumulates of the model's weights on one example (:func:`~pruneviz.prune.count_macs`), so
that the budget — and with it every cached result — is the same on every machine and in every worker
of a sweep. The seconds per multiply-accumulate below were measured on the reference machine of
``benchmarks/realsize.py`` (2 CPU cores); a budget of ``seconds`` is met there and scales with the
machine elsewhere. Each analysis reports the standard error its budget gives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pruneviz._validation import check_int, fail

# seconds per multiply-accumulate and sample on the reference machine (benchmarks/realsize.py):
# one Hessian-vector product (double backward through a cached graph) and one no-grad forward pass
SECONDS_PER_MAC = {"hvp": 2.0e-10, "forward": 2.5e-11}


def forward_macs(model: nn.Module, example: Any) -> int:
    """Multiply-accumulates of one sample of ``example`` (a batch; its first sample is run) through
    ``model``'s weights, dense (:func:`~pruneviz.prune.count_macs`): masks do not make the dense
    computations of an analysis cheaper."""
    from pruneviz.prune.accounting import count_macs

    shape = tuple(example.shape[1:]) if isinstance(example, torch.Tensor) else ()
    table = count_macs(model, shape, example=example)
    return max(1, int(table.loc[table.layer == "total", "dense_macs"].iloc[0]))


def affordable_samples(
    macs: int, *, evaluations: int, seconds: float, kind: str = "hvp", where: str = "affordable_samples"
) -> float:
    """How many samples ``evaluations`` evaluations of ``kind`` (``"hvp"`` or ``"forward"``) of a model
    of ``macs`` multiply-accumulates per sample can take in ``seconds`` on the reference machine."""
    if kind not in SECONDS_PER_MAC:
        fail("kind", where, f"one of {sorted(SECONDS_PER_MAC)}", kind)
    check_int(evaluations, "evaluations", where, minimum=1)
    if not seconds > 0:
        fail("seconds", where, "a positive number of seconds", seconds)
    return seconds / (evaluations * max(1, macs) * SECONDS_PER_MAC[kind])


def budget_samples(
    macs: int,
    *,
    evaluations: int,
    seconds: float,
    kind: str = "hvp",
    minimum: int = 32,
    maximum: int = 512,
    available: int | None = None,
) -> int:
    """The largest power of two of samples (within ``[minimum, maximum]``, and at most ``available``)
    for which ``evaluations`` evaluations of ``kind`` (``"hvp"`` or ``"forward"``) of a model of
    ``macs`` multiply-accumulates per sample take about ``seconds`` on the reference machine."""
    afford = affordable_samples(
        macs, evaluations=evaluations, seconds=seconds, kind=kind, where="budget_samples"
    )
    samples = minimum
    while samples * 2 <= min(afford, maximum):
        samples *= 2
    return samples if available is None else max(1, min(samples, available))
