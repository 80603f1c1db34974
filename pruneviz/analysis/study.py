"""Every analysis of a zoo, run once with its defaults and cached, so that every view opens at once.

:func:`analyse_zoo` walks the zoo dataset by dataset: robustness splits first (corruptions and
attacks are stored as per-sample outputs, which calibration, exemplars and subgroups then read), then
the population analyses per dense-vs-pruned comparison, the geometry of every pruned run against its
dense parent, and the per-run curvature, sharpness, landscape and spectrum. Each step reports its time;
a second call finds everything cached and takes seconds. Interrupted, it resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from pruneviz._validation import check_choice, fail
from pruneviz.analysis import runs as R
from pruneviz.analysis.attribution import run_attributions
from pruneviz.analysis.exemplars import run_exemplar_summary, run_exemplars
from pruneviz.analysis.subgroups import run_subgroups
from pruneviz.zoo.store import Zoo

STEPS = (
    "corruptions",
    "attacks",
    "calibration",
    "exemplars",
    "subgroups",
    "geometry",
    "attributions",
    "spectrum",
    "sharpness",
    "curvature",
    "landscape",
)


@dataclass(frozen=True)
class StudySettings:
    """How much work each step does. ``quick()`` gives the small settings used by tests and demos.

    ``population_splits`` are the evaluation splits on which exemplars and subgroup impact are computed
    (e.g. add ``"fog@3"`` or an attack's split label once those are stored)."""

    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    samples: int = 512
    embedding_samples: int = 2000
    attribution_samples: int = 32
    curvature_k: int = 5
    trace_hvps: int = 99
    landscape_steps: int = 21
    bootstrap: int = 1000
    permutations: int = 1000
    population_splits: tuple[str, ...] = ("clean",)

    @classmethod
    def quick(cls) -> StudySettings:
        return cls(
            severities=(1, 3, 5),
            samples=128,
            embedding_samples=300,
            attribution_samples=8,
            curvature_k=2,
            trace_hvps=12,
            landscape_steps=5,
            bootstrap=200,
            permutations=200,
        )


def analyse_zoo(
    zoo: Zoo,
    *,
    steps: Sequence[str] | None = None,
    settings: StudySettings | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the analyses of ``steps`` (default all of :data:`STEPS`) on every run and comparison of
    ``zoo``, caching every result in it. Returns one row per step and dataset: ``dataset``, ``step``,
    ``items`` (analyses run or read), ``rows`` (rows of results) and ``seconds``.

    >>> import tempfile
    >>> analyse_zoo(Zoo.create(tempfile.mkdtemp() + "/z"), progress=False).empty
    True
    """
    where = "analyse_zoo"
    if steps is not None and (isinstance(steps, str) or not len(steps)):
        fail(
            "steps", where, f"a list of step names from {list(STEPS)}", steps, "pass e.g. steps=['spectrum']."
        )
    chosen = [check_choice(s, "steps", where, STEPS) for s in (steps or STEPS)]
    cfg = settings if settings is not None else StudySettings()
    if not isinstance(cfg, StudySettings):
        fail(
            "settings", where, "a StudySettings", type(cfg).__name__, "pass StudySettings.quick() or omit it."
        )
    runs = zoo.runs()
    report = []
    for dataset in [] if runs.empty else sorted(runs["dataset"].unique()):
        mine = runs[runs["dataset"] == dataset]
        for step in STEPS:
            if step not in chosen:
                continue
            start = time.perf_counter()
            items, rows = _STEPS[step](zoo, mine, cfg)
            seconds = time.perf_counter() - start
            report.append(
                {"dataset": dataset, "step": step, "items": items, "rows": rows, "seconds": seconds}
            )
            if progress:
                print(
                    f"  {dataset}: {step:<13} {items:>4} analyses, {rows:>7} rows, {seconds:6.1f} s",
                    flush=True,
                )
    return pd.DataFrame(report, columns=["dataset", "step", "items", "rows", "seconds"])


def _pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(dense parent, pruned child) for every pruned run whose parent is in the frame."""
    dense = set(runs.loc[runs["kind"] == "dense", "run"])
    pruned = runs[(runs["kind"] != "dense") & runs["parent"].isin(dense)]
    return list(zip(pruned["parent"], pruned["run"], strict=True))


def _count(frames: list[pd.DataFrame]) -> tuple[int, int]:
    return len(frames), sum(len(f) for f in frames)


def _corruptions(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    ids = list(runs["run"])
    image = zoo.dataset(runs["dataset"].iloc[0]).info.modality == "image"
    if not image:  # corruptions are defined for images only
        return 0, 0
    table = R.run_corruption_errors(zoo, runs=ids, severities=cfg.severities)
    return len(ids), len(table)


def _attacks(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    table = R.run_attacks(zoo, runs=list(runs["run"]))
    return len(runs), len(table)


def _calibration(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    table = R.run_calibration(zoo, runs=list(runs["run"]))
    return len(runs), len(table)


def _exemplars(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    dense = list(runs.loc[runs["kind"] == "dense", "run"])
    if not dense or not _pairs(runs):
        return 0, 0
    frames = []
    for split in cfg.population_splits:
        frames.append(run_exemplars(zoo, dense=dense, split=split))
        frames.append(run_exemplar_summary(zoo, dense=dense, split=split))
    return _count(frames)


def _subgroups(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    dense = list(runs.loc[runs["kind"] == "dense", "run"])
    if not dense or not _pairs(runs):
        return 0, 0
    groups = ["class", *zoo.dataset(runs["dataset"].iloc[0]).groups.columns.drop("class", errors="ignore")]
    frames = [
        run_subgroups(
            zoo, group=g, dense=dense, split=split, bootstrap=cfg.bootstrap, permutations=cfg.permutations
        )
        for g in groups
        for split in cfg.population_splits
    ]
    return _count(frames)


def _geometry(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    frames = []
    for parent, child in _pairs(runs):
        frames.append(R.run_cka(zoo, parent, child, samples=cfg.samples))
        frames.append(R.run_knn_overlap(zoo, parent, child, samples=cfg.embedding_samples))
        frames.append(R.run_logit_geometry_change(zoo, parent, child))
    for parent in runs.loc[runs["kind"] == "dense", "run"]:
        children = list(runs.loc[runs["parent"] == parent, "run"])
        frames.append(R.run_embedding(zoo, [parent, *children], samples=cfg.embedding_samples))
    return _count(frames)


def _attributions(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    frames = [
        run_attributions(zoo, parent, child, samples=cfg.attribution_samples)
        for parent, child in _pairs(runs)
    ]
    return _count(frames)


def _per_run(fn: Callable[[str], pd.DataFrame], runs: pd.DataFrame) -> tuple[int, int]:
    return _count([fn(rid) for rid in runs["run"]])


def _spectrum(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    return _per_run(lambda r: R.run_spectrum(zoo, r), runs)


def _sharpness(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    return _per_run(lambda r: R.run_sharpness(zoo, r, samples=cfg.samples), runs)


def _curvature(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    return _per_run(
        lambda r: R.run_curvature(zoo, r, k=cfg.curvature_k, trace_hvps=cfg.trace_hvps, samples=cfg.samples),
        runs,
    )


def _landscape(zoo: Zoo, runs: pd.DataFrame, cfg: StudySettings) -> tuple[int, int]:
    return _per_run(
        lambda r: R.run_landscape(zoo, r, dims=1, steps=cfg.landscape_steps, samples=cfg.samples), runs
    )


_STEPS: dict[str, Callable[[Zoo, pd.DataFrame, StudySettings], tuple[int, int]]] = {
    "corruptions": _corruptions,
    "attacks": _attacks,
    "calibration": _calibration,
    "exemplars": _exemplars,
    "subgroups": _subgroups,
    "geometry": _geometry,
    "attributions": _attributions,
    "spectrum": _spectrum,
    "sharpness": _sharpness,
    "curvature": _curvature,
    "landscape": _landscape,
}
