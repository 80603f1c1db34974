"""Populations of runs in a zoo, as the population analyses (exemplars, subgroups) compare them.

A *comparison* is one population of pruned runs against the population of dense runs they came from.
The pruned runs of a comparison share a dataset, an architecture, a method, a structure, a target
sparsity and the pruning settings (allocation, fine-tuning, calibration, prune seed: the run's
``schedule`` less what differs from run to run); the dense runs are their parents. :func:`comparisons`
lists them; :func:`population_outputs` and :func:`population_reader` read their per-sample outputs
(one split and subset, not the whole outputs file); :func:`check_same_samples` refuses two populations
that were not evaluated on the same samples.

A comparison's ``sparsity`` is the *target* sparsity of its pruned runs (a population-level key); the
per-run frames of :mod:`pruneviz.study.runs` carry each run's achieved ``sparsity``, and ``zoo.runs()``
both ``sparsity`` and ``sparsity_target``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pruneviz import _vocabulary as V
from pruneviz._validation import fail
from pruneviz.analysis.outputs import check_same_samples, check_split
from pruneviz.exceptions import ZooError
from pruneviz.zoo.store import Zoo, digest

__all__ = [
    "COMPARISON_KEYS",
    "Comparison",
    "check_same_samples",
    "check_split",
    "comparisons",
    "population_outputs",
    "population_reader",
    "settings_digest",
]

COMPARISON_KEYS = V.COMPARISON_KEYS
# schedule entries that describe one run rather than how its population was pruned
_PER_RUN_SCHEDULE = frozenset({"channel_plan", "parent", "run", "history"})


@dataclass(frozen=True)
class Comparison:
    """The pruned runs of one dataset × arch × method × structure × target sparsity × pruning settings,
    and the dense runs they are compared with.

    ``sparsity`` is the target sparsity (the achieved one differs slightly from run to run);
    ``settings`` is :func:`settings_digest` of the pruned runs' schedule (see ``zoo.run(run).schedule``).
    """

    dataset: str
    arch: str
    method: str
    structure: str
    sparsity: float
    settings: str
    dense: tuple[str, ...]
    pruned: tuple[str, ...]

    @property
    def keys(self) -> dict[str, object]:
        """The comparison's key columns in the shared vocabulary (:data:`COMPARISON_KEYS`)."""
        return {
            "dataset": self.dataset,
            "arch": self.arch,
            "method": self.method,
            "structure": self.structure,
            "sparsity_target": self.sparsity,
            "settings": self.settings,
            "dense_runs": len(self.dense),
            "pruned_runs": len(self.pruned),
        }


def settings_digest(schedule: Mapping[str, Any]) -> str:
    """A short stable digest of how a pruned run was pruned: its ``schedule`` (allocation, fine-tuning,
    calibration size, prune seed, ...) without the entries that differ from run to run (a channel plan).

    Runs of one ``prune_population`` call share it; runs pruned with other settings do not.

    >>> settings_digest({"allocation": None, "seed": 0}) == settings_digest({"seed": 0, "allocation": None})
    True
    >>> settings_digest({"seed": 0, "channel_plan": {"a": 1}}) == settings_digest({"seed": 0})
    True
    """
    return digest({k: v for k, v in schedule.items() if k not in _PER_RUN_SCHEDULE}, n=8)


def comparisons(
    zoo: Zoo,
    *,
    dense: Sequence[str] | None = None,
    pruned: Sequence[str] | None = None,
    where: str = "comparisons",
) -> list[Comparison]:
    """The dense-vs-pruned comparisons of a zoo, each within one dataset and architecture.

    Pruned runs are grouped by (dataset, arch, method, structure, target sparsity, pruning settings).
    Without ``dense``, a group is compared with the dense parents of its pruned runs. With ``dense``,
    it is compared with the given dense runs of its dataset and arch, and ``pruned`` defaults to the
    pruned children of the given dense runs. Given runs that cannot be compared (a pruned run with no
    dense run of its dataset and arch, dense runs without pruned runs to compare) are an error. Sorted
    by dataset, arch, method, structure, sparsity and settings; dense and pruned ids in zoo order.

    >>> import tempfile
    >>> comparisons(Zoo.create(tempfile.mkdtemp() + "/z"))
    []
    """
    runs = zoo.runs()
    kinds = dict(zip(runs["run"], runs["kind"], strict=True)) if not runs.empty else {}
    given = {}
    for name, ids in (("dense", dense), ("pruned", pruned)):
        if ids is None:
            continue
        if isinstance(ids, str) or not isinstance(ids, Sequence | np.ndarray | pd.Series | pd.Index):
            fail(name, where, "a list of run ids", ids, f"pass {name}=[{ids!r}].")
        ids = list(dict.fromkeys(ids))
        if not ids:
            fail(name, where, "a non-empty list of run ids", ids, f"pass run ids, or leave {name}=None.")
        missing = [r for r in ids if not isinstance(r, str) or r not in kinds]
        if missing:
            fail(name, where, "ids of runs in the zoo (see zoo.runs())", missing[0])
        wrong = [r for r in ids if (kinds[r] == "dense") != (name == "dense")]
        if wrong:
            other = "pruned" if name == "dense" else "dense"
            fail(name, where, f"ids of {name} runs", wrong[0], f"pass {other} runs as {other}=[...].")
        given[name] = ids
    if runs.empty:
        return []
    by_id = runs.set_index("run", drop=False)
    if "pruned" in given:
        chosen = runs[runs["run"].isin(given["pruned"])]
    elif "dense" in given:
        chosen = runs[(runs["kind"] != "dense") & runs["parent"].isin(given["dense"])]
    else:
        chosen = runs[runs["kind"] != "dense"]
    if "dense" in given and chosen.empty:
        fail(
            "dense",
            where,
            "dense runs with pruned runs to compare against",
            given["dense"][:3],
            got=f"{len(given['dense'])} dense run(s) without pruned children, e.g. {given['dense'][0]!r}",
            fix="prune them first (pruneviz.zoo.prune_population), or pass pruned=[...] explicitly.",
        )
    if chosen.empty:
        return []
    chosen = chosen.assign(
        method=chosen["method"].fillna("?").astype(str),
        structure=chosen["structure"].fillna("").astype(str),
        target=chosen["sparsity_target"].astype(float),
        settings=[settings_digest(zoo.run(r).schedule) for r in chosen["run"]],
    )
    order = {r: i for i, r in enumerate(runs["run"])}
    dense_rows = runs[runs["kind"] == "dense"]
    out = []
    keys = ["dataset", "arch", "method", "structure", "target", "settings"]
    for (dataset, arch, method, structure, target, settings), part in chosen.groupby(keys, sort=True):
        if "dense" in given:
            pool = dense_rows[dense_rows["run"].isin(given["dense"])]
            population = pool["run"][(pool["dataset"] == dataset) & (pool["arch"] == arch)]
        else:
            population = dense_rows["run"][dense_rows["run"].isin(set(part["parent"].dropna()))]
        population = sorted(population, key=order.__getitem__)
        if not population:
            if "pruned" in given:
                _incomparable(where, part.iloc[0], given.get("dense"), by_id)
            continue  # pruned runs whose parents are not dense runs of the zoo
        out.append(
            Comparison(
                dataset=str(dataset),
                arch=str(arch),
                method=str(method),
                structure=str(structure),
                sparsity=float(target),
                settings=str(settings),
                dense=tuple(population),
                pruned=tuple(part["run"]),
            )
        )
    return out


def _incomparable(where: str, run: pd.Series, dense: list[str] | None, by_id: pd.DataFrame) -> None:
    """Fail for a given pruned run that no given dense run (or no dense parent) can be compared with."""
    what = f"run {run['run']!r} (dataset {run['dataset']!r}, arch {run['arch']!r})"
    if dense is None:
        fail(
            "pruned",
            where,
            "ids of pruned runs whose parents are dense runs of the zoo",
            None,
            got=f"{what} with parent {run['parent']!r}",
            fix="pass the dense runs to compare with as dense=[...].",
        )
    have = sorted({(by_id.at[r, "dataset"], by_id.at[r, "arch"]) for r in dense})
    fail(
        "pruned",
        where,
        f"ids of pruned runs of the dataset and arch of some given dense run ({have})",
        None,
        got=what,
        fix="compare runs of one dataset and architecture: pass dense runs of that dataset and arch, "
        "or leave dense=None to compare pruned runs with their dense parents.",
    )


def _run_outputs(zoo: Zoo, run: str, split: str, subset: str, where: str) -> pd.DataFrame:
    """One run's outputs on one split and subset, read with a parquet row filter (a leading ``run``)."""
    if not zoo.has_run(run):
        zoo.run(run)  # raises the zoo's error for an unknown run
    path = zoo.run_dir(run) / "outputs.parquet"
    try:
        frame = pd.read_parquet(path, filters=[("split", "==", split), ("subset", "==", subset)])
        if frame.empty:
            have = pd.read_parquet(path, columns=["split", "subset"]).drop_duplicates()
    except Exception as exc:  # the same wording as Zoo.outputs
        raise ZooError(
            f"The outputs of run {run!r} ({str(path)!r}) cannot be read ({exc}). Fix: rebuild the run."
        ) from exc
    if frame.empty:
        splits = sorted(map(str, have.loc[have["subset"] == subset, "split"]))
        if not splits:
            fail(
                "subset",
                where,
                f"a subset evaluated for run {run!r} ({sorted(map(str, have['subset'].unique()))})",
                subset,
            )
        fail(
            "split",
            where,
            f"a split evaluated for run {run!r} on subset {subset!r} ({splits[:20]})",
            split,
            "evaluate the run on that split first (e.g. pruneviz.analysis.run_corruptions).",
        )
    frame.insert(0, "run", run)
    return frame


def population_reader(
    zoo: Zoo, *, split: str = "clean", subset: str = "test", where: str = "population"
) -> Callable[..., pd.DataFrame]:
    """A reader of populations' outputs on one ``split`` and ``subset``, for one analysis call.

    ``read(runs)`` returns what :func:`population_outputs` returns; ``read(runs, keep=True)`` also keeps
    each run's outputs (and the concatenated frame), so a dense population shared by several comparisons
    is read from disk once. Frames handed out may be shared: do not modify them.

    >>> import tempfile
    >>> read = population_reader(Zoo.create(tempfile.mkdtemp() + "/z"))
    >>> callable(read)
    True
    """
    split, subset = check_split(split, subset, where)
    kept_runs: dict[str, pd.DataFrame] = {}
    kept_populations: dict[tuple[str, ...], pd.DataFrame] = {}

    def read(runs: Sequence[str], *, keep: bool = False) -> pd.DataFrame:
        ids = tuple(runs)
        if not ids:
            fail("runs", where, "at least one run id", list(ids))
        if ids in kept_populations:
            return kept_populations[ids]
        frames = []
        for rid in ids:
            frame = kept_runs.get(rid)
            if frame is None:
                frame = _run_outputs(zoo, rid, split, subset, where)
                if keep:
                    kept_runs[rid] = frame
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        if keep:
            kept_populations[ids] = out
        return out

    return read


def population_outputs(
    zoo: Zoo, runs: Sequence[str], *, split: str = "clean", subset: str = "test", where: str = "population"
) -> pd.DataFrame:
    """Per-sample outputs of ``runs`` on one ``split`` and ``subset`` (a leading ``run`` column).

    Only those rows are read from each run's outputs file. Every run must have outputs for that split;
    the error lists the splits that exist otherwise.

    >>> import tempfile
    >>> population_outputs(Zoo.create(tempfile.mkdtemp() + "/z"), [])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pruneviz.exceptions.ValidationError: The 'runs' parameter of population must be at least one run id...
    """
    return population_reader(zoo, split=split, subset=subset, where=where)(runs)
