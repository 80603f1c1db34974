"""Attribution agreement between two runs of a zoo, cached in the zoo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pruneviz._validation import check_choice, check_int, data_fail
from pruneviz.analysis.attribution import (
    METHODS,
    _check_methods,
    attribution_maps,
    compare_attributions,
    select_samples,
)
from pruneviz.study.exemplars import run_exemplars
from pruneviz.study.populations import comparisons
from pruneviz.zoo.store import Zoo

__all__ = ["run_attributions", "run_exemplar_maps"]


def run_attributions(
    zoo: Zoo,
    dense_run: str,
    pruned_run: str,
    *,
    sample_ids: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    subset: str = "test",
    samples: int = 32,
    k: int | None = None,
    steps: int = 32,
    draws: int = 16,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`compare_attributions` of two runs of a zoo, on their dataset's ``subset``, cached.

    The samples are ``sample_ids`` (ids in that subset) or else ``samples`` of the subset drawn with
    ``seed`` (all of it if smaller). Attributions are of the true class with a zero baseline. Any two
    runs of one dataset may be compared — two dense seeds give the agreement that training noise alone
    leaves.

    Returns the agreement frame with ``run_a`` (the dense run), ``run_b`` (the pruned run) and the
    pruned run's ``method``, ``structure`` and (achieved) ``sparsity`` in front.

    Example (on the demo zoo)::

        zoo = Zoo("build/demo-zoo")
        dense = zoo.runs(kind="dense").run[0]
        pruned = zoo.runs(parent=dense, method="lamp").run[0]
        frame = run_attributions(zoo, dense, pruned, methods=["saliency"], samples=16)
    """
    where = "run_attributions"
    dense_rec, pruned_rec = zoo.run(dense_run), zoo.run(pruned_run)
    if dense_rec.dataset != pruned_rec.dataset:
        data_fail(
            "pruned_run",
            where,
            f"a run of the dense run's dataset {dense_rec.dataset!r}",
            f"a run of {pruned_rec.dataset!r}",
            "compare runs trained on one dataset.",
        )
    subset = check_choice(subset, "subset", where, ("train", "val", "test"))
    samples = check_int(samples, "samples", where, minimum=1)
    methods = _check_methods(methods, where)
    seed = check_int(seed, "seed", where, minimum=0)
    ids = None if sample_ids is None else [int(i) for i in np.asarray(sample_ids).ravel()]
    params = {
        "sample_ids": ids,
        "methods": methods,
        "subset": subset,
        "samples": samples,
        "k": k,
        "steps": steps,
        "draws": draws,
        "seed": seed,
    }

    def compute() -> pd.DataFrame:
        data = getattr(zoo.splits(dense_rec.dataset), subset)
        if ids is None and samples < len(data):
            pick = np.sort(np.random.default_rng(seed).permutation(len(data))[:samples])
            chosen = data.sample_id[pick]
        else:
            chosen = select_samples(data, ids, where).sample_id
        frame = compare_attributions(
            zoo.load_model(dense_run),
            zoo.load_model(pruned_run),
            data,
            sample_ids=chosen,
            methods=methods,
            k=k,
            steps=steps,
            draws=draws,
            seed=seed,
        )
        keys = {
            "run_a": dense_run,
            "run_b": pruned_run,
            "method": pruned_rec.method or "dense",
            "structure": pruned_rec.structure or "",
            "sparsity": float(pruned_rec.sparsity),
        }
        for i, (key, value) in enumerate(keys.items()):
            frame.insert(i, key, value)
        return frame

    return zoo.cached("attributions", [dense_run, pruned_run], params, compute)


def run_exemplar_maps(
    zoo: Zoo,
    dense_run: str,
    pruned_run: str,
    *,
    top: int = 8,
    method: str = "integrated_gradients",
    split: str = "clean",
    subset: str = "test",
) -> pd.DataFrame:
    """Attribution maps (:func:`~pruneviz.analysis.attribution_maps`) of the ``top`` compression-identified
    exemplars of ``pruned_run``'s comparison (its population against every dense run of its dataset, on
    ``split``), by the dense run and by the pruned run, cached: what the exemplar gallery shows.

    Returns :func:`~pruneviz.analysis.attribution_maps`' columns with ``model`` (``dense``, ``pruned``)
    and ``rank`` (the exemplar's rank in its comparison) in front; empty when ``pruned_run`` has no
    comparison (a dense run)."""
    where = "run_exemplar_maps"
    top = check_int(top, "top", where, minimum=1)
    method = check_choice(method, "method", where, METHODS)
    record = zoo.run(pruned_run)
    dense = zoo.runs(dataset=record.dataset, kind="dense")["run"].tolist()
    found = [c for c in comparisons(zoo, dense=dense, where=where) if pruned_run in c.pruned] if dense else []
    if not found:
        return pd.DataFrame(columns=["model", "rank", "sample_id", "attribution", "value"])
    comp = found[0]
    scores = run_exemplars(zoo, dense=list(comp.dense), pruned=list(comp.pruned), split=split, subset=subset)
    chosen = scores.sort_values(["rank", "sample_id"]).head(top)
    ids = [int(i) for i in chosen["sample_id"]]
    ranks = dict(zip(ids, chosen["rank"].astype(int), strict=True))
    params = {"sample_ids": ids, "method": method, "subset": subset}

    def compute() -> pd.DataFrame:
        data = getattr(zoo.splits(record.dataset), subset)
        frames = []
        for label, run in (("dense", dense_run), ("pruned", pruned_run)):
            maps = attribution_maps(zoo.load_model(run), data, sample_ids=ids, method=method)
            maps.insert(0, "model", label)
            maps.insert(1, "rank", maps["sample_id"].map(ranks).astype(int))
            frames.append(maps)
        return pd.concat(frames, ignore_index=True)

    return zoo.cached("exemplar_maps", [dense_run, pruned_run], params, compute)
