"""Importance criteria: each maps prunable weights to a score per weight (higher = more important).

Every criterion has the signature ``criterion(model, layers, *, data, seed, batch_size) -> {name: scores}``
and leaves the model exactly as it found it (weights, gradients, mode). ``layers`` maps keys to
:class:`~pruneviz.prune.weights.PrunableWeight` (as :func:`~pruneviz.prune.prunable_weights` gives them);
a module given instead stands for its ``weight``. Scores have the weight's shape. The gradient criteria
(SNIP, Taylor, GraSP) read a calibration :class:`~pruneviz.data.Dataset` with labels; Wanda and the layer
input statistics read a Dataset or any iterable of batches of model inputs, padding excluded
(:mod:`pruneviz.prune.calibration`).

Input columns (Wanda, SparseGPT, :func:`layer_inputs`) exist for Linear, Conv1d/2d/3d (grouped and
depthwise: one column matrix per group), GPT-2 ``Conv1D``, ``ConvTranspose1d/2d/3d`` (through the
equivalent convolution of the zero-upsampled input), ``nn.MultiheadAttention``'s input projections
(``in_proj_weight``'s three row blocks read the query, key and value inputs) and its ``out_proj`` (whose
input, the attention output before the projection, is recomputed by re-running the attention with an
identity projection: ``F.multi_head_attention_forward`` uses ``out_proj.weight`` directly, so hooks on
``out_proj`` never fire). Embedding tables have no input columns (their inputs are indices).

Padded token positions (a batch's ``attention_mask``, see :func:`~pruneviz.prune.calibration.real_tokens`)
are left out of the columns of every weight whose input has a token axis: Linear and GPT-2 ``Conv1D``
inputs ``(batch, tokens, features)``, and the query, key, value and attention-output inputs of
``nn.MultiheadAttention`` (``(tokens, batch, features)`` unless ``batch_first``). Convolutions are not
masked.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from types import EllipsisType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from pruneviz._scope import forward_hooks
from pruneviz._seed import seeded
from pruneviz._validation import fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.calibration import Batch, calibration_batches, check_reached, feed, real_tokens
from pruneviz.prune.weights import PrunableWeight, as_weights, weights_of

Scores = dict[str, torch.Tensor]
Criterion = Callable[..., Scores]
Layers = Mapping[str, PrunableWeight | nn.Module]


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


def magnitude(model: nn.Module, layers: Layers, **_: object) -> Scores:
    """|w| (Han et al. 2015)."""
    return {n: w.weight.detach().abs().clone() for n, w in as_weights(layers).items()}


def random(model: nn.Module, layers: Layers, *, seed: int = 0, **_: object) -> Scores:
    """Uniform random scores drawn from ``seed`` (a baseline)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(w.weight.shape, generator=gen) for n, w in as_weights(layers).items()}


def lamp(model: nn.Module, layers: Layers, **_: object) -> Scores:
    """Layer-adaptive magnitude-based pruning (Lee et al. 2021, eq. 2).

    With a layer's weights sorted so that ``|w_1| <= ... <= |w_n|``, the score of ``w_u`` is
    ``w_u^2 / sum_{v >= u} w_v^2``; scores are comparable across layers, so LAMP uses a global threshold.
    """
    out = {}
    for n, m in as_weights(layers).items():
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


def _weight_grad(w: PrunableWeight, method: str) -> torch.Tensor:
    """The gradient the last backward pass left on ``w``'s weight (none if the forward never used it)."""
    grad = w.weight.grad
    if grad is None:
        fail(
            "layers",
            f"prune (method={method!r})",
            "layers that the model's forward pass uses (the criterion needs their loss gradient)",
            w.key,
            "exclude the layer (exclude=[...]) or check that the model's forward calls it.",
        )
    return grad.detach()


def _loss_gradients(model: nn.Module, layers: Layers, data: Dataset, batch_size: int, method: str) -> Scores:
    """Gradient of the mean cross-entropy over ``data`` w.r.t. each layer's weight."""
    weights = as_weights(layers)
    grads = {n: torch.zeros_like(w.weight) for n, w in weights.items()}
    for xb, yb in _batches(data, batch_size):
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb, reduction="sum") / len(data)
        loss.backward()
        for n, w in weights.items():
            grads[n] += _weight_grad(w, method)
    return grads


def snip(
    model: nn.Module,
    layers: Layers,
    *,
    data: Dataset | None = None,
    batch_size: int = 256,
    **_: object,
) -> Scores:
    """Connection sensitivity |g ⊙ w| with g the loss gradient on the calibration data (Lee et al. 2019)."""
    data = _need_data(data, "snip")
    layers = as_weights(layers)
    with GradientScope(model):
        grads = _loss_gradients(model, layers, data, batch_size, "snip")
    return {n: (grads[n] * m.weight.detach()).abs() for n, m in layers.items()}


def taylor(
    model: nn.Module,
    layers: Layers,
    *,
    data: Dataset | None = None,
    batch_size: int = 64,
    **_: object,
) -> Scores:
    """First-order Taylor importance (Molchanov et al. 2019): the mean over minibatches of (g ⊙ w)^2."""
    data = _need_data(data, "taylor")
    layers = as_weights(layers)
    out = {n: torch.zeros_like(m.weight) for n, m in layers.items()}
    batches = 0
    with GradientScope(model):
        for xb, yb in _batches(data, batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            for n, m in layers.items():
                out[n] += (_weight_grad(m, "taylor") * m.weight.detach()) ** 2
            batches += 1
    return {n: v / batches for n, v in out.items()}


def grasp(
    model: nn.Module,
    layers: Layers,
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
    copied = weights_of(work, as_weights(layers))
    params = [copied[n].weight for n in names]
    g = [torch.zeros_like(p) for p in params]
    hg = [torch.zeros_like(p) for p in params]
    # Hg differentiates twice; fused attention kernels have no double backward, the math path has
    with GradientScope(work), sdpa_kernel(SDPBackend.MATH):
        for xb, yb in _batches(data, batch_size):
            loss = F.cross_entropy(work(xb), yb, reduction="sum") / len(data)
            for acc, gi in zip(g, torch.autograd.grad(loss, params), strict=True):
                acc += gi
        for xb, yb in _batches(data, batch_size):
            loss = F.cross_entropy(work(xb), yb, reduction="sum") / len(data)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            terms = [(gi * gd.detach()).sum() for gi, gd in zip(grads, g, strict=True)]
            z = sum(terms[1:], start=terms[0])  # g·∇L, a tensor to differentiate again
            for acc, h in zip(hg, torch.autograd.grad(z, params), strict=True):
                acc += h
    return {n: (p.detach() * h).detach() for n, p, h in zip(names, params, hg, strict=True)}


def synflow(
    model: nn.Module,
    layers: Layers,
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
    copied = weights_of(work, as_weights(layers))
    with torch.no_grad():
        for p in work.parameters():
            p.abs_()
        for n, mk in (masks or {}).items():
            copied[n].weight.mul_(mk.to(torch.float64))
    if input_shape is None:
        fail(
            "input_shape",
            "prune (method='synflow')",
            "the per-sample input shape, e.g. (1, 8, 8)",
            None,
            "pass input_shape=... or data=<a Dataset> (its input shape is used).",
        )
    ones = torch.ones((1, *input_shape), dtype=torch.float64)
    params = [copied[n].weight for n in layers]
    with GradientScope(work):
        r = work(ones).sum()
        grads = torch.autograd.grad(r, params)
    return {n: (g * p).detach().abs().float() for n, p, g in zip(layers, params, grads, strict=True)}


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(..., features)`` -> ``(features, tokens)`` in float64."""
    return x.detach().reshape(-1, x.shape[-1]).T.double()


def _real(module: nn.Module, x: torch.Tensor, *, batch_first: bool = True) -> torch.Tensor:
    """``module``'s token input ``x`` without the padded positions of the batch being fed
    (:func:`~pruneviz.prune.calibration.real_tokens`); a ``(tokens, batch, ...)`` input (attention that is
    not ``batch_first``) is made batch first before the mask is applied. A nested tensor (PyTorch's
    transformer fast path packs the padding out itself) gives its tokens, concatenated."""
    x = x.detach()
    if x.is_nested:
        return torch.cat([t.reshape(-1, t.shape[-1]) for t in x.unbind()])
    if not batch_first and x.ndim == 3:
        x = x.transpose(0, 1)
    return real_tokens(module, x)


def _mha_out_proj_parent(model: nn.Module, w: PrunableWeight) -> nn.MultiheadAttention | None:
    """The ``nn.MultiheadAttention`` whose ``out_proj`` ``w`` is, if it is one."""
    if w.kind != "linear" or not w.module_name.endswith("out_proj"):
        return None
    parent_name = w.module_name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is w.module:
        return parent
    return None


def check_input_columns(layers: Layers, where: str) -> dict[str, PrunableWeight]:
    """Refuse (naming the layer and the fix) the weights that have no input columns."""
    weights = as_weights(layers)
    for key, w in weights.items():
        m = w.module
        reason = None
        if w.kind == "embedding":
            reason = "an embedding table (its inputs are token indices, not features)"
        elif w.kind == "other":
            reason = f"a {type(m).__name__}.{w.param_name}, a parameter with no known input"
        if reason is not None:
            fail(
                "model",
                where,
                "prunable weights with input columns for a data-driven criterion (Wanda, SparseGPT)",
                None,
                got=f"layer {key!r}, {reason}",
                fix=f"exclude it (exclude=[{key!r}, ...]) or use a data-free or gradient method "
                "(magnitude, lamp, random, synflow, snip, taylor, grasp).",
            )
    return weights


def _im2col(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]):
    """Patches of an already padded ``(B, C, *spatial)`` input as ``(C * prod(kernel), B * positions)``:
    row ``(c, k...)`` in ``F.unfold`` order, columns ``(b, position...)``. Any number of spatial dims."""
    d = len(kernel)
    for i in range(d):
        x = x.unfold(2 + i, dilation[i] * (kernel[i] - 1) + 1, stride[i])  # (B, C, *out, *span)
    every_dilation: tuple[EllipsisType | slice, ...] = (Ellipsis, *(slice(None, None, dl) for dl in dilation))
    x = x[every_dilation]  # (B, C, *out, *kernel)
    x = x.permute(1, *range(2 + d, 2 + 2 * d), 0, *range(2, 2 + d))
    return x.reshape(x.shape[0] * math.prod(kernel), -1)


def _conv_columns(w: PrunableWeight, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One ``(in_per_group * kernel, tokens)`` column matrix per group; group ``g``'s columns feed rows
    ``g * out / groups ... (g + 1) * out / groups`` of :meth:`PrunableWeight.matrix`."""
    m = w.module
    # the kinds "conv" and "conv_transpose" are given to these modules only (weights._kind_of)
    assert isinstance(
        m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d
    )
    d = len(m.kernel_size)
    x = x.detach()
    unbatched = x.ndim == d + 1
    if unbatched:
        x = x.unsqueeze(0)
    kernel, stride, dil = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    if w.kind == "conv":
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        if any(m._reversed_padding_repeated_twice):
            x = F.pad(x, tuple(m._reversed_padding_repeated_twice), mode=mode)
        flip = False
    else:
        # conv_transpose(x) = conv(zero-upsampled x, flipped kernel, stride 1): insert stride - 1 zeros
        # between inputs, pad dilation * (k - 1) - padding each side (+ output_padding at the end; a
        # negative pad crops)
        spatial = x.shape[2:]
        up = x.new_zeros((*x.shape[:2], *((n - 1) * s + 1 for n, s in zip(spatial, stride, strict=True))))
        up[(slice(None), slice(None), *(slice(None, None, s) for s in stride))] = x
        assert not isinstance(m.padding, str)  # ConvTranspose takes numeric padding only
        pads: list[int] = []
        for k, dl, p, op in reversed(list(zip(kernel, dil, m.padding, m.output_padding, strict=True))):
            pads += [dl * (k - 1) - p, dl * (k - 1) - p + op]
        x = F.pad(up, tuple(pads))
        stride, flip = (1,) * d, True
    g = m.groups
    cin = x.shape[1] // g
    out = []
    for gi in range(g):
        xs = x[:, gi * cin : (gi + 1) * cin]
        if flip:  # the transposed weight's kernel position k reads the patch at K - 1 - k
            cols = _im2col(xs, kernel, stride, dil)
            cols = cols.reshape(cin, *kernel, -1).flip(list(range(1, d + 1))).reshape(cols.shape)
        else:
            cols = _im2col(xs, kernel, stride, dil)
        out.append(cols.double())
    return tuple(out)


def _columns(w: PrunableWeight, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The input columns of ``w`` for the layer input ``x``: one ``(features, tokens)`` matrix per row
    block of :meth:`PrunableWeight.matrix` (the blocks split the rows evenly), padded tokens left out."""
    if w.kind in ("linear", "conv1d_gpt2"):
        return (_tokens(_real(w.module, x)),)
    if w.kind in ("conv", "conv_transpose"):
        return _conv_columns(w, x)
    fail("layers", "layer_inputs", "weights with input columns", w.key)  # pragma: no cover (checked before)


def input_module(model: nn.Module, w: PrunableWeight) -> nn.Module:
    """The module whose forward call sees ``w``'s input: ``w.module``, or for the ``out_proj`` of an
    ``nn.MultiheadAttention`` (used functionally, never called) the attention module."""
    parent = _mha_out_proj_parent(model, w)
    return w.module if parent is None else parent


def _run_input_hooks(
    model: nn.Module,
    layers: Layers,
    batches: Sequence[Batch],
    consume: Callable[[str, tuple[torch.Tensor, ...]], None],
    where: str = "layer_inputs",
) -> None:
    """Feed ``batches`` through the adapted ``model`` (eval mode, no grad) and hand each weight's input
    columns of every batch to ``consume(key, blocks)``, ``blocks`` one ``(features, tokens)`` matrix per
    row block of the weight's ``(out, in)`` matrix, padded positions left out
    (:func:`~pruneviz.prune.calibration.real_tokens`); hooks and mode are restored. Raises if a weight
    receives no input."""
    weights = check_input_columns(layers, where)
    reached: set[str] = set()
    plain: list[tuple[nn.Module, Callable]] = []
    attention: dict[nn.MultiheadAttention, list[tuple[str, str]]] = {}

    def take(key: str, blocks: tuple[torch.Tensor, ...]) -> None:
        reached.add(key)
        consume(key, blocks)

    def hook_for(key: str, w: PrunableWeight):
        def hook(_m, inputs, _out) -> None:
            take(key, _columns(w, inputs[0]))

        return hook

    for key, w in weights.items():
        parent = _mha_out_proj_parent(model, w)
        if w.kind == "attention":
            assert isinstance(w.module, nn.MultiheadAttention)  # the kind of its input projections only
            attention.setdefault(w.module, []).append((key, w.param_name))
        elif parent is not None:
            attention.setdefault(parent, []).append((key, "out_proj"))
        else:
            plain.append((w.module, hook_for(key, w)))
    busy = [False]

    def attention_hook_for(entries: list[tuple[str, str]]):
        def hook(mha: nn.MultiheadAttention, args, kwargs, _out) -> None:
            if busy[0]:
                return
            bound = inspect.signature(mha.forward).bind(*args, **kwargs).arguments
            q, k, v = bound["query"], bound["key"], bound["value"]

            def cols(x: torch.Tensor) -> torch.Tensor:
                return _tokens(_real(mha, x, batch_first=mha.batch_first))

            for key, what in entries:
                if what == "in_proj_weight":
                    take(key, (cols(q), cols(k), cols(v)))
                elif what in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    take(key, (cols({"q": q, "k": k, "v": v}[what[0]]),))
                else:  # out_proj: the attention output before the projection, by an identity projection
                    swap = {"out_proj.weight": torch.eye(mha.embed_dim, dtype=q.dtype, device=q.device)}
                    if mha.out_proj.bias is not None:
                        swap["out_proj.bias"] = torch.zeros_like(mha.out_proj.bias)
                    busy[0] = True
                    try:
                        attended = torch.func.functional_call(mha, swap, args, kwargs)[0]
                    finally:
                        busy[0] = False
                    take(key, (cols(attended),))

        return hook

    with (
        forward_hooks(plain),
        forward_hooks([(m, attention_hook_for(e)) for m, e in attention.items()], with_kwargs=True),
    ):
        feed(model, batches, where=where)
    check_reached(weights, reached, where)


def _input_blocks(
    model: nn.Module, layers: Layers, batches: Sequence[Batch], where: str
) -> dict[str, tuple[torch.Tensor, ...]]:
    captured: dict[str, list[list[torch.Tensor]]] = {}

    def consume(name: str, blocks: tuple[torch.Tensor, ...]) -> None:
        parts = captured.setdefault(name, [[] for _ in blocks])
        for part, cols in zip(parts, blocks, strict=True):
            part.append(cols)

    _run_input_hooks(model, layers, batches, consume, where)
    return {n: tuple(torch.cat(p, dim=1) for p in captured[n]) for n in layers if n in captured}


def layer_input_blocks(
    model: nn.Module, layers: Layers, data: Any, batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Each weight's inputs as column matrices, one per row block of its ``(out, in)`` matrix
    (:meth:`~pruneviz.prune.weights.PrunableWeight.matrix`), each ``(features, tokens)`` in float64:
    one block for Linear, Conv1D and ungrouped convolutions, one per group for grouped convolutions,
    three (query, key, value inputs) for ``nn.MultiheadAttention.in_proj_weight``. Block ``b`` of ``B``
    feeds rows ``b * out / B ... (b + 1) * out / B``: ``matrix[rows] @ columns`` reproduces them.

    ``data`` is a Dataset or an iterable of batches of model inputs (see
    :mod:`pruneviz.prune.calibration`); padded token positions are left out.
    """
    batches = calibration_batches(data, batch_size=batch_size, where="layer_input_blocks")
    return _input_blocks(model, layers, batches, "layer_input_blocks")


def layer_inputs(
    model: nn.Module, layers: Layers, data: Any, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Each layer's input as a matrix of columns: ``(features, tokens)`` in float64.

    ``data`` as for :func:`layer_input_blocks`; padded token positions are left out. For a Linear layer
    the features are its inputs; for a convolution they are the im2col patches, so a weight's flattened
    input index matches ``weight.reshape(out, -1)``. Memory grows with the data; the pruning methods use
    :func:`layer_input_gram` and :func:`layer_input_norms`, which do not. Weights whose row blocks read
    different inputs (grouped convolutions, attention ``in_proj_weight``) are refused here:
    :func:`layer_input_blocks` gives their columns block by block.
    """
    batches = calibration_batches(data, batch_size=batch_size, where="layer_inputs")
    blocks = _input_blocks(model, layers, batches, "layer_inputs")
    for n, b in blocks.items():
        if len(b) != 1:
            fail(
                "layers",
                "layer_inputs",
                "weights whose rows all read one input",
                None,
                got=f"layer {n!r} with {len(b)} row blocks of different inputs",
                fix="use pruneviz.prune.criteria.layer_input_blocks for it.",
            )
    return {n: b[0] for n, b in blocks.items()}


def layer_input_gram(
    model: nn.Module, layers: Layers, data: Any, batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, ...]]:
    """``X Xᵀ`` of each weight's input columns per row block (float64, ``features × features``),
    accumulated per batch; ``data`` as for :func:`layer_input_blocks`, padded positions left out."""
    batches = calibration_batches(data, batch_size=batch_size, where="layer_input_gram")
    return input_grams(model, layers, batches, where="layer_input_gram")


def layer_input_norms(
    model: nn.Module, layers: Layers, data: Any, batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, ...]]:
    """``||X_j||_2`` of every input feature of each weight over all calibration tokens, per row block
    (float64); ``data`` as for :func:`layer_input_blocks`, padded positions left out."""
    batches = calibration_batches(data, batch_size=batch_size, where="layer_input_norms")
    return input_norms(model, layers, batches, where="layer_input_norms")


def input_grams(
    model: nn.Module, layers: Layers, batches: Sequence[Batch], *, where: str
) -> dict[str, tuple[torch.Tensor, ...]]:
    """:func:`layer_input_gram` of prepared calibration batches."""
    grams: dict[str, list[torch.Tensor]] = {}

    def consume(name: str, blocks: tuple[torch.Tensor, ...]) -> None:
        g = [cols @ cols.T for cols in blocks]
        grams[name] = g if name not in grams else [a + b for a, b in zip(grams[name], g, strict=True)]

    _run_input_hooks(model, layers, batches, consume, where)
    return {n: tuple(v) for n, v in grams.items()}


def input_norms(
    model: nn.Module, layers: Layers, batches: Sequence[Batch], *, where: str
) -> dict[str, tuple[torch.Tensor, ...]]:
    """:func:`layer_input_norms` of prepared calibration batches."""
    sums: dict[str, list[torch.Tensor]] = {}

    def consume(name: str, blocks: tuple[torch.Tensor, ...]) -> None:
        sq = [(cols**2).sum(dim=1) for cols in blocks]
        sums[name] = sq if name not in sums else [a + b for a, b in zip(sums[name], sq, strict=True)]

    _run_input_hooks(model, layers, batches, consume, where)
    return {n: tuple(t.sqrt() for t in v) for n, v in sums.items()}


def wanda(
    model: nn.Module,
    layers: Layers,
    *,
    data: Any = None,
    batch_size: int = 256,
    **_: object,
) -> Scores:
    """Wanda (Sun et al. 2023): ``|W_ij| · ||X_j||_2``, the weight times the norm of its input feature
    over all calibration tokens (padding excluded); compared within each output row. ``W`` is the
    weight's ``(out, in)`` matrix (GPT-2 ``Conv1D`` weights are transposed first); a row reads the input
    of its row block.

    All layers are scored from the model as it is, in one pass (``calibration="dense"`` of
    :func:`~pruneviz.prune.compute_masks`, whose default prunes block by block). ``data`` is a Dataset or
    an iterable of batches of model inputs (see :mod:`pruneviz.prune.calibration`).
    """
    if data is None:
        _need_data(data, "wanda")
    batches = calibration_batches(data, batch_size=batch_size, where="wanda")
    return wanda_scores(layers, input_norms(model, layers, batches, where="wanda"))


def wanda_scores(layers: Layers, norms: Mapping[str, tuple[torch.Tensor, ...]]) -> Scores:
    """``|W| · ||X_j||`` of each weight's ``(out, in)`` matrix from the norms of its input features, one
    tuple entry per row block (as :func:`input_norms` gives them)."""
    out = {}
    for n, w in as_weights(layers).items():
        mat = w.matrix().abs()
        blocks = norms[n]
        rows = mat.shape[0] // len(blocks)
        scale = torch.cat([b.float()[None, :].expand(rows, -1) for b in blocks])  # (out, features)
        out[n] = w.from_matrix(mat * scale)
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
    layers: Layers,
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
