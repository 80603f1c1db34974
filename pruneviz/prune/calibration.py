"""Calibration data for the data-driven pruning methods (Wanda, SparseGPT), and the blocks a model is
pruned in, one after another.

**What ``data=`` may be.** A pruneviz :class:`~pruneviz.data.Dataset` (its ``x`` in batches of
``batch_size``), or any iterable of batches of model inputs, e.g. a ``torch.utils.data.DataLoader``.
The items are *model inputs*, fed to the model through :func:`pruneviz.models.adapted`:

- a tensor is the one positional argument;
- a tuple or list is the positional arguments (so a DataLoader of ``(x, y)`` pairs would hand the
  labels to the model as a second argument: pass ``data=(x for x, _ in loader)`` instead);
- a dict or an :class:`~pruneviz.data.Inputs` is the keyword arguments, minus the label keys
  ``"labels"`` and ``"label"`` (a Hugging Face–style DataLoader yields them beside the inputs).

The batches are read once and kept in memory (calibration sets are small; a generator works too).
A bare tensor, dict or ``Inputs`` is refused as ``data``: iterating it would give rows or keys, not
batches — wrap one batch in a list.

**Padding.** A batch that names its padding mask (a dict or ``Inputs`` with ``attention_mask``) has its
padded positions excluded from every layer's input statistics, for layers that read their input as
``(batch, tokens, features)`` (Linear layers and GPT-2 ``Conv1D`` applied to token sequences, and the
query, key, value and attention output of ``nn.MultiheadAttention``): the mask of the batch being fed is
held in a context variable for the duration of each forward call, and the layer input hooks keep only
the rows ``x[mask]`` (:func:`real_tokens`). A ``(tokens, batch, features)`` input (a sequence-first
transformer, e.g. ``nn.TransformerEncoderLayer`` without ``batch_first``) is recognised when the batch
size and the length differ; ``nn.MultiheadAttention`` says its layout itself. Convolutions (channels
first) are not masked.

**Blocks.** ``calibration="sequential"`` prunes a model block by block, as Wanda (Sun et al. 2023) and
SparseGPT (Frantar & Alistarh 2023) prune a transformer: the calibration data is run through the partly
pruned model, the inputs of one block's layers are captured, that block is pruned (and, for SparseGPT,
reconstructed), and the next block sees the outputs of the pruned blocks before it. Blocks are found by
:func:`calibration_blocks`; every block costs one forward pass over the calibration data, plus one
pass at the start that learns the layers' execution order and checks that the model takes every batch
(full forward passes rather than cached block inputs: that needs no knowledge of a block's signature,
so it works for any model). Statistics are held for one block at a time; ``calibration="dense"`` makes a
single pass and holds every layer's (for SparseGPT, every layer's ``features²`` Gram matrix) at once.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import fail
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import ATTENTION_MASK, Inputs
from pruneviz.exceptions import PrunevizError
from pruneviz.models.adapter import adapted

__all__ = [
    "CALIBRATIONS",
    "DEFAULT_CALIBRATION",
    "LABEL_KEYS",
    "Batch",
    "calibration_batches",
    "calibration_blocks",
    "execution_order",
    "feed",
    "real_tokens",
]

#: ``calibration=`` choices: block by block (the papers' procedure) or every layer from the dense model
CALIBRATIONS = ("sequential", "dense")
#: the default ``calibration=`` of compute_masks, prune_, one_shot and PruneSettings
DEFAULT_CALIBRATION = "sequential"
#: keys of a dict batch that hold labels, not model inputs; dropped before the model is called
LABEL_KEYS = frozenset({"labels", "label"})
_ACCEPTED = (
    "a pruneviz Dataset, or an iterable of batches of model inputs (tensors, tuples of positional "
    "arguments, dicts or Inputs of keyword arguments), e.g. a DataLoader"
)

_TOKEN_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "pruneviz_token_mask", default=None
)


@dataclass(frozen=True)
class Batch:
    """One calibration batch: what the adapted model is called with (a tensor, a tuple of positional
    arguments or a dict of keyword arguments), its ``(B, L)`` boolean mask of real tokens (or None),
    and how it is described in messages."""

    inputs: Any
    token_mask: torch.Tensor | None
    kind: str


def describe(item: Any) -> str:
    """A short description of a batch for messages: its kind and shapes or keys."""
    if isinstance(item, torch.Tensor):
        return f"a tensor of shape {tuple(item.shape)}"
    if isinstance(item, Inputs):
        return f"an Inputs with keys {list(item.keys())}"
    if isinstance(item, Mapping):
        return f"a dict with keys {list(item)[:8]}"
    if isinstance(item, tuple | list):
        inner = ", ".join(
            f"tensor {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__ for v in item[:4]
        )
        more = ", ..." if len(item) > 4 else ""
        return f"a {type(item).__name__} of {len(item)} items ({inner}{more})"
    return f"an item of type {type(item).__name__}"


def calibration_batches(data: Any, *, batch_size: int, where: str) -> list[Batch]:
    """The calibration batches of ``data`` (see the module docstring for what it may be).

    >>> ids = torch.tensor([[1, 5, 0], [1, 6, 7]])
    >>> [b] = calibration_batches([{"input_ids": ids, "attention_mask": ids != 0, "labels": ids[:, 0]}],
    ...                           batch_size=8, where="example")
    >>> sorted(b.inputs), b.token_mask.tolist()
    (['attention_mask', 'input_ids'], [[True, True, False], [True, True, True]])
    """
    if isinstance(data, Dataset):
        if len(data) == 0:
            fail(
                "data",
                where,
                "a non-empty calibration Dataset",
                None,
                "pass training samples.",
                got="0 samples",
            )
        return [
            _batch(data.x[i : i + batch_size], where, i // batch_size)
            for i in range(0, len(data), batch_size)
        ]
    if isinstance(data, torch.Tensor | np.ndarray | Mapping | Inputs | str | bytes) or not isinstance(
        data, Iterable
    ):
        fail(
            "data",
            where,
            _ACCEPTED,
            None,
            "pass a Dataset, a list of batches (e.g. data=[x] for one batch x) or a DataLoader.",
            got=describe(data) if isinstance(data, torch.Tensor | Mapping) else type(data).__name__,
        )
    batches = [_batch(item, where, i) for i, item in enumerate(data)]
    if not batches:
        fail(
            "data",
            where,
            "an iterable that yields at least one batch of model inputs",
            None,
            "pass a DataLoader or list with calibration samples (an exhausted generator yields nothing).",
            got=f"a {type(data).__name__} that yielded nothing",
        )
    return batches


def _batch(item: Any, where: str, index: int) -> Batch:
    kind = describe(item)
    if isinstance(item, Inputs | Mapping):
        kwargs = {k: v for k, v in item.items() if k not in LABEL_KEYS}
        if not kwargs:
            fail(
                "data",
                where,
                "batches that hold model inputs besides labels",
                None,
                "yield the model's keyword arguments (e.g. input_ids, attention_mask).",
                got=f"batch {index}: {kind}",
            )
        mask = kwargs.get(ATTENTION_MASK)
        return Batch(kwargs, mask.bool() if isinstance(mask, torch.Tensor) else None, kind)
    if isinstance(item, torch.Tensor):
        return Batch(item, None, kind)
    if isinstance(item, tuple | list):
        return Batch(tuple(item), None, kind)
    fail(
        "data",
        where,
        "an iterable whose items are batches of model inputs: tensors, tuples (positional arguments), "
        "dicts or Inputs (keyword arguments)",
        None,
        "yield what the model takes, e.g. dicts with input_ids and attention_mask.",
        got=f"batch {index}: {kind}",
    )


def feed(model: nn.Module, batches: Sequence[Batch], *, where: str) -> None:
    """Run ``batches`` through the adapted ``model`` (eval mode, no grad), each forward call with its
    batch's token mask set for :func:`real_tokens`. A batch the model rejects is named in the error."""
    with adapted(model), eval_mode(model), torch.no_grad():
        for i, batch in enumerate(batches):
            token = _TOKEN_MASK.set(batch.token_mask)
            try:
                model(batch.inputs)
            except PrunevizError:
                raise
            except Exception as err:  # the model's own complaint about the batch, re-worded
                fail(
                    "data",
                    where,
                    "batches of inputs the model takes: a tensor is passed as one positional argument, a "
                    "tuple or list as positional arguments, a dict or Inputs as keyword arguments (minus "
                    "'labels'/'label')",
                    None,
                    "yield what model(...) accepts; for a DataLoader of (x, y) pairs pass "
                    "data=(x for x, _ in loader).",
                    got=f"batch {i}: {batch.kind}, which {type(model).__name__} refused with "
                    f"{type(err).__name__}: {str(err)[:200]}",
                )
            finally:
                _TOKEN_MASK.reset(token)


def real_tokens(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module``'s input ``x`` without the padded positions of the batch being fed.

    Applies to inputs laid out ``(batch, tokens, ...)`` whose first two sizes are those of the batch's
    attention mask, or ``(tokens, batch, ...)`` (sequence first) when only the swapped sizes match, for
    every layer but convolutions (their inputs are channels first); returns ``x[mask]`` of shape
    ``(real tokens, ...)``. Anything else (no mask, a pooled ``(batch, features)`` input, an image) is
    returned unchanged. With as many tokens as sequences, an input is taken to be batch first.
    """
    mask = _TOKEN_MASK.get()
    if mask is None or isinstance(module, nn.modules.conv._ConvNd) or x.ndim < 3:
        return x
    if tuple(x.shape[:2]) == tuple(mask.shape):
        return x[mask.to(x.device)]
    if tuple(x.shape[:2]) == tuple(mask.shape[::-1]):
        return x.transpose(0, 1)[mask.to(x.device)]
    return x


def execution_order(
    model: nn.Module, layers: Mapping[str, nn.Module], batches: Sequence[Batch], *, where: str
) -> list[str]:
    """The names of ``layers`` in the order they first run on ``batches`` (all of them are fed, so a
    batch the model rejects is found here). Raises if a layer never runs."""
    seen: dict[str, None] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: Any, _o: Any) -> None:
            seen.setdefault(name, None)

        return hook

    with forward_hooks([(m, hook_for(n)) for n, m in layers.items()]):
        feed(model, batches, where=where)
    check_reached(layers, seen, where)
    return list(seen)


def check_reached(layers: Iterable[str], reached: Iterable[str], where: str) -> None:
    """Every layer in ``layers`` must be among ``reached`` (received input from the calibration data)."""
    got = set(reached)
    missing = [n for n in layers if n not in got]
    if missing:
        fail(
            "data",
            where,
            "calibration data whose forward pass reaches every prunable layer",
            None,
            f"leave them out with exclude={missing!r}, or use a data-free method.",
            got=f"no input reached layer(s) {missing[:8]}",
        )


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _child(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def repeated_container(model: nn.Module, names: Sequence[str]) -> str | None:
    """The name of the ``nn.ModuleList``/``nn.Sequential`` whose children are the model's blocks: among
    the containers with at least two children of one class that hold layers in ``names``, the one with the
    most such children (the first in module order on a tie). None if there is none."""
    best, best_count = None, 1
    for cname, container in model.named_modules():
        if not isinstance(container, nn.ModuleList | nn.Sequential):
            continue
        classes: Counter[type] = Counter()
        for child_name, child in container.named_children():
            prefix = _child(cname, child_name)
            if any(_under(n, prefix) for n in names):
                classes[type(child)] += 1
        count = max(classes.values(), default=0)
        if count > best_count:
            best, best_count = cname, count
    return best


def calibration_blocks(
    model: nn.Module,
    order: Sequence[str],
    *,
    blocks: Sequence[str] | None = None,
    where: str = "prune",
) -> list[list[str]]:
    """Group the layers named in ``order`` (execution order) into blocks, pruned one after another.

    By default the blocks are the children of :func:`repeated_container` (e.g. the transformer layers of
    an encoder's ``nn.ModuleList``, the residual blocks of a ResNet, the Linear layers of an MLP's
    ``nn.Sequential``); every layer outside it (embedding side, pooler, head) is a block of its own.
    ``blocks`` (module-name prefixes, e.g. ``["encoder.layer.0", "encoder.layer.1"]``) overrides: a layer
    under a prefix belongs to that block, any other layer is a block of its own. Blocks come in the
    order their first layer runs; layers within a block in execution order.

    >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> calibration_blocks(mlp, ["0", "2", "4"])
    [['0'], ['2'], ['4']]
    >>> calibration_blocks(mlp, ["0", "2", "4"], blocks=["0", "2"])
    [['0'], ['2'], ['4']]
    """
    if blocks is None:
        container = repeated_container(model, order)
        key = {}
        for name in order:
            key[name] = name
            if container is not None and _under(name, container):
                rest = name[len(container) + 1 :] if container else name
                key[name] = _child(container, rest.split(".")[0])
    else:
        key = _prefix_keys(order, blocks, where)
    groups: dict[str, list[str]] = {}
    for name in order:
        groups.setdefault(key[name], []).append(name)
    return list(groups.values())


def _prefix_keys(order: Sequence[str], blocks: Sequence[str], where: str) -> dict[str, str]:
    if isinstance(blocks, str) or not isinstance(blocks, Sequence) or not blocks:
        fail(
            "blocks",
            where,
            "a non-empty list of module-name prefixes, one per block",
            blocks,
            "pass e.g. blocks=['encoder.layer.0', 'encoder.layer.1'], or omit it to find the blocks.",
        )
    key: dict[str, str] = {}
    for prefix in blocks:
        if not isinstance(prefix, str) or prefix == "":
            fail("blocks", where, "non-empty module-name prefixes", prefix, "pass names such as 'layers.0'.")
        hits = [n for n in order if _under(n, prefix)]
        if not hits:
            fail(
                "blocks",
                where,
                f"prefixes of the names of the layers being pruned ({list(order)[:12]})",
                prefix,
                "copy module names from model.named_modules(); excluded layers do not count.",
            )
        for n in hits:
            if n in key:
                fail(
                    "blocks",
                    where,
                    "prefixes that do not overlap (each layer in one block)",
                    prefix,
                    None,
                    got=f"{prefix!r}, which shares layer {n!r} with {key[n]!r}",
                )
            key[n] = prefix
    return {n: key.get(n, n) for n in order}
