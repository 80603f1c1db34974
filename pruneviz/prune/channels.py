"""Channel (filter) pruning with physical removal, so the model really shrinks.

Which channels are coupled — through residual additions, concatenations, grouped and depthwise
convolutions, BatchNorm — comes from Torch-Pruning's dependency graph (Fang et al. 2023), wrapped here;
pruneviz's criteria score the coupled groups: a group's channel importance is the sum, over every
Linear/Conv layer whose outputs the group removes, of that layer's per-weight scores for the channel.

A pruning is recorded as a *plan*: the list of ``{"layer": name, "channels": [...]}`` removals, in
order, which replays exactly on a fresh copy of the dense architecture (that is how the zoo reloads
a channel-pruned run).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneviz._optional import require
from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import check_choice, check_fraction, check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.criteria import score
from pruneviz.prune.masks import prunable_layers

ChannelPlan = list[dict[str, Any]]
#: the layers whose output channels are removed physically (through Torch-Pruning's graph)
CHANNEL_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
CHANNEL_CRITERIA = ("magnitude", "random", "taylor", "snip")


@dataclass
class ChannelPruned:
    """Result of :func:`prune_channels`: the shrunk model (a new module) and the plan that made it."""

    model: nn.Module
    plan: ChannelPlan


def _graph(model: nn.Module, input_shape: Sequence[int]) -> Any:
    """Torch-Pruning's dependency graph of ``model`` traced on a zero input of ``input_shape``."""
    tp = require("torch_pruning", "Channel pruning")
    with eval_mode(model), torch.enable_grad():
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=torch.zeros(1, *input_shape), verbose=False
        )


def _is_out_fn(dg: Any, fn: Any) -> bool:
    return dg.is_out_channel_pruning_fn(fn)


def _output_layers(model: nn.Module, input_shape: Sequence[int]) -> list[str]:
    """Names of prunable layers whose output is the model's output (their channels are the classes)."""
    order: list[str] = []
    hooks = [
        (m, lambda mod, i, o, n=n: order.append(n))
        for n, m in model.named_modules()
        if isinstance(m, CHANNEL_TYPES)
    ]
    with forward_hooks(hooks), eval_mode(model), torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return order[-1:]


def prune_channels(
    model: nn.Module,
    *,
    sparsity: float,
    input_shape: Sequence[int],
    criterion: str = "magnitude",
    data: Dataset | None = None,
    exclude: Iterable[str] = (),
    seed: int = 0,
) -> ChannelPruned:
    """Remove ``round(sparsity * C)`` channels from every prunable coupled group of C channels.

    The model's output layer is never pruned (its channels are the classes), nor are layers in
    ``exclude``. ``model`` is left unchanged; the result holds a new, smaller model.

    ``criterion`` scores weights (``magnitude`` gives the L1 norm of each channel's filters, as in
    Li et al. 2017); data-driven criteria (``taylor``, ``snip``) need ``data``.
    """
    where = "prune_channels"
    sparsity = check_fraction(sparsity, "sparsity", where)
    check_choice(criterion, "criterion", where, CHANNEL_CRITERIA)
    seed = check_int(seed, "seed", where, minimum=0)
    shape = tuple(int(s) for s in input_shape)
    exclude = tuple(exclude)
    layers = prunable_layers(model, exclude=exclude, where=where)
    if criterion not in ("magnitude", "random") and data is None:
        fail(
            "data",
            where,
            f"a calibration Dataset for criterion {criterion!r}",
            None,
            "pass data=<training samples>.",
        )
    scores = score(model, layers, criterion, data=data, seed=seed)

    work = copy.deepcopy(model)
    dg = _graph(work, shape)
    modules = dict(work.named_modules())
    names = {m: n for n, m in modules.items()}
    ignored = [modules[n] for n in sorted({*_output_layers(work, shape), *exclude})]

    plan: ChannelPlan = []
    for group in list(dg.get_all_groups(ignored_layers=ignored, root_module_types=CHANNEL_TYPES)):
        n_root = len(group[0].idxs)
        importance = torch.zeros(n_root, dtype=torch.float64)
        scored = False
        for item in group:
            dep = item.dep
            name = names.get(dep.target.module)
            if name in scores and _is_out_fn(dg, dep.handler):
                per_channel = scores[name].reshape(scores[name].shape[0], -1).sum(1).double()
                # each item's channels map back to the root's channel positions (concat/split safe)
                importance.scatter_add_(
                    0,
                    torch.as_tensor(item.root_idxs, dtype=torch.long),
                    per_channel[torch.as_tensor(item.idxs)],
                )
                scored = True
        if not scored:
            continue
        n_channels = importance.numel()
        k = min(round(sparsity * n_channels), n_channels - 1)
        if k <= 0:
            continue
        drop = torch.argsort(importance, stable=True)[:k].sort().values.tolist()
        root = group[0].dep.target.module
        plan.append({"layer": names[root], "channels": [int(group[0].idxs[i]) for i in drop]})
    _apply_plan(work, dg, plan)
    return ChannelPruned(model=work.eval(), plan=plan)


def _apply_plan(model: nn.Module, dg: Any, plan: ChannelPlan) -> None:
    modules = dict(model.named_modules())
    for step in plan:
        module = modules[step["layer"]]
        pruner = dg.get_pruner_of_module(module)
        group = dg.get_pruning_group(module, pruner.prune_out_channels, list(step["channels"]))
        group.prune()


def apply_channel_plan(model: nn.Module, plan: ChannelPlan, *, input_shape: Sequence[int]) -> nn.Module:
    """Replay a channel plan on ``model`` in place (a fresh dense copy of the original architecture)."""
    modules = dict(model.named_modules())
    for step in plan:
        if step.get("layer") not in modules:
            fail(
                "plan",
                "apply_channel_plan",
                "removals of layers present in the model",
                step.get("layer"),
                "replay a plan on the architecture it was made for.",
            )
    dg = _graph(model, input_shape)
    _apply_plan(model, dg, plan)
    return model


@torch.no_grad()
def mask_channels_(model: nn.Module, plan: ChannelPlan, *, input_shape: Sequence[int]) -> nn.Module:
    """Zero, in place, every parameter a channel plan would remove, keeping the model's shape.

    The result computes the same function as the physically shrunk model (the equivalence pruneviz
    tests): removed output channels of convolutions, linear layers and norms are zeroed, so their
    consumers receive exact zeros.
    """
    dg = _graph(model, input_shape)
    modules = dict(model.named_modules())
    for step in plan:
        module = modules[step["layer"]]
        pruner = dg.get_pruner_of_module(module)
        group = dg.get_pruning_group(module, pruner.prune_out_channels, list(step["channels"]))
        for item in group:
            if not _is_out_fn(dg, item.dep.handler):
                continue
            target = item.dep.target.module
            idx = torch.as_tensor(item.idxs, dtype=torch.long)
            for pname in ("weight", "bias"):
                p = getattr(target, pname, None)
                if isinstance(p, torch.Tensor):
                    p[idx] = 0.0
    return model
