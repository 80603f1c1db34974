"""Scoped capture of intermediate activations from named layers of any model.

Hooks live only inside :func:`capturing` (and the functions built on it) and are removed on every exit,
also when the forward pass raises. The model's train/eval mode is restored afterwards.

>>> import torch
>>> from pruneviz.models import MLP
>>> model = MLP((1, 8, 8), 10, hidden=(32,))
>>> feats = activations(model, torch.zeros(5, 1, 8, 8), layers=["features.1", "classifier"])
>>> {k: tuple(v.shape) for k, v in feats.items()}
{'features.1': (5, 32), 'classifier': (5, 10)}
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import check_choice, check_int, check_model, fail
from pruneviz.data.inputs import Inputs
from pruneviz.models.adapter import adapted

REDUCTIONS = ("flatten", "mean")


def layer_names(model: nn.Module) -> list[str]:
    """Names of the model's submodules whose outputs can be captured, in registration order."""
    check_model(model, "model", "layer_names", half=True)
    return [name for name, _ in model.named_modules() if name]


def check_layers(model: nn.Module, layers: Sequence[str], where: str, param: str = "layers") -> list[str]:
    """Every name in ``layers`` must be a submodule of ``model``; return them as a list."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or len(layers) == 0:
        fail(param, where, "a non-empty list of layer names", layers, f"pass e.g. {param}=['classifier'].")
    names = layer_names(model)
    known = set(names)
    for layer in layers:
        if layer not in known:
            close = difflib.get_close_matches(str(layer), names, n=3)
            hint = f"did you mean {close}? " if close else ""
            fail(
                param,
                where,
                f"names of submodules of the {type(model).__name__} ({len(names)} names; "
                "see pruneviz.analysis.layer_names(model))",
                layer,
                f"{hint}pass names as model.named_modules() gives them.",
            )
    return list(layers)


def check_inputs(x: object, where: str, param: str = "x") -> torch.Tensor | Inputs:
    """Model inputs for a batch of samples: an ``(N, ...)`` tensor or an :class:`Inputs`, not empty."""
    if isinstance(x, Inputs) and len(x) > 0:
        return x
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or len(x) == 0:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor | Inputs) else type(x).__name__
        fail(
            param,
            where,
            "a non-empty (N, ...) tensor of inputs, or an Inputs of named tensors",
            None,
            got=got,
        )
    return x


def pool_tokens(out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Average a token-wise activation ``(N, L, ...)`` (or ``(L, N, ...)``) over each sequence's real
    tokens (``tokens``: ``(N, L)`` bool, False at padding); other shapes are returned unchanged."""
    n, length = tokens.shape
    if out.ndim >= 3 and out.shape[:2] == (length, n) and (n, length) != (length, n):
        out = out.transpose(0, 1)
    if out.ndim < 3 or tuple(out.shape[:2]) != (n, length):
        return out
    w = tokens.to(out.dtype).reshape(n, length, *([1] * (out.ndim - 2)))
    return (out * w).sum(1) / w.sum(1).clamp_min(1)


def _reduce(
    out: torch.Tensor, reduction: str, any_order: bool = False, tokens: torch.Tensor | None = None
) -> torch.Tensor:
    if isinstance(out, tuple | list):
        out = out[0]
    out = out.detach()
    if out.dtype != torch.float64:
        out = out.float()
    if tokens is not None:
        out = pool_tokens(out, tokens.to(out.device))
    if reduction == "mean" and out.ndim > 2:
        out = out.flatten(2).mean(2)
    if any_order and out.ndim == 4 and out.is_contiguous(memory_format=torch.channels_last):
        # channels-last maps flatten without a copy in (H, W, C) order; for measures that do not
        # depend on the order of features (Grams, distances) this saves copying every activation
        return out.permute(0, 2, 3, 1).reshape(len(out), -1).cpu()
    return out.flatten(1).contiguous().cpu()


@contextlib.contextmanager
def capturing(
    model: nn.Module,
    layers: Sequence[str],
    *,
    reduction: str = "flatten",
    inputs: bool = False,
    any_order: bool = False,
    tokens: torch.Tensor | None = None,
) -> Iterator[Capture]:
    """Inside the block, every forward pass stores the named layers' outputs (or inputs) in the
    yielded dict as ``(N, D)`` CPU tensors (float32; float64 for a float64 model); a later pass
    overwrites an earlier one.

    ``reduction="flatten"`` keeps every unit; ``"mean"`` averages convolutional maps over their
    spatial positions (one value per channel). ``inputs=True`` captures what enters each layer
    instead (e.g. the penultimate features entering a classifier). ``any_order=True`` lets the
    features of a convolutional map come in any fixed order (channels-last maps then flatten without a
    copy) for measures that do not depend on feature order, such as Grams and distances. For token
    sequences, ``tokens`` (``(N, L)`` bool, False at padding) averages every token-wise activation
    over the real tokens of each sequence (:func:`pool_tokens`), so padding never counts. The hooks
    are removed when the block exits, also on an exception.
    """
    where = "capturing"
    check_choice(reduction, "reduction", where, REDUCTIONS)
    layers = check_layers(model, layers, where)
    modules = dict(model.named_modules())
    store = Capture(layers)

    def make_hook(name: str):
        if inputs:

            def pre(_m, args):
                store[name] = _reduce(args[0], reduction, any_order, tokens)
                store.calls[name] += 1

            return pre

        def post(_m, _args, out):
            store[name] = _reduce(out, reduction, any_order, tokens)
            store.calls[name] += 1

        return post

    with forward_hooks([(modules[name], make_hook(name)) for name in layers], pre=inputs):
        yield store


class Capture(dict):
    """What :func:`capturing` yields: ``{layer: activations}``, plus ``calls``, how many times each
    layer ran since the block began."""

    def __init__(self, layers: Sequence[str]) -> None:
        super().__init__()
        self.calls = dict.fromkeys(layers, 0)


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _one_pass(
    model: nn.Module,
    xb: torch.Tensor | Inputs,
    layers: list[str],
    reduction: str,
    inputs: bool,
    where: str,
    any_order: bool = False,
) -> dict[str, torch.Tensor]:
    """One scoped forward pass: hooks, eval mode and no-grad live only for this batch."""
    xb = xb.to(_device_of(model))
    tokens = xb.token_mask() if isinstance(xb, Inputs) else None
    with (
        capturing(
            model, layers, reduction=reduction, inputs=inputs, any_order=any_order, tokens=tokens
        ) as store,
        eval_mode(model),
        adapted(model),
    ):
        if (
            isinstance(xb, torch.Tensor) and xb.ndim == 4
        ):  # NHWC lets oneDNN pick faster convolutions (about 25 % on CPU); same values
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            model(xb)
        ran = dict(store.calls)
    never = [n for n, c in ran.items() if c == 0]
    if never:
        fail(
            "layers",
            where,
            "layers that run in the model's forward pass",
            never[0],
            "pick a module that forward() calls (an unused or skipped module has no activations).",
        )
    twice = [n for n, c in ran.items() if c > 1]
    if twice:
        fail(
            "layers",
            where,
            "layers that run once per forward pass",
            twice[0],
            got=f"{twice[0]!r}, which runs {ran[twice[0]]} times (a module shared by several places)",
            fix="pick a module used once, e.g. the layer before or after the shared one.",
        )
    return {name: store[name] for name in layers}


def iter_activations(
    model: nn.Module,
    x: torch.Tensor | Inputs,
    *,
    layers: Sequence[str],
    batch_size: int = 256,
    reduction: str = "flatten",
    inputs: bool = False,
    any_order: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield the named layers' activations batch by batch (``batch_size`` rows at a time), so that
    statistics can be accumulated with memory bounded by one batch.

    Each batch runs in eval mode without gradients and with the hooks in place only for that forward
    pass: between batches the caller sees the model exactly as it was (modes, no hooks, gradient
    mode), also when it abandons the iteration. Activations come back on the CPU. ``any_order`` is
    as in :func:`capturing`. Token inputs (an :class:`Inputs` with an ``attention_mask``) have their
    token-wise activations averaged over real tokens (:func:`pool_tokens`)."""
    where = "iter_activations"
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    layers = check_layers(model, layers, where)
    check_choice(reduction, "reduction", where, REDUCTIONS)
    x = check_inputs(x, where)
    for start in range(0, len(x), batch_size):
        yield _one_pass(model, x[start : start + batch_size], layers, reduction, inputs, where, any_order)


def activations(
    model: nn.Module,
    x: torch.Tensor | Inputs,
    *,
    layers: Sequence[str],
    batch_size: int = 256,
    reduction: str = "flatten",
    inputs: bool = False,
) -> dict[str, torch.Tensor]:
    """The named layers' activations on all of ``x``: ``{layer: (N, D) float32 tensor}``.

    Memory grows with ``N × ΣD``; for statistics over many samples prefer :func:`iter_activations`.
    """
    layers = check_layers(model, layers, "activations")
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for batch in iter_activations(
        model, x, layers=layers, batch_size=batch_size, reduction=reduction, inputs=inputs
    ):
        for name, value in batch.items():
            parts[name].append(value)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def classifier_layer(model: nn.Module) -> str:
    """The name of the model's final linear layer (the one that produces the logits).

    A module named ``classifier`` wins; otherwise the last ``nn.Linear`` in registration order.
    """
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if "classifier" in linears:
        return "classifier"
    if not linears:
        fail(
            "model",
            "classifier_layer",
            "a model whose logits come from an nn.Linear layer",
            type(model).__name__,
            "pass the name of the final linear layer explicitly (head=...).",
        )
    return linears[-1]
