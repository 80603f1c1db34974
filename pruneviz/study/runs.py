"""The analyses on runs of a zoo: model, masks and data come from the zoo, results are cached in it.

Each function returns the analysis' tidy frame with the run's key columns (``run``, ``parent``,
``method``, ``structure``, ``sparsity`` (achieved), ``sparsity_target``, ``seed``) in front; population
analyses (exemplars, subgroups) key their comparisons by the target sparsity, named ``sparsity``.
A second call with the same parameters reads the cached frame instead of recomputing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from pruneviz import _vocabulary as V
from pruneviz._log import bar
from pruneviz._validation import check_choice, check_int, data_fail, fail
from pruneviz.analysis.activations import activations, check_layers, classifier_layer
from pruneviz.analysis.attacks import FEATURE_RANGE, AttackSettings, attack, feature_range
from pruneviz.analysis.calibration import calibration_metrics, reliability_bins
from pruneviz.analysis.geometry import (
    aligned_pca,
    aligned_umap,
    cka_grid,
    logit_geometry,
    logit_geometry_change,
    mutual_knn_overlap,
)
from pruneviz.analysis.landscape import landscape_1d, landscape_2d
from pruneviz.analysis.sharpness import average_sharpness, sam_sharpness
from pruneviz.analysis.spectrum import spectrum_table
from pruneviz.data.dataset import Dataset
from pruneviz.models.layout import inference_layout
from pruneviz.prune.accounting import kernel_speedups
from pruneviz.train import evaluate, logits_of
from pruneviz.zoo.store import Zoo

KEYS = V.RUN_KEYS


def _with_keys(zoo: Zoo, run: str, frame: pd.DataFrame) -> pd.DataFrame:
    rec = zoo.run(run)
    keys = {
        "run": rec.run,
        "parent": rec.parent,
        "method": rec.method or "dense",
        "structure": rec.structure or "",
        "sparsity": rec.sparsity,
        "sparsity_target": rec.target_sparsity,
        "seed": rec.seed,
    }
    out = frame.copy()
    for i, (k, v) in enumerate(keys.items()):
        out.insert(i, k, v)
    return out


# the analyses whose sample budget can follow the model's cost (samples="auto")
_AUTO_SAMPLES = ("run_curvature", "run_landscape")


def _checked(where: str, **params: Any) -> dict[str, Any]:
    """Validate and normalise a run analysis' settings before they key the zoo's cache (so numpy
    integers and plain integers give the same key, and bad values a message naming ``where``)."""
    out = dict(params)
    for name, value in params.items():
        if name == "subset":
            check_choice(value, "subset", where, ("train", "val", "test"))
        elif name == "samples" and where in _AUTO_SAMPLES and isinstance(value, str):
            if value != "auto":
                fail(
                    "samples",
                    where,
                    "a positive number of samples or 'auto' (a budget from the model's cost)",
                    value,
                )
        elif name in ("samples", "k", "bins", "steps", "iterations", "probes", "groups", "dims"):
            out[name] = check_int(value, name, where, minimum=1)
        elif name == "seed":
            out[name] = check_int(value, name, where, minimum=0)
        elif name == "target_rse":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < np.inf:
                fail(
                    "target_rse",
                    where,
                    "a relative standard error above 0 (e.g. 0.05 for 5 %), or None for a sample count",
                    value,
                    "pass a fraction such as target_rse=0.05.",
                )
            out[name] = float(value)
        elif name == "split" and not isinstance(value, str):
            fail("split", where, "a split label such as 'clean' or 'fog@3'", value)
    return out


def _subset(zoo: Zoo, run: str, subset: str, samples: int, seed: int) -> Dataset:
    check_choice(subset, "subset", "run analysis", ("train", "val", "test"))
    samples = check_int(samples, "samples", "run analysis", minimum=1)
    part = getattr(zoo.splits(zoo.run(run).dataset), subset)
    if samples >= len(part):
        return part
    return part.take(np.sort(np.random.default_rng(seed).permutation(len(part))[:samples]))


#: computations a target error may take (the first at ``samples``, each later one on more samples)
_TARGET_ROUNDS = 3


def _budget_for(n: int, rse: float, target: float, available: int, minimum: int = 32) -> int:
    """Samples at which a relative standard error ``rse`` measured on ``n`` samples falls to ``target``
    (it shrinks as ``1/√n``): a power of two, at least ``minimum``, at most ``available``."""
    need = n * (rse / target) ** 2 if np.isfinite(rse) else float(available)
    power = 1 << max(0, int(np.ceil(np.log2(max(need, 1.0)))))
    return int(min(available, max(minimum, power)))


def _warn_target(where: str, target: float, rse: float, samples: int, what: str) -> None:
    import warnings

    warnings.warn(
        f"{where}: target_rse={target:g} was not reached: the sampling error of {what} is {rse:.3g} of its "
        f"value on {samples} samples (all the subset offers, or the most {_TARGET_ROUNDS} rounds reached). "
        "Fix: accept a larger target_rse, or start from more samples (samples=N) of a larger subset.",
        stacklevel=3,
    )


def corruption_split(
    name: str, severity: int, *, suite: str | None = None, seed: int = 0, samples: int | None = None
) -> str:
    """The label of a corruption split in the zoo: ``"fog@3"``; a suite other than the one the images'
    channel count selects is prefixed (``"cifar10_c:fog@3"``), a seed other than 0 appended
    (``"fog@3/seed1"``) and a sample budget short of the whole subset too (``"fog@3/n512"``: the
    :func:`budget_subset` of 512 samples, corrupted), so that every label names exactly one way of
    corrupting exactly one set of samples."""
    from pruneviz.analysis.corruptions import corruption_split_name

    label = corruption_split_name(name, severity)
    if suite is not None:
        label = f"{suite}:{label}"
    if seed != 0:
        label = f"{label}/seed{seed}"
    return (
        label
        if samples is None
        else f"{label}/n{check_int(samples, 'samples', 'corruption_split', minimum=1)}"
    )


def split_samples(split: str) -> tuple[str, int | None]:
    """A split label without its sample budget, and the budget (None: the whole subset):
    ``"fog@3/n512"`` -> ``("fog@3", 512)``, ``"pgd-linf-eps0.1-steps10-seed0-n512"`` ->
    ``("pgd-linf-eps0.1-steps10-seed0", 512)``."""
    for mark in ("/n", "-n"):
        head, found, tail = split.rpartition(mark)
        if found and tail.isdigit() and int(tail) > 0:
            return head, int(tail)
    return split, None


def budget_subset(part: Dataset, samples: int | None) -> Dataset:
    """The ``samples`` of ``part`` a sample budget evaluates: the first ``samples`` of one fixed random
    order (seed 0), kept in their stored order, so that a larger budget holds every smaller one and
    every run of a dataset is evaluated on the same samples. None (or at least ``len(part)``): all."""
    if samples is None or samples >= len(part):
        return part
    return part.take(np.sort(np.random.default_rng(0).permutation(len(part))[:samples]))


def parse_split(split: str, *, where: str = "parse_split") -> tuple[str, int, str | None, int]:
    """Inverse of :func:`corruption_split`: ``(name, severity, suite, seed)``."""
    from pruneviz.analysis.corruptions import parse_corruption_split

    if not isinstance(split, str):
        fail("split", where, "a split label such as 'clean' or 'fog@3'", split)
    rest, seed = split_samples(split)[0], 0
    if "/seed" in rest:
        rest, _, tail = rest.partition("/seed")
        if not tail.isdigit():
            fail("split", where, "a corruption split such as 'fog@3' or 'fog@3/seed1'", split)
        seed = int(tail)
    suite = None
    if ":" in rest:
        suite, _, rest = rest.partition(":")
    name, severity = parse_corruption_split(rest)
    return name, severity, suite, seed


def _split_data(zoo: Zoo, run: str, split: str, subset: str, samples: int, seed: int, where: str) -> Dataset:
    """The samples of ``subset`` as seen under an evaluation ``split``: ``"clean"`` or a corruption split
    (recreated deterministically from its label; the subset its label names — all of it, or a budget —
    is corrupted before sub-sampling, so every sample sees exactly the corruption stored in the zoo)."""
    if split == "clean":
        return _subset(zoo, run, subset, samples, seed)
    if "@" not in split:
        have = _stored_splits(zoo, run, subset)
        fail(
            "split",
            where,
            "'clean' or a corruption split such as 'fog@3' (features are recomputed from inputs, which "
            "pruneviz can recreate for corruptions; adversarial inputs are specific to the model attacked)",
            split,
            f"the run has outputs for {have[:8]}{'...' if len(have) > 8 else ''}.",
        )
    name, severity, suite, corruption_seed = parse_split(split, where=where)
    check_choice(subset, "subset", where, ("train", "val", "test"))
    dataset = zoo.run(run).dataset
    key = (str(zoo.path), dataset, subset, split)
    bad = _CORRUPTED.get(key)
    if bad is None:
        from pruneviz.analysis.corruptions import corrupt

        part = budget_subset(getattr(zoo.splits(dataset), subset), split_samples(split)[1])
        bad = corrupt(part, name, severity=severity, seed=corruption_seed, suite=suite)
        _CORRUPTED.clear()  # keep only the latest: runs of one study ask for the same split in turn
        _CORRUPTED[key] = bad
    samples = check_int(samples, "samples", where, minimum=1)
    if samples >= len(bad):
        return bad
    return bad.take(np.sort(np.random.default_rng(seed).permutation(len(bad))[:samples]))


_CORRUPTED: dict[tuple[str, str, str, str], Dataset] = {}


def run_spectrum(zoo: Zoo, run: str) -> pd.DataFrame:
    """:func:`~pruneviz.analysis.spectrum_table` of a run's model (operator norms at the size its
    layers see on one real sample of its dataset)."""

    def compute() -> pd.DataFrame:
        example = zoo.splits(zoo.run(run).dataset).test.x[:1]
        return _with_keys(zoo, run, spectrum_table(zoo.load_model(run), example=example))

    return zoo.cached("spectrum", [run], {}, compute)


def run_speedups(zoo: Zoo, run: str, *, batch_sizes: Sequence[int] = (1, 64)) -> pd.DataFrame:
    """:func:`~pruneviz.prune.kernel_speedups` of a run's model at its input shape: per layer and batch
    size, the sparse path chosen on this machine and its measured against theoretical speedup. Not cached
    in the zoo (the timings belong to the machine; the kernel dispatcher caches them per machine)."""
    example = zoo.splits(zoo.run(run).dataset).test.x[:1]
    table = kernel_speedups(zoo.load_model(run), batch_sizes=batch_sizes, example=example)
    return table.assign(run=run)


def _auto_samples(
    zoo: Zoo, run: str, subset: str, *, evaluations: int, seconds: float, kind: str, maximum: int = 512
) -> int:
    """A run's sample budget from its model's cost (:mod:`pruneviz.analysis.budget`): deterministic,
    so the cache key ``samples="auto"`` names one result on every machine."""
    from pruneviz.analysis.budget import budget_samples, forward_macs

    splits = zoo.splits(zoo.run(run).dataset)
    part = getattr(splits, subset)
    macs = forward_macs(zoo.load_model(run).eval(), part.x[:2])
    return budget_samples(
        macs, evaluations=evaluations, seconds=seconds, kind=kind, maximum=maximum, available=len(part)
    )


#: evaluations a run's robustness splits cost, for their ``samples="auto"`` budgets: the 15 corruptions
#: of a suite at 5 severities (one forward pass each), and the default attacks (FGSM: a gradient and an
#: evaluation; PGD: 10 gradients and an evaluation; a gradient about 3 forward passes). Constants, so that
#: a run's budget — and the labels of its splits — do not depend on which part of a suite is asked for.
_CORRUPTION_EVALUATIONS = 15 * 5
_ATTACK_EVALUATIONS = 2 * (3 + 1) + 2 * (3 * 10 + 1)
_ROBUSTNESS_SECONDS = 3.0  # per run and kind of split, on the reference machine of the budgets
_ROBUSTNESS_MINIMUM = 512  # samples of an "auto" budget at least (a binomial standard error <= 0.022)


def _robustness_samples(
    zoo: Zoo, run: str, subset: str, samples: int | str | None, evaluations: int, where: str
) -> int | None:
    """A run's budget of ``subset`` samples per robustness split: None for all of them (also where the
    budget covers them all), else a number below ``len(subset)``."""
    from pruneviz.analysis.budget import affordable_samples, budget_samples, forward_macs

    if samples is None:
        return None
    dataset = zoo.run(run).dataset
    sizes = (str(zoo.path), dataset, subset)
    if sizes not in _SUBSET_SIZES:  # a stored dataset never changes: read its splits once
        _SUBSET_SIZES[sizes] = len(getattr(zoo.splits(dataset), subset))
    available = _SUBSET_SIZES[sizes]
    if isinstance(samples, str):
        if samples != "auto":
            fail(
                "samples",
                where,
                "a positive number of samples, 'auto' (a budget from the model's cost) or None (all)",
                samples,
            )
        key = (str(zoo.path), run, subset)
        macs = _MACS.get(key)
        if macs is None:
            part = getattr(zoo.splits(dataset), subset)
            macs = _MACS[key] = forward_macs(zoo.load_model(run).eval(), part.x[:2])
        seconds = _ROBUSTNESS_SECONDS
        if affordable_samples(macs, evaluations=evaluations, seconds=seconds, kind="forward") >= available:
            return None
        n = budget_samples(
            macs,
            evaluations=evaluations,
            seconds=seconds,
            kind="forward",
            minimum=_ROBUSTNESS_MINIMUM,
            maximum=available,
        )
    else:
        n = check_int(samples, "samples", where, minimum=1)
    return None if n >= available else n


_MACS: dict[tuple[str, str, str], int] = {}  # a stored run's weights never change
_SUBSET_SIZES: dict[tuple[str, str, str], int] = {}  # (zoo, dataset key, subset) -> samples


def _binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(p * (1.0 - p) / n)) if n > 0 else float("nan")


def run_curvature(
    zoo: Zoo,
    run: str,
    *,
    k: int = 5,
    iterations: int = 20,
    probes: int = 10,
    subset: str = "train",
    samples: int | str = "auto",
    groups: int = 4,
    params: Sequence[str] | None = None,
    seed: int = 0,
    target_rse: float | None = None,
) -> pd.DataFrame:
    """Top-``k`` Hessian eigenvalues (with residuals) and the trace (with its standard error) of a run,
    mask-aware, from one Lanczos run of ``iterations`` products plus ``probes`` for the trace
    (:func:`~pruneviz.analysis.curvature_summary`), on ``samples`` samples of its ``subset``.

    ``samples="auto"`` picks the budget from the model's cost (about 8 s on two cores, 32 to 512
    samples); ``sample_se`` says how far each number would move with another draw of that many
    samples, from ``groups`` groups of them. ``target_rse`` asks for an error instead of a sample
    count: the budget then grows from ``samples`` (powers of two, up to the whole subset, at most
    three computations) until the top eigenvalue's ``sample_se`` is at most ``target_rse`` times its
    value (e.g. ``0.05``); a target out of reach warns and returns the last result. ``params``
    restricts the Hessian to a block (e.g. one layer's ``["blocks.0.conv1.weight"]``). Tidy:
    ``metric`` (``eigenvalue_<rank>``, ``trace``), ``value``, ``residual`` (of an eigenvalue, NaN for
    the trace), ``se`` (the trace's estimator error, NaN for eigenvalues), ``sample_se``, ``hvps``,
    ``dim``, ``samples``."""
    from pruneviz.analysis.curvature import GroupedHessian, curvature_summary

    settings: dict[str, Any] = {
        "params": None if params is None else [str(p) for p in params],
        "k": k,
        "iterations": iterations,
        "probes": probes,
        "subset": subset,
        "samples": samples,
        "groups": groups,
        "seed": seed,
    }
    if target_rse is not None:  # keyed only when asked for: the keys of sample counts stay as they were
        settings["target_rse"] = target_rse

    settings = _checked("run_curvature", **settings)

    def at(n: int) -> pd.DataFrame:
        data = _subset(zoo, run, subset, n, seed)
        op = GroupedHessian(
            zoo.load_model(run),
            data,
            groups=min(groups, len(data)),
            masks=dict(zoo.masks(run)) or None,
            params=params,
        )
        return curvature_summary(op, k=k, iterations=iterations, probes=probes, seed=seed)

    def compute() -> pd.DataFrame:
        n = samples
        if n == "auto":
            n = _auto_samples(zoo, run, subset, evaluations=iterations + probes + 2, seconds=8.0, kind="hvp")
        table = at(int(n))
        target = settings.get("target_rse")
        if target is not None:
            available = len(getattr(zoo.splits(zoo.run(run).dataset), subset))
            for done in range(1, _TARGET_ROUNDS + 1):
                top = table[table.metric == "eigenvalue_1"].iloc[0]
                used = int(top.samples)
                rse = abs(top.sample_se / top.value) if top.value != 0 else float("inf")
                if rse <= target:
                    break
                if used >= available or done == _TARGET_ROUNDS:
                    _warn_target("run_curvature", target, rse, used, "the top eigenvalue")
                    break
                table = at(_budget_for(used, rse, target, available, minimum=2 * used))
        return _with_keys(zoo, run, table)

    return zoo.cached("curvature", [run], settings, compute)


def run_landscape(
    zoo: Zoo,
    run: str,
    *,
    dims: int = 2,
    steps: int = 21,
    radius: float = 1.0,
    subset: str = "test",
    samples: int | str = "auto",
    seed: int = 0,
    target_rse: float | None = None,
) -> pd.DataFrame:
    """A 1-D (``dims=1``) or 2-D landscape around a run's weights, its masks respected, on ``samples``
    samples of ``subset`` (``"auto"``: a budget from the model's cost, about 45 s for the grid on two
    cores, 32 to 512 samples; each point's ``loss_se`` is the error that budget gives).

    ``target_rse`` asks for an error instead of a sample count: the per-sample losses at the run's
    weights, on at least 512 samples, give the smallest power of two of samples (32 or more, up to the
    whole subset) at which the centre's ``loss_se`` is at most ``target_rse`` times its loss (it shrinks
    as ``1/√n``); a target out of reach warns."""
    check_choice(str(dims), "dims", "run_landscape", ("1", "2"))
    params = {
        "dims": dims,
        "steps": steps,
        "radius": radius,
        "subset": subset,
        "samples": samples,
        "seed": seed,
    }
    if target_rse is not None:  # keyed only when asked for: the keys of sample counts stay as they were
        params["target_rse"] = target_rse

    params = _checked("run_landscape", **params)

    def compute() -> pd.DataFrame:
        from pruneviz.analysis.perturb import loss_and_accuracy

        n = samples
        if n == "auto":
            n = _auto_samples(zoo, run, subset, evaluations=steps**dims, seconds=45.0, kind="forward")
        model, masks = zoo.load_model(run), dict(zoo.masks(run)) or None
        target = cast(float | None, params.get("target_rse"))
        if target is not None:  # the centre's error from one forward pass over a pilot of the samples
            available = len(getattr(zoo.splits(zoo.run(run).dataset), subset))
            pilot = _subset(zoo, run, subset, min(available, max(int(n), 512)), seed)
            centre = loss_and_accuracy(model, pilot)
            rse = centre["loss_se"] / centre["loss"] if centre["loss"] > 0 else float("inf")
            n = _budget_for(len(pilot), rse, target, available)
        data = _subset(zoo, run, subset, int(n), seed)
        fn = landscape_1d if dims == 1 else landscape_2d
        frame = fn(model, data, steps=steps, radius=radius, masks=masks, seed=seed)
        if target is not None:
            at_centre = (frame.alpha == 0) & ((frame.beta == 0) if "beta" in frame else True)
            middle = frame[at_centre].iloc[0]
            reached = middle.loss_se / middle.loss if middle.loss > 0 else float("inf")
            if reached > target:
                _warn_target("run_landscape", target, reached, len(data), "the loss at the run's weights")
        return _with_keys(zoo, run, frame)

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
    """SAM, ASAM and average adaptive sharpness of a run, one row each (settings in the columns), each
    with ``sample_se``, the error of its ``samples`` samples (:mod:`pruneviz.analysis.sharpness`)."""
    params = {"rho": rho, "sigma": sigma, "subset": subset, "samples": samples, "seed": seed}

    params = _checked("run_sharpness", **params)

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


# -- feature geometry -------------------------------------------------------------------------------
def _pair_keys(zoo: Zoo, run_a: str, run_b: str, where: str) -> dict[str, Any]:
    """Key columns of a comparison of two runs; both must come from one dataset."""
    a, b = zoo.run(run_a), zoo.run(run_b)
    if a.dataset != b.dataset:
        data_fail(
            "run_b",
            where,
            f"a run of the same dataset as run_a ({a.dataset!r})",
            f"a run of {b.dataset!r}",
            "compare runs trained on the same data (zoo.runs(dataset=...)).",
        )
    return {
        "run_a": a.run,
        "run_b": b.run,
        "method": b.method or "dense",
        "structure": b.structure or "",
        "sparsity": b.sparsity,
        "sparsity_target": b.target_sparsity,
        "seed": b.seed,
    }


def _front(frame: pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
    out = frame.copy()
    for i, (k, v) in enumerate(keys.items()):
        out.insert(i, k, v)
    return out


def run_cka(
    zoo: Zoo,
    run_a: str,
    run_b: str,
    *,
    layers_a: Sequence[str] | None = None,
    layers_b: Sequence[str] | None = None,
    kernel: str = "linear",
    debiased: bool = False,
    reduction: str = "flatten",
    batch_size: int | None = None,
    subset: str = "test",
    samples: int = 512,
    seed: int = 0,
    groups: int = 8,
) -> pd.DataFrame:
    """:func:`~pruneviz.analysis.cka_grid` between two runs (typically a dense parent and a pruned
    child) on ``samples`` samples of ``subset``; layers default to every conv and linear layer.
    ``sample_se``: the jackknife error of each value over ``groups`` groups of the samples."""
    where = "run_cka"
    keys = _pair_keys(zoo, run_a, run_b, where)
    params = {
        "layers_a": None if layers_a is None else list(layers_a),
        "layers_b": None if layers_b is None else list(layers_b),
        "kernel": kernel,
        "debiased": debiased,
        "reduction": reduction,
        "batch_size": batch_size,
        "subset": subset,
        "samples": samples,
        "seed": seed,
        "groups": groups,
    }

    params = _checked("run_cka", **params)

    def compute() -> pd.DataFrame:
        data = _subset(zoo, run_a, subset, samples, seed)
        grid = cka_grid(
            _inference_model(zoo, run_a, data),
            _inference_model(zoo, run_b, data),
            data.x,
            layers_a=layers_a,
            layers_b=layers_b,
            kernel=kernel,
            debiased=debiased,
            batch_size=batch_size,
            reduction=reduction,
            groups=groups,
        )
        return _front(grid, keys)

    return zoo.cached("cka", [run_a, run_b], params, compute)


def _features(zoo: Zoo, run: str, data: Dataset, layer: str | None, where: str) -> torch.Tensor:
    model = _inference_model(zoo, run, data)
    if layer is None:  # the penultimate features: what enters the classifier
        head = classifier_layer(model)
        return activations(model, data.x, layers=[head], inputs=True)[head]
    check_layers(model, [layer], where, "layer")
    return activations(model, data.x, layers=[layer])[layer]


def run_knn_overlap(
    zoo: Zoo,
    run_a: str,
    run_b: str,
    *,
    layer: str | None = None,
    k: int = 10,
    subset: str = "test",
    samples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per sample, the share of its ``k`` nearest neighbours that two runs' features agree on
    (:func:`~pruneviz.analysis.mutual_knn_overlap`); ``layer`` defaults to the penultimate features.
    Tidy: keys, ``sample_id``, ``label``, ``metric="knn_overlap"``, ``value``."""
    where = "run_knn_overlap"
    keys = _pair_keys(zoo, run_a, run_b, where)
    params = {"layer": layer, "k": k, "subset": subset, "samples": samples, "seed": seed}

    params = _checked("run_knn_overlap", **params)

    def compute() -> pd.DataFrame:
        data = _subset(zoo, run_a, subset, samples, seed)
        fa = _features(zoo, run_a, data, layer, where)
        fb = _features(zoo, run_b, data, layer, where)
        overlap = mutual_knn_overlap(fa, fb, k=k)
        frame = pd.DataFrame(
            {"sample_id": data.sample_id, "label": data.y.numpy(), "metric": "knn_overlap", "value": overlap}
        )
        return _front(frame.assign(k=k), keys)

    return zoo.cached("knn_overlap", [run_a, run_b], params, compute)


def run_logit_geometry(
    zoo: Zoo,
    run: str,
    *,
    split: str = "clean",
    subset: str = "test",
    samples: int = 100_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per sample, the geometry of a run's classification logit (:func:`~pruneviz.analysis.logit_geometry`)
    on a split: ``"clean"`` or a corruption split such as ``"fog@3"``."""
    params = {"split": split, "subset": subset, "samples": samples, "seed": seed}

    params = _checked("run_logit_geometry", **params)

    def compute() -> pd.DataFrame:
        data = _split_data(zoo, run, split, subset, samples, seed, "run_logit_geometry")
        frame = logit_geometry(_inference_model(zoo, run, data), data.x, data.y, sample_id=data.sample_id)
        return _with_keys(zoo, run, frame.assign(split=split))

    return zoo.cached("logit_geometry", [run], params, compute)


def run_logit_geometry_change(
    zoo: Zoo,
    before: str,
    after: str,
    *,
    split_before: str = "clean",
    split_after: str = "clean",
    subset: str = "test",
    samples: int = 100_000,
    seed: int = 0,
) -> pd.DataFrame:
    """How every sample's logit geometry moves from one run or split to another: dense → pruned
    (``before``, ``after`` runs, same split) or clean → corrupted (the same run, two splits), with the
    samples that move most first (:func:`~pruneviz.analysis.logit_geometry_change`)."""
    keys = _pair_keys(zoo, before, after, "run_logit_geometry_change")
    a = run_logit_geometry(zoo, before, split=split_before, subset=subset, samples=samples, seed=seed)
    b = run_logit_geometry(zoo, after, split=split_after, subset=subset, samples=samples, seed=seed)
    change = logit_geometry_change(a, b)
    return _front(change, {**keys, "split_before": split_before, "split_after": split_after})


def run_embedding(
    zoo: Zoo,
    runs: Sequence[str],
    *,
    method: str = "pca",
    layer: str | None = None,
    subset: str = "test",
    samples: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """The features of several runs (e.g. a dense parent and its pruned children) embedded in one aligned
    2-D space: ``method="pca"`` (PCA + Procrustes, fast) or ``"umap"`` (AlignedUMAP; slow the first time,
    then read from the zoo's cache). The first run is the reference. Tidy: ``run``, ``method``,
    ``structure``, ``sparsity``, ``sample_id``, ``label``, ``x``, ``y`` (+ ``disparity`` for PCA)."""
    where = "run_embedding"
    check_choice(method, "method", where, ("pca", "umap"))
    if isinstance(runs, str) or not runs:
        fail("runs", where, "a list of run ids (the reference first)", runs, "pass e.g. [dense, pruned].")
    runs = list(runs)
    for other in runs[1:]:
        _pair_keys(zoo, runs[0], other, where)
    params = {"method": method, "layer": layer, "subset": subset, "samples": samples, "seed": seed}

    params = _checked("run_embedding", **params)

    def compute() -> pd.DataFrame:
        data = _subset(zoo, runs[0], subset, samples, seed)
        feats = {r: _features(zoo, r, data, layer, where) for r in runs}
        emb = aligned_pca(feats) if method == "pca" else aligned_umap(feats, seed=seed)
        records = {r: zoo.run(r) for r in runs}
        emb = emb.rename(columns={"model": "run"})
        emb.insert(1, "method", emb["run"].map(lambda r: records[r].method or "dense"))
        emb.insert(2, "structure", emb["run"].map(lambda r: records[r].structure or ""))
        emb.insert(3, "sparsity", emb["run"].map(lambda r: records[r].sparsity))
        emb.insert(4, "sample_id", data.sample_id[emb["sample"].to_numpy()])
        emb.insert(5, "label", data.y.numpy()[emb["sample"].to_numpy()])
        return emb.drop(columns="sample").assign(embedding=method)

    return zoo.cached("embedding", runs, params, compute)


# -- robustness and calibration ---------------------------------------------------------------------
DEFAULT_ATTACKS = (
    AttackSettings("fgsm", eps=0.05),
    AttackSettings("fgsm", eps=0.1),
    AttackSettings("pgd", eps=0.05),
    AttackSettings("pgd", eps=0.1),
)
#: attacks on standardised tabular features: eps in standard deviations, each feature kept within its
#: range over the training data
TABULAR_ATTACKS = (
    AttackSettings("fgsm", eps=0.1, clamp=FEATURE_RANGE),
    AttackSettings("fgsm", eps=0.25, clamp=FEATURE_RANGE),
    AttackSettings("pgd", eps=0.1, clamp=FEATURE_RANGE),
    AttackSettings("pgd", eps=0.25, clamp=FEATURE_RANGE),
)


def default_attacks(modality: str) -> tuple[AttackSettings, ...]:
    """The attacks a study runs on data of ``modality``: images and signals in [0, 1] get
    :data:`DEFAULT_ATTACKS`, tables :data:`TABULAR_ATTACKS`; token ids none (they are discrete)."""
    return {"tabular": TABULAR_ATTACKS, "text": ()}.get(modality, DEFAULT_ATTACKS)


def _stored_splits(zoo: Zoo, run: str, subset: str) -> list[str]:
    table = zoo.splits_of(run)
    return sorted(table.loc[table["subset"] == subset, "split"])


def _run_list(zoo: Zoo, runs: Sequence[str] | None, where: str) -> list[str]:
    if runs is None:
        return zoo.run_ids()
    if isinstance(runs, str):
        fail("runs", where, "a list of run ids", runs, f"pass runs=[{runs!r}].")
    for r in runs:
        zoo.run(r)
    return list(runs)


def run_attacks(
    zoo: Zoo,
    *,
    runs: Sequence[str] | None = None,
    attacks: Sequence[AttackSettings] | None = None,
    subset: str = "test",
    samples: int | str | None = "auto",
    batch_size: int = 256,
    progress: bool = False,
) -> pd.DataFrame:
    """White-box attacks on every run (default all): each run's adversarial outputs are stored in the zoo
    as extra splits named by the attack (``AttackSettings.split``, with ``-n<samples>`` appended when a
    sample budget is short of the whole ``subset``), computed once. ``samples`` is that budget (the same
    :func:`budget_subset` for every run of a dataset): ``"auto"`` from the model's cost (the default
    attacks in about 3 s per run on two cores, at least 512 samples; all of them for small models and
    data), None for all. Returns the robust
    accuracy of every run under every attack with the attack's settings beside it, plus the clean
    accuracy as the ``eps = 0`` row. ``attacks=None`` runs the :func:`default_attacks` of the data's
    modality; attacks with ``clamp=FEATURE_RANGE`` keep each feature within its range over the
    training part, widened to the attacked samples' values where they lie outside it. Tidy: run keys,
    ``split``, ``attack``, ``norm``, ``eps``,
    ``step_size``, ``steps``, ``random_start``, ``attack_seed``, ``metric="accuracy"``, ``value``,
    ``se`` (binomial standard error of the budget), ``samples``. ``progress`` shows a bar over the runs."""
    where = "run_attacks"
    check_choice(subset, "subset", where, ("train", "val", "test"))
    ids = _run_list(zoo, runs, where)
    if attacks is None:
        attacks = default_attacks(zoo.dataset(zoo.run(ids[0]).dataset).info.modality)
    if isinstance(attacks, AttackSettings) or not all(isinstance(a, AttackSettings) for a in attacks):
        fail(
            "attacks",
            where,
            "a list of AttackSettings",
            attacks,
            "pass attacks=[AttackSettings('pgd', eps=0.1)].",
        )
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    attacks = list({a.split: a for a in attacks}.values())  # the same settings twice are one attack
    frames = []
    for rid in _progress(ids, progress, "attacks"):
        budget = _robustness_samples(zoo, rid, subset, samples, _ATTACK_EVALUATIONS, where)
        label = {a.split: a.split if budget is None else f"{a.split}-n{budget}" for a in attacks}
        have = set(_stored_splits(zoo, rid, subset))
        todo = [a for a in attacks if label[a.split] not in have]
        splits = zoo.splits(zoo.run(rid).dataset)
        data = budget_subset(getattr(splits, subset), budget)
        if todo:
            model = zoo.load_model(rid)
            bounds = None
            if any(a.clamp == FEATURE_RANGE for a in todo):
                # the training range, widened to the attacked samples' own values: a test sample may lie
                # outside the training range (a larger debt), and the attack must accept it as it is
                (train_lo, train_hi), (lo, hi) = feature_range(splits.train), feature_range(data)
                bounds = (torch.minimum(train_lo, lo), torch.maximum(train_hi, hi))
            new = [
                evaluate(
                    model,
                    attack(model, data, a, batch_size=batch_size, feature_range=bounds),
                    split=label[a.split],
                    subset=subset,
                )
                for a in todo
            ]
            zoo.add_outputs(rid, pd.concat(new, ignore_index=True))
        out = _budget_outputs(zoo, rid, subset, data, [*label.values(), "clean"])
        acc = out.groupby("split")["correct"].agg(["mean", "size"])
        clean = {"split": "clean", "attack": "none", "norm": "", "eps": 0.0, "step_size": 0.0, "steps": 0}
        settings = [clean | {"random_start": False, "attack_seed": 0}] + [
            {"split": label[a.split], "attack": a.name}
            | {
                ("attack_seed" if k == "seed" else k): v
                for k, v in a.to_json().items()
                if k not in ("name", "clamp")
            }
            for a in attacks
        ]
        rows = [
            {**st, "metric": "accuracy", "value": float(acc.loc[st["split"], "mean"]),
             "se": _binomial_se(float(acc.loc[st["split"], "mean"]), int(acc.loc[st["split"], "size"])),
             "samples": int(acc.loc[st["split"], "size"])}
            for st in settings
        ]  # fmt: skip
        frames.append(_with_keys(zoo, rid, pd.DataFrame(rows)))
    return pd.concat(frames, ignore_index=True)


def run_calibration(
    zoo: Zoo,
    *,
    runs: Sequence[str] | None = None,
    subset: str = "test",
    bins: int = 15,
) -> pd.DataFrame:
    """Accuracy, confidence, ECE, NLL and Brier score (:func:`~pruneviz.analysis.calibration_metrics`)
    of every run (default all) on every split stored for it (clean, corruptions, attacks), from the
    zoo's per-sample outputs. Tidy: run keys, ``split``, ``metric``, ``value``, ``n``."""
    where = "run_calibration"
    checked = _checked(where, subset=subset, bins=bins)
    frames = []
    for rid in _run_list(zoo, runs, where):
        splits = sorted(_stored_splits(zoo, rid, subset))
        params = {**checked, "splits": splits}

        def compute(rid: str = rid, splits: list[str] = splits) -> pd.DataFrame:
            out = zoo.outputs(rid, subset=subset).drop(columns="run")
            table = calibration_metrics(out[out["split"].isin(splits)], bins=checked["bins"])
            return _with_keys(zoo, rid, table)

        frames.append(zoo.cached("calibration", [rid], params, compute))
    return pd.concat(frames, ignore_index=True)


def run_reliability(
    zoo: Zoo, run: str, *, split: str = "clean", subset: str = "test", bins: int = 15
) -> pd.DataFrame:
    """The reliability diagram of one run on one split (:func:`~pruneviz.analysis.reliability_bins`),
    with the run's keys in front."""
    out = zoo.outputs(run, subset=subset)
    part = out[out["split"] == split]
    if part.empty:
        fail(
            "split",
            "run_reliability",
            f"a split stored for run {run!r} {sorted(out['split'].unique())}",
            split,
        )
    table = reliability_bins(logits_of(part), part["label"].to_numpy(), bins=bins)
    return _with_keys(zoo, run, table.assign(split=split))


def run_corruptions(
    zoo: Zoo,
    *,
    runs: Sequence[str] | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    suite: str | None = None,
    subset: str = "test",
    samples: int | str | None = "auto",
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Evaluate every run (default all) on corrupted copies of its ``subset`` and store the per-sample
    outputs in the zoo as extra splits (:func:`corruption_split` labels), each computed once.

    ``corruptions`` default to the suite the images select: MNIST-C's 15 for one channel, CIFAR-10-C's
    15 for colour (``suite`` picks another: ``"mnist_c"``, ``"cifar10_c"``, ``"cifar10_c_extra"``).
    ``samples`` is the number of ``subset`` samples each corruption is evaluated on (the same
    :func:`budget_subset` for every run of a dataset); ``"auto"`` budgets from the model's cost (the
    whole suite in about 3 s per run on two cores, at least 512 samples; all of them for small models
    and data), None takes all. Every corrupted dataset is made once and shared by all runs of its
    dataset; results are flushed to the zoo after each corruption, so an interrupted call resumes where
    it stopped. Tidy: run keys, ``corruption``, ``severity`` (0 for clean, on the same samples),
    ``split``, ``metric`` (``accuracy``, ``error``), ``value``, ``se`` (binomial standard error of the
    budget), ``samples``."""
    from pruneviz.analysis.corruptions import SEVERITIES, corrupt, corruption_names

    where = "run_corruptions"
    check_choice(subset, "subset", where, ("train", "val", "test"))
    seed = check_int(seed, "seed", where, minimum=0)
    if isinstance(severities, int) or not len(severities):
        fail(
            "severities", where, "a list of severities in 1-5", severities, "pass e.g. severities=[1, 3, 5]."
        )
    sevs = sorted({check_int(v, "severities", where, minimum=1, maximum=max(SEVERITIES)) for v in severities})
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    ids = _run_list(zoo, runs, where)
    budgets = {
        rid: _robustness_samples(zoo, rid, subset, samples, _CORRUPTION_EVALUATIONS, where) for rid in ids
    }
    by_dataset: dict[tuple[str, int | None], list[str]] = {}
    for rid in ids:
        by_dataset.setdefault((zoo.run(rid).dataset, budgets[rid]), []).append(rid)
    frames = []
    for (dataset, budget), members in by_dataset.items():
        whole = getattr(zoo.splits(dataset), subset)
        data = budget_subset(whole, budget)
        channels = data.info.input_shape[0] if data.info.modality == "image" else 1
        chosen_suite = suite or default_suite(channels)
        if isinstance(corruptions, str):
            fail("corruptions", where, "a list of corruption names", corruptions, f"pass [{corruptions!r}].")
        names = (
            list(dict.fromkeys(corruptions)) if corruptions is not None else corruption_names(chosen_suite)
        )
        # the suite goes into the labels only when it is not the one the channel count selects
        label_suite = None if suite in (None, default_suite(channels)) else suite
        labels = {
            corruption_split(n, v, suite=label_suite, seed=seed, samples=budget): (n, v)
            for n in names
            for v in sevs
        }
        stored = {rid: set(_stored_splits(zoo, rid, subset)) for rid in members}
        models: dict[str, torch.nn.Module] = {}
        pending: dict[str, list[pd.DataFrame]] = {}
        pending_rows = 0
        for name in _progress(names, progress, f"corruptions of {dataset}"):
            for severity in sevs:
                label = corruption_split(name, severity, suite=label_suite, seed=seed, samples=budget)
                todo = [rid for rid in members if label not in stored[rid]]
                if not todo:
                    continue
                bad = corrupt(data, name, severity=severity, seed=seed, suite=suite)
                for rid in todo:
                    if rid not in models:
                        models[rid] = _inference_model(zoo, rid, data)
                    out = evaluate(models[rid], bad, split=label, subset=subset, batch_size=batch_size)
                    pending.setdefault(rid, []).append(out)
                    pending_rows += len(out)
            if pending_rows >= _FLUSH_ROWS:  # bounded memory; an interrupted call resumes from here
                _flush(zoo, pending, stored)
                pending_rows = 0
        _flush(zoo, pending, stored)
        for rid in members:
            out = _budget_outputs(zoo, rid, subset, data, [*labels, "clean"])
            acc = out.groupby("split")["correct"].agg(["mean", "size"])
            rows = []
            for label, (name, severity) in [("clean", ("clean", 0)), *labels.items()]:
                a, n = float(acc.loc[label, "mean"]), int(acc.loc[label, "size"])
                se = _binomial_se(a, n)
                rows.append({"corruption": name, "severity": severity, "split": label,
                             "metric": "accuracy", "value": a, "se": se, "samples": n})  # fmt: skip
                rows.append({"corruption": name, "severity": severity, "split": label,
                             "metric": "error", "value": 1.0 - a, "se": se, "samples": n})  # fmt: skip
            frames.append(_with_keys(zoo, rid, pd.DataFrame(rows)))
    return pd.concat(frames, ignore_index=True)


def _inference_model(zoo: Zoo, run: str, data: Dataset) -> torch.nn.Module:
    """A run's model, loaded for forward passes over ``data`` (channels-last where that keeps the logits,
    :func:`~pruneviz.models.layout.inference_layout`)."""
    return inference_layout(zoo.load_model(run), data.x)


def _budget_outputs(zoo: Zoo, run: str, subset: str, data: Dataset, splits: Sequence[str]) -> pd.DataFrame:
    """A run's stored outputs on ``splits``, the clean split cut to the samples of ``data`` (a budget)."""
    out = zoo.outputs(run, subset=subset)
    out = out[out["split"].isin(list(splits))]
    clean = out["split"] == "clean"
    return out[~clean | out["sample_id"].isin(data.sample_id)]


_FLUSH_ROWS = 2_000_000  # per-sample rows of new corruption outputs held before they are written


def _flush(zoo: Zoo, pending: dict[str, list[pd.DataFrame]], stored: dict[str, set[str]]) -> None:
    """Write the pending outputs of every run (one atomic rewrite per run) and forget them."""
    for rid, outs in pending.items():
        zoo.add_outputs(rid, pd.concat(outs, ignore_index=True))
        stored[rid] |= {o["split"].iloc[0] for o in outs}
    pending.clear()


def default_suite(channels: int) -> str:
    """The corruption suite images with ``channels`` channels get: MNIST-C for one, CIFAR-10-C else."""
    return "mnist_c" if channels == 1 else "cifar10_c"


def _progress(items: Sequence[Any], show: bool, desc: str) -> Any:
    return bar(items, show=show, desc=desc)


def run_corruption_errors(
    zoo: Zoo,
    *,
    runs: Sequence[str] | None = None,
    normalise: str = "parent",
    normalisers: Mapping[str, float | Sequence[float]] | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    suite: str | None = None,
    subset: str = "test",
    seed: int = 0,
) -> pd.DataFrame:
    """Corruption errors and mCE of every run (:func:`~pruneviz.analysis.corruptions.mean_corruption_error`,
    Hendrycks & Dietterich 2019), evaluating the corruption splits first where missing.

    ``normalise="parent"`` divides a pruned run's errors by its dense parent's (so CE 1.2 means 20 % more
    corruption error than before pruning; dense runs are unnormalised); ``"none"`` reports raw mean
    errors; ``"given"`` looks the baseline up by corruption name in ``normalisers`` (e.g. AlexNet's
    published errors). Relative CE uses each run's clean error. Tidy: run keys, ``corruption``
    (``"all"`` for the mean), ``metric`` (``ce``, ``relative_ce``, ``mce``, ``relative_mce``), ``value``,
    ``normalised``, ``corruptions`` (how many corruptions a mean covers) and ``note`` (why a ratio is
    undefined, e.g. a parent that makes no error on an easy corruption: such values are NaN and left
    out of the means)."""
    from pruneviz.analysis.corruptions import mean_corruption_error

    where = "run_corruption_errors"
    check_choice(normalise, "normalise", where, ("parent", "none", "given"))
    if normalise == "given" and normalisers is None:
        fail("normalisers", where, "baseline errors by corruption name when normalise='given'", None)
    ids = _run_list(zoo, runs, where)
    parents = {r: zoo.run(r).parent for r in ids}
    needed = sorted(set(ids) | ({p for p in parents.values() if p} if normalise == "parent" else set()))
    table = run_corruptions(
        zoo,
        runs=needed,
        corruptions=corruptions,
        severities=severities,
        suite=suite,
        subset=subset,
        seed=seed,
    )
    errors = table[table.metric == "error"]
    frames = []
    for rid in ids:
        mine = errors[errors.run == rid]
        clean = float(mine.loc[mine.severity == 0, "value"].iloc[0])
        body = mine[mine.severity > 0].rename(columns={"value": "error"})[["corruption", "severity", "error"]]
        kwargs: dict[str, Any] = {"relative_to_clean": clean}
        parent = parents[rid]
        if normalise == "parent" and parent:
            base = errors[errors.run == parent]
            kwargs["normalisers"] = base[base.severity > 0].rename(columns={"value": "error"})[
                ["corruption", "severity", "error"]
            ]
            kwargs["baseline_clean"] = float(base.loc[base.severity == 0, "value"].iloc[0])
        elif normalise == "given":
            kwargs["normalisers"] = normalisers
            kwargs.pop("relative_to_clean")
        frames.append(_with_keys(zoo, rid, mean_corruption_error(body, **kwargs)))
    return pd.concat(frames, ignore_index=True)
