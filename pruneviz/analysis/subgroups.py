"""Per-subgroup metrics and the disparate impact of pruning, with bootstrap intervals and a permutation null.

Definitions (Hooker, Moorosi, Clark, Bengio & Denton 2020, "Characterising bias in compressed models";
Tran, Fioretto, Kim & Naidu 2022, "Pruning has a disparate impact on model accuracy"). For a metric
``m`` (accuracy by default) of a dense and a pruned population and each group ``g``:

- ``Δ_g = m_dense(g) − m_pruned(g)``, the change pruning brings to the group (for accuracy: the
  accuracy lost; for loss-like metrics — error rate, NLL, ECE, Brier — a *negative* Δ is a loss);
- ``Δ = m_dense − m_pruned`` over all samples;
- the excess gap ``ψ_g = Δ_g − Δ`` (how much more group ``g`` pays than the average sample);
- the disparity ``Ψ = max_g Δ_g − min_g Δ_g``.

A population is one or more runs evaluated on the same samples; its metric is the mean over its runs
(for accuracy, error rate, NLL and Brier this equals the group mean of the per-sample means over runs).

Uncertainty, all vectorised (one ``np.bincount`` over ``resample × group`` codes per statistic, resamples
processed in blocks of bounded memory):

- **bootstrap**: the samples are resampled with replacement ``bootstrap`` times; the same resampled
  indices serve the dense and pruned populations and all their runs (pairing preserved). The per-group
  metrics, Δ_g, ψ_g and Δ — smooth functions of means — get percentile intervals (Efron & Tibshirani
  1993, ch. 13);
- **the interval of Ψ**: Ψ̂ = max − min of noisy estimates is biased upward wherever groups are close
  to the top or the bottom, and the bootstrap sees only part of that bias (it is not consistent when
  the extreme groups tie, nor at the boundary Ψ = 0: Andrews 2000, *Econometrica* 68:399). The
  percentile interval adds the bias the bootstrap sees a second time: with 100 groups that barely
  differ it lies wholly above Ψ̂ (e.g. Ψ̂ = 0.02, interval [0.029, 0.065], true Ψ = 0) and it covers a
  Ψ set by three tied groups 78% of the time. BCa (Efron 1987, *JASA* 82:171) does not repair this: its
  interval holds Ψ̂ exactly when the share of draws below Ψ̂ lies in [α/2, 1 − α/2], the same condition
  as the percentile interval's, and in simulation it covered 92% (two groups 2.4 standard errors apart)
  and 88% (tied top groups). Ψ's interval is therefore ``Ψ̂ ± h``, with ``h`` the larger distance from
  Ψ̂ to an end of the percentile interval [q_lo, q_hi] — the union of the percentile interval and the
  basic bootstrap interval [2Ψ̂ − q_hi, 2Ψ̂ − q_lo] (Davison & Hinkley 1997, §5.2), which err in
  opposite directions when Ψ̂ is biased, and symmetric about Ψ̂ as in Hall (1988, *JRSS B* 50:35), so it
  always holds Ψ̂ — cut at 0 below, since Ψ ≥ 0. Its lower end is 0 wherever the permutation test below
  does not reject Ψ = 0 at level ``1 − confidence`` (the values of Ψ the data cannot rule out include
  0). Over 4000 simulated data sets per case its 95% interval covered the true Ψ 95.9% (separated
  groups), 95.5% (three groups tied at the top) and 96.1% (no disparity, Ψ = 0) of the time
  (``tests/test_subgroups.py``); where many groups crowd both extremes it is conservative (about 98%);
- **permutation null**: the group labels are shuffled across samples (each sample keeps its dense and
  pruned outputs), which leaves ``Δ`` unchanged and gives the ``ψ_g`` and ``Ψ`` that groups unrelated to
  the outputs produce. ``p = (1 + #{|null| >= |observed|}) / (1 + permutations)``. Per-group p-values are
  also Holm-adjusted over the groups (``p_adjusted``); ``significant`` compares that to
  ``1 − confidence``, so a gap that random groups produce as often is not reported as real.

Groups with fewer than ``min_group_size`` samples are flagged ``small`` and kept in the per-group rows;
they are left out of Ψ, whose max − min would otherwise be set by whichever tiny group is extreme.

Error-type rates (Hardt, Price & Srebro 2016; fairlearn's ``MetricFrame`` names): ``selection_rate``
P(ŷ = c), ``tpr`` P(ŷ = c | y = c), ``fnr`` = 1 − TPR, ``fpr`` P(ŷ = c | y ≠ c), ``tnr`` = 1 − FPR,
``precision`` P(y = c | ŷ = c), one-vs-rest for the class ``c`` (class 1 of two; each class of more,
with their ``macro`` mean), and ``balanced_accuracy``, the mean recall over the classes present. A rate
is a ratio of group sums, computed per run and averaged over the runs; where its denominator is empty
in a group (no positives, for TPR) it is undefined — NaN with the reason in ``note``, never 0. The
between-group summaries are fairlearn's: demographic parity difference (max − min of selection rates
over the groups) and ratio (min / max), equalized odds difference (the larger of the TPR and FPR
differences) and ratio (the smaller of the two ratios), equal opportunity difference (of TPRs).
Several group columns give intersectional groups (every combination present, ``"a × b"``).

Where the samples' terms take few distinct values — rates and accuracy of a few runs — samples that
share every term (a *profile*) are interchangeable: a bootstrap resample is then a multinomial draw of
the (group, profile) cell counts, and a shuffle of the group labels a multivariate hypergeometric table
with the same margins, drawn group by group from univariate hypergeometric laws. Both are exact in
distribution and cost the number of cells, not of samples.
"""

from __future__ import annotations

import difflib
import hashlib
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from pruneviz._validation import check_fraction, check_int, data_fail, fail
from pruneviz.analysis.calibration import bin_index, check_logits_labels, sample_terms
from pruneviz.analysis.outputs import check_same_samples
from pruneviz.data.dataset import Dataset
from pruneviz.train import logits_of

__all__ = [
    "GROUP_METRICS",
    "RATE_METRICS",
    "SUMMARY_METRICS",
    "disparate_impact",
    "group_metrics",
    "metric_key",
    "metric_name",
    "sample_groups",
]

GROUP_METRICS = ("accuracy", "error_rate", "nll", "ece", "brier")
RATE_METRICS = ("selection_rate", "tpr", "fpr", "fnr", "tnr", "precision", "balanced_accuracy")
SUMMARY_METRICS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "equal_opportunity_difference",
)
METRICS = (*GROUP_METRICS, *RATE_METRICS)
_SUMMARY_RATES = {
    "demographic_parity_difference": ("selection_rate",),
    "demographic_parity_ratio": ("selection_rate",),
    "equalized_odds_difference": ("tpr", "fpr"),
    "equalized_odds_ratio": ("tpr", "fpr"),
    "equal_opportunity_difference": ("tpr",),
}
ALL = "(all)"  # the ``group`` of rows about all samples together
MACRO = "macro"  # the ``class`` of a one-vs-rest metric averaged over the classes
CROSS = " × "  # joins the columns (and the values) of an intersectional group
COLUMNS = (
    "attribute",
    "group",
    "metric",
    "class",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "null_low",
    "null_high",
    "n",
    "small",
    "p_value",
    "p_adjusted",
    "significant",
    "note",
)
_BLOCK = 2_000_000  # resampled (sample, resample) pairs, or (resample, group, profile) cells, at once


# -- inputs --------------------------------------------------------------------------------------------
def sample_groups(dataset: Dataset) -> pd.DataFrame:
    """The groups of every sample of ``dataset`` as a frame: ``sample_id`` then the group columns
    (``class`` and any others), ready for :func:`group_metrics` and :func:`disparate_impact`.

    >>> import numpy as np
    >>> ds = Dataset(np.zeros((3, 2)), [0, 1, 1], groups={"site": ["a", "b", "a"]})
    >>> sample_groups(ds).columns.tolist()
    ['sample_id', 'class', 'site']
    """
    if not isinstance(dataset, Dataset):
        fail("dataset", "sample_groups", "a pruneviz Dataset", type(dataset).__name__)
    out = dataset.groups.copy()
    out.insert(0, "sample_id", dataset.sample_id)
    return out


def group_columns(group: Any, where: str) -> tuple[str, ...]:
    """The group column(s) ``group`` names: one name, or a list or tuple of names for their intersection."""
    names = (group,) if isinstance(group, str) else group
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        fail(
            "group",
            where,
            "the name of a group column, or a list of distinct names for their intersection",
            group,
            "pass e.g. group='sex' or group=('race', 'sex').",
        )
    return tuple(names)


def attribute_name(group: Any) -> str:
    """The ``attribute`` a frame names for ``group``: the column, or the columns joined by ``" × "``.

    >>> attribute_name("sex"), attribute_name(("race", "sex"))
    ('sex', 'race × sex')
    """
    return group if isinstance(group, str) else CROSS.join(group)


@dataclass(frozen=True)
class _Groups:
    codes: np.ndarray  # (N,) int64 group code of each sample, samples in sorted-id order
    names: list[str]  # group value of each code, as text
    attribute: str  # the group column, or the intersection's columns joined by " × "

    @property
    def size(self) -> int:
        return len(self.names)


def _group_codes(
    groups: pd.DataFrame, columns: tuple[str, ...], ids: np.ndarray, min_group_size: int, where: str
) -> _Groups:
    """Look up the group of each sample id in ``groups`` (columns ``sample_id`` and ``columns``); the
    groups of several columns are their intersections (cells absent from the data do not appear)."""
    if not isinstance(groups, pd.DataFrame):
        fail(
            "groups",
            where,
            "a DataFrame with a sample_id column and group columns",
            type(groups).__name__,
            "pass sample_groups(dataset) or your own frame of sample ids and groups.",
        )
    have = [str(c) for c in groups.columns]
    if "sample_id" not in groups.columns:
        fail(
            "groups",
            where,
            "a DataFrame with a sample_id column",
            None,
            got=f"the columns {have[:20]}",
            fix="pass sample_groups(dataset), or add the sample ids the outputs refer to.",
        )
    for column in columns:
        if column == "sample_id" or column not in groups.columns:
            close = difflib.get_close_matches(column, [h for h in have if h != "sample_id"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            fail(
                "group",
                where,
                f"the name of a column of groups ({[h for h in have if h != 'sample_id'][:20]})",
                column,
                f"{hint}pass the column that holds each sample's group.",
            )
    sid = groups["sample_id"].to_numpy()
    if groups["sample_id"].duplicated().any():
        data_fail("groups", where, "one row per sample_id", "repeated sample ids", "drop the duplicates.")
    attribute = CROSS.join(columns)
    parts = []
    for column in columns:
        values = pd.Series(groups[column].array, index=sid).reindex(ids)  # keeps a categorical's order
        missing = values.isna().to_numpy()
        if missing.any():
            data_fail(
                "groups",
                where,
                f"a {column!r} group for each of the {len(ids)} samples of the outputs",
                f"groups for {len(ids) - int(missing.sum())} of them "
                f"({int(missing.sum())} missing, e.g. sample_id {int(ids[np.argmax(missing)])})",
                "pass the groups of the dataset the outputs were computed on (sample_groups(dataset)).",
            )
        codes, uniques = pd.factorize(values, sort=True)
        parts.append((codes.astype(np.int64), [str(u) for u in uniques]))
    if len(parts) == 1:
        codes, names = parts[0]
    else:  # the intersection: one code per combination present, in the order of the columns' levels
        combined = np.zeros(len(ids), np.int64)
        for c, names_c in parts:
            combined = combined * len(names_c) + c
        present, codes = np.unique(combined, return_inverse=True)
        names = []
        for value in present:
            labels = []
            for _, names_c in reversed(parts):
                value, j = divmod(int(value), len(names_c))
                labels.append(names_c[j])
            names.append(CROSS.join(reversed(labels)))
        codes = codes.astype(np.int64)
    if len(names) < 2:
        data_fail(
            "group",
            where,
            "a group column with at least two groups among the samples",
            f"{attribute!r} with the single group {names[0]!r}" if names else f"{attribute!r} with no groups",
            "pick a column whose samples fall into several groups (sample_groups(dataset) lists them).",
        )
    if len(columns) > 1:
        sizes = np.bincount(codes, minlength=len(names))
        if (sizes < min_group_size).all():
            data_fail(
                "group",
                where,
                f"an intersection with at least one cell of min_group_size={min_group_size} samples or more",
                f"{attribute!r} with {len(names)} cells of at most {int(sizes.max())} samples",
                "intersect fewer columns, merge rare levels, or lower min_group_size (small cells are "
                "flagged and kept out of the summaries).",
            )
    return _Groups(codes, names, attribute)


# -- metrics -------------------------------------------------------------------------------------------
def metric_name(metric: str | Callable[..., Any]) -> str:
    """The name a metric has in frames: a built-in's name, a function's ``__name__``.

    >>> def gap(y_true, y_pred, y_prob):
    ...     return 0.0
    >>> metric_name("tpr"), metric_name(gap)
    ('tpr', 'gap')
    """
    if isinstance(metric, str):
        return metric
    return str(getattr(metric, "__name__", type(metric).__name__))


def metric_key(metric: str | Callable[..., Any]) -> str:
    """A text that identifies a metric in cache keys: a built-in's name; for a function its module,
    qualified name and a hash of its code, constants and closure, so an edited function is recomputed.

    >>> metric_key("accuracy")
    'accuracy'
    """
    if isinstance(metric, str):
        return metric
    fn = getattr(metric, "__func__", metric)
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its class and its state as text
        fn = type(metric)
        blob = repr(sorted(vars(metric).items())) if hasattr(metric, "__dict__") else repr(metric)
        code = getattr(vars(fn).get("__call__"), "__code__", None)
    else:
        closure = getattr(fn, "__closure__", None) or ()
        blob = repr([c.cell_contents for c in closure]) + repr(getattr(fn, "__defaults__", None))

    def digest(c: Any) -> str:
        if c is None:
            return ""
        consts = [digest(k) if hasattr(k, "co_code") else repr(k) for k in c.co_consts]
        return hashlib.sha256(c.co_code + repr((consts, c.co_names)).encode()).hexdigest()

    h = hashlib.sha256((digest(code) + blob).encode()).hexdigest()[:16]
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', metric_name(metric))}:{h}"


def _check_metrics(
    metric: Any, where: str, *, summaries: bool = True, param: str = "metric"
) -> list[str | Callable[..., Any]]:
    """``metric`` as a list: names among :data:`METRICS` (and :data:`SUMMARY_METRICS`) or functions
    ``metric(y_true, y_pred, y_prob) -> float``; no name twice."""
    names = (*METRICS, *SUMMARY_METRICS) if summaries else METRICS
    items = [metric] if isinstance(metric, str) or callable(metric) else metric
    if not isinstance(items, list | tuple) or not items:
        fail(
            param,
            where,
            "a metric name, a function metric(y_true, y_pred, y_prob) -> float, or a non-empty list of them",
            metric,
            "pass e.g. metric='tpr' or metric=['accuracy', 'fpr', 'equalized_odds_difference'].",
        )
    out: list[str | Callable[..., Any]] = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                close = difflib.get_close_matches(item, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                fail(
                    param,
                    where,
                    f"one of {list(names)} or a function metric(y_true, y_pred, y_prob) -> float",
                    item,
                    f"{hint}pass a listed name.",
                )
        elif not callable(item):
            fail(
                param,
                where,
                "names or functions metric(y_true, y_pred, y_prob) -> float",
                item,
                "pass a metric name or a function.",
            )
        out.append(item)
    shown = [metric_name(m) for m in out]
    twice = sorted({n for n in shown if shown.count(n) > 1})
    if twice:
        fail(
            param,
            where,
            "distinct metrics",
            shown,
            f"list {twice[0]!r} once (functions are named by __name__).",
        )
    return out


class _Terms:
    """Per-sample terms whose group sums give every metric: plain columns ``(C, N)`` and binned ones
    (a value and a confidence bin per sample, for ECE), each added once (keyed)."""

    def __init__(self, n: int, n_bins: int) -> None:
        self.n, self.n_bins = n, n_bins
        self.plain: list[np.ndarray] = []
        self.binned: list[tuple[np.ndarray, np.ndarray]] = []
        self._index: dict[Any, int] = {}

    def column(self, key: Any, make: Callable[[], np.ndarray]) -> int:
        if key not in self._index:
            self._index[key] = len(self.plain)
            self.plain.append(np.asarray(make(), dtype=np.float64))
        return self._index[key]

    def binned_column(self, values: np.ndarray, bins: np.ndarray) -> int:
        self.binned.append((np.asarray(values, np.float64), np.asarray(bins, np.int64)))
        return len(self.binned) - 1

    def matrix(self) -> np.ndarray:
        return np.stack(self.plain) if self.plain else np.zeros((0, self.n))


@dataclass(frozen=True)
class _Custom:
    """A user's metric on one population: its arrays, samples in sorted-id order."""

    fn: Callable[..., Any]
    label: np.ndarray  # (N,)
    prediction: np.ndarray  # (R, N)
    probability: np.ndarray | None  # (R, N, K) softmax of the logits, None without logits


@dataclass(frozen=True)
class _Metric:
    """How one metric of one population comes from group sums of the terms.

    ``kind`` ``"mean"``: ``sum(num) / count``; ``"ratio"``: ``sum(num) / sum(den)`` per run ``r`` and
    part ``p`` (``num``, ``den`` ``(R, P)`` column indices), averaged over the defined parts (classes,
    for a macro average) and then over runs; ``"ece"``: ``Σ_b |sum(gap in bin b)| / count`` per run
    (``binned`` ``(R,)``), averaged over runs; ``"custom"``: the user's function per group and run.
    """

    name: str
    klass: str  # "" for metrics of all classes, the positive class of a one-vs-rest rate, or "macro"
    kind: str
    num: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    den: np.ndarray | None = None
    binned: np.ndarray | None = None
    custom: _Custom | None = None


@dataclass(frozen=True)
class _Frame:
    label: np.ndarray  # (N,) int
    prediction: np.ndarray  # (R, N) int
    logits: np.ndarray | None  # (R, N, K), None without logit columns
    runs: int


def _check_outputs(frame: pd.DataFrame, param: str, where: str) -> None:
    """An outputs frame of one split and one subset (several runs allowed)."""
    if not isinstance(frame, pd.DataFrame):
        fail(param, where, "a per-sample outputs DataFrame", type(frame).__name__)
    for col in ("subset", "split"):
        if col in frame.columns and frame[col].nunique() > 1:
            fail(
                param,
                where,
                f"the outputs of a single {col}",
                None,
                got=f"outputs of the {col}s {sorted(map(str, frame[col].unique()))}",
                fix=f"select one first, e.g. frame[frame.{col} == {str(frame[col].iloc[0])!r}].",
            )
    for col in ("sample_id", "label", "prediction"):
        if col not in frame.columns:
            fail(
                param,
                where,
                "an outputs frame with the columns sample_id, label and prediction (from evaluate or "
                "zoo.outputs)",
                list(frame.columns)[:10],
                got=f"a frame without {col!r}",
            )


def _frame_arrays(frame: pd.DataFrame, ids: np.ndarray, need_logits: bool, param: str, where: str) -> _Frame:
    runs = pd.factorize(frame["run"])[0] if "run" in frame.columns else np.zeros(len(frame), np.int64)
    n_runs = int(runs.max()) + 1
    pos = np.searchsorted(ids, frame["sample_id"].to_numpy())
    label = np.empty(len(ids), np.int64)
    label[pos] = frame["label"].to_numpy()
    prediction = np.empty((n_runs, len(ids)), np.int64)
    prediction[runs, pos] = frame["prediction"].to_numpy()
    logits = None
    if need_logits:
        if not any(str(c).startswith("logit_") for c in frame.columns):
            fail(
                param,
                where,
                "an outputs frame with logit_* columns for this metric",
                list(frame.columns)[:10],
            )
        z, _ = check_logits_labels(logits_of(frame), frame["label"].to_numpy(), f"{where} ({param} outputs)")
        logits = np.empty((n_runs, len(ids), z.shape[1]))
        logits[runs, pos] = z
    return _Frame(label, prediction, logits, n_runs)


def _classes(frames: Sequence[pd.DataFrame]) -> list[int]:
    """The classes of one-vs-rest rates: ``[1]`` for two classes (class 1 is the positive one), else
    every class (from the logit columns, or the labels and predictions)."""
    k = max(sum(str(c).startswith("logit_") for c in f.columns) for f in frames)
    if k == 0:
        k = int(max(max(f["label"].max(), f["prediction"].max()) for f in frames)) + 1
    return [1] if k <= 2 else list(range(k))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _population_metrics(
    f: _Frame, tag: str, metric: str | Callable[..., Any], classes: list[int], terms: _Terms
) -> list[_Metric]:
    """The :class:`_Metric` rows ``metric`` gives for one population (``tag`` keeps its columns apart)."""
    y, pred = f.label, f.prediction
    if callable(metric):
        prob = _softmax(f.logits) if f.logits is not None else None
        return [_Metric(metric_name(metric), "", "custom", custom=_Custom(metric, y, pred, prob))]
    if metric in ("accuracy", "error_rate"):
        if metric == "accuracy":
            c = terms.column((tag, "correct"), lambda: (pred == y).mean(axis=0))
        else:
            c = terms.column((tag, "wrong"), lambda: (pred != y).mean(axis=0))
        return [_Metric(metric, "", "mean", num=np.array([[c]]))]
    if metric in ("nll", "brier", "ece"):
        assert f.logits is not None
        per_run = [sample_terms(f.logits[r], y) for r in range(f.runs)]
        if metric == "ece":
            idx = [
                terms.binned_column(t["confidence"] - t["correct"], bin_index(t["confidence"], terms.n_bins))
                for t in per_run
            ]
            return [_Metric(metric, "", "ece", binned=np.array(idx))]
        c = terms.column((tag, metric), lambda: np.mean([t[metric] for t in per_run], axis=0))
        return [_Metric(metric, "", "mean", num=np.array([[c]]))]

    def hit(k: int, predicted: bool, actual: bool | None, run: int | None = None) -> int:
        """Column of ``[pred == k] == predicted`` (and ``[y == k] == actual``), mean over runs or one run."""

        def make() -> np.ndarray:
            p = pred if run is None else pred[run : run + 1]
            h = (p == k) == predicted
            if actual is not None:
                h = h & ((y == k) == actual)
            return h.mean(axis=0)

        return terms.column((tag, k, predicted, actual, run), make)

    def truth(k: int, actual: bool) -> int:
        return terms.column(("truth", k, actual), lambda: (y == k) == actual)

    if metric == "balanced_accuracy":
        k_all = range(2) if classes == [1] else classes
        recall_num = np.array([[hit(k, True, True) for k in k_all]])
        recall_den = np.array([[truth(k, True) for k in k_all]])
        return [_Metric(metric, "", "ratio", num=recall_num, den=recall_den)]
    ratio_parts: dict[str, Callable[[int], tuple[list[int], list[int] | None]]] = {
        "selection_rate": lambda k: ([hit(k, True, None)], None),
        "tpr": lambda k: ([hit(k, True, True)], [truth(k, True)]),
        "fnr": lambda k: ([hit(k, False, True)], [truth(k, True)]),
        "fpr": lambda k: ([hit(k, True, False)], [truth(k, False)]),
        "tnr": lambda k: ([hit(k, False, False)], [truth(k, False)]),
    }
    out = []
    if metric == "precision":  # the denominator (predicted k) differs between runs: one ratio per run
        per_class = {
            k: (
                [hit(k, True, True, r) for r in range(f.runs)],
                [hit(k, True, None, r) for r in range(f.runs)],
            )
            for k in classes
        }
        for k, (run_num, run_den) in per_class.items():
            out.append(
                _Metric(
                    metric, str(k), "ratio", num=np.array(run_num)[:, None], den=np.array(run_den)[:, None]
                )
            )
        if len(classes) > 1:
            num_all = np.array([per_class[k][0] for k in classes]).T  # (R, classes)
            den_all = np.array([per_class[k][1] for k in classes]).T
            out.append(_Metric(metric, MACRO, "ratio", num=num_all, den=den_all))
        return out
    parts = {k: ratio_parts[metric](k) for k in classes}
    for k, (part_num, part_den) in parts.items():
        if part_den is None:
            out.append(_Metric(metric, str(k), "mean", num=np.array([part_num])))
        else:
            out.append(_Metric(metric, str(k), "ratio", num=np.array([part_num]), den=np.array([part_den])))
    if len(classes) > 1 and metric != "selection_rate":  # a macro selection rate is always 1 / classes
        num = np.array([[parts[k][0][0] for k in classes]])
        den = np.array([[cast(list[int], parts[k][1])[0] for k in classes]])
        out.append(_Metric(metric, MACRO, "ratio", num=num, den=den))
    return out


# -- the vectorised statistics -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sums:
    """Group sums under ``M`` draws: ``plain`` ``(M, G, C)``, ``binned`` ``(M, G, D, B)``, ``count``
    ``(M, G)``; or, with ``total``, the sums over all samples (the group axis summed away)."""

    plain: np.ndarray
    binned: np.ndarray | None
    count: np.ndarray

    def total(self) -> _Sums:
        b = self.binned.sum(axis=1, keepdims=True) if self.binned is not None else None
        return _Sums(self.plain.sum(axis=1, keepdims=True), b, self.count.sum(axis=1, keepdims=True))


def _evaluate(m: _Metric, s: _Sums) -> np.ndarray:
    """``m`` on every draw and group of ``s``: ``(M, G)``, NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means: undefined stays NaN
        if m.kind == "mean":
            return s.plain[..., m.num[0, 0]] / s.count
        if m.kind == "ratio":
            assert m.den is not None
            r = s.plain[..., m.num] / s.plain[..., m.den]  # (M, G, R, P)
            return np.nanmean(np.nanmean(r, axis=-1), axis=-1)
        assert m.kind == "ece" and s.binned is not None and m.binned is not None
        return np.abs(s.binned[:, :, m.binned, :]).sum(axis=-1).mean(axis=-1) / s.count


def _index_sums(terms: _Terms, rows: np.ndarray | None, codes: np.ndarray, n_groups: int) -> _Sums:
    """Group sums of the samples ``rows[d]`` (``None``: all, in order) with group codes ``codes[d]``,
    each statistic one ``np.bincount`` over ``draw × group`` cells (× confidence bin, for ECE)."""
    m = codes.shape[0]
    key = (codes + n_groups * np.arange(m)[:, None]).ravel()
    cells = m * n_groups

    def take(a: np.ndarray) -> np.ndarray:
        return (a[rows] if rows is not None else np.broadcast_to(a, codes.shape)).ravel()

    count = np.bincount(key, minlength=cells).reshape(m, n_groups).astype(np.float64)
    plain = np.empty((m, n_groups, len(terms.plain)))
    for c, col in enumerate(terms.plain):
        plain[:, :, c] = np.bincount(key, weights=take(col), minlength=cells).reshape(m, n_groups)
    binned = None
    if terms.binned:
        b = terms.n_bins
        binned = np.empty((m, n_groups, len(terms.binned), b))
        for d, (values, bins) in enumerate(terms.binned):
            per_bin = np.bincount(key * b + take(bins), weights=take(values), minlength=cells * b)
            binned[:, :, d, :] = per_bin.reshape(m, n_groups, b)
    return _Sums(plain, binned, count)


@dataclass(frozen=True)
class _Profiles:
    """Samples that share every term are interchangeable: ``values`` ``(K, C)`` the distinct rows of
    terms, ``of`` ``(N,)`` each sample's profile. A resample then only needs how many samples of each
    (group, profile) cell it holds — a multinomial draw — and a shuffle of the group labels a table of
    the same margins — a multivariate hypergeometric draw — so neither touches the samples."""

    values: np.ndarray
    of: np.ndarray

    @property
    def size(self) -> int:
        return len(self.values)


def _profiles(terms: _Terms, metrics: Sequence[_Metric], n_groups: int) -> _Profiles | None:
    """The profiles of the samples, or ``None`` when resampling the samples themselves is cheaper
    (many distinct profiles, ECE bins, a user's function)."""
    if terms.binned or any(m.kind == "custom" for m in metrics):
        return None
    values, of = np.unique(terms.matrix().T, axis=0, return_inverse=True)
    if len(values) * n_groups * 4 > terms.n:
        return None
    return _Profiles(values, of.ravel().astype(np.int64))


def _profile_sums(profiles: _Profiles, table: np.ndarray) -> _Sums:
    """Group sums from ``table`` ``(M, G, K)``: how many samples of each profile each group holds."""
    m, g, k = table.shape
    plain = (table.reshape(m * g, k) @ profiles.values).reshape(m, g, -1)
    return _Sums(plain, None, table.sum(axis=2))


def _profile_rows(k: int, groups: int, draws: int) -> int:
    return max(1, min(draws, _BLOCK // max(k * groups, 1)))


def _block_rows(n: int, draws: int) -> int:
    return max(1, min(draws, _BLOCK // max(n, 1)))


def _custom_values(
    m: _Metric,
    rows: np.ndarray | None,
    codes: np.ndarray,
    names: Sequence[str],
    overall: bool,
    strict: bool,
    where: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A user's metric per draw and group ``(M, G)`` (and over all samples), the mean over runs. With
    ``strict`` (the observed data) a failure is an error naming the metric; on a resample it is NaN."""
    assert m.custom is not None
    c = m.custom
    draws, n = codes.shape
    n_groups = len(names)
    per_group = np.full((draws, n_groups), np.nan)
    whole = np.full(draws, np.nan) if overall else None

    def call(idx: np.ndarray, group: str) -> float:
        values = []
        for r in range(c.prediction.shape[0]):
            prob = c.probability[r, idx] if c.probability is not None else None
            values.append(_call_custom(c.fn, c.label[idx], c.prediction[r, idx], prob, group, strict, where))
        return float(np.mean(values))

    for d in range(draws):
        sample = rows[d] if rows is not None else np.arange(n)
        order = np.argsort(codes[d], kind="stable")
        bounds = np.searchsorted(codes[d][order], np.arange(n_groups + 1))
        for g in range(n_groups):
            if bounds[g + 1] > bounds[g]:
                per_group[d, g] = call(sample[order[bounds[g] : bounds[g + 1]]], f"the group {names[g]!r}")
        if whole is not None:
            whole[d] = call(sample, "all samples")
    return per_group, whole


def _call_custom(
    fn: Callable[..., Any],
    y: np.ndarray,
    pred: np.ndarray,
    prob: np.ndarray | None,
    group: str,
    strict: bool,
    where: str,
) -> float:
    name = metric_name(fn)
    try:
        value = fn(y, pred, prob)
    except Exception as exc:  # a user's function: any failure is reported as theirs
        if not strict:
            return np.nan
        fail(
            "metric",
            where,
            "a function metric(y_true, y_pred, y_prob) -> float that runs on every group",
            None,
            got=f"{name} raising {type(exc).__name__}: {exc} on {group}",
            fix="make it handle a group's labels, predictions and class probabilities (an (n, classes) "
            "array, or None without logits); return float('nan') where it is undefined.",
        )
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    fail(
        "metric",
        where,
        "a function metric(y_true, y_pred, y_prob) -> float returning one number",
        None,
        got=f"{name} returning {type(value).__name__}"
        + (f" of shape {value.shape}" if isinstance(value, np.ndarray) else f" {value!r}"[:80]),
        fix="return a single float (e.g. float(np.mean(...))).",
    )


def _values(
    metrics: Sequence[_Metric],
    terms: _Terms,
    rows: np.ndarray | None,
    codes: np.ndarray,
    names: Sequence[str],
    *,
    overall: bool,
    strict: bool,
    where: str,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Each metric per draw and group ``(M, G)`` and over all samples ``(M,)`` (``None`` unless
    ``overall``), on the samples ``rows`` with group codes ``codes`` (the index path)."""
    sums = _index_sums(terms, rows, codes, len(names))
    total = sums.total() if overall else None
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    for m in metrics:
        if m.kind == "custom":
            out.append(_custom_values(m, rows, codes, names, overall, strict, where))
        else:
            out.append((_evaluate(m, sums), _evaluate(m, total)[:, 0] if total is not None else None))
    return out


def _bootstrap(
    metrics: Sequence[_Metric],
    terms: _Terms,
    groups: _Groups,
    profiles: _Profiles | None,
    draws: int,
    rng: np.random.Generator,
    where: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per-group and overall values of each metric on ``draws`` paired bootstrap resamples (the same
    resampled samples for every population and run)."""
    n, g = len(groups.codes), groups.size
    out = [(np.empty((draws, g)), np.empty(draws)) for _ in metrics]
    if profiles is not None:  # resampling n samples with replacement = a multinomial draw of the cells
        cells = groups.codes * profiles.size + profiles.of
        counts = np.bincount(cells, minlength=g * profiles.size)
        present = np.flatnonzero(counts)
        step = _profile_rows(profiles.size, g, draws)
        for start in range(0, draws, step):
            m = min(step, draws - start)
            table = np.zeros((m, g * profiles.size))
            table[:, present] = rng.multinomial(n, counts[present] / n, size=m)
            sums = _profile_sums(profiles, table.reshape(m, g, profiles.size))
            total = sums.total()
            for (g_all, o_all), metric in zip(out, metrics, strict=True):
                g_all[start : start + m] = _evaluate(metric, sums)
                o_all[start : start + m] = _evaluate(metric, total)[:, 0]
        return out
    step = _block_rows(n, draws)
    for start in range(0, draws, step):
        m = min(step, draws - start)
        rows = rng.integers(0, n, size=(m, n))
        block = _values(
            metrics, terms, rows, groups.codes[rows], groups.names, overall=True, strict=False, where=where
        )
        for (g_all, o_all), (gv, ov) in zip(out, block, strict=True):
            g_all[start : start + m], o_all[start : start + m] = gv, ov
    return out


def _shuffled_tables(
    profile_counts: np.ndarray, sizes: np.ndarray, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``(draws, G, K)`` tables of how many samples of each profile fall in each group when the group
    labels are shuffled: group by group, profile by profile, univariate hypergeometric draws from what
    is left (the sequential form of the multivariate hypergeometric law)."""
    g, k = len(sizes), len(profile_counts)
    table = np.zeros((draws, g, k), np.int64)
    left = np.tile(profile_counts.astype(np.int64), (draws, 1))
    for gi in range(g - 1):
        need = np.full(draws, int(sizes[gi]), np.int64)
        rest = left.sum(axis=1)
        for ki in range(k - 1):
            rest = rest - left[:, ki]
            x = rng.hypergeometric(left[:, ki], rest, need)
            table[:, gi, ki] = x
            need -= x
            left[:, ki] -= x
        table[:, gi, k - 1] = need
        left[:, k - 1] -= need
    table[:, g - 1] = left
    return table


def _permutations(
    metrics: Sequence[_Metric],
    terms: _Terms,
    groups: _Groups,
    profiles: _Profiles | None,
    draws: int,
    rng: np.random.Generator,
    where: str,
) -> list[np.ndarray]:
    """Per-group values of each metric with the group labels shuffled across samples, ``(draws, G)``."""
    n, g = len(groups.codes), groups.size
    out = [np.empty((draws, g)) for _ in metrics]
    if profiles is not None:
        counts = np.bincount(profiles.of, minlength=profiles.size)
        sizes = np.bincount(groups.codes, minlength=g)
        step = _profile_rows(profiles.size, g, draws)
        for start in range(0, draws, step):
            m = min(step, draws - start)
            sums = _profile_sums(profiles, _shuffled_tables(counts, sizes, m, rng).astype(np.float64))
            for res, metric in zip(out, metrics, strict=True):
                res[start : start + m] = _evaluate(metric, sums)
        return out
    step = _block_rows(n, draws)
    for start in range(0, draws, step):
        m = min(step, draws - start)
        codes = rng.permuted(np.tile(groups.codes, (m, 1)), axis=1)
        block = _values(metrics, terms, None, codes, groups.names, overall=False, strict=False, where=where)
        for res, (gv, _) in zip(out, block, strict=True):
            res[start : start + m] = gv
    return out


def _disparity(delta: np.ndarray, big: np.ndarray) -> np.ndarray:
    """``max_g Δ_g − min_g Δ_g`` over the groups in ``big``, along the last axis (NaN if < 2 groups)."""
    if big.sum() < 2:
        return np.full(delta.shape[:-1], np.nan)
    d = delta[..., big]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every big group
        return np.nanmax(d, axis=-1) - np.nanmin(d, axis=-1)


def _interval(draws: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring draws where the statistic is undefined (NaN)."""
    tail = (1.0 - confidence) / 2.0
    q = [tail, 1.0 - tail]
    gaps = np.isnan(draws).any(axis=0)
    lo, hi = np.empty(draws.shape[1:]), np.empty(draws.shape[1:])
    lo[~gaps], hi[~gaps] = np.quantile(draws[:, ~gaps], q, axis=0)
    if gaps.any():  # a group missing from some resamples: the slow NaN-aware path, on those columns only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a group never drawn
            lo[gaps], hi[gaps] = np.nanquantile(draws[:, gaps], q, axis=0)
    return lo, hi


def _disparity_interval(
    value: np.ndarray, draws: np.ndarray, p_value: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """The interval reported for Ψ (see the module docstring): ``Ψ̂ ± h``, ``h`` the larger distance
    from ``Ψ̂`` to an end of the percentile interval of the ``draws`` (axis 0), cut at 0 below, and
    ``0`` below where the permutation ``p_value`` does not reject Ψ = 0 at level ``1 − confidence``.
    ``value`` and ``p_value`` have the shape of ``draws[0]``."""
    low, high = _interval(draws, confidence)
    half = np.fmax(high - value, value - low)
    with np.errstate(invalid="ignore"):
        plausible_zero = np.asarray(p_value) > 1.0 - confidence  # False where p is NaN
    lo = np.where(plausible_zero, 0.0, np.maximum(value - half, 0.0))
    return lo, value + half


def _p_value(null: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``(1 + #{|null| >= |observed|}) / (1 + P)`` along axis 0 (a tolerance keeps exact ties); draws
    where the null is undefined count as not as extreme."""
    obs = np.abs(observed)
    with np.errstate(invalid="ignore"):
        hits = (np.abs(null) >= obs - 1e-12 * np.maximum(1.0, obs)).sum(axis=0)
    p = (1.0 + hits) / (1.0 + null.shape[0])
    return np.where(np.isfinite(observed), p, np.nan)


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a vector of p-values (NaNs left out and kept NaN)."""
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


# -- between-group summaries (fairlearn's names) ---------------------------------------------------------
def _spread(values: np.ndarray, big: np.ndarray, ratio: bool) -> np.ndarray:
    """``max − min`` (or ``min / max``) of ``values`` over the groups in ``big``, along the last axis."""
    if big.sum() < 2:
        return np.full(values.shape[:-1], np.nan)
    v = values[..., big]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hi, lo = np.nanmax(v, axis=-1), np.nanmin(v, axis=-1)
        return lo / hi if ratio else hi - lo


def _summary(name: str, rates: dict[str, np.ndarray], big: np.ndarray) -> np.ndarray:
    """A between-group summary from the per-group rates it needs (arrays ``(..., G)``)."""
    ratio = name.endswith("_ratio")
    parts = [_spread(rates[r], big, ratio) for r in _SUMMARY_RATES[name]]
    if len(parts) == 1:
        return parts[0]
    return np.fmin(*parts) if ratio else np.fmax(*parts)  # equalized odds: the worse of TPR and FPR


# -- notes ---------------------------------------------------------------------------------------------
def _note(m: _Metric, population: str) -> str:
    """Why ``m`` is undefined (NaN) on a group."""
    k = m.klass
    if m.klass == MACRO:
        return f"{m.name} (macro) is undefined: it is undefined for every class in the group"
    if m.name in ("tpr", "fnr"):
        return f"{m.name} is undefined: the group has no samples of class {k}"
    if m.name in ("fpr", "tnr"):
        return f"{m.name} is undefined: every sample of the group is of class {k}"
    if m.name == "precision":
        return f"precision is undefined: the {population} runs predict class {k} for no sample of the group"
    if m.kind == "custom":
        return f"{m.name} is undefined: it returned NaN (or failed) on the group"
    return f"{m.name} is undefined on the group"


def _notes(value: np.ndarray, m: _Metric, population: str) -> np.ndarray:
    return np.where(np.isnan(value), _note(m, population), "")


# -- validation of shared parameters ---------------------------------------------------------------------
def _check_settings(where: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "metric" in kw:
        out["metric"] = _check_metrics(kw["metric"], where, summaries=kw.get("summaries", True))
    if "group" in kw:
        group_columns(kw["group"], where)
    for name in ("bootstrap", "permutations", "bins", "min_group_size"):
        if name in kw:
            out[name] = check_int(kw[name], name, where, minimum=1)
    if "seed" in kw:
        out["seed"] = check_int(kw["seed"], "seed", where, minimum=0)
    if "confidence" in kw:
        out["confidence"] = check_fraction(kw["confidence"], "confidence", where, closed_low=False)
    return out


def _needs_logits(metrics: Sequence[str | Callable[..., Any]]) -> bool:
    return any(callable(m) or m in ("nll", "ece", "brier") for m in metrics)


def _prepare(
    frames: Sequence[tuple[pd.DataFrame, str]],
    names: Sequence[str | Callable[..., Any]],
    ids: np.ndarray,
    n_bins: int,
    where: str,
) -> tuple[_Terms, list[list[_Metric]], list[int]]:
    """The terms and, per population, the metric rows of ``names`` (summaries expanded into the rates
    they need; those come after the requested ones)."""
    classes = _classes([f for f, _ in frames])
    wanted = [m for m in names if callable(m) or m not in SUMMARY_METRICS]
    extra = [r for m in names if isinstance(m, str) and m in SUMMARY_METRICS for r in _SUMMARY_RATES[m]]
    rates = list(dict.fromkeys(r for r in extra if r not in wanted))
    terms = _Terms(len(ids), n_bins)
    per_pop = []
    for frame, param in frames:
        arrays = _frame_arrays(frame, ids, _needs_logits(wanted), param, where)
        per_pop.append(
            [
                m
                for name in [*wanted, *rates]
                for m in _population_metrics(arrays, param, name, classes, terms)
            ]
        )
    return terms, per_pop, classes


def _observed(
    metrics: Sequence[_Metric], terms: _Terms, grp: _Groups, where: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each metric per group ``(G,)`` and over all samples (a scalar array) on the data as it is; a
    user's metric that fails here is an error."""
    vals = _values(
        metrics, terms, None, grp.codes[None, :], grp.names, overall=True, strict=True, where=where
    )
    return [(g[0], np.asarray(o)[0]) for g, o in vals]  # type: ignore[index]


# -- public functions -------------------------------------------------------------------------------------
def group_metrics(
    outputs: pd.DataFrame,
    groups: pd.DataFrame,
    *,
    group: str | Sequence[str] = "class",
    metrics: str | Callable[..., Any] | Sequence[str | Callable[..., Any]] = GROUP_METRICS,
    bins: int = 15,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    min_group_size: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-group metrics of one population of runs, with percentile bootstrap intervals.

    Parameters
    ----------
    outputs : DataFrame
        Per-sample outputs (:func:`pruneviz.train.evaluate`, ``Zoo.outputs``, or
        :func:`~pruneviz.study.populations.population_outputs`): ``sample_id``, ``label``,
        ``prediction`` and ``logit_*`` columns, and a ``run`` column when it holds several runs (each
        run covering the same samples). One split and subset.
    groups : DataFrame
        ``sample_id`` and the group column(s) (e.g. :func:`sample_groups` of the dataset); every sample
        of ``outputs`` needs a group, extra rows are ignored.
    group : str or sequence of str
        The column of ``groups`` to group by, or several columns for their intersection (e.g.
        ``("race", "sex")``: one group per combination present, named ``"a × b"``).
    metrics : name, function or sequence of them
        Among ``accuracy``, ``error_rate``, ``nll`` (mean cross-entropy), ``ece`` (expected calibration
        error over ``bins`` confidence bins, Guo et al. 2017), ``brier`` (multi-class, unhalved; see
        :mod:`pruneviz.analysis.calibration`), the rates ``selection_rate``, ``tpr``, ``fpr``, ``fnr``,
        ``tnr``, ``precision`` (one-vs-rest: for two classes, class 1 is the positive one; for more, one
        row per class and their ``macro`` average) and ``balanced_accuracy`` (the mean recall over the
        classes); or a function ``metric(y_true, y_pred, y_prob) -> float`` (``y_prob`` the ``(n,
        classes)`` softmax of the logits, ``None`` without logit columns), called per group, run and
        resample.
    bins, bootstrap, confidence, min_group_size, seed
        ECE bins; resamples of the samples (with replacement) for the intervals, their level, the group
        size below which a group is flagged ``small``, and the seed of the resampling.

    Returns
    -------
    Tidy frame, one row per (group, metric, class) and a row per metric for all samples
    (``group="(all)"``): ``attribute`` (the group column(s)), ``group``, ``metric``, ``class`` (the
    positive class of a one-vs-rest rate, ``macro``, or empty), ``value`` (mean over runs), ``ci_low``,
    ``ci_high``, ``n`` (samples in the group), ``small``, ``note`` (why a value is undefined — NaN —,
    e.g. a TPR where the group has no positives; empty otherwise).

    Examples
    --------
    >>> import pandas as pd
    >>> out = pd.DataFrame({"sample_id": [0, 1, 2, 3], "label": [0, 1, 0, 1], "prediction": [0, 1, 1, 1]})
    >>> groups = pd.DataFrame({"sample_id": [0, 1, 2, 3], "site": ["a", "a", "b", "b"]})
    >>> group_metrics(out, groups, group="site", metrics=["accuracy"], bootstrap=10).value.tolist()
    [1.0, 0.5, 0.75]
    >>> group_metrics(out, groups, group="site", metrics="fpr", bootstrap=10).value.tolist()
    [0.0, 1.0, 0.5]
    """
    where = "group_metrics"
    s = _check_settings(
        where,
        group=group,
        bins=bins,
        bootstrap=bootstrap,
        confidence=confidence,
        min_group_size=min_group_size,
        seed=seed,
    )
    names = _check_metrics(metrics, where, summaries=False, param="metrics")
    _check_outputs(outputs, "outputs", where)
    ids = check_same_samples(outputs, outputs, where=where, names=("outputs", "outputs"))
    grp = _group_codes(groups, group_columns(group, where), ids, s["min_group_size"], where)
    terms, (pop,), _ = _prepare([(outputs, "outputs")], names, ids, s["bins"], where)
    observed = _observed(pop, terms, grp, where)
    profiles = _profiles(terms, pop, grp.size)
    boot = _bootstrap(pop, terms, grp, profiles, s["bootstrap"], np.random.default_rng(s["seed"]), where)
    n = np.append(np.bincount(grp.codes, minlength=grp.size), len(ids))
    frames = []
    for m, (g_obs, o_obs), (g_boot, o_boot) in zip(pop, observed, boot, strict=True):
        value = np.append(g_obs, o_obs)
        lo, hi = _interval(np.column_stack([g_boot, o_boot]), s["confidence"])
        frames.append(
            pd.DataFrame(
                {
                    "attribute": grp.attribute,
                    "group": [*grp.names, ALL],
                    "metric": m.name,
                    "class": m.klass,
                    "value": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                    "small": n < s["min_group_size"],
                    "note": _notes(value, m, "given"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _impact_rows(
    dm: _Metric,
    pm: _Metric,
    obs: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    boot: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    null: tuple[np.ndarray, np.ndarray],
    grp: _Groups,
    n: np.ndarray,
    big: np.ndarray,
    confidence: float,
) -> pd.DataFrame:
    """The rows of one metric (and class): per group Δ_g, ψ_g and the populations' values; over all
    samples Δ and Ψ."""
    (dg, do), (pg, po) = obs
    (bdg, bdo), (bpg, bpo) = boot
    ndg, npg = null
    delta_g, delta = dg - pg, do - po
    psi = delta_g - delta
    disparity = _disparity(delta_g, big)
    b_delta_g, b_delta = bdg - bpg, bdo - bpo
    b_psi = b_delta_g - b_delta[:, None]
    b_disparity = _disparity(b_delta_g, big)
    # permutation null: Δ does not change when only the group labels move
    n_delta_g = ndg - npg
    null_psi, null_disparity = n_delta_g - delta, _disparity(n_delta_g, big)
    p_psi = _p_value(null_psi, psi)
    p_disparity = _p_value(null_disparity, disparity)
    null_psi_lo, null_psi_hi = _interval(null_psi, confidence)
    null_dis_lo, null_dis_hi = _interval(np.asarray(null_disparity)[:, None], confidence)
    dense_note, pruned_note = _notes(dg, dm, "dense"), _notes(pg, pm, "pruned")
    either = np.where(dense_note != "", dense_note, pruned_note)
    stats_g = {
        "dense": (dg, bdg, dense_note),
        "pruned": (pg, bpg, pruned_note),
        "delta": (delta_g, b_delta_g, either),
        "psi": (psi, b_psi, either),
    }
    frames = []
    p_adj = _holm(p_psi)
    for stat, (value, draws, note) in stats_g.items():
        lo, hi = _interval(draws, confidence)
        tested = stat == "psi"
        frames.append(
            pd.DataFrame(
                {
                    "group": grp.names,
                    "statistic": stat,
                    "value": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "null_low": null_psi_lo if tested else np.nan,
                    "null_high": null_psi_hi if tested else np.nan,
                    "n": n,
                    "p_value": p_psi if tested else np.nan,
                    "p_adjusted": p_adj if tested else np.nan,
                    "note": note,
                }
            )
        )
    d_note, p_note = _notes(np.atleast_1d(do), dm, "dense")[0], _notes(np.atleast_1d(po), pm, "pruned")[0]
    stats_all = {
        "dense": (do, bdo, d_note),
        "pruned": (po, bpo, p_note),
        "delta": (delta, b_delta, d_note or p_note),
        "disparity": (
            disparity,
            b_disparity,
            "" if np.isfinite(disparity) else "fewer than two groups to compare",
        ),
    }
    rows = []
    for stat, (value, draws, note) in stats_all.items():
        tested = stat == "disparity"
        if tested:
            lo, hi = _disparity_interval(
                np.atleast_1d(value), b_disparity[:, None], np.atleast_1d(p_disparity), confidence
            )
        else:
            lo, hi = _interval(np.asarray(draws)[:, None], confidence)
        p = float(p_disparity) if tested else np.nan
        rows.append(
            {
                "group": ALL,
                "statistic": stat,
                "value": float(value),
                "ci_low": float(lo[0]),
                "ci_high": float(hi[0]),
                "null_low": float(null_dis_lo[0]) if tested else np.nan,
                "null_high": float(null_dis_hi[0]) if tested else np.nan,
                "n": int(n.sum()),
                "p_value": p,
                "p_adjusted": p,
                "note": note,
            }
        )
    out = pd.concat([*frames, pd.DataFrame(rows)], ignore_index=True)
    out.insert(1, "metric", dm.name)
    out.insert(2, "class", dm.klass)
    return out


def _summary_rows(
    name: str,
    klass: str,
    rates: dict[str, Any],
    big: np.ndarray,
    n_samples: int,
    confidence: float,
) -> pd.DataFrame:
    """The dense, pruned and delta rows of a between-group summary. ``rates[r]`` holds, per population
    (dense, pruned), the rate's per-class values observed ``(C, G)``, bootstrapped ``(C, B, G)`` and
    under the null ``(C, P, G)``; a summary of several classes is their mean (the macro average)."""

    def summarise(which: int, part: int) -> np.ndarray:
        per_class = _summary(name, {r: v[part][which] for r, v in rates.items()}, big)  # (C, ...) or (C,)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(per_class, axis=0)

    ratio = name.endswith("_ratio")
    (d, p), (bd, bp), (nd, np_) = ((summarise(0, k), summarise(1, k)) for k in range(3))
    rows = []
    for stat, value, draws, null in (
        ("dense", d, bd, nd),
        ("pruned", p, bp, np_),
        ("delta", d - p, bd - bp, nd - np_),
    ):
        if stat == "delta":
            pv = _p_value(null, value)
        else:  # how far from parity: a difference above 0, a ratio below 1
            pv = _p_value(1.0 - null, 1.0 - value) if ratio else _p_value(null, value)
        if stat != "delta" and not ratio:  # a max − min: the interval of Ψ, for the same reasons
            lo, hi = _disparity_interval(np.atleast_1d(value), draws[:, None], np.atleast_1d(pv), confidence)
        else:
            lo, hi = _interval(draws[:, None], confidence)
        nlo, nhi = _interval(null[:, None], confidence)
        rows.append(
            {
                "group": ALL,
                "metric": name,
                "class": klass,
                "statistic": stat,
                "value": float(value),
                "ci_low": float(lo[0]),
                "ci_high": float(hi[0]),
                "null_low": float(nlo[0]),
                "null_high": float(nhi[0]),
                "n": n_samples,
                "p_value": float(pv),
                "p_adjusted": float(pv),
                "note": ""
                if np.isfinite(value)
                else f"{name} is undefined: fewer than two groups with a value",
            }
        )
    return pd.DataFrame(rows)


def disparate_impact(
    dense: pd.DataFrame,
    pruned: pd.DataFrame,
    groups: pd.DataFrame,
    *,
    group: str | Sequence[str] = "class",
    metric: str | Callable[..., Any] | Sequence[str | Callable[..., Any]] = "accuracy",
    bins: int = 15,
    bootstrap: int = 1000,
    permutations: int = 1000,
    confidence: float = 0.95,
    min_group_size: int = 30,
    seed: int = 0,
) -> pd.DataFrame:
    """Who pays for pruning: per-group Δ_g, excess gap ψ_g and disparity Ψ of a dense and a pruned
    population, with paired bootstrap intervals and permutation p-values (see the module docstring);
    and, on request, the between-group summaries fairlearn users know, dense against pruned.

    Parameters
    ----------
    dense, pruned : DataFrame
        Per-sample outputs of each population (a ``run`` column, one or more runs, every run covering
        the same ``sample_id``s in both): :func:`~pruneviz.study.populations.population_outputs`.
    groups : DataFrame
        ``sample_id`` and the group column(s) (e.g. :func:`sample_groups` of the dataset).
    group : str or sequence of str
        The group column, or several for their intersection (``("race", "sex")``: groups ``"a × b"``).
    metric : name, function or sequence of them
        Any metric of :func:`group_metrics` (names or functions ``metric(y_true, y_pred, y_prob) ->
        float``) and the summaries ``demographic_parity_difference`` / ``_ratio`` (of selection rates),
        ``equalized_odds_difference`` / ``_ratio`` (the worse of TPR and FPR) and
        ``equal_opportunity_difference`` (of TPRs), each over the groups that are not small (fairlearn's
        definitions; one-vs-rest per class and their macro mean for more than two classes).
    bins : int
        Confidence bins of ECE.
    bootstrap, permutations : int
        Paired bootstrap resamples (intervals) and group-label shuffles (p-values).
    confidence : float in (0, 1)
        Interval level; ``significant`` means a Holm-adjusted p-value <= ``1 − confidence``.
    min_group_size : int
        Groups with fewer samples are flagged ``small`` (kept, but left out of Ψ and the summaries).
    seed : int
        Seeds the resampling and the shuffles (independent streams): same seed, same frame.

    Returns
    -------
    Tidy frame with the columns ``attribute`` (the group column(s)), ``group``, ``metric``, ``class``
    (the positive class of a one-vs-rest rate, ``macro``, or empty), ``statistic``, ``value``,
    ``ci_low``, ``ci_high``, ``null_low``, ``null_high``, ``n``, ``small``, ``p_value``, ``p_adjusted``,
    ``significant``, ``note`` (why a value is undefined, e.g. no positives in a group for TPR):

    - per group, ``statistic`` ``dense``, ``pruned``, ``delta`` (Δ_g) and ``psi`` (ψ_g, with its
      permutation p-value, Holm-adjusted over the groups, and ``significant``);
    - for ``group="(all)"``: ``dense``, ``pruned``, ``delta`` (Δ) and ``disparity`` (Ψ over the groups
      that are not small, with its permutation p-value);
    - for a summary (``group="(all)"``): ``dense``, ``pruned`` (tested against parity under the null)
      and ``delta`` (dense − pruned: above 0, pruning narrowed the gap).

    ``ci_low``/``ci_high`` are percentile bootstrap intervals, except Ψ's and the summaries'
    differences: ``Ψ̂ ± h`` with ``h`` the larger distance from Ψ̂ to an end of its percentile
    interval, cut at 0, and starting at 0 when the permutation p-value is above ``1 − confidence``; it
    always holds Ψ̂ (the module docstring gives the reasons and its measured coverage).
    ``null_low``/``null_high`` are the central ``confidence`` interval of the permutation null on the
    tested rows: the values groups unrelated to the outputs produce. They, p-values and
    ``significant`` are missing (NaN / NA) on rows that test nothing. Ψ̂, a max − min of noisy
    estimates, is biased upward: whether a disparity is real is its p-value's call.

    Examples
    --------
    >>> import pandas as pd
    >>> ids = list(range(8))
    >>> dense = pd.DataFrame({"run": "d", "sample_id": ids, "label": 0, "prediction": 0})
    >>> pruned = dense.assign(run="p", prediction=[0, 0, 0, 0, 1, 1, 0, 0])
    >>> groups = pd.DataFrame({"sample_id": ids, "site": list("aaaabbbb")})
    >>> di = disparate_impact(dense, pruned, groups, group="site", min_group_size=1, bootstrap=50)
    >>> di[di.statistic == "delta"].set_index("group").value.to_dict()
    {'a': 0.0, 'b': 0.5, '(all)': 0.25}
    """
    where = "disparate_impact"
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
    _check_outputs(dense, "dense", where)
    _check_outputs(pruned, "pruned", where)
    ids = check_same_samples(dense, pruned, where=where, names=("dense", "pruned"))
    grp = _group_codes(groups, group_columns(group, where), ids, s["min_group_size"], where)
    names = s["metric"]
    terms, (dpop, ppop), classes = _prepare(
        [(dense, "dense"), (pruned, "pruned")], names, ids, s["bins"], where
    )
    metrics = [*dpop, *ppop]
    k = len(dpop)
    n = np.bincount(grp.codes, minlength=grp.size)
    big = n >= s["min_group_size"]
    boot_rng, perm_rng = (np.random.default_rng(c) for c in np.random.SeedSequence(s["seed"]).spawn(2))
    observed = _observed(metrics, terms, grp, where)
    profiles = _profiles(terms, metrics, grp.size)
    boot = _bootstrap(metrics, terms, grp, profiles, s["bootstrap"], boot_rng, where)
    null = _permutations(metrics, terms, grp, profiles, s["permutations"], perm_rng, where)

    shown = {metric_name(m) for m in names if callable(m) or m not in SUMMARY_METRICS}
    frames = [
        _impact_rows(
            dpop[i],
            ppop[i],
            (observed[i], observed[k + i]),
            (boot[i], boot[k + i]),
            (null[i], null[k + i]),
            grp,
            n,
            big,
            s["confidence"],
        )
        for i in range(k)
        if dpop[i].name in shown
    ]
    index = {(m.name, m.klass): i for i, m in enumerate(dpop)}
    one_vs_rest = [str(c) for c in classes]
    for name in (m for m in names if isinstance(m, str) and m in SUMMARY_METRICS):
        for klass, members in [(c, [c]) for c in one_vs_rest] + (
            [(MACRO, one_vs_rest)] if len(classes) > 1 else []
        ):
            rates = {}
            for r in _SUMMARY_RATES[name]:
                at = [index[(r, c)] for c in members]
                rates[r] = (
                    (np.stack([observed[i][0] for i in at]), np.stack([observed[k + i][0] for i in at])),
                    (np.stack([boot[i][0] for i in at]), np.stack([boot[k + i][0] for i in at])),
                    (np.stack([null[i] for i in at]), np.stack([null[k + i] for i in at])),
                )
            frames.append(_summary_rows(name, klass, rates, big, len(ids), s["confidence"]))
    out = pd.concat(frames, ignore_index=True)
    # NA (not False) where nothing was tested: a row without an adjusted p-value
    alpha = 1.0 - s["confidence"]
    p_adjusted = out["p_adjusted"].to_numpy(dtype=np.float64)
    tested = np.isfinite(p_adjusted)
    out["significant"] = pd.arrays.BooleanArray(np.where(tested, p_adjusted <= alpha, False), ~tested)
    out.insert(0, "attribute", grp.attribute)
    out["small"] = out["n"].to_numpy() < s["min_group_size"]
    return out[list(COLUMNS)]
