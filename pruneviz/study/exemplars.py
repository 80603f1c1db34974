"""Compression-identified exemplars of a zoo's comparisons, cached in the zoo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._validation import check_fraction, check_int, fail
from pruneviz.analysis.exemplars import SCORE_COLUMNS, SUMMARY_COLUMNS, exemplar_scores, exemplar_summary
from pruneviz.analysis.outputs import check_split
from pruneviz.study.populations import COMPARISON_KEYS, Comparison, comparisons, population_reader
from pruneviz.zoo.store import Zoo

__all__ = ["run_exemplar_summary", "run_exemplars"]


def run_exemplars(
    zoo: Zoo,
    *,
    dense: Sequence[str] | None = None,
    pruned: Sequence[str] | None = None,
    split: str = "clean",
    subset: str = "test",
) -> pd.DataFrame:
    """:func:`exemplar_scores` of every comparison of a zoo.

    The comparisons are :func:`~pruneviz.study.populations.comparisons`' (pruned runs grouped by
    dataset, arch, method, structure, target sparsity and pruning settings, against their dense
    parents; ``dense`` and ``pruned`` select runs explicitly); the outputs on ``split`` and ``subset``
    come from the zoo, a dense population shared by several comparisons is read once. Each comparison's
    scores are cached in the zoo. Returns the scores with the comparison's keys (:data:`COMPARISON_KEYS`:
    ``dataset``, ``arch``, ``method``, ``structure``, ``sparsity`` — the target sparsity —, ``settings``,
    ``dense_runs``, ``pruned_runs``) in front, sorted by those keys and ``sample_id``; empty when the zoo
    has no comparison.

    >>> import tempfile
    >>> run_exemplars(Zoo.create(tempfile.mkdtemp() + "/z")).shape
    (0, 20)
    """
    where = "run_exemplars"
    _check_zoo(zoo, where)
    split, subset = check_split(split, subset, where)
    read = population_reader(zoo, split=split, subset=subset, where=where)
    frames = [
        _comparison_scores(zoo, comp, split, subset, read, where)
        for comp in comparisons(zoo, dense=dense, pruned=pruned, where=where)
    ]
    if not frames:
        return pd.DataFrame(columns=[*COMPARISON_KEYS, *SCORE_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def run_exemplar_summary(
    zoo: Zoo,
    *,
    dense: Sequence[str] | None = None,
    pruned: Sequence[str] | None = None,
    split: str = "clean",
    subset: str = "test",
    top_fraction: float | None = None,
    group_columns: Sequence[str] | None = None,
    min_group_size: int = 30,
) -> pd.DataFrame:
    """:func:`exemplar_summary` of every comparison of a zoo, broken down by the dataset's groups.

    The scores are :func:`run_exemplars`' (cached); the groups are the dataset's (``class`` and its other
    group columns, or ``group_columns``). Each summary is cached in the zoo. Returns the summaries with
    the comparison keys in front (see :func:`run_exemplars`).

    >>> import tempfile
    >>> list(run_exemplar_summary(Zoo.create(tempfile.mkdtemp() + "/z")).columns)[-5:]
    ['attribute', 'group', 'metric', 'value', 'small']
    """
    where = "run_exemplar_summary"
    _check_zoo(zoo, where)
    split, subset = check_split(split, subset, where)
    read = population_reader(zoo, split=split, subset=subset, where=where)
    if top_fraction is not None:
        top_fraction = check_fraction(top_fraction, "top_fraction", where, closed_low=False, closed_high=True)
    if group_columns is not None:
        if isinstance(group_columns, str) or not isinstance(group_columns, Sequence | np.ndarray | pd.Index):
            fail(
                "group_columns",
                where,
                "a list of column names",
                group_columns,
                f"pass [{group_columns!r}]." if isinstance(group_columns, str) else "pass e.g. ['class'].",
            )
        group_columns = [str(c) for c in group_columns]
    min_group_size = check_int(min_group_size, "min_group_size", where, minimum=1)
    datasets: dict[str, pd.DataFrame] = {}

    def groups_of(key: str) -> pd.DataFrame:
        if key not in datasets:
            ds = zoo.dataset(key)
            datasets[key] = ds.groups.assign(sample_id=ds.sample_id)
        return datasets[key]

    frames = []
    for comp in comparisons(zoo, dense=dense, pruned=pruned, where=where):
        params = {
            "split": split,
            "subset": subset,
            "comparison": comp.keys,
            "top_fraction": top_fraction,
            "group_columns": group_columns,
            "min_group_size": min_group_size,
        }

        def compute(comp: Comparison = comp) -> pd.DataFrame:
            scores = _comparison_scores(zoo, comp, split, subset, read, where).drop(
                columns=list(COMPARISON_KEYS)
            )
            summary = exemplar_summary(
                scores,
                groups=groups_of(comp.dataset),
                group_columns=group_columns,
                top_fraction=top_fraction,
                min_group_size=min_group_size,
            )
            return _with_keys(comp, summary)

        frames.append(zoo.cached("exemplar_summary", [*comp.dense, *comp.pruned], params, compute))
    if not frames:
        return pd.DataFrame(columns=[*COMPARISON_KEYS, *SUMMARY_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _check_zoo(zoo: Any, where: str) -> None:
    if not isinstance(zoo, Zoo):
        fail("zoo", where, "a pruneviz Zoo", type(zoo).__name__, "open one with Zoo(path).")


def _comparison_scores(
    zoo: Zoo,
    comp: Comparison,
    split: str,
    subset: str,
    read: Callable[..., pd.DataFrame],
    where: str,
) -> pd.DataFrame:
    def compute() -> pd.DataFrame:
        dense = read(comp.dense, keep=True)  # shared by the comparisons of one dense population
        pruned = read(comp.pruned)
        logits = sum(1 for c in dense.columns if c.startswith("logit_"))
        return _with_keys(comp, exemplar_scores(dense, pruned, num_classes=logits or None))

    params = {"split": split, "subset": subset, "comparison": comp.keys}
    return zoo.cached("exemplars", [*comp.dense, *comp.pruned], params, compute)


def _with_keys(comp: Comparison, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for i, (key, value) in enumerate(comp.keys.items()):
        out.insert(i, key, value)
    return out
