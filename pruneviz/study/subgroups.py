"""Per-subgroup disparate impact of a zoo's comparisons, cached in the zoo."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from pruneviz._validation import fail
from pruneviz.analysis.outputs import check_split
from pruneviz.analysis.subgroups import (
    COLUMNS,
    _check_settings,
    disparate_impact,
    group_columns,
    metric_key,
    sample_groups,
)
from pruneviz.study.populations import COMPARISON_KEYS, comparisons, population_reader
from pruneviz.zoo.store import Zoo

__all__ = ["AUDIT_METRICS", "run_subgroups"]

#: What a study audits per group by default: accuracy, the error-type rates auditors are asked for, and
#: the demographic-parity and equalized-odds gaps (one-vs-rest per class with a macro mean beyond two).
AUDIT_METRICS = (
    "accuracy",
    "selection_rate",
    "tpr",
    "fpr",
    "demographic_parity_difference",
    "equalized_odds_difference",
)


def run_subgroups(
    zoo: Zoo,
    *,
    group: str | Sequence[str] = "class",
    metric: str | Callable[..., Any] | Sequence[str | Callable[..., Any]] = "accuracy",
    dense: Sequence[str] | None = None,
    pruned: Sequence[str] | None = None,
    split: str = "clean",
    subset: str = "test",
    bins: int = 15,
    bootstrap: int = 1000,
    permutations: int = 1000,
    confidence: float = 0.95,
    min_group_size: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`disparate_impact` of every comparison of a zoo.

    The populations come from :func:`~pruneviz.study.populations.comparisons` (pruned runs grouped
    by dataset, arch, method, structure, target sparsity and pruning settings, against their dense
    parents; ``dense`` and ``pruned`` select runs explicitly), their outputs on ``split`` and ``subset``
    from the zoo (a dense population shared by several comparisons is read once), the groups from the
    dataset. ``group`` and ``metric`` are those of :func:`disparate_impact` (a column or an
    intersection of columns; metric names, summaries or functions). Every parameter is checked before
    anything is read. Each comparison's frame is cached in the zoo, so a second call reads it back; a
    function metric is keyed by its code (:func:`~pruneviz.analysis.subgroups.metric_key`), so an
    edited one is recomputed.

    Returns
    -------
    One tidy frame: the comparison keys (:data:`~pruneviz.study.populations.COMPARISON_KEYS`:
    ``dataset``, ``arch``, ``method``, ``structure``, ``sparsity`` — the target sparsity —,
    ``settings``, ``dense_runs``, ``pruned_runs``) in front of :func:`disparate_impact`'s columns.
    Empty (with those columns) when the zoo has no comparison.

    Examples
    --------
    >>> import tempfile
    >>> run_subgroups(Zoo.create(tempfile.mkdtemp() + "/z")).empty
    True
    """
    where = "run_subgroups"
    if not isinstance(zoo, Zoo):
        fail("zoo", where, "a pruneviz Zoo", type(zoo).__name__, "open one with Zoo(path).")
    s = _check_settings(
        where,
        group=group,
        metric=metric,
        bins=bins,
        bootstrap=bootstrap,
        permutations=permutations,
        confidence=confidence,
        min_group_size=min_group_size,
        seed=seed,
    )
    columns = group_columns(group, where)
    split, subset = check_split(split, subset, where)
    read = population_reader(zoo, split=split, subset=subset, where=where)
    frames = []
    groups: dict[str, pd.DataFrame] = {}  # read each dataset once, and only on a cache miss
    for comp in comparisons(zoo, dense=dense, pruned=pruned, where=where):

        def compute(comp=comp) -> pd.DataFrame:
            if comp.dataset not in groups:
                groups[comp.dataset] = sample_groups(zoo.dataset(comp.dataset))
            d = read(comp.dense, keep=True)  # shared by the comparisons of one dense population
            p = read(comp.pruned)
            table = disparate_impact(d, p, groups[comp.dataset], group=columns, **s)
            for i, (k, v) in enumerate(comp.keys.items()):
                table.insert(i, k, v)
            return table

        params = {
            "group": columns[0] if len(columns) == 1 else list(columns),
            "split": split,
            "subset": subset,
            "comparison": comp.keys,
            **s,
            "metric": [metric_key(m) for m in s["metric"]],
        }
        frames.append(zoo.cached("subgroups", [*comp.dense, *comp.pruned], params, compute))
    if not frames:
        return pd.DataFrame(columns=[*COMPARISON_KEYS, *COLUMNS])
    return pd.concat(frames, ignore_index=True)
