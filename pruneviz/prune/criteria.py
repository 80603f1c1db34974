"""Importance criteria: each maps prunable layers to a score per weight (higher = more important).

Every criterion has the signature ``criterion(model, layers, *, data, seed, batch_size) -> {name: scores}``
and leaves the model exactly as it found it (weights, gradients, mode). The gradient criteria (SNIP,
Taylor, GraSP) read a calibration :class:`~pruneviz.data.Dataset` with labels; Wanda and the layer input
statistics read a Dataset or any iterable of batches of model inputs, padding excluded
(:mod:`pruneviz.prune.calibration`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._scope import forward_hooks
from pruneviz._seed import seeded
from pruneviz._validation import fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.calibration import Batch, calibration_batches, check_reached, feed, real_tokens

Scores = dict[str, torch.Tensor]
Criterion = Callable[..., Scores]


def _need_data(data: Dataset | None, method: str) -> Dataset:
    if data is None:
        fail(
            "data",
            f"prune (method={method!r})",
            "a calibration Dataset (this criterion reads data)",
            None,
            "pass data=<a Dataset of training samples>, e.g. the train split.",
        )
    if not isinstance(data, Dataset):
        fail(
            "data",
            f"prune (method={method!r})",
            "a pruneviz Dataset with labels (this criterion differentiates the loss; only wanda and "
            "sparsegpt calibrate from unlabeled batches of model inputs)",
            type(data).__name__,
            "wrap the samples and their labels in pruneviz.data.Dataset.",
        )
    return data


class GradientScope:
    """Run a gradient computation on ``model`` in eval mode, with autograd on and every parameter
    requiring a gradient (also under ``torch.no_grad()`` or with frozen weights); restore the mode,
    the ``requires_grad`` flags and the gradients afterwards, also when the block raises."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self.mode = self.model.training
        self.grads = {n: p.grad for n, p in self.model.named_parameters()}
        self.requires = {n: p.requires_grad for n, p in self.model.named_parameters()}
        self.grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(True)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        for n, p in self.model.named_parameters():
            p.grad = self.grads[n]
            p.requires_grad_(self.requires[n])
        self.model.train(self.mode)
        torch.set_grad_enabled(self.grad_mode)


def magnitude(model: nn.Module, layers: Mapping[str, nn.Module], **_: object) -> Scores:
    """|w| (Han et al. 2015)."""
    return {n: m.weight.detach().abs().clone() for n, m in layers.items()}


def random(model: nn.Module, layers: Mapping[str, nn.Module], *, seed: int = 0, **_: object) -> Scores:
    """Uniform random scores drawn from ``seed`` (a baseline)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.weight.shape, generator=gen) for n, m in layers.items()}


def lamp(model: nn.Module, layers: Mapping[str, nn.Module], **_: object) -> Scores:
    """Layer-adaptive magnitude-based pruning (Lee et al. 2021, eq. 2).

    With a layer's weights sorted so that ``|w_1| <= ... <= |w_n|``, the score of ``w_u`` is
    ``w_u^2 / sum_{v >= u} w_v^2``; scores are comparable across layers, so LAMP uses a global threshold.
    """
    out = {}
    for n, m in layers.items():
        w2 = m.weight.detach().double().flatten() ** 2
        order = torch.argsort(w2, stable=True)
        sorted_w2 = w2[order]
        tail = torch.flip(torch.cumsum(torch.flip(sorted_w2, [0]), 0), [0])  # sum_{v >= u}
        score = torch.empty_like(w2)
        score[order] = sorted_w2 / tail.clamp_min(torch.finfo(torch.float64).tiny)
        out[n] = score.reshape(m.weight.shape).float()
    return out


def _batches(data: Dataset, batch_size: int):
    for i in range(0, len(data), batch_size):
        yield data.x[i : i + batch_size], data.y[i : i + batch_size]


def _loss_gradients(
    model: nn.Module, layers: Mapping[str, nn.Module], data: Dataset, batch_size: int
) -> Scores:
    """Gradient of the mean cross-entropy over ``data`` w.r.t. each layer's weight."""
    grads = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    for xb, yb in _batches(data, batch_size):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / len(data)
        loss.backward()
        for n, m in layers.items():
            grads[n] += m.weight.grad.detach()
    return grads


def snip(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    *,
    data: Dataset | None = None,
    batch_size: int = 256,
    **_: object,
) -> Scores:
    """Connection sensitivity |g ⊙ w| with g the loss gradient on the calibration data (Lee et al. 2019)."""
    data = _need_data(data, "snip")
    with GradientScope(model):
        grads = _loss_gradients(model, layers, data, batch_size)
    return {n: (grads[n] * m.weight.detach()).abs() for n, m in layers.items()}


def taylor(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    *,
    data: Dataset | None = None,
    batch_size: int = 64,
    **_: object,
) -> Scores:
    """First-order Taylor importance (Molchanov et al. 2019): the mean over minibatches of (g ⊙ w)^2."""
    data = _need_data(data, "taylor")
    out = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    batches = 0
    with GradientScope(model):
        for xb, yb in _batches(data, batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            for n, m in layers.items():
                out[n] += (m.weight.grad.detach() * m.weight.detach()) ** 2
            batches += 1
    return {n: v / batches for n, v in out.items()}


def grasp(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    *,
    data: Dataset | None = None,
    batch_size: int = 256,
    **_: object,
) -> Scores:
    """Gradient signal preservation (Wang et al. 2020): importance ``w ⊙ Hg``.

    GraSP scores ``S = -w ⊙ Hg`` and removes the weights with the largest S; returning ``-S`` keeps the
    convention that higher is more important. ``g`` is the loss gradient over the calibration data and
    ``H`` the Hessian of that loss, so ``Hg`` is one Hessian-vector product.
    """
    data = _need_data(data, "grasp")
    work = copy.deepcopy(model)
    names = list(layers)
    mods = dict(work.named_modules())
    params = [mods[n].weight for n in names]
    g = [torch.zeros_like(p) for p in params]
    hg = [torch.zeros_like(p) for p in params]
    with GradientScope(work):
        for xb, yb in _batches(data, batch_size):
            loss = F.cross_entropy(work(xb), yb, reduction="sum") / len(data)
            for acc, gi in zip(g, torch.autograd.grad(loss, params), strict=True):
                acc += gi
        for xb, yb in _batches(data, batch_size):
            loss = F.cross_entropy(work(xb), yb, reduction="sum") / len(data)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            z = sum((gi * gd.detach()).sum() for gi, gd in zip(grads, g, strict=True))
            for acc, h in zip(hg, torch.autograd.grad(z, params), strict=True):
                acc += h
    return {n: (p.detach() * h).detach() for n, p, h in zip(names, params, hg, strict=True)}


def synflow(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    *,
    input_shape: tuple[int, ...] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    **_: object,
) -> Scores:
    """Synaptic flow (Tanaka et al. 2020): ``|w ⊙ dR/dw|`` with ``R = 1ᵀ f(1; |w|)``, data-free.

    Computed in float64 on a copy with absolute weights (and current ``masks`` applied), BatchNorm in
    eval mode. The iterative schedule of SynFlow lives in :func:`pruneviz.prune.compute_masks`.
    """
    work = copy.deepcopy(model).double().eval()
    mods = dict(work.named_modules())
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
        if masks:
            for n, mk in masks.items():
                mods[n].weight.mul_(mk.to(torch.float64))
    if input_shape is None:
        fail(
            "input_shape",
            "prune (method='synflow')",
            "the per-sample input shape, e.g. (1, 8, 8)",
            None,
            "pass input_shape=... or data=<a Dataset> (its input shape is used).",
        )
    ones = torch.ones((1, *input_shape), dtype=torch.float64)
    params = [mods[n].weight for n in layers]
    with GradientScope(work):
        r = work(ones).sum()
        grads = torch.autograd.grad(r, params)
    return {n: (g * p).detach().abs().float() for n, p, g in zip(layers, params, grads, strict=True)}


def _run_input_hooks(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    batches: Sequence[Batch],
    consume: Callable[[str, torch.Tensor], None],
    where: str,
) -> None:
    """Feed ``batches`` through the adapted ``model`` (eval mode, no grad) and hand each layer's input
    columns ``(features, tokens)`` of every batch to ``consume(name, columns)``, padded positions left
    out (:func:`~pruneviz.prune.calibration.real_tokens`); hooks and mode are restored. Raises if a layer
    receives no input."""
    reached: set[str] = set()

    def hook_for(name: str, module: nn.Module):
        def hook(_m, inputs, _out) -> None:
            reached.add(name)
            consume(name, _columns(module, real_tokens(module, inputs[0].detach())))

        return hook

    hooks = [(m, hook_for(n, m)) for n, m in layers.items()]
    with forward_hooks(hooks):
        feed(model, batches, where=where)
    check_reached(layers, reached, where)


def layer_inputs(
    model: nn.Module, layers: Mapping[str, nn.Module], data: Any, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Each layer's input as a matrix of columns: ``(features, tokens)`` in float64.

    ``data`` is a Dataset or an iterable of batches of model inputs (see
    :mod:`pruneviz.prune.calibration`); padded token positions are left out. For a Linear layer the
    features are its inputs; for a convolution they are the im2col patches, so a weight's flattened input
    index matches ``weight.reshape(out, -1)``. Memory grows with the data; the pruning methods use
    :func:`layer_input_gram` and :func:`layer_input_norms`, which do not.
    """
    batches = calibration_batches(data, batch_size=batch_size, where="layer_inputs")
    captured: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    _run_input_hooks(model, layers, batches, lambda n, cols: captured[n].append(cols), "layer_inputs")
    return {n: torch.cat(v, dim=1) for n, v in captured.items()}


def layer_input_gram(
    model: nn.Module, layers: Mapping[str, nn.Module], data: Any, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """``X Xᵀ`` of each layer's input columns (float64, ``features × features``), accumulated per batch;
    ``data`` as for :func:`layer_inputs`, padded positions left out."""
    batches = calibration_batches(data, batch_size=batch_size, where="layer_input_gram")
    return input_grams(model, layers, batches, where="layer_input_gram")


def layer_input_norms(
    model: nn.Module, layers: Mapping[str, nn.Module], data: Any, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """``||X_j||_2`` of every input feature of each layer over all calibration tokens (float64); ``data``
    as for :func:`layer_inputs`, padded positions left out."""
    batches = calibration_batches(data, batch_size=batch_size, where="layer_input_norms")
    return input_norms(model, layers, batches, where="layer_input_norms")


def input_grams(
    model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[Batch], *, where: str
) -> dict[str, torch.Tensor]:
    """:func:`layer_input_gram` of prepared calibration batches."""
    grams: dict[str, torch.Tensor] = {}

    def consume(name: str, cols: torch.Tensor) -> None:
        g = cols @ cols.T
        grams[name] = g if name not in grams else grams[name] + g

    _run_input_hooks(model, layers, batches, consume, where)
    return grams


def input_norms(
    model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[Batch], *, where: str
) -> dict[str, torch.Tensor]:
    """:func:`layer_input_norms` of prepared calibration batches."""
    sums: dict[str, torch.Tensor] = {}

    def consume(name: str, cols: torch.Tensor) -> None:
        sq = (cols**2).sum(dim=1)
        sums[name] = sq if name not in sums else sums[name] + sq

    _run_input_hooks(model, layers, batches, consume, where)
    return {n: v.sqrt() for n, v in sums.items()}


def _columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1]).T.double()
    if isinstance(module.padding, str):
        fail(
            "model",
            "layer_inputs",
            "convolutions with numeric padding",
            module.padding,
            "build the layer with an explicit padding such as padding=1.",
        )
    if module.groups != 1:
        fail(
            "model",
            "layer_inputs",
            "convolutions with groups=1 for data-driven criteria",
            None,
            got=f"groups={module.groups}",
            fix="exclude grouped or depthwise convolutions (exclude=[...]) or use a data-free method.",
        )
    if isinstance(module, nn.Conv1d):
        x = x.unsqueeze(2)
        kernel, stride, pad, dil = (
            (1, *module.kernel_size),
            (1, *module.stride),
            (0, *module.padding),
            (1, *module.dilation),
        )
    else:
        kernel, stride, pad, dil = module.kernel_size, module.stride, module.padding, module.dilation
    cols = F.unfold(x, kernel, dilation=dil, padding=pad, stride=stride)  # (B, C*k, L)
    return cols.permute(1, 0, 2).reshape(cols.shape[1], -1).double()


def wanda(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    *,
    data: Any = None,
    batch_size: int = 256,
    **_: object,
) -> Scores:
    """Wanda (Sun et al. 2023): ``|W_ij| · ||X_j||_2``, the weight times the norm of its input feature
    over all calibration tokens (padding excluded); compared within each output row.

    All layers are scored from the model as it is, in one pass (``calibration="dense"`` of
    :func:`~pruneviz.prune.compute_masks`, whose default prunes block by block). ``data`` is a Dataset or
    an iterable of batches of model inputs (see :mod:`pruneviz.prune.calibration`).
    """
    if data is None:
        _need_data(data, "wanda")
    batches = calibration_batches(data, batch_size=batch_size, where="wanda")
    return wanda_scores(layers, input_norms(model, layers, batches, where="wanda"))


def wanda_scores(layers: Mapping[str, nn.Module], norms: Mapping[str, torch.Tensor]) -> Scores:
    """``|W| · ||X_j||`` of each layer from the norms of its input features."""
    out = {}
    for n, m in layers.items():
        w = m.weight.detach()
        out[n] = (w.reshape(w.shape[0], -1).abs() * norms[n].float()[None, :]).reshape(w.shape)
    return out


CRITERIA: dict[str, Criterion] = {
    "magnitude": magnitude,
    "random": random,
    "lamp": lamp,
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "taylor": taylor,
    "wanda": wanda,
}
DATA_FREE = frozenset({"magnitude", "random", "lamp", "synflow"})


def score(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    criterion: str,
    *,
    data: Any = None,
    seed: int = 0,
    batch_size: int = 256,
    input_shape: tuple[int, ...] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> Scores:
    """Scores of ``criterion`` for ``layers`` (the model is left unchanged)."""
    if input_shape is None and isinstance(data, Dataset):
        input_shape = data.info.input_shape
    with seeded(seed):
        return CRITERIA[criterion](
            model, layers, data=data, seed=seed, batch_size=batch_size, input_shape=input_shape, masks=masks
        )
