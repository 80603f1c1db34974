"""Populations of runs in a zoo, as the population analyses (exemplars, subgroups) compare them.

A *comparison* is one population of dense runs against one population of pruned runs that share a
method, structure and target sparsity. :func:`comparisons` lists them; :func:`population_outputs` reads
their per-sample outputs; :func:`check_same_samples` refuses two populations that were not evaluated on
the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pruneviz._validation import data_fail, fail
from pruneviz.zoo.store import Zoo


@dataclass(frozen=True)
class Comparison:
    """Dense runs against the pruned runs of one method × structure × target sparsity."""

    dataset: str
    method: str
    structure: str
    sparsity: float
    dense: tuple[str, ...]
    pruned: tuple[str, ...]

    @property
    def keys(self) -> dict[str, object]:
        """The comparison's key columns in the shared vocabulary."""
        return {
            "dataset": self.dataset,
            "method": self.method,
            "structure": self.structure,
            "sparsity": self.sparsity,
            "dense_runs": len(self.dense),
            "pruned_runs": len(self.pruned),
        }


def comparisons(
    zoo: Zoo,
    *,
    dense: Sequence[str] | None = None,
    pruned: Sequence[str] | None = None,
    where: str = "comparisons",
) -> list[Comparison]:
    """The dense-vs-pruned comparisons of a zoo, one per (method, structure, target sparsity).

    ``dense`` defaults to every dense run; ``pruned`` to every pruned run whose parent is among the dense
    runs. All runs must come from one dataset. Sorted by method, structure and sparsity.

    >>> import tempfile
    >>> comparisons(Zoo.create(tempfile.mkdtemp() + "/z"))
    []
    """
    runs = zoo.runs()
    if runs.empty:
        return []
    known = set(runs["run"])
    for name, ids in (("dense", dense), ("pruned", pruned)):
        if ids is not None:
            if isinstance(ids, str):
                fail(name, where, "a list of run ids", ids, f"pass {name}=[{ids!r}].")
            missing = [r for r in ids if r not in known]
            if missing:
                fail(name, where, "ids of runs in the zoo (see zoo.runs())", missing[0])
    dense_ids = list(runs.loc[runs["kind"] == "dense", "run"]) if dense is None else list(dense)
    kinds = dict(zip(runs["run"], runs["kind"], strict=True))
    not_dense = [r for r in dense_ids if kinds[r] != "dense"]
    if not_dense:
        fail("dense", where, "ids of dense runs", not_dense[0], "pass pruned runs as pruned=[...].")
    if pruned is None:
        chosen = runs[(runs["kind"] != "dense") & runs["parent"].isin(dense_ids)]
    else:
        chosen = runs[runs["run"].isin(list(pruned))]
        dense_given = [r for r in pruned if kinds[r] == "dense"]
        if dense_given:
            fail("pruned", where, "ids of pruned runs", dense_given[0], "pass dense runs as dense=[...].")
    if not dense_ids or chosen.empty:
        return []
    datasets = set(runs.loc[runs["run"].isin(dense_ids), "dataset"]) | set(chosen["dataset"])
    if len(datasets) > 1:
        data_fail(
            "runs",
            where,
            "runs of a single dataset",
            f"runs of the datasets {sorted(datasets)}",
            "select dense and pruned runs of one dataset (zoo.runs(dataset=...)).",
        )
    dataset = datasets.pop()
    chosen = chosen.assign(
        method=chosen["method"].fillna("?"),
        structure=chosen["structure"].fillna(""),
        target=chosen["target_sparsity"].astype(float),
    )
    out = []
    for (method, structure, target), part in chosen.groupby(["method", "structure", "target"], sort=True):
        out.append(
            Comparison(
                dataset=dataset,
                method=str(method),
                structure=str(structure),
                sparsity=float(target),
                dense=tuple(dense_ids),
                pruned=tuple(part["run"]),
            )
        )
    return out


def population_outputs(
    zoo: Zoo, runs: Sequence[str], *, split: str = "clean", subset: str = "test", where: str = "population"
) -> pd.DataFrame:
    """Per-sample outputs of ``runs`` on one ``split`` and ``subset`` (a leading ``run`` column).

    Every run must have outputs for that split; the error lists the splits that exist otherwise.
    """
    frames = []
    for rid in runs:
        out = zoo.outputs(rid, subset=subset)
        part = out[out["split"] == split]
        if part.empty:
            have = sorted(out["split"].unique())
            fail(
                "split",
                where,
                f"a split evaluated for run {rid!r} ({have})",
                split,
                "evaluate the run on that split first (e.g. pruneviz.analysis.run_corruptions).",
            )
        frames.append(part)
    if not frames:
        fail("runs", where, "at least one run id", list(runs))
    return pd.concat(frames, ignore_index=True)


def check_same_samples(a: pd.DataFrame, b: pd.DataFrame, *, where: str, names: tuple[str, str]) -> np.ndarray:
    """Both per-sample frames must hold the same set of ``sample_id``s for every run; return them sorted.

    Each run inside a frame must cover the same ids as every other run (a population evaluated on
    different samples cannot be compared sample by sample).
    """
    ids: np.ndarray | None = None
    for frame, name in ((a, names[0]), (b, names[1])):
        if "sample_id" not in frame.columns:
            fail(name, where, "a per-sample outputs frame with a sample_id column", list(frame.columns)[:8])
        sid = frame["sample_id"].to_numpy()
        runs = frame["run"].to_numpy() if "run" in frame.columns else np.zeros(len(sid), dtype=np.int64)
        codes, first = pd.factorize(runs, sort=False)
        order = np.lexsort((sid, codes))  # by run, then sample id
        sid_sorted, codes_sorted = sid[order], codes[order]
        counts = np.bincount(codes, minlength=len(first))
        repeated = (sid_sorted[1:] == sid_sorted[:-1]) & (codes_sorted[1:] == codes_sorted[:-1])
        if repeated.any():
            run = first[codes_sorted[1:][repeated][0]]
            data_fail(
                name,
                where,
                "one row per sample for every run",
                f"repeated sample ids in run {run!r}",
                "select a single split and subset before comparing.",
            )
        reference = ids if ids is not None else sid_sorted[: counts[0]]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for r, (begin, count) in enumerate(zip(starts, counts, strict=True)):
            these = sid_sorted[begin : begin + count]
            if count != len(reference) or not np.array_equal(these, reference):
                data_fail(
                    name,
                    where,
                    f"outputs on the same {len(reference)} sample ids as the other runs",
                    f"run {first[r]!r} with {count} samples, "
                    f"{len(np.setxor1d(these, reference))} ids not shared",
                    "compare runs evaluated on the same dataset, split and subset.",
                )
        ids = reference
    assert ids is not None
    return ids
