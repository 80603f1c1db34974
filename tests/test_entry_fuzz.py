"""Property-based fuzzing of public entry points (issue 20).

Each function gets random wrong values — None, bools, ints, floats (NaN and inf too), strings, lists,
dicts, numpy arrays of the wrong shape or dtype, tensors, arbitrary objects — as its FIRST argument
(every other argument valid) and must answer with one of pruneviz's own exceptions
(:class:`~pruneviz.exceptions.PrunevizError`) whose message names that argument. A raw ``TypeError`` or
``AttributeError`` escaping, or a wrong value accepted silently, fails the test.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import pruneviz
from pruneviz import analysis, charts, prune
from pruneviz.data import Dataset
from pruneviz.exceptions import PrunevizError
from pruneviz.train import TrainConfig, logits_of
from pruneviz.zoo import prune_population

TINY = TrainConfig(epochs=1, batch_size=32, lr=1e-3)


class _Thing:
    """An arbitrary object of no type pruneviz knows."""

    def __repr__(self) -> str:
        return "<thing>"


def _arrays() -> st.SearchStrategy:
    shapes = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
    dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.complex64, object, "U3"])
    return st.builds(lambda shape, dtype: np.zeros(shape, dtype=dtype), shapes, dtypes)


#: random wrong values: everything but the one right type
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.none()), max_size=3),
    _arrays(),
    st.builds(lambda n: torch.zeros(n), st.integers(0, 4)),
    st.just(_Thing()),
    st.just(object()),
    st.just(pd.DataFrame({"a": [1, 2]})),
)


def _valid_x_for_two_labels(value: object) -> bool:
    """Is ``value`` a legitimate ``x`` for ``Dataset(x, [0, 1])`` (two samples of real numbers)?"""
    if isinstance(value, pd.DataFrame):
        return len(value) == 2
    if isinstance(value, np.ndarray | torch.Tensor):
        ok_dtype = value.dtype in (np.float32, np.float64, np.int64, np.bool_, torch.float32)
        return ok_dtype and value.ndim >= 2 and value.shape[0] == 2 and np.prod(value.shape) > 0
    return False


def _mlp() -> nn.Module:
    return pruneviz.build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))


_rng = np.random.default_rng(0)
_DATA = Dataset(
    _rng.normal(size=(60, 4)).astype(np.float32),
    np.arange(60) % 3,
    groups={"site": np.where(np.arange(60) % 2, "a", "b")},
    name="fuzz",
)
_OUT = pruneviz.evaluate(_mlp(), _DATA)


#: (name, function of the first argument, the parameter name the message must give)
ENTRY_POINTS: list[tuple[str, Callable[[object], object], str]] = [
    ("fit", lambda v: pruneviz.fit(v, _DATA, config=TINY, progress=False), "model"),
    ("fit.train", lambda v: pruneviz.fit(_mlp(), v, config=TINY, progress=False), "train"),
    ("evaluate", lambda v: pruneviz.evaluate(v, _DATA), "model"),
    ("evaluate.data", lambda v: pruneviz.evaluate(_mlp(), v), "data"),
    ("Dataset", lambda v: Dataset(v, [0, 1]), "x|y"),
    ("logits_of", logits_of, "outputs"),
    ("compute_masks", lambda v: prune.compute_masks(v, method="magnitude", sparsity=0.5), "model"),
    ("prune_", lambda v: prune.prune_(v, method="lamp", sparsity=0.5), "model"),
    ("prunable_weights", prune.prunable_weights, "model"),
    ("sparsity_by_layer", prune.sparsity_by_layer, "model"),
    ("count_macs", lambda v: prune.count_macs(v, (4,)), "model"),
    ("fold_batchnorm", prune.fold_batchnorm, "model"),
    ("tune_inference", lambda v: prune.tune_inference(v, (4,), threads=[1], repeats=1), "model"),
    ("calibration_subset", lambda v: prune.calibration_subset(v, 10), "data"),
    ("one_shot", lambda v: prune.one_shot(v, _DATA, method="magnitude", sparsity=0.5), "model"),
    ("corrupt", lambda v: analysis.corrupt(v, "gaussian_noise", severity=1), "data"),
    ("feature_range", analysis.feature_range, "data"),
    ("sample_groups", analysis.sample_groups, "dataset"),
    ("calibration_metrics", analysis.calibration_metrics, "outputs"),
    ("group_metrics", lambda v: analysis.group_metrics(v, _DATA.groups), "outputs"),
    ("exemplar_scores", lambda v: analysis.exemplar_scores(v, _OUT), "dense"),
    ("layer_names", analysis.layer_names, "model"),
    ("spectrum_table", lambda v: analysis.spectrum_table(v, input_shape=(4,)), "model"),
    ("tradeoff_chart", charts.tradeoff_chart, "runs"),
    ("reliability_chart", charts.reliability_chart, "reliability"),
    ("prune_population", lambda v: prune_population(v, methods=["lamp"], sparsities=[0.5]), "zoo"),
]

#: per entry point: cases tried, cases answered with a pruneviz error naming the argument
TALLY: dict[str, Counter] = {}


@pytest.mark.parametrize(("name", "call", "param"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=WRONG)
def test_wrong_first_argument_raises_a_pruneviz_error_naming_it(name, call, param, value):
    if name == "Dataset" and _valid_x_for_two_labels(value):
        return  # a legitimate input drawn by chance: nothing to refuse
    tally = TALLY.setdefault(name, Counter())
    tally["tried"] += 1
    with pytest.raises(PrunevizError) as info:
        call(value)
    assert any(f"'{p}'" in str(info.value) for p in param.split("|")), str(info.value)
    assert "Fix:" in str(info.value) or "Got" in str(info.value), str(info.value)
    tally["clear"] += 1


def test_the_tally_is_printed(capsys):
    """Not a check: prints how many cases each entry point was tried on (run with -s to see it)."""
    with capsys.disabled():
        for name, tally in sorted(TALLY.items()):
            print(f"{name}: tried {tally['tried']}, clear {tally['clear']}")
        if TALLY:
            print(
                "total: tried",
                sum(t["tried"] for t in TALLY.values()),
                "clear",
                sum(t["clear"] for t in TALLY.values()),
            )
