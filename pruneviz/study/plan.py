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

import itertools
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._log import progress as progress_line
from pruneviz._seed import torch_threads
from pruneviz._validation import check_choice, fail
from pruneviz.exceptions import ZooError
from pruneviz.study import declarations as _declarations  # noqa: F401  (declares pruneviz's own analyses)
from pruneviz.study.populations import comparisons
from pruneviz.study.registry import STEPS, Analysis, StudySettings, Target, analyses, analysis
from pruneviz.zoo.store import INDEX_FILE, Zoo, ZooWrites

#: the key of the zoo's meta table under which a study records the settings it used
SETTINGS_KEY = "study_settings"


@dataclass(frozen=True)
class StudyItem:
    """One independent piece of a step of :func:`analyse_zoo`, small enough to send to a worker: the
    registered ``analyses`` of one ``step`` that share a :class:`~pruneviz.study.registry.Target`
    (a run, a pair, a family, a comparison on one split and group, a batch of runs), computed with
    ``settings``. ``id`` names it uniquely within its step."""

    step: str
    id: str
    dataset: str
    analyses: tuple[str, ...]
    target: Target
    settings: StudySettings = field(default_factory=StudySettings)

    @property
    def runs(self) -> tuple[str, ...]:
        return self.target.runs

    @property
    def dense(self) -> tuple[str, ...]:
        return self.target.dense


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
    """Run the registered analyses of ``steps`` (default all of :data:`STEPS`) on every run and
    comparison of ``zoo``, caching every result in it. Returns one row per step and dataset:
    ``dataset``, ``step``, ``items`` (analyses run or read), ``rows`` (rows of results) and ``seconds``.

    The steps run in :data:`STEPS` order, each item of a step (:func:`study_items`) in this process,
    writing to the zoo as it goes. Corruptions and attacks already stored are not planned again. The
    zoo records ``settings`` (:func:`record_settings`), so that its views ask for these results.

    >>> import tempfile
    >>> analyse_zoo(Zoo.create(tempfile.mkdtemp() + "/z"), progress=False).empty
    True
    """
    where = "analyse_zoo"
    chosen = _check_steps(steps, where)
    cfg = _check_settings(settings, where)
    runs = zoo.runs()
    report = []
    if not runs.empty:
        record_settings(zoo, cfg)
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
                progress_line(
                    f"  {dataset}: {step:<13} {items:>4} analyses, {rows:>7} rows, {seconds:6.1f} s"
                )
    return pd.DataFrame(report, columns=["dataset", "step", "items", "rows", "seconds"])


def record_settings(zoo: Zoo, settings: StudySettings) -> None:
    """Record in ``zoo`` the settings its study uses; its views read them (:func:`settings_of`)."""
    if zoo.meta(SETTINGS_KEY) != settings.to_json():
        zoo.set_meta(SETTINGS_KEY, settings.to_json())


def settings_of(zoo: Zoo) -> StudySettings:
    """The settings ``zoo`` was last analysed with (full settings if it never was)."""
    text = zoo.meta(SETTINGS_KEY)
    if text is None:
        return StudySettings()
    try:
        return StudySettings.from_json(text)
    except Exception as exc:
        raise ZooError(
            f"The study settings recorded in the zoo {str(zoo.path)!r} cannot be read ({exc}). Fix: "
            f"analyse the zoo again (`pruneviz zoo analyse {zoo.path}`), which records them anew."
        ) from exc


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
    """The independent items of one ``step`` over the runs of ``dataset`` (default: every dataset): the
    registered analyses of the step that apply to the dataset's modality, grouped by shared target.

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
        if mine.empty:
            continue
        modality = zoo.dataset(name).info.modality
        by_target: dict[tuple[str, Target], list[str]] = {}
        for entry in analyses(step=step):
            if modality not in entry.modalities:
                continue
            for ident, target in targets(zoo, entry, mine, name, cfg):
                by_target.setdefault((ident, target), []).append(entry.name)
        items += [
            StudyItem(step, ident, name, tuple(found), target, cfg)
            for (ident, target), found in by_target.items()
        ]
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
        analyses_run, rows = _compute(zoo, item)
    return ItemResult(
        item.step, item.id, item.dataset, analyses_run, rows, time.perf_counter() - start, writes
    )


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
    count = rows = 0
    for name in item.analyses:
        entry = analysis(name)
        frame = entry.call(zoo, item.target, item.settings.params(entry))
        count += _weight(entry, item.target)
        rows += len(frame)
    return count, rows


def _weight(entry: Analysis, target: Target) -> int:
    """How many analyses one call stands for: a batch of corruptions counts each run × corruption."""
    if entry.scope == "runs" and "corruptions" in target.extra:
        return len(target.runs) * len(target.extra["corruptions"])
    return 1


# -- planning -----------------------------------------------------------------------------------------------
def pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(dense parent, pruned child) for every pruned run whose parent is in the frame."""
    dense = set(runs.loc[runs["kind"] == "dense", "run"])
    pruned = runs[(runs["kind"] != "dense") & runs["parent"].isin(dense)]
    return list(zip(pruned["parent"], pruned["run"], strict=True))


def family(runs: pd.DataFrame, parent: str) -> tuple[str, ...]:
    """A dense parent and all its children, the parent first (the family an embedding aligns)."""
    return (parent, *runs.loc[runs["parent"] == parent, "run"])


def dense_runs(runs: pd.DataFrame) -> tuple[str, ...]:
    return tuple(runs.loc[runs["kind"] == "dense", "run"])


def group_columns(data: object) -> list[str]:
    """The group columns a subgroup analysis covers: ``class`` first, then the dataset's others."""
    return ["class", *data.groups.columns.drop("class", errors="ignore")]  # type: ignore[attr-defined]


MAX_PAIRED_COLUMNS = 4  # default intersections pair the first four declared group columns (six pairs)
MIN_CELL = 30  # an intersection is audited when one of its cells in the test part has this many samples


def audited_groups(
    data: object, intersections: Sequence[Sequence[str]] | None
) -> list[str | tuple[str, ...]]:
    """The groups a subgroup analysis covers: each group column (:func:`group_columns`), then the
    ``intersections`` of columns (``None``: every pair of the first four declared columns, the class
    aside), each kept only when one of its cells holds ``MIN_CELL`` test samples or more (an
    intersection of rare cells has nothing to compare)."""
    columns = group_columns(data)
    declared = [c for c in columns if c != "class"][:MAX_PAIRED_COLUMNS]
    crossed = (
        list(itertools.combinations(declared, 2))
        if intersections is None
        else [tuple(i) for i in intersections]
    )
    groups = data.groups  # type: ignore[attr-defined]
    test = groups[np.asarray(data.subset) == "test"] if data.subset is not None else groups  # type: ignore[attr-defined]
    out: list[str | tuple[str, ...]] = list(columns)
    for cross in crossed:
        unknown = [c for c in cross if c not in groups.columns]
        if unknown or len(cross) < 2:
            fail(
                "intersections",
                "the subgroups study settings",
                f"lists of two or more of the dataset's group columns ({columns})",
                list(cross),
                "name declared group columns, e.g. [['sex', 'age_group']].",
            )
        if test.groupby(list(cross), observed=True).size().max() >= MIN_CELL:
            out.append(tuple(cross))
    return out


def comparison_id(comp: object) -> str:
    c = comp
    return f"{c.arch}/{c.method}/{c.structure}/{c.sparsity:g}/{c.settings}"  # type: ignore[attr-defined]


def targets(
    zoo: Zoo, entry: Analysis, runs: pd.DataFrame, dataset: str, settings: StudySettings
) -> list[tuple[str, Target]]:
    """The (id, target) pairs a study computes ``entry`` over, for the runs of one dataset."""
    if entry.planner is not None:
        planned = entry.planner(zoo, runs, dataset, settings)
        return [(_target_id(dataset, t), t) for t in planned]
    if entry.scope in ("run", "runs"):
        return [(rid, Target((rid,))) for rid in runs["run"]]
    if entry.scope == "pair":
        return [(child, Target((parent, child))) for parent, child in pairs(runs)]
    if entry.scope == "family":
        return [(f"{parent}/family", Target(family(runs, parent))) for parent in dense_runs(runs)]
    dense = dense_runs(runs)
    if not dense or not pairs(runs):
        return []
    comps = comparisons(zoo, dense=list(dense), where="analyse_zoo")
    splits = settings.value(entry, "splits") if "splits" in entry.settings else ("clean",)
    if "group" in entry.over:
        crossed = settings.value(entry, "intersections") if "intersections" in entry.settings else []
        groups: list[Any] = audited_groups(zoo.dataset(dataset), crossed)
    else:
        groups = [None]
    out = []
    for group in groups:
        for split in splits:
            for comp in comps:
                label = " × ".join(group) if isinstance(group, tuple) else group
                parts = [dataset, *([label] if label else []), split, comparison_id(comp)]
                out.append(("/".join(parts), Target(comp.pruned, dense=comp.dense, split=split, group=group)))
    return out


def _target_id(dataset: str, target: Target) -> str:
    extra = target.extra.get("corruptions")
    if extra:
        label = extra[0] if len(extra) == 1 else f"{extra[0]}..{extra[-1]}"
        return f"{dataset}/{label}/{target.runs[0]}"
    return "/".join(target.runs)
