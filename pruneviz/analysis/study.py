"""Every analysis of a zoo, run once with its defaults and cached, so that every view opens at once.

:func:`analyse_zoo` walks the zoo dataset by dataset: robustness splits first (corruptions and
attacks are stored as per-sample outputs, which calibration, exemplars and subgroups then read), then
the population analyses per dense-vs-pruned comparison, the geometry of every pruned run against its
dense parent, and the per-run curvature, sharpness, landscape and spectrum. Each step reports its time;
a second call finds everything cached and takes seconds. Interrupted, it resumes where it stopped.

Each step is split into independent :class:`StudyItem` s (a run, a dense parent and its pruned child,
one comparison on one split, a few corruptions over a batch of runs), planned by :func:`study_items` once
the previous step is stored. :func:`analyse_item` computes one item in a read-only zoo
(:meth:`~pruneviz.zoo.store.Zoo.capture`) and returns what it would write, so that a sweep can hand the
items to its workers while the driver alone stores the results (:func:`apply_writes`). An item holds
only its own runs' data (one split of one comparison, the sampled inputs of one pair), so memory does
not grow with the number of runs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pruneviz._seed import torch_threads
from pruneviz._validation import check_choice, fail
from pruneviz.analysis import runs as R
from pruneviz.analysis.attribution import run_attributions
from pruneviz.analysis.exemplars import run_exemplar_summary, run_exemplars
from pruneviz.analysis.populations import Comparison, comparisons
from pruneviz.analysis.subgroups import run_subgroups
from pruneviz.exceptions import ZooError
from pruneviz.zoo.store import INDEX_FILE, Zoo, ZooWrites

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


@dataclass(frozen=True)
class StudyItem:
    """One independent piece of a step of :func:`analyse_zoo`, small enough to send to a worker.

    ``runs`` are what it covers, by ``part``: ``"run"`` one run (attacks, calibration and the per-run
    steps); ``"pair"`` a dense parent and its pruned child (geometry, attributions); ``"family"`` a dense
    parent and all its children (their aligned embedding); ``"corruption"`` the runs to evaluate on the
    ``corruptions`` at every severity of the settings; ``"comparison"`` the pruned runs of one comparison,
    compared with the ``dense`` runs of their dataset on ``split`` (exemplars; subgroups by ``group``).
    ``id`` names it uniquely within its step.
    """

    step: str
    id: str
    dataset: str
    runs: tuple[str, ...]
    settings: StudySettings
    part: str = "run"
    dense: tuple[str, ...] = ()
    split: str | None = None
    group: str | None = None
    corruptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemResult:
    """What :func:`analyse_item` returns: the item's ``step``, ``id`` and ``dataset``, how many
    ``analyses`` it ran or read and their ``rows``, its ``seconds``, and the zoo ``writes`` it recorded
    (new cache entries and outputs; empty when everything was stored already)."""

    step: str
    id: str
    dataset: str
    analyses: int
    rows: int
    seconds: float
    writes: ZooWrites = field(default_factory=ZooWrites)


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

    The steps run in :data:`STEPS` order, each item of a step (:func:`study_items`) in this process,
    writing to the zoo as it goes. Corruptions and attacks already stored are not planned again.

    >>> import tempfile
    >>> analyse_zoo(Zoo.create(tempfile.mkdtemp() + "/z"), progress=False).empty
    True
    """
    where = "analyse_zoo"
    chosen = _check_steps(steps, where)
    cfg = _check_settings(settings, where)
    runs = zoo.runs()
    report = []
    for dataset in [] if runs.empty else sorted(runs["dataset"].unique()):
        for step in chosen:
            start = time.perf_counter()
            counts = [_compute(zoo, item) for item in study_items(zoo, step, settings=cfg, dataset=dataset)]
            items, rows = sum(c[0] for c in counts), sum(c[1] for c in counts)
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


def _check_steps(steps: Sequence[str] | None, where: str) -> list[str]:
    """The chosen step names (default all) in :data:`STEPS` order; an unknown name is an error."""
    if steps is not None and (isinstance(steps, str) or not len(steps)):
        fail(
            "steps", where, f"a list of step names from {list(STEPS)}", steps, "pass e.g. steps=['spectrum']."
        )
    chosen = {check_choice(s, "steps", where, STEPS) for s in (steps or STEPS)}
    return [s for s in STEPS if s in chosen]


def _check_settings(settings: StudySettings | None, where: str) -> StudySettings:
    cfg = settings if settings is not None else StudySettings()
    if not isinstance(cfg, StudySettings):
        fail(
            "settings", where, "a StudySettings", type(cfg).__name__, "pass StudySettings.quick() or omit it."
        )
    return cfg


def study_items(
    zoo: Zoo, step: str, *, settings: StudySettings | None = None, dataset: str | None = None
) -> list[StudyItem]:
    """The independent items of one ``step`` over the runs of ``dataset`` (default: every dataset).

    Plan a step only once the steps before it are stored: corruption and attack items cover only the
    runs whose outputs lack those splits, and calibration reads every split stored.

    >>> import tempfile
    >>> study_items(Zoo.create(tempfile.mkdtemp() + "/z"), "spectrum")
    []
    """
    where = "study_items"
    check_choice(step, "step", where, STEPS)
    cfg = _check_settings(settings, where)
    runs = zoo.runs()
    if runs.empty:
        return []
    names = sorted(runs["dataset"].unique()) if dataset is None else [dataset]
    items: list[StudyItem] = []
    for name in names:
        mine = runs[runs["dataset"] == name]
        if not mine.empty:
            items.extend(_PLANS[step](zoo, mine, name, cfg))
    return items


def analyse_item(zoo_path: str | Path, item: StudyItem, *, threads: int | None = 1) -> ItemResult:
    """Compute one item of a study in the zoo at ``zoo_path``, opened read-only: nothing is written;
    the new cache entries and outputs come back in the result's ``writes``, for the one process that
    writes the zoo to store with :func:`apply_writes`. Uses ``threads`` torch threads (one, like every
    sweep task, so that every executor computes the same numbers; ``None`` leaves the setting).

    The zoo must be readable here: a worker of a Dask cluster needs it at the same path (a shared
    filesystem).

    >>> import tempfile
    >>> analyse_item(tempfile.mkdtemp() + "/none", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pruneviz.exceptions.ZooError: The zoo '...' cannot be read on ...
    """
    path = Path(zoo_path)
    if not (path / INDEX_FILE).is_file():
        raise ZooError(
            f"The zoo {str(path)!r} cannot be read on {socket.gethostname()} (no {INDEX_FILE} there), and "
            "the analyses of a sweep run where its tasks run. Fix: make the zoo folder visible at the same "
            f"path on every worker (a shared filesystem), or run the analyses with `pruneviz zoo analyse "
            f"{path}` on a machine that sees the zoo."
        )
    if not isinstance(item, StudyItem):
        fail("item", "analyse_item", "a StudyItem from study_items", type(item).__name__)
    zoo = Zoo(path)
    start = time.perf_counter()
    with torch_threads(threads), zoo.capture() as writes:
        analyses, rows = _compute(zoo, item)
    return ItemResult(item.step, item.id, item.dataset, analyses, rows, time.perf_counter() - start, writes)


def apply_writes(zoo: Zoo, writes: ZooWrites) -> int:
    """Store what :func:`analyse_item` recorded: new outputs first (only the splits the run does not
    have yet), then the cache entries (:meth:`~pruneviz.zoo.store.Zoo.store_entry`, which skips a key
    already stored). Applying the same writes twice stores nothing the second time. Returns how many
    outputs frames and entries were written.
    """
    written = 0
    for run, frames in writes.outputs.items():
        if not frames:
            continue
        frame = pd.concat(frames, ignore_index=True)
        have = zoo.splits_of(run)
        stored = set(zip(have["split"], have["subset"], strict=True))
        new = [(s, u) not in stored for s, u in zip(frame["split"], frame["subset"], strict=True)]
        if any(new):
            zoo.add_outputs(run, frame[new].reset_index(drop=True))
            written += 1
    for entry in writes.entries:
        written += zoo.store_entry(entry)
    return written


def _compute(zoo: Zoo, item: StudyItem) -> tuple[int, int]:
    """Run one item on ``zoo`` (writing, or capturing): (analyses run or read, rows of results)."""
    return _COMPUTE[item.step](zoo, item, item.settings)


# -- planning -----------------------------------------------------------------------------------------------
_ITEM_ROWS = 250_000  # new per-sample rows of corruption outputs in one item (about; at least one run)


def _pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(dense parent, pruned child) for every pruned run whose parent is in the frame."""
    dense = set(runs.loc[runs["kind"] == "dense", "run"])
    pruned = runs[(runs["kind"] != "dense") & runs["parent"].isin(dense)]
    return list(zip(pruned["parent"], pruned["run"], strict=True))


def _dense(runs: pd.DataFrame) -> tuple[str, ...]:
    return tuple(runs.loc[runs["kind"] == "dense", "run"])


def _test_splits(zoo: Zoo, run: str) -> set[str]:
    table = zoo.splits_of(run)
    return set(table.loc[table["subset"] == "test", "split"])


def _per_run_items(step: str) -> Callable[[Zoo, pd.DataFrame, str, StudySettings], list[StudyItem]]:
    def plan(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
        return [StudyItem(step, rid, dataset, (rid,), cfg) for rid in runs["run"]]

    return plan


def _plan_corruptions(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    """Items of about :data:`_ITEM_ROWS` new per-sample rows each: several corruptions over every run
    that lacks them, or, for large test sets, one corruption over a batch of runs."""
    from pruneviz.analysis.corruptions import corruption_names

    data = zoo.dataset(dataset)
    if data.info.modality != "image":  # corruptions are defined for images only
        return []
    severities = sorted(set(cfg.severities))
    rows = max(1, len(severities) * int((data.subset == "test").sum()))  # per run and corruption
    have = {rid: _test_splits(zoo, rid) for rid in runs["run"]}
    todo: dict[str, list[str]] = {}
    for name in corruption_names(R.default_suite(data.info.input_shape[0])):
        labels = {R.corruption_split(name, s) for s in severities}
        runs_todo = [rid for rid in runs["run"] if not labels <= have[rid]]
        if runs_todo:
            todo[name] = runs_todo
    items: list[StudyItem] = []
    batch: list[str] = []  # corruptions sharing one item: those with the same runs to do, while small
    for name, runs_todo in todo.items():
        if batch and (todo[batch[0]] != runs_todo or (len(batch) + 1) * len(runs_todo) * rows > _ITEM_ROWS):
            items.append(_corruption_item(dataset, tuple(batch), tuple(todo[batch[0]]), 0, cfg))
            batch = []
        if len(runs_todo) * rows > _ITEM_ROWS:  # one corruption, a batch of runs per item
            per_item = max(1, _ITEM_ROWS // rows)
            for part, first in enumerate(range(0, len(runs_todo), per_item)):
                chunk = tuple(runs_todo[first : first + per_item])
                items.append(_corruption_item(dataset, (name,), chunk, part, cfg))
        else:
            batch.append(name)
    if batch:
        items.append(_corruption_item(dataset, tuple(batch), tuple(todo[batch[0]]), 0, cfg))
    return items


def _corruption_item(
    dataset: str, names: tuple[str, ...], runs: tuple[str, ...], part: int, cfg: StudySettings
) -> StudyItem:
    label = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
    return StudyItem(
        "corruptions", f"{dataset}/{label}/{part}", dataset, runs, cfg, part="corruption", corruptions=names
    )


def _plan_attacks(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    labels = {a.split for a in R.DEFAULT_ATTACKS}
    return [
        StudyItem("attacks", rid, dataset, (rid,), cfg)
        for rid in runs["run"]
        if not labels <= _test_splits(zoo, rid)
    ]


def _comparison_id(comp: Comparison) -> str:
    return f"{comp.arch}/{comp.method}/{comp.structure}/{comp.sparsity:g}/{comp.settings}"


def _comparisons(zoo: Zoo, runs: pd.DataFrame) -> tuple[tuple[str, ...], list[Comparison]]:
    dense = _dense(runs)
    if not dense or not _pairs(runs):
        return dense, []
    return dense, comparisons(zoo, dense=list(dense), where="analyse_zoo")


def _plan_exemplars(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    dense, comps = _comparisons(zoo, runs)
    return [
        StudyItem(
            "exemplars",
            f"{dataset}/{split}/{_comparison_id(comp)}",
            dataset,
            comp.pruned,
            cfg,
            part="comparison",
            dense=dense,
            split=split,
        )
        for split in cfg.population_splits
        for comp in comps
    ]


def _plan_subgroups(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    dense, comps = _comparisons(zoo, runs)
    if not comps:
        return []
    groups = ["class", *zoo.dataset(dataset).groups.columns.drop("class", errors="ignore")]
    return [
        StudyItem(
            "subgroups",
            f"{dataset}/{group}/{split}/{_comparison_id(comp)}",
            dataset,
            comp.pruned,
            cfg,
            part="comparison",
            dense=dense,
            split=split,
            group=group,
        )
        for group in groups
        for split in cfg.population_splits
        for comp in comps
    ]


def _plan_geometry(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    items = [
        StudyItem("geometry", child, dataset, (parent, child), cfg, part="pair")
        for parent, child in _pairs(runs)
    ]
    for parent in _dense(runs):
        children = tuple(runs.loc[runs["parent"] == parent, "run"])
        items.append(
            StudyItem("geometry", f"{parent}/embedding", dataset, (parent, *children), cfg, part="family")
        )
    return items


def _plan_attributions(zoo: Zoo, runs: pd.DataFrame, dataset: str, cfg: StudySettings) -> list[StudyItem]:
    return [
        StudyItem("attributions", child, dataset, (parent, child), cfg, part="pair")
        for parent, child in _pairs(runs)
    ]


# -- computing one item -------------------------------------------------------------------------------------
def _count(frames: list[pd.DataFrame]) -> tuple[int, int]:
    return len(frames), sum(len(f) for f in frames)


def _corruptions(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    table = R.run_corruptions(
        zoo, runs=list(item.runs), corruptions=list(item.corruptions), severities=cfg.severities
    )
    return len(item.runs) * len(item.corruptions), len(table)


def _attacks(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count([R.run_attacks(zoo, runs=list(item.runs))])


def _calibration(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count([R.run_calibration(zoo, runs=list(item.runs))])


def _exemplars(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    kw = {"dense": list(item.dense), "pruned": list(item.runs), "split": item.split}
    return _count([run_exemplars(zoo, **kw), run_exemplar_summary(zoo, **kw)])


def _subgroups(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    frame = run_subgroups(
        zoo,
        group=item.group,
        dense=list(item.dense),
        pruned=list(item.runs),
        split=item.split,
        bootstrap=cfg.bootstrap,
        permutations=cfg.permutations,
    )
    return _count([frame])


def _geometry(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    if item.part == "family":
        return _count([R.run_embedding(zoo, list(item.runs), samples=cfg.embedding_samples)])
    parent, child = item.runs
    return _count(
        [
            R.run_cka(zoo, parent, child, samples=cfg.samples),
            R.run_knn_overlap(zoo, parent, child, samples=cfg.embedding_samples),
            R.run_logit_geometry_change(zoo, parent, child),
        ]
    )


def _attributions(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    parent, child = item.runs
    return _count([run_attributions(zoo, parent, child, samples=cfg.attribution_samples)])


def _spectrum(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count([R.run_spectrum(zoo, r) for r in item.runs])


def _sharpness(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count([R.run_sharpness(zoo, r, samples=cfg.samples) for r in item.runs])


def _curvature(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count(
        [
            R.run_curvature(zoo, r, k=cfg.curvature_k, trace_hvps=cfg.trace_hvps, samples=cfg.samples)
            for r in item.runs
        ]
    )


def _landscape(zoo: Zoo, item: StudyItem, cfg: StudySettings) -> tuple[int, int]:
    return _count(
        [R.run_landscape(zoo, r, dims=1, steps=cfg.landscape_steps, samples=cfg.samples) for r in item.runs]
    )


_Plan = Callable[[Zoo, pd.DataFrame, str, StudySettings], list[StudyItem]]
_PLANS: dict[str, _Plan] = {
    "corruptions": _plan_corruptions,
    "attacks": _plan_attacks,
    "calibration": _per_run_items("calibration"),
    "exemplars": _plan_exemplars,
    "subgroups": _plan_subgroups,
    "geometry": _plan_geometry,
    "attributions": _plan_attributions,
    "spectrum": _per_run_items("spectrum"),
    "sharpness": _per_run_items("sharpness"),
    "curvature": _per_run_items("curvature"),
    "landscape": _per_run_items("landscape"),
}
_COMPUTE: dict[str, Callable[[Zoo, StudyItem, StudySettings], tuple[int, int]]] = {
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
