"""Checks of per-sample output frames shared by the population analyses (exemplars, subgroups)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pruneviz._validation import check_choice, data_fail, fail

__all__ = ["check_same_samples", "check_split"]


def check_split(split: Any, subset: Any, where: str) -> tuple[str, str]:
    """``split`` must name an evaluation split and ``subset`` be ``train``, ``val`` or ``test``."""
    if not isinstance(split, str) or not split:
        fail(
            "split",
            where,
            "the name of an evaluation split",
            split,
            "pass split='clean' or a corruption's name.",
        )
    return str(split), check_choice(subset, "subset", where, ("train", "val", "test"))


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
