"""Compression-identified exemplars: the samples on which a compressed population departs from a dense one.

Hooker, Courville, Clark, Dauphin & Frome (2019), *What do compressed deep neural networks forget?*,
train a population of dense models and a population of pruned ones and call a sample a
**pruning-identified exemplar (PIE)** when the modal (most frequent) label predicted by the pruned
population differs from the modal label of the dense population. Hooker, Moorosi, Clark, Bengio &
Denton (2020), *Characterising bias in compressed models*, apply the same test to any compression and
call these samples **compression-identified exemplars (CIEs)**; PIEs are CIEs whose compression is
pruning. Exemplars are few, are harder for every model, and are over-represented in some classes and
subgroups — the samples a compressed model "forgets".

Hooker et al. (2020) give two definitions (a modal and a taxicab CIE); :func:`exemplar_scores` computes both:

- **modal**: ``exemplar`` is true where the two populations' modal labels differ. A population's modal
  label is *tied* when several classes share the top vote count; ``modal_tie`` marks the samples where
  the dense or the pruned population's mode is tied. A tied mode is not a label the population agrees
  on, and in small populations (2-4 models) ties are common, so settling them by a fixed rule invents
  disagreements. The default rule, ``ties="exclude"``, therefore never calls a tied sample an exemplar.
  ``ties="smallest"`` is the rule of earlier versions: a tie goes to the *smallest class index* among
  the tied classes, in both populations alike, and the modal labels are compared as usual. Either way
  ``dense_modal`` and ``pruned_modal`` show the smallest tied class, and the result needs nothing but
  the predicted labels (it does not depend on whether logits were stored) and is exactly reproducible.
  A tied sample on which the populations do vote differently keeps its taxicab distance, so the
  graded definition below still ranks it.
- **taxicab**: the L1 distance ``Σ_k |p_dense(k) - p_pruned(k)|`` between the two populations'
  distributions of predicted labels for the sample (0 when they vote alike, 2 when they share no label),
  a graded score; ``rank`` orders samples by it (1 = most changed) and :func:`exemplar_flags` takes the
  top fraction as exemplars, leaving out every sample at distance 0: a sample on which the two
  populations vote identically did not change, so it is never an exemplar, and when fewer than the
  requested fraction changed, fewer samples are flagged (:func:`exemplar_summary` reports the true
  count and rate).

The label counts are one ``np.bincount`` per population over ``sample index · K + prediction`` (in blocks
of samples when ``N · K`` is large, so memory stays bounded): 30 + 30 models over 10k samples take about
0.1 s, checks included (``benchmarks/exemplars.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._validation import check_choice, check_columns, check_fraction, check_int, data_fail, fail
from pruneviz.analysis.outputs import check_same_samples

__all__ = [
    "SCORE_COLUMNS",
    "SUMMARY_COLUMNS",
    "SUMMARY_METRICS",
    "TIE_RULES",
    "exemplar_flags",
    "exemplar_scores",
    "exemplar_summary",
]

SCORE_COLUMNS = (
    "sample_id",
    "label",
    "dense_modal",
    "pruned_modal",
    "exemplar",
    "taxicab",
    "rank",
    "dense_accuracy",
    "pruned_accuracy",
    "dense_agreement",
    "pruned_agreement",
    "modal_tie",
)

SUMMARY_METRICS = (
    "n_samples",
    "n_exemplars",
    "exemplar_rate",
    "data_share",
    "exemplar_share",
    "over_representation",
    "dense_accuracy",
    "pruned_accuracy",
    "dense_accuracy_exemplars",
    "pruned_accuracy_exemplars",
    "dense_accuracy_without_exemplars",
    "pruned_accuracy_without_exemplars",
)

TIE_RULES = ("exclude", "smallest")  # what ``exemplar_scores(ties=...)`` does with a tied modal label
ALL = "(all)"  # the ``attribute`` and ``group`` of the rows about all samples together
SUMMARY_COLUMNS = ("definition", "attribute", "group", "metric", "value", "small")
_MAX_CELLS = 1 << 22  # vote-count cells (samples × classes) held at once per population


# -- per-sample scores ------------------------------------------------------------------------------------
def exemplar_scores(
    dense: pd.DataFrame,
    pruned: pd.DataFrame,
    *,
    num_classes: int | None = None,
    ties: str = "exclude",
) -> pd.DataFrame:
    """Per-sample exemplar scores of a pruned (compressed) population against a dense one.

    Hooker et al. (2019) pruning-identified exemplars and Hooker et al. (2020) compression-identified
    exemplars: see the module docstring for both definitions and the tie rule.

    Parameters
    ----------
    dense, pruned : DataFrame
        Per-sample outputs of each population, as :func:`pruneviz.train.evaluate` or
        :meth:`pruneviz.zoo.Zoo.outputs` give them: one row per (``run``, ``sample_id``) with integer
        ``label`` and ``prediction`` columns; ``M_dense`` and ``M_pruned`` runs (any number ≥ 1; a frame
        without a ``run`` column is one model), every run on the same ``N`` samples of one ``split`` and
        ``subset``.
    num_classes : int, optional
        ``K``; default one more than the largest label or prediction seen. When given, every label and
        prediction must lie in ``[0, K)``.
    ties : {"exclude", "smallest"}
        What a tied modal label (several classes sharing the top vote count, in either population) does
        to the modal definition. ``"exclude"`` (default): a tied sample is never an exemplar, since
        neither population has a mode to compare. ``"smallest"``: the tie goes to the smallest tied
        class index and the modes are compared as usual (the rule of earlier versions; it can make a
        sample an exemplar because of class numbering alone).

    Returns
    -------
    DataFrame, ``N`` rows sorted by ``sample_id``:
        ``sample_id``, ``label``; ``dense_modal`` and ``pruned_modal`` (modal predictions; of tied
        classes, the smallest); ``exemplar`` (modal labels differ, under the ``ties`` rule);
        ``taxicab`` (L1 distance of the label
        distributions, in [0, 2]); ``rank`` (1 = largest taxicab; ties go to modal exemplars first, then
        to the smaller ``sample_id``); ``dense_accuracy`` and ``pruned_accuracy`` (share of each
        population's models that are correct); ``dense_agreement`` and ``pruned_agreement`` (share of
        models voting the modal label); ``modal_tie`` (the dense or the pruned population's modal label
        is tied: several classes share its top vote count).

    Example
    -------
    >>> dense = pd.DataFrame({"run": ["a", "a", "b", "b"], "sample_id": [0, 1, 0, 1],
    ...                       "label": [0, 1, 0, 1], "prediction": [0, 1, 0, 1]})
    >>> pruned = pd.DataFrame({"run": ["c", "c"], "sample_id": [0, 1], "label": [0, 1], "prediction": [0, 0]})
    >>> exemplar_scores(dense, pruned)[["sample_id", "exemplar", "taxicab", "rank"]]
       sample_id  exemplar  taxicab  rank
    0          0     False      0.0     2
    1          1      True      2.0     1

    Two pruned models that split their votes on sample 1 tie; only ``ties="smallest"`` counts it:

    >>> split = pd.DataFrame({"run": ["c", "c", "e", "e"], "sample_id": [0, 1, 0, 1],
    ...                       "label": [0, 1, 0, 1], "prediction": [0, 0, 0, 1]})
    >>> exemplar_scores(dense, split)[["exemplar", "modal_tie"]].values.tolist()
    [[False, False], [False, True]]
    >>> exemplar_scores(dense, split, ties="smallest").exemplar.tolist()
    [False, True]
    """
    where = "exemplar_scores"
    ties = check_choice(ties, "ties", where, TIE_RULES)
    d, p = _population(dense, "dense", where), _population(pruned, "pruned", where)
    for col in ("split", "subset"):
        if col in dense.columns and col in pruned.columns and dense[col].iat[0] != pruned[col].iat[0]:
            data_fail(
                "pruned",
                where,
                f"outputs on the same {col} as the dense population ({dense[col].iat[0]!r})",
                f"outputs on {col} {pruned[col].iat[0]!r}",
                f"select the same {col} in both frames.",
            )
    if num_classes is None:
        k = int(max(d.label.max(), d.pred.max(), p.label.max(), p.pred.max())) + 1
    else:
        k = check_int(num_classes, "num_classes", where, minimum=1)
        for pop in (d, p):
            for what, values in (("labels", pop.label), ("predictions", pop.pred)):
                if int(values.max()) >= k:
                    data_fail(
                        pop.name,
                        where,
                        f"{what} in [0, {k}) (num_classes={k})",
                        f"{int(np.count_nonzero(values >= k))} row(s) with {what} up to {int(values.max())}",
                        "pass the dataset's number of classes as num_classes, or leave it None.",
                    )
    ids = np.sort(pd.unique(np.concatenate([d.sid, p.sid])))
    n = ids.size
    d_idx, p_idx = _sample_index(ids, d.sid), _sample_index(ids, p.sid)
    # every run must hold every sample exactly once: one bincount over (run, sample) per population;
    # check_same_samples words the error where it does not
    for pop, idx in ((d, d_idx), (p, p_idx)):
        if not (np.bincount(pop.run * n + idx, minlength=pop.runs * n) == 1).all():
            check_same_samples(dense, pruned, where=where, names=("dense", "pruned"))
            data_fail(pop.name, where, "outputs on the same sample ids for every run", "runs that differ")
    labels = np.empty(n, dtype=np.int64)
    labels[d_idx] = d.label
    for pop, idx in ((d, d_idx), (p, p_idx)):
        wrong = labels[idx] != pop.label
        if wrong.any():
            bad = np.unique(ids[idx[wrong]])
            data_fail(
                pop.name,
                where,
                "one label per sample_id across both populations",
                f"labels disagree for {bad.size} sample(s), the first with sample_id {int(bad[0])}",
                "compare runs evaluated on the same dataset (zoo.runs(dataset=...)).",
            )
    m_d, m_p = d.runs, p.runs
    stats = _vote_statistics(d_idx, d.pred, p_idx, p.pred, labels, n=n, k=k, m_dense=m_d, m_pruned=m_p)
    exemplar = stats["dense_modal"] != stats["pruned_modal"]
    if ties == "exclude":
        exemplar &= ~stats["modal_tie"]
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((ids, ~exemplar, -stats["taxicab"]))] = np.arange(1, n + 1)
    return pd.DataFrame(
        {
            "sample_id": ids.astype(np.int64),
            "label": labels,
            "dense_modal": stats["dense_modal"],
            "pruned_modal": stats["pruned_modal"],
            "exemplar": exemplar,
            "taxicab": stats["taxicab"],
            "rank": rank,
            "dense_accuracy": stats["dense_accuracy"],
            "pruned_accuracy": stats["pruned_accuracy"],
            "dense_agreement": stats["dense_agreement"],
            "pruned_agreement": stats["pruned_agreement"],
            "modal_tie": stats["modal_tie"],
        }
    )


@dataclass(frozen=True)
class _Votes:
    """One population's rows: sample id, label, prediction and run code (``0 … runs-1``) of each."""

    name: str
    sid: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    run: np.ndarray
    runs: int


def _population(frame: Any, name: str, where: str) -> _Votes:
    """Validate one population's outputs frame and return its rows as arrays."""
    if not isinstance(frame, pd.DataFrame):
        fail(name, where, "a per-sample outputs DataFrame", type(frame).__name__)
    if frame.empty:
        data_fail(
            name,
            where,
            "the outputs of at least one model (a non-empty frame)",
            "an empty frame",
            "pass the outputs of one or more runs (e.g. zoo.outputs(runs, split='clean', subset='test')).",
        )
    check_columns(("sample_id", "label", "prediction"), frame.columns, name, where)
    for col in ("split", "subset"):
        if col in frame.columns and not (frame[col] == frame[col].iat[0]).all():
            shown = sorted(map(str, pd.unique(frame[col])))
            if len(shown) < 2:  # missing values only
                continue
            data_fail(
                name,
                where,
                f"the outputs of a single {col} (one row per run and sample)",
                f"{len(shown)} {col}s {shown[:6]}",
                f"select one first, e.g. frame[frame[{col!r}] == {shown[0]!r}].",
            )
    if "run" in frame.columns:
        run, uniques = pd.factorize(frame["run"], use_na_sentinel=False)
        runs = len(uniques)
    else:
        run, runs = np.zeros(len(frame), dtype=np.int64), 1
    return _Votes(
        name=name,
        sid=_integers(frame["sample_id"], name, where, "sample_id", negative=True),
        label=_integers(frame["label"], name, where, "label"),
        pred=_integers(frame["prediction"], name, where, "prediction"),
        run=run.astype(np.int64, copy=False),
        runs=runs,
    )


def _integers(column: pd.Series, name: str, where: str, what: str, *, negative: bool = False) -> np.ndarray:
    """A column of integer class indices (or ids) as int64; floats only when they hold whole numbers."""
    values = column.to_numpy()
    if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        as_float = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()):
            data_fail(
                name,
                where,
                f"integer values in its {what!r} column",
                f"a column of dtype {column.dtype} with non-integer or missing values",
                f"pass integer {what}s (class indices), as pruneviz.train.evaluate writes them.",
            )
        values = as_float
    values = values.astype(np.int64, copy=False)
    if not negative and values.min() < 0:
        data_fail(
            name,
            where,
            f"non-negative class indices in its {what!r} column",
            f"{int(np.count_nonzero(values < 0))} negative value(s), the smallest {int(values.min())}",
            "remap the classes to 0..K-1.",
        )
    return values


def _sample_index(ids: np.ndarray, sample_id: np.ndarray) -> np.ndarray:
    """Position of each row's sample id among the sorted unique ``ids`` (all are present)."""
    lo, span = int(ids[0]), int(ids[-1]) - int(ids[0]) + 1
    if span <= max(16 * ids.size, 1 << 20):  # ids in a modest range: a lookup table beats a binary search
        table = np.empty(span, dtype=np.int64)
        table[ids - lo] = np.arange(ids.size)
        return table[sample_id - lo]
    return np.searchsorted(ids, sample_id)


def _vote_statistics(
    d_idx: np.ndarray,
    d_pred: np.ndarray,
    p_idx: np.ndarray,
    p_pred: np.ndarray,
    labels: np.ndarray,
    *,
    n: int,
    k: int,
    m_dense: int,
    m_pruned: int,
) -> dict[str, np.ndarray]:
    """Modal labels, taxicab distances, accuracies and agreements from the two populations' votes, in
    blocks of at most ``_MAX_CELLS // k`` samples so the vote-count tables stay bounded."""
    out = {
        "dense_modal": np.empty(n, np.int64),
        "pruned_modal": np.empty(n, np.int64),
        "taxicab": np.empty(n, np.float64),
        "dense_accuracy": np.empty(n, np.float64),
        "pruned_accuracy": np.empty(n, np.float64),
        "dense_agreement": np.empty(n, np.float64),
        "pruned_agreement": np.empty(n, np.float64),
        "modal_tie": np.empty(n, np.bool_),
    }
    block = max(1, _MAX_CELLS // k)
    populations = [(d_idx, d_pred), (p_idx, p_pred)]
    if n > block:  # rows sorted by sample once, so each block is a contiguous slice
        orders = [np.argsort(idx, kind="stable") for idx, _ in populations]
        populations = [(idx[o], pred[o]) for (idx, pred), o in zip(populations, orders, strict=True)]
    for start in range(0, n, block):
        stop = min(n, start + block)
        size = stop - start
        counts = []
        for idx, pred in populations:
            lo, hi = (0, idx.size) if n <= block else np.searchsorted(idx, (start, stop))
            codes = (idx[lo:hi] - start) * k + pred[lo:hi]
            counts.append(np.bincount(codes, minlength=size * k).reshape(size, k))
        dense, pruned = counts
        rows = np.arange(size)
        block_labels = labels[start:stop]
        ties = np.zeros(size, dtype=np.bool_)
        for name, c, m in (("dense", dense, m_dense), ("pruned", pruned, m_pruned)):
            modal = c.argmax(axis=1)  # the first maximum: of tied classes, the smallest index
            top = c[rows, modal]
            ties |= (c == top[:, None]).sum(axis=1) > 1
            out[f"{name}_modal"][start:stop] = modal
            out[f"{name}_agreement"][start:stop] = top / m
            out[f"{name}_accuracy"][start:stop] = c[rows, block_labels] / m
        out["modal_tie"][start:stop] = ties
        # Σ_k |c_d / m_d - c_p / m_p| as exact integers over one common denominator
        gaps = np.abs(dense * m_pruned - pruned * m_dense).sum(axis=1)
        out["taxicab"][start:stop] = gaps / (m_dense * m_pruned)
    return out


def exemplar_flags(scores: pd.DataFrame, *, top_fraction: float | None = None) -> pd.Series:
    """Which samples of one comparison's :func:`exemplar_scores` count as exemplars.

    ``top_fraction=None`` gives the modal definition (the ``exemplar`` column); a fraction ``q`` in
    (0, 1] gives the taxicab definition of Hooker et al. (2020): the samples of rank
    ``1 … ceil(q · N)`` whose ``taxicab`` distance is above 0. A sample at distance 0 (both populations
    vote alike) did not change and is never flagged, so when fewer than ``ceil(q · N)`` samples changed,
    fewer are flagged: the top ``q`` is a cap, not a quota. Returns a boolean Series named ``exemplar``
    aligned with ``scores``.

    >>> scores = pd.DataFrame({"sample_id": [5, 6, 7, 8], "exemplar": [True, False, False, False],
    ...                        "taxicab": [2.0, 0.0, 1.0, 0.0], "rank": [1, 3, 2, 4]})
    >>> exemplar_flags(scores, top_fraction=0.5).tolist()
    [True, False, True, False]
    >>> exemplar_flags(scores, top_fraction=1.0).tolist()  # samples 6 and 8 did not change
    [True, False, True, False]
    """
    where = "exemplar_flags"
    needed = ("sample_id", "exemplar", "rank", *(() if top_fraction is None else ("taxicab",)))
    _check_scores(scores, "scores", where, needed)
    return _flags(scores, top_fraction, where)


def _flags(scores: pd.DataFrame, top_fraction: float | None, where: str) -> pd.Series:
    if top_fraction is None:
        return scores["exemplar"].astype(bool).rename("exemplar")
    q = check_fraction(top_fraction, "top_fraction", where, closed_low=False, closed_high=True)
    top = math.ceil(round(q * len(scores), 9))  # rounding first: 0.07 * 100 is 7, not 8
    changed = scores["taxicab"].to_numpy(dtype=np.float64) > 0  # exact: distances are exact ratios
    return pd.Series((scores["rank"].to_numpy() <= top) & changed, index=scores.index, name="exemplar")


def _check_scores(scores: Any, param: str, where: str, columns: Sequence[str]) -> None:
    """``scores`` must be one comparison's frame of :func:`exemplar_scores` (unique sample ids)."""
    if not isinstance(scores, pd.DataFrame):
        fail(param, where, "the DataFrame of exemplar_scores", type(scores).__name__)
    if scores.empty:
        data_fail(
            param, where, "scores of at least one sample", "an empty frame", "pass exemplar_scores(...)."
        )
    check_columns(columns, scores.columns, param, where)
    repeated = scores["sample_id"].duplicated()
    if repeated.any():
        data_fail(
            param,
            where,
            "the scores of a single comparison (one row per sample_id)",
            f"{int(repeated.sum())} repeated sample id(s), the first "
            f"{int(scores['sample_id'][repeated].iat[0])}",
            "keep one method, structure and sparsity of run_exemplars' frame (or use run_exemplar_summary).",
        )


# -- summary ------------------------------------------------------------------------------------------------
def exemplar_summary(
    scores: pd.DataFrame,
    *,
    groups: pd.DataFrame | None = None,
    group_columns: Sequence[str] | None = None,
    top_fraction: float | None = None,
    min_group_size: int = 30,
) -> pd.DataFrame:
    """Counts, accuracies and group composition of one comparison's exemplars (Hooker et al. 2019, 2020).

    Parameters
    ----------
    scores : DataFrame
        One comparison's :func:`exemplar_scores` (``N`` rows, unique ``sample_id``).
    groups : DataFrame, optional
        A ``sample_id`` column and categorical group columns (e.g. ``Dataset.groups`` with the dataset's
        ``sample_id`` added); every scored sample must appear. Without it, or without a ``class``
        column in it, ``class`` is the label.
    group_columns : sequence of str, optional
        The group columns to break down by; default ``class`` and every column of ``groups``.
    top_fraction : float in (0, 1], optional
        ``None``: modal exemplars; else at most the top fraction by taxicab rank, samples at distance 0
        left out (:func:`exemplar_flags`); ``scores`` then needs its ``taxicab`` column.
    min_group_size : int
        Groups with fewer samples are flagged ``small`` (kept: their shares rest on few samples).

    Returns
    -------
    Tidy DataFrame with the columns of :data:`SUMMARY_COLUMNS` (the vocabulary of
    :mod:`pruneviz.analysis.subgroups`): ``definition`` (``modal`` or ``taxicab top q``),
    ``attribute`` (a group column, or ``(all)``), ``group`` (the group's value as text, or ``(all)``),
    ``metric``, ``value``, ``small`` (fewer than ``min_group_size`` samples). For all samples and for
    every group of every group column, the metrics, in this order:
    ``n_samples``; ``n_exemplars``; ``exemplar_rate`` (share of the group's samples that are exemplars;
    for ``taxicab top q`` the samples actually flagged, so below ``q`` when fewer than ``q · N`` samples
    changed: ``definition`` names the requested ``q``, ``n_exemplars`` and ``exemplar_rate`` what it
    gave);
    ``data_share`` (share of all samples in the group); ``exemplar_share`` (share of all exemplars in the
    group); ``over_representation`` (``exemplar_share / data_share``: above 1 when the group holds more
    than its share of exemplars); ``dense_accuracy`` and ``pruned_accuracy`` (mean share of each
    population's models correct); the same on the exemplars only (``…_accuracy_exemplars``) and on the
    rest (``…_accuracy_without_exemplars``). A ratio with nothing to divide by is NaN.

    Example
    -------
    >>> scores = pd.DataFrame({"sample_id": [0, 1, 2, 3], "label": [0, 0, 1, 1],
    ...                        "exemplar": [True, False, False, False], "rank": [1, 2, 3, 4],
    ...                        "dense_accuracy": [1.0, 1.0, 1.0, 0.5],
    ...                        "pruned_accuracy": [0.0, 1.0, 1.0, 0.5]})
    >>> s = exemplar_summary(scores, min_group_size=2)
    >>> row = s.query("attribute == 'class' and group == '0' and metric == 'over_representation'").iloc[0]
    >>> float(row.value), bool(row.small)
    (2.0, False)
    """
    where = "exemplar_summary"
    needed: tuple[str, ...] = ("sample_id", "label", "exemplar", "rank", "dense_accuracy", "pruned_accuracy")
    if top_fraction is not None:
        needed = (*needed, "taxicab")
    _check_scores(scores, "scores", where, needed)
    min_group_size = check_int(min_group_size, "min_group_size", where, minimum=1)
    flags = _flags(scores, top_fraction, where).to_numpy()
    definition = "modal" if top_fraction is None else f"taxicab top {float(top_fraction):g}"
    table = _group_table(scores, groups, where)
    if group_columns is None:
        columns = list(table.columns)
    else:
        if isinstance(group_columns, str):
            fail(
                "group_columns", where, "a list of column names", group_columns, f"pass [{group_columns!r}]."
            )
        columns = list(dict.fromkeys(group_columns))
        check_columns(columns, table.columns, "group_columns", where)
    dense_acc = scores["dense_accuracy"].to_numpy(dtype=np.float64)
    pruned_acc = scores["pruned_accuracy"].to_numpy(dtype=np.float64)
    total_n, total_e = len(scores), int(flags.sum())
    parts = []
    for attribute in [ALL, *columns]:
        if attribute == ALL:
            codes, names = np.zeros(total_n, dtype=np.int64), [ALL]
        else:
            codes, uniques = pd.factorize(table[attribute], sort=True, use_na_sentinel=False)
            names = [str(u) for u in uniques]
        values = _group_metrics(codes, len(names), flags, dense_acc, pruned_acc, total_n, total_e)
        sizes = np.bincount(codes, minlength=len(names))
        parts.append(
            pd.DataFrame(
                {
                    "attribute": attribute,
                    "group": np.repeat(names, len(SUMMARY_METRICS)),
                    "metric": np.tile(SUMMARY_METRICS, len(names)),
                    "value": values.ravel(),
                    "small": np.repeat(sizes < min_group_size, len(SUMMARY_METRICS)),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "definition", definition)
    return out


def _group_table(scores: pd.DataFrame, groups: Any, where: str) -> pd.DataFrame:
    """The group columns of every scored sample, in the order of ``scores`` (``class`` always present)."""
    labels = scores["label"].to_numpy()
    if groups is None:
        return pd.DataFrame({"class": labels})
    if not isinstance(groups, pd.DataFrame):
        fail("groups", where, "a DataFrame with a sample_id column and group columns", type(groups).__name__)
    check_columns(("sample_id",), groups.columns, "groups", where)
    index = pd.Index(groups["sample_id"])
    if not index.is_unique:
        data_fail(
            "groups", where, "one row per sample_id", "repeated sample ids", "drop the duplicated rows."
        )
    pos = index.get_indexer(scores["sample_id"])
    missing = pos < 0
    if missing.any():
        data_fail(
            "groups",
            where,
            "a row for every scored sample_id",
            f"{int(missing.sum())} scored sample(s) missing, the first with sample_id "
            f"{int(scores['sample_id'].to_numpy()[missing][0])}",
            "pass the groups of the dataset the runs were evaluated on (Dataset.groups with its sample_id).",
        )
    table = groups.drop(columns="sample_id").iloc[pos].reset_index(drop=True)
    if "class" not in table.columns:
        table.insert(0, "class", labels)
    return table


def _group_metrics(
    codes: np.ndarray,
    n_groups: int,
    flags: np.ndarray,
    dense_acc: np.ndarray,
    pruned_acc: np.ndarray,
    total_n: int,
    total_e: int,
) -> np.ndarray:
    """``(n_groups, len(SUMMARY_METRICS))`` values of one group column, from weighted bincounts."""

    def sums(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(codes, weights=weights, minlength=n_groups).astype(np.float64)

    def ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
        den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
        return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)

    e = flags.astype(np.float64)
    n, n_e = sums(None), sums(e)
    n_rest = n - n_e
    d_all, p_all = sums(dense_acc), sums(pruned_acc)
    d_e, p_e = sums(dense_acc * e), sums(pruned_acc * e)
    data_share = n / total_n
    exemplar_share = ratio(n_e, float(total_e))
    return np.column_stack(
        [
            n,
            n_e,
            ratio(n_e, n),
            data_share,
            exemplar_share,
            ratio(exemplar_share, data_share),
            ratio(d_all, n),
            ratio(p_all, n),
            ratio(d_e, n_e),
            ratio(p_e, n_e),
            ratio(d_all - d_e, n_rest),
            ratio(p_all - p_e, n_rest),
        ]
    )
