"""Input attributions (Captum) of dense and pruned models, and how much two attributions agree.

Methods (computed by Captum, imported on first use):

- ``"saliency"``: ``|∂ logit_t / ∂x|`` (Simonyan, Vedaldi & Zisserman 2014);
- ``"integrated_gradients"``: ``(x - x') · ∫₀¹ ∂ logit_t(x' + α(x - x')) / ∂x dα`` by Gauss–Legendre
  quadrature with ``steps`` points (Sundararajan, Taly & Yan 2017); with several baselines ``x'`` the
  mean of their attributions;
- ``"gradient_shap"``: the expectation of ``(x - x') · ∂ logit_t(x' + α(x - x')) / ∂x`` over baselines
  ``x'`` drawn from ``baseline`` and ``α ~ U(0, 1)``, estimated with ``draws`` draws per input
  (Lundberg & Lee 2017; Captum's GradientShap without input noise).

The class attributed (``target``) is always explicit: a tensor of class indices, one per sample —
usually the true labels, which the dataset-level functions use. The baseline is a tensor of shape
``(M, *input_shape)`` (default: one all-zero input).

Agreement between two attributions of the same samples (:func:`attribution_agreement`), per sample:
``spearman`` — Spearman's rank correlation of the magnitudes ``|a|`` and ``|b|`` over the features (ties
get average ranks; a constant attribution gives NaN); ``topk_overlap`` — ``|top_k(|a|) ∩ top_k(|b|)| / k``
(ties broken by feature index); ``cosine`` — the cosine similarity of the *signed* attributions, which
also sees whether the two models push the same features the same way. Magnitudes are ranked because
saliency is unsigned and because "which features matter" is the question of rank agreement
(as in Adebayo et al. 2018's sanity checks).

With a zero baseline, integrated gradients and GradientSHAP give exactly zero to every input feature
that is zero (blank image borders); two models then share those ties, which raises their rank
correlation — compare within one method, or pass another baseline.

The attribution method is held in an ``attribution`` column (``method`` is the pruning method in the
shared vocabulary).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pruneviz._optional import require
from pruneviz._seed import seeded
from pruneviz._validation import check_choice, check_int, data_fail, fail
from pruneviz.analysis.attacks import (
    check_inputs,
    check_labels,
    check_model_device,
    input_gradient_scope,
)
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import tensor_inputs

METHODS = ("gradient_shap", "integrated_gradients", "saliency")
METRICS = ("spearman", "topk_overlap", "cosine")


# -- attributions ---------------------------------------------------------------------------------
def _check_baseline(baseline: Any, x: torch.Tensor, where: str) -> torch.Tensor:
    if baseline is None:
        return torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
    if (
        not isinstance(baseline, torch.Tensor)
        or not baseline.is_floating_point()
        or tuple(baseline.shape[1:]) != tuple(x.shape[1:])
        or baseline.ndim != x.ndim
        or baseline.shape[0] < 1
    ):
        got = (
            f"a tensor of shape {tuple(baseline.shape)}"
            if isinstance(baseline, torch.Tensor)
            else type(baseline).__name__
        )
        fail(
            "baseline",
            where,
            f"a float tensor of shape (M, {', '.join(map(str, x.shape[1:]))}) with M >= 1 reference inputs",
            None,
            got=got,
            fix="pass e.g. torch.zeros(1, *input_shape), or a few training samples for gradient_shap.",
        )
    if not bool(torch.isfinite(baseline).all()):
        data_fail("baseline", where, "finite values only", "NaN/inf values", "pass finite reference inputs.")
    return baseline.detach().to(device=x.device, dtype=x.dtype)


def _check_classifier(model: nn.Module, x: torch.Tensor, target: torch.Tensor, where: str) -> int:
    """One forward pass of one sample: the model must return ``(1, K)`` logits with ``target < K``."""
    with torch.no_grad():
        out = model(x[:1])
    if out.ndim != 2:
        fail(
            "model",
            where,
            "a classifier returning logits of shape (N, K)",
            None,
            got=f"outputs of shape {tuple(out.shape)}",
        )
    k = out.shape[1]
    bad = (target < 0) | (target >= k)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        data_fail(
            "target",
            where,
            f"class indices in [0, {k}) (the model has {k} outputs)",
            f"{int(target[i])} at index {i}",
            "pass the true labels (data.y) or predicted classes.",
        )
    return k


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target: torch.Tensor,
    method: str = "integrated_gradients",
    baseline: torch.Tensor | None = None,
    steps: int = 32,
    draws: int = 16,
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Attributions of each input feature to the logit of class ``target`` (see the module docstring).

    Parameters
    ----------
    model : nn.Module returning logits ``(N, K)``. It runs in eval mode; afterwards every module's
        training flag, every parameter's ``requires_grad`` and ``.grad`` are as before, also after an
        exception. No hook is registered.
    x : float tensor ``(N, *input_shape)``, finite, on the model's device.
    target : int tensor ``(N,)``: the class attributed for each sample (e.g. the true labels).
    method : ``"integrated_gradients"``, ``"saliency"`` or ``"gradient_shap"``.
    baseline : float tensor ``(M, *input_shape)`` of reference inputs, default one zero input. Integrated
        gradients averages over the M baselines; GradientSHAP samples from them; saliency ignores them.
    steps : quadrature points of integrated gradients.
    draws : random (baseline, α) draws per input of GradientSHAP.
    seed : seeds GradientSHAP's draws (torch and numpy global generators, restored afterwards; the
        other methods are deterministic and do not touch any generator). The
        draws of a batch depend on the batch, so the result is reproducible for a given ``seed`` and
        ``batch_size``.
    batch_size : inputs per Captum call (integrated gradients evaluates ``steps``, GradientSHAP
        ``draws`` points per input).

    Returns
    -------
    float tensor of ``x``'s shape.

    Examples
    --------
    >>> model = nn.Linear(3, 2)
    >>> x = torch.ones(4, 3)
    >>> a = attribute(model, x, target=torch.zeros(4, dtype=torch.long), method="integrated_gradients")
    >>> torch.allclose(a, model.weight[0].detach().expand(4, 3), atol=1e-6)
    True
    """
    where = "attribute"
    captum_attr = require("captum.attr", "Attributions")
    if not isinstance(model, nn.Module):
        fail("model", where, "a torch nn.Module", type(model).__name__)
    method = check_choice(method, "method", where, METHODS)
    x = check_inputs(x, where)
    target = check_labels(target, x.shape[0], where, param="target").to(x.device)
    baseline = _check_baseline(baseline, x, where)
    steps = check_int(steps, "steps", where, minimum=1)
    draws = check_int(draws, "draws", where, minimum=1)
    seed = check_int(seed, "seed", where, minimum=0)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    check_model_device(model, x, where)
    x = x.detach()
    out = torch.empty_like(x)
    # only GradientSHAP draws random numbers; the other methods leave every generator alone
    randomness = seeded(seed) if method == "gradient_shap" else contextlib.nullcontext()
    with input_gradient_scope(model), randomness:
        _check_classifier(model, x, target, where)
        algo = {
            "saliency": captum_attr.Saliency,
            "integrated_gradients": captum_attr.IntegratedGradients,
            "gradient_shap": captum_attr.GradientShap,
        }[method](model)
        for start in range(0, x.shape[0], batch_size):
            part = slice(start, start + batch_size)
            xb, tb = x[part].clone().requires_grad_(True), target[part]
            if method == "saliency":
                res = algo.attribute(xb, target=tb, abs=True)
            elif method == "integrated_gradients":
                res = sum(
                    algo.attribute(xb, baselines=baseline[m : m + 1], target=tb, n_steps=steps)
                    for m in range(baseline.shape[0])
                ) / float(baseline.shape[0])
            else:
                res = algo.attribute(xb, baselines=baseline, target=tb, n_samples=draws, stdevs=0.0)
            out[part] = res.detach()
    return out


# -- agreement ------------------------------------------------------------------------------------
def default_k(features: int) -> int:
    """The default ``k`` of top-k overlap: 10% of the features, at least 1."""
    return max(1, math.ceil(0.1 * features))


def _check_k(k: Any, features: int, where: str) -> int:
    if k is None:
        return default_k(features)
    return check_int(k, "k", where, minimum=1, maximum=features)


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def _top_k_mask(v: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N, D)``: each row's ``k`` largest entries (ties to the lower feature index)."""
    order = np.argsort(-v, axis=1, kind="stable")[:, :k]
    mask = np.zeros(v.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _check_attributions(a: Any, where: str, param: str) -> torch.Tensor:
    """``a`` must be a finite float tensor of attributions, shape ``(N, *input_shape)`` with ``N >= 1``."""
    if not isinstance(a, torch.Tensor) or not a.is_floating_point() or a.ndim < 2:
        got = (
            f"a tensor of dtype {a.dtype} and shape {tuple(a.shape)}"
            if isinstance(a, torch.Tensor)
            else type(a).__name__
        )
        fail(
            param,
            where,
            "a float tensor of attributions of shape (N, *input_shape)",
            None,
            got=got,
            fix="pass the output of attribute(model, x, target=...) for the same samples as the other map.",
        )
    if a.shape[0] == 0:
        data_fail(
            param, where, "attributions of at least one sample", "0 samples", "attribute a non-empty batch."
        )
    finite = torch.isfinite(a.reshape(a.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        data_fail(
            param,
            where,
            "finite attributions (no NaN or inf)",
            f"{bad.numel()} sample(s) with NaN/inf, the first at index {int(bad[0])}",
            "recompute them: a NaN attribution usually comes from NaN inputs or a model that outputs NaN.",
        )
    return a


def attribution_agreement(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    k: int | None = None,
    sample_id: np.ndarray | Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per-sample agreement of two attributions of the same inputs (see the module docstring).

    Parameters
    ----------
    a, b : tensors of one shape ``(N, *input_shape)``, finite.
    k : top-k size, in ``[1, D]`` with ``D`` the features per sample; default 10% of ``D``.
    sample_id : ids of the ``N`` samples (default ``0..N-1``).

    Returns
    -------
    Tidy frame, ``N`` rows per metric: ``sample_id``, ``metric`` (``spearman``, ``topk_overlap``,
    ``cosine``), ``value``, ``k``.

    Examples
    --------
    >>> a = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    >>> b = torch.tensor([[4.0, 1.0, 2.0, 3.0]])
    >>> attribution_agreement(a, b, k=2).set_index("metric").value.round(3).to_dict()
    {'spearman': 0.2, 'topk_overlap': 0.5, 'cosine': 0.867}
    """
    where = "attribution_agreement"
    a = _check_attributions(a, where, "a")
    b = _check_attributions(b, where, "b")
    if a.shape != b.shape:
        fail(
            "b",
            where,
            f"attributions of the same shape as a {tuple(a.shape)}",
            None,
            got=f"shape {tuple(b.shape)}",
            fix="attribute the same samples with both models.",
        )
    n = a.shape[0]
    aa = a.detach().to("cpu", torch.float64).reshape(n, -1).numpy()
    bb = b.detach().to("cpu", torch.float64).reshape(n, -1).numpy()
    k = _check_k(k, aa.shape[1], where)
    if sample_id is None:
        ids = np.arange(n, dtype=np.int64)
    else:
        ids = np.asarray(sample_id)
        if ids.shape != (n,):
            fail("sample_id", where, f"{n} ids (one per sample)", None, got=f"shape {ids.shape}")
    from scipy.stats import rankdata

    spearman = _row_pearson(rankdata(np.abs(aa), axis=1), rankdata(np.abs(bb), axis=1))
    overlap = (_top_k_mask(np.abs(aa), k) & _top_k_mask(np.abs(bb), k)).sum(axis=1) / k
    norms = np.linalg.norm(aa, axis=1) * np.linalg.norm(bb, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, (aa * bb).sum(axis=1) / np.where(norms > 0, norms, 1.0), np.nan)
    return pd.DataFrame(
        {
            "sample_id": np.tile(ids, 3),
            "metric": np.repeat(np.array(METRICS, dtype=object), n),
            "value": np.concatenate([spearman, overlap, cosine]),
            "k": k,
        }
    )


# -- datasets -------------------------------------------------------------------------------------
def select_samples(data: Dataset, sample_ids: Any, where: str) -> Dataset:
    """The samples of ``data`` with the given ids, in the given order (all samples for ``None``)."""
    if not isinstance(data, Dataset):
        fail(
            "data", where, "a pruneviz Dataset", type(data).__name__, "wrap data with pruneviz.data.Dataset."
        )
    if sample_ids is None:
        return data
    ids = np.asarray(sample_ids)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        fail("sample_ids", where, "a non-empty list of integer sample ids", sample_ids)
    if np.unique(ids).size != ids.size:
        fail("sample_ids", where, "distinct sample ids", sample_ids, "remove the repeated ids.")
    position = pd.Series(np.arange(len(data)), index=data.sample_id)
    missing = ids[~np.isin(ids, data.sample_id)]
    if missing.size:
        data_fail(
            "sample_ids",
            where,
            "ids of samples in the data",
            f"{missing.size} id(s) not in it, e.g. {int(missing[0])}",
            "pick ids from data.sample_id (of the subset analysed).",
        )
    return data.take(position.loc[ids].to_numpy(copy=True))


def _structure(model: nn.Module) -> dict[str, str]:
    """``module name -> class name`` of every module that holds parameters of its own (directly, not
    through a child), e.g. ``{"0": "Linear", "2": "Linear"}``. Pruning with ``torch.nn.utils.prune``
    renames a parameter (``weight`` -> ``weight_orig`` plus a ``weight_mask`` buffer) and channel pruning
    changes shapes, but neither changes this."""
    return {
        name: type(module).__name__
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    }


def check_comparable(dense: nn.Module, pruned: nn.Module, data: Dataset, where: str) -> None:
    """Two models of one architecture — the same names and types of the modules that hold parameters
    (parameter names, masks and channel-pruned shapes may differ) — that both map ``data``'s inputs to one
    logit per class."""
    for name, model in (("dense_model", dense), ("pruned_model", pruned)):
        if not isinstance(model, nn.Module):
            fail(name, where, "a torch nn.Module", type(model).__name__)
    a, b = _structure(dense), _structure(pruned)
    if a != b:
        differ = sorted(
            f"{k}: {a.get(k, 'absent')} vs {b.get(k, 'absent')}"
            for k in set(a) | set(b)
            if a.get(k) != b.get(k)
        )
        fail(
            "pruned_model",
            where,
            "a model of the dense model's architecture (the same layers with parameters, by name and type)",
            None,
            got=f"different layers (dense vs pruned), e.g. {differ[:3]}",
            fix="compare a pruned run with a dense run of the same architecture.",
        )
    x = tensor_inputs(data.x, "data", where, "attributions")
    for name, model in (("dense_model", dense), ("pruned_model", pruned)):
        check_model_device(model, x, where)
        try:
            with input_gradient_scope(model), torch.no_grad():
                out = model(data.x[:1])
        except RuntimeError as exc:
            raise fail(
                name,
                where,
                f"a model that accepts inputs of shape (N, {', '.join(map(str, data.info.input_shape))})",
                type(model).__name__,
                f"use a model built for this dataset ({exc}).",
            ) from exc
        if out.ndim != 2 or out.shape[1] != data.num_classes:
            fail(
                name,
                where,
                f"outputs of shape (N, {data.num_classes}) (one logit per class)",
                None,
                got=f"outputs of shape {tuple(out.shape)}",
            )


def _check_methods(methods: Any, where: str) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        fail(
            "methods", where, f"a non-empty list of names from {list(METHODS)}", methods, "e.g. ['saliency']."
        )
    return [check_choice(m, "methods", where, METHODS) for m in methods]


def compare_attributions(
    dense_model: nn.Module,
    pruned_model: nn.Module,
    data: Dataset,
    *,
    sample_ids: Sequence[int] | None = None,
    methods: Sequence[str] = METHODS,
    k: int | None = None,
    baseline: torch.Tensor | None = None,
    steps: int = 32,
    draws: int = 16,
    seed: int = 0,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Agreement of the dense and the pruned model's attributions of the true class, per sample.

    Both models are attributed with the same settings and the same seed (GradientSHAP draws the same
    baselines and α for both). ``sample_ids`` selects samples of ``data`` (default all).

    Returns
    -------
    Tidy frame: ``sample_id``, ``attribution`` (the method), ``metric`` (``spearman``,
    ``topk_overlap``, ``cosine``), ``value``, ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(np.random.rand(6, 4), np.array([0, 1, 2] * 2))
    >>> model = nn.Linear(4, 3)
    >>> frame = compare_attributions(model, model, ds, methods=["saliency"], k=2)
    >>> frame.groupby("metric").value.min().round(6).to_dict()
    {'cosine': 1.0, 'spearman': 1.0, 'topk_overlap': 1.0}
    """
    where = "compare_attributions"
    part = select_samples(data, sample_ids, where)
    methods = _check_methods(methods, where)
    check_comparable(dense_model, pruned_model, part, where)
    k = _check_k(k, int(np.prod(part.info.input_shape)), where)
    frames = []
    for method in methods:
        maps = [
            attribute(
                model,
                tensor_inputs(part.x, "data", where, "attributions"),
                target=part.y,
                method=method,
                baseline=baseline,
                steps=steps,
                draws=draws,
                seed=seed,
                batch_size=batch_size,
            )
            for model in (dense_model, pruned_model)
        ]
        agreement = attribution_agreement(*maps, k=k, sample_id=part.sample_id)
        agreement.insert(1, "attribution", method)
        frames.append(agreement)
    return pd.concat(frames, ignore_index=True)


def attribution_maps(
    model: nn.Module,
    data: Dataset,
    *,
    sample_ids: Sequence[int],
    method: str = "integrated_gradients",
    baseline: torch.Tensor | None = None,
    steps: int = 32,
    draws: int = 16,
    seed: int = 0,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Attributions of the true class of the chosen samples as a long frame, one row per feature.

    Columns: ``sample_id``, ``attribution`` (the method), ``target`` (the class attributed),
    ``feature`` (flat index into the input), the feature's position — ``channel``, ``row``, ``col`` for
    images; ``channel``, ``position`` for sequences; ``feature_name`` for named tabular features — and
    ``value``.

    Examples
    --------
    >>> import numpy as np
    >>> ds = Dataset(np.random.rand(2, 1, 2, 2), np.array([0, 1]))
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> attribution_maps(model, ds, sample_ids=[1], method="saliency").columns.tolist()
    ['sample_id', 'attribution', 'target', 'feature', 'channel', 'row', 'col', 'value']
    """
    where = "attribution_maps"
    if sample_ids is None:
        fail("sample_ids", where, "a list of sample ids", None, "pass e.g. sample_ids=data.sample_id[:8].")
    part = select_samples(data, sample_ids, where)
    values = attribute(
        model,
        tensor_inputs(part.x, "data", where, "attributions"),
        target=part.y,
        method=method,
        baseline=baseline,
        steps=steps,
        draws=draws,
        seed=seed,
        batch_size=batch_size,
    )
    n, shape = len(part), part.info.input_shape
    d = int(np.prod(shape))
    frame = pd.DataFrame(
        {
            "sample_id": np.repeat(part.sample_id, d),
            "attribution": method,
            "target": np.repeat(part.y.numpy(), d),
            "feature": np.tile(np.arange(d), n),
        }
    )
    coords = np.unravel_index(np.arange(d), shape)
    info = part.info
    if info.modality == "image" and len(shape) == 3:
        for name, c in zip(("channel", "row", "col"), coords, strict=True):
            frame[name] = np.tile(c, n)
    elif info.modality == "sequence" and len(shape) == 2:
        for name, c in zip(("channel", "position"), coords, strict=True):
            frame[name] = np.tile(c, n)
    elif info.feature_names is not None:
        frame["feature_name"] = np.tile(np.asarray(info.feature_names, dtype=object), n)
    frame["value"] = values.detach().to("cpu", torch.float64).reshape(-1).numpy()
    return frame


# -- zoo ------------------------------------------------------------------------------------------
