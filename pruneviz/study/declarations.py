"""The declarations of pruneviz's own analyses in the study registry (:mod:`pruneviz.study.registry`).

Each entry is the one place that says how a study computes an analysis (scope, full and quick settings)
and where it is shown. Views with their own layout (:mod:`pruneviz.views`) name these entries; an
entry with a :class:`~pruneviz.study.registry.Show` is drawn by the generic figure of its tab.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pruneviz import _vocabulary as V
from pruneviz.study import runs as R
from pruneviz.study.attribution import run_attributions, run_exemplar_maps
from pruneviz.study.exemplars import run_exemplar_summary, run_exemplars
from pruneviz.study.registry import Analysis, Setting, StudySettings, Target, register
from pruneviz.study.subgroups import AUDIT_METRICS, run_subgroups

RUN_KEYS = V.RUN_KEYS
COMPARISON = V.COMPARISON_KEYS[:6]  # without the population sizes
PAIR_KEYS = V.PAIR_KEYS

# -- planners of the robustness splits: they store per-sample outputs, so they plan only what is missing
_ITEM_ROWS = 250_000  # new per-sample rows of corruption outputs in one item (about; at least one run)


def _test_splits(zoo: Any, run: str) -> set[str]:
    table = zoo.splits_of(run)
    return set(table.loc[table["subset"] == "test", "split"])


def plan_corruptions(zoo: Any, runs: pd.DataFrame, dataset: str, settings: StudySettings) -> list[Target]:
    """Targets of about :data:`_ITEM_ROWS` new per-sample rows each. Runs that lack the same corruptions
    are batched, each target covering all of them for as many runs as fit: an item rewrites each of its
    runs' outputs once and makes each corrupted dataset once (1-2 s for the whole suite on a sample
    budget), so a study of many runs is not rewritten once per corruption. Where one run's corruptions
    alone are too many rows (a large test set), a target is one corruption over a batch of runs."""
    from pruneviz.analysis.corruptions import corruption_names

    data = zoo.dataset(dataset)
    if data.info.modality != "image":  # corruptions are defined for images only
        return []
    severities = sorted(set(settings.value(CORRUPTIONS, "severities")))
    samples = settings.value(CORRUPTIONS, "samples")
    budget = {
        rid: R._robustness_samples(zoo, rid, "test", samples, R._CORRUPTION_EVALUATIONS, "plan_corruptions")
        for rid in runs["run"]
    }
    test = int((data.subset == "test").sum())
    # per run and corruption
    rows = max(1, len(severities) * max((test if n is None else n) for n in budget.values()))
    have = {rid: _test_splits(zoo, rid) for rid in runs["run"]}
    names = corruption_names(R.default_suite(data.info.input_shape[0]))
    lacking: dict[tuple[str, ...], list[str]] = {}  # the corruptions a run lacks -> those runs
    for rid in runs["run"]:
        missing = tuple(
            n
            for n in names
            if not {R.corruption_split(n, s, samples=budget[rid]) for s in severities} <= have[rid]
        )
        if missing:
            lacking.setdefault(missing, []).append(rid)
    targets: list[Target] = []

    def batches(rids: list[str], per_item: int, corruptions: list[str]) -> None:
        for first in range(0, len(rids), per_item):
            chunk = tuple(rids[first : first + per_item])
            targets.append(Target(chunk, extra={"corruptions": corruptions}))

    for missing, rids in lacking.items():
        if len(missing) * rows <= _ITEM_ROWS:  # every corruption a run lacks, for a batch of runs
            batches(rids, _ITEM_ROWS // (len(missing) * rows), list(missing))
        else:  # one corruption, a batch of runs per target
            for name in missing:
                batches(rids, max(1, _ITEM_ROWS // rows), [name])
    return targets


def plan_attacks(zoo: Any, runs: pd.DataFrame, dataset: str, settings: StudySettings) -> list[Target]:
    """One target per run that lacks an attack split."""
    attacks = R.default_attacks(zoo.dataset(dataset).info.modality)
    samples = settings.value(ATTACKS, "samples")
    targets = []
    for rid in runs["run"]:
        budget = R._robustness_samples(zoo, rid, "test", samples, R._ATTACK_EVALUATIONS, "plan_attacks")
        labels = {a.split if budget is None else f"{a.split}-n{budget}" for a in attacks}
        if not labels <= _test_splits(zoo, rid):
            targets.append(Target((rid,)))
    return targets


def _calibration(zoo: Any, run: str, **params: Any) -> pd.DataFrame:
    return R.run_calibration(zoo, runs=[run], **params)


def _sample_budget(full: int | str, quick: int, doc: str = "samples of the subset used") -> Setting:
    return Setting(full, quick, doc)


_ROBUSTNESS_SAMPLES = "test samples per split ('auto': a budget from the model's cost, all for small ones)"

CORRUPTIONS = register(
    Analysis(
        "corruptions",
        step="corruptions",
        scope="runs",
        function=R.run_corruptions,
        settings={
            "severities": Setting((1, 2, 3, 4, 5), (1, 3, 5), "corruption severities evaluated"),
            "samples": Setting("auto", "auto", _ROBUSTNESS_SAMPLES),
        },
        keys=(*RUN_KEYS, "corruption", "severity", "split", "metric"),
        doc="Accuracy and error under MNIST-C / CIFAR-10-C corruptions; outputs stored as splits.",
        modalities=("image",),
        limits="The corruptions (MNIST-C, CIFAR-10-C) are defined on pixels.",
        planner=plan_corruptions,
    )
)
ATTACKS = register(
    Analysis(
        "attacks",
        step="attacks",
        scope="runs",
        function=R.run_attacks,
        settings={"samples": Setting("auto", "auto", _ROBUSTNESS_SAMPLES)},
        keys=(*RUN_KEYS, "split", "attack", "metric"),
        doc="Robust accuracy under FGSM and PGD; adversarial outputs stored as splits.",
        modalities=("image", "sequence", "tabular"),
        limits="FGSM and PGD perturb continuous inputs; token ids are discrete.",
        planner=plan_attacks,
    )
)
register(
    Analysis(
        "calibration",
        step="calibration",
        scope="run",
        function=_calibration,
        keys=(*RUN_KEYS, "split", "metric"),
        doc="Accuracy, confidence, ECE, NLL and Brier score on every stored split.",
    )
)
register(
    Analysis(
        "exemplars",
        step="exemplars",
        scope="comparison",
        function=run_exemplars,
        settings={"splits": Setting(("clean",), doc="evaluation splits compared", plan=True)},
        keys=(*COMPARISON, "sample_id"),
        doc="Compression-identified exemplar scores (modal and taxicab) per comparison.",
        over=("split",),
    )
)
register(
    Analysis(
        "exemplar_summary",
        step="exemplars",
        scope="comparison",
        function=run_exemplar_summary,
        settings={"splits": Setting(("clean",), doc="evaluation splits compared", plan=True)},
        keys=(
            "dataset",
            "arch",
            "method",
            "structure",
            "sparsity",
            "settings",
            "attribute",
            "group",
            "metric",
        ),
        doc="Exemplar counts and accuracy with and without them, by group.",
        over=("split",),
    )
)
register(
    Analysis(
        "subgroups",
        step="subgroups",
        scope="comparison",
        function=run_subgroups,
        settings={
            "splits": Setting(("clean",), doc="evaluation splits compared", plan=True),
            "metric": Setting(
                AUDIT_METRICS,
                doc="metrics compared per group, and between-group summaries (names of disparate_impact)",
            ),
            "intersections": Setting(
                None,
                doc="intersections of group columns audited besides each column: lists of column names; "
                "None for every pair of the dataset's declared group columns (the class aside)",
                plan=True,
            ),
            "bootstrap": Setting(1000, 200, "paired bootstrap resamples"),
            "permutations": Setting(1000, 200, "group-label shuffles of the permutation null"),
        },
        keys=(
            "dataset",
            "arch",
            "method",
            "structure",
            "sparsity",
            "settings",
            "group",
            "statistic",
            "metric",
            "class",
        ),
        doc="Per-group Δ, ψ and Ψ of accuracy and error-type rates with bootstrap intervals and permutation "
        "p-values; demographic-parity and equalized-odds gaps, dense against pruned.",
        over=("split", "group"),
    )
)
register(
    Analysis(
        "cka",
        step="geometry",
        scope="pair",
        function=R.run_cka,
        settings={"samples": _sample_budget(512, 128)},
        keys=(*PAIR_KEYS, "layer_a", "layer_b"),
        doc="Linear CKA between every layer of a dense parent and its pruned child.",
    )
)
register(
    Analysis(
        "knn_overlap",
        step="geometry",
        scope="pair",
        function=R.run_knn_overlap,
        settings={"samples": _sample_budget(2000, 300)},
        keys=(*PAIR_KEYS, "sample_id"),
        doc="Per sample, the share of nearest neighbours the parent's and the child's features agree on.",
    )
)
register(
    Analysis(
        "logit_change",
        step="geometry",
        scope="pair",
        function=R.run_logit_geometry_change,
        keys=(*PAIR_KEYS, "sample_id"),
        doc="How each sample's logit geometry moves from the dense parent to the pruned child.",
    )
)
register(
    Analysis(
        "embedding",
        step="geometry",
        scope="family",
        function=R.run_embedding,
        settings={"samples": _sample_budget(2000, 300)},
        keys=("run", "method", "structure", "sparsity", "sample_id"),
        doc="A dense parent's and all its children's features in one aligned 2-D space (PCA + Procrustes).",
    )
)
register(
    Analysis(
        "attributions",
        step="attributions",
        scope="pair",
        function=run_attributions,
        settings={"samples": _sample_budget(32, 8)},
        keys=("run_a", "run_b", "method", "structure", "sparsity", "sample_id", "attribution"),
        doc="Agreement of the parent's and the child's attributions (IG, saliency, GradientSHAP).",
        modalities=("image", "tabular"),
        limits="Input attributions are maps over continuous inputs, not over token ids.",
    )
)
register(
    Analysis(
        "exemplar_maps",
        step="attributions",
        scope="pair",
        function=run_exemplar_maps,
        settings={"top": Setting(8, doc="exemplars of the child's comparison shown, by rank")},
        keys=("model", "sample_id", "channel", "row", "col"),
        doc="Integrated-gradients maps of the top exemplars of the child's comparison, parent and child.",
        modalities=("image", "tabular"),
        limits="Input attributions are maps over continuous inputs, not over token ids.",
    )
)
register(
    Analysis(
        "spectrum",
        step="spectrum",
        scope="run",
        function=R.run_spectrum,
        keys=(*RUN_KEYS, "layer", "metric"),
        doc="Per-layer singular values, ranks, condition numbers, α and norms.",
    )
)
register(
    Analysis(
        "sharpness",
        step="sharpness",
        scope="run",
        function=R.run_sharpness,
        settings={"samples": _sample_budget(512, 128, "training samples used")},
        keys=(*RUN_KEYS, "metric"),
        doc="SAM, ASAM and average adaptive sharpness.",
    )
)
register(
    Analysis(
        "curvature",
        step="curvature",
        scope="run",
        function=R.run_curvature,
        settings={
            "k": Setting(5, 2, "top Hessian eigenvalues"),
            "probes": Setting(10, 4, "Hessian-vector products of the trace beyond the Lanczos basis"),
            "samples": _sample_budget("auto", 128, "training samples used ('auto': from the model's cost)"),
        },
        keys=(*RUN_KEYS, "metric"),
        doc="Top Hessian eigenvalues with residuals and the trace, each with its sampling error.",
    )
)
register(
    Analysis(
        "landscape",
        step="landscape",
        scope="run",
        function=R.run_landscape,
        settings={
            "dims": Setting(1, doc="1-D line (2 for a surface)"),
            "steps": Setting(21, 5, "grid points per direction"),
            "samples": _sample_budget("auto", 128, "samples used ('auto': from the model's cost)"),
        },
        keys=(*RUN_KEYS, "alpha"),
        doc="The loss along a filter-normalised random direction, masks respected.",
    )
)
