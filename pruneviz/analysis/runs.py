"""The analyses on runs of a zoo: model, masks and data come from the zoo, results are cached in it.

Each function returns the analysis' tidy frame with the run's key columns (``run``, ``parent``,
``method``, ``structure``, ``sparsity``, ``seed``) in front. A second call with the same parameters reads
the cached frame instead of recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._validation import check_choice, check_int
from pruneviz.analysis.curvature import HessianOperator, hessian_eigenvalues, hessian_trace
from pruneviz.analysis.landscape import landscape_1d, landscape_2d
from pruneviz.analysis.sharpness import average_sharpness, sam_sharpness
from pruneviz.analysis.spectrum import spectrum_table
from pruneviz.data.dataset import Dataset
from pruneviz.zoo.store import Zoo

KEYS = ("run", "parent", "method", "structure", "sparsity", "seed")


def _with_keys(zoo: Zoo, run: str, frame: pd.DataFrame) -> pd.DataFrame:
    rec = zoo.run(run)
    keys = {
        "run": rec.run,
        "parent": rec.parent,
        "method": rec.method or "dense",
        "structure": rec.structure or "",
        "sparsity": rec.sparsity,
        "seed": rec.seed,
    }
    out = frame.copy()
    for i, (k, v) in enumerate(keys.items()):
        out.insert(i, k, v)
    return out


def _subset(zoo: Zoo, run: str, subset: str, samples: int, seed: int) -> Dataset:
    check_choice(subset, "subset", "run analysis", ("train", "val", "test"))
    samples = check_int(samples, "samples", "run analysis", minimum=1)
    part = getattr(zoo.splits(zoo.run(run).dataset), subset)
    if samples >= len(part):
        return part
    return part.take(np.sort(np.random.default_rng(seed).permutation(len(part))[:samples]))


def run_spectrum(zoo: Zoo, run: str) -> pd.DataFrame:
    """:func:`~pruneviz.analysis.spectrum_table` of a run's model (operator norms at its input shape)."""
    shape = zoo.run(run).model_spec.input_shape

    def compute() -> pd.DataFrame:
        return _with_keys(zoo, run, spectrum_table(zoo.load_model(run), input_shape=shape))

    return zoo.cached("spectrum", [run], {}, compute)


def run_curvature(
    zoo: Zoo,
    run: str,
    *,
    k: int = 5,
    iterations: int = 20,
    trace_hvps: int = 99,
    subset: str = "train",
    samples: int = 512,
    params: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Top-``k`` Hessian eigenvalues (with residuals) and the Hutch++ trace (with its standard error) of a
    run, mask-aware, on ``samples`` samples of its ``subset``; ``params`` restricts the Hessian to a block
    (e.g. one layer's ``["blocks.0.conv1.weight"]``). Tidy: ``metric`` (``eigenvalue_<rank>``,
    ``trace``), ``value``, ``error`` (residual or standard error), ``hvps``."""
    settings: dict[str, Any] = {
        "params": None if params is None else list(params),
        "k": k,
        "iterations": iterations,
        "trace_hvps": trace_hvps,
        "subset": subset,
        "samples": samples,
        "seed": seed,
    }

    def compute() -> pd.DataFrame:
        data = _subset(zoo, run, subset, samples, seed)
        op = HessianOperator(zoo.load_model(run), data, masks=dict(zoo.masks(run)) or None, params=params)
        eig = hessian_eigenvalues(op, k=k, iterations=iterations, seed=seed)
        tr = hessian_trace(op, hvps=trace_hvps, seed=seed)
        rows = [
            {"metric": f"eigenvalue_{r}", "value": v, "error": e, "hvps": h}
            for r, v, e, h in zip(eig["rank"], eig.eigenvalue, eig.residual, eig.hvps, strict=True)
        ]
        rows.append({"metric": "trace", "value": tr.value[0], "error": tr.se[0], "hvps": tr.hvps[0]})
        return _with_keys(zoo, run, pd.DataFrame(rows).assign(dim=op.dim, samples=len(data)))

    return zoo.cached("curvature", [run], settings, compute)


def run_landscape(
    zoo: Zoo,
    run: str,
    *,
    dims: int = 2,
    steps: int = 21,
    radius: float = 1.0,
    subset: str = "test",
    samples: int = 512,
    seed: int = 0,
) -> pd.DataFrame:
    """A 1-D (``dims=1``) or 2-D landscape around a run's weights, its masks respected."""
    check_choice(str(dims), "dims", "run_landscape", ("1", "2"))
    params = {
        "dims": dims,
        "steps": steps,
        "radius": radius,
        "subset": subset,
        "samples": samples,
        "seed": seed,
    }

    def compute() -> pd.DataFrame:
        data = _subset(zoo, run, subset, samples, seed)
        model, masks = zoo.load_model(run), dict(zoo.masks(run)) or None
        fn = landscape_1d if dims == 1 else landscape_2d
        return _with_keys(zoo, run, fn(model, data, steps=steps, radius=radius, masks=masks, seed=seed))

    return zoo.cached("landscape", [run], params, compute)


def run_sharpness(
    zoo: Zoo,
    run: str,
    *,
    rho: float = 0.05,
    sigma: float = 0.01,
    subset: str = "train",
    samples: int = 512,
    seed: int = 0,
) -> pd.DataFrame:
    """SAM, ASAM and average adaptive sharpness of a run, one row each (settings in the columns)."""
    params = {"rho": rho, "sigma": sigma, "subset": subset, "samples": samples, "seed": seed}

    def compute() -> pd.DataFrame:
        data = _subset(zoo, run, subset, samples, seed)
        model, masks = zoo.load_model(run), dict(zoo.masks(run)) or None
        frames = [
            sam_sharpness(model, data, rho=rho, masks=masks),
            sam_sharpness(model, data, rho=rho, adaptive=True, masks=masks),
            average_sharpness(model, data, sigma=sigma, masks=masks, seed=seed),
        ]
        return _with_keys(zoo, run, pd.concat(frames, ignore_index=True))

    return zoo.cached("sharpness", [run], params, compute)
