"""Any ``nn.Module`` as a classifier: inputs in the shape the model wants, logits out.

pruneviz calls every model as ``model(x)`` and expects an ``(N, K)`` tensor of logits back. Models people
bring do not all look like that: a Hugging Face–style encoder takes ``input_ids=..., attention_mask=...``
and returns an object with ``.logits``; others return a dict or a tuple ``(logits, aux)``. :func:`adapt`
installs two hooks on the model itself (no wrapper, so parameter names, state dicts and masks stay the
same) that unpack the inputs and pick the logits out of the output:

- inputs: a tensor is passed as it is; a tuple or list as positional arguments; an
  :class:`~pruneviz.data.Inputs` or a dict as keyword arguments;
- outputs: a tensor is the logits; a tuple or list gives its first element; a dict its ``"logits"``
  entry; any other object its ``.logits`` attribute.

Adapting is idempotent, survives ``copy.deepcopy`` and is undone by :func:`unadapt`; :func:`adapted`
scopes it to a ``with`` block (what pruneviz's own functions do with a model they are handed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from pruneviz._validation import fail
from pruneviz.data.inputs import Inputs

_MARK = "_pruneviz_adapter_hooks"


def to_logits(output: Any, *, where: str = "model") -> torch.Tensor:
    """The logits tensor in a model's ``output`` (tensor, tuple/list, dict, or object with ``.logits``).

    >>> to_logits({"logits": torch.zeros(2, 3), "hidden": None}).shape
    torch.Size([2, 3])
    """
    found: Any = output
    if isinstance(output, tuple | list) and output:
        found = output[0]
    elif isinstance(output, Mapping):
        found = output.get("logits")
    elif not isinstance(output, torch.Tensor):
        found = getattr(output, "logits", None)
    if isinstance(found, torch.Tensor):
        return found
    kind = type(output).__name__
    keys = f" with keys {list(output)[:8]}" if isinstance(output, Mapping) else ""
    fail(
        "model",
        where,
        "a model whose output is logits: a tensor, a tuple/list starting with the logits tensor, a dict "
        "with a 'logits' entry or an object with a .logits attribute",
        None,
        got=f"an output of type {kind}{keys}",
        fix="wrap the model in a small nn.Module whose forward returns the (N, num_classes) logits tensor.",
    )
    raise AssertionError("unreachable")  # pragma: no cover - fail() raises


def _unpack_inputs(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    if len(args) != 1 or kwargs:
        return None
    x = args[0]
    if isinstance(x, Inputs):
        return (), x.as_dict()
    if isinstance(x, Mapping):
        return (), dict(x)
    if isinstance(x, tuple | list):
        return tuple(x), {}
    return None


def _logits_output(module: nn.Module, args: Any, kwargs: Any, output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return None
    return to_logits(output, where=f"{type(module).__name__} (adapted model)")


def adapt(model: nn.Module) -> nn.Module:
    """Make ``model(x)`` return logits for inputs given as a tensor, tuple, dict or Inputs; return it.

    The model is changed in place (two hooks are registered) and returned, so ``adapt(model)`` can be
    used inline. Calling it again does nothing.

    >>> class Encoder(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb, self.head = nn.Embedding(10, 4), nn.Linear(4, 2)
    ...     def forward(self, input_ids, attention_mask):
    ...         h = (self.emb(input_ids) * attention_mask[..., None]).mean(1)
    ...         return {"logits": self.head(h)}
    >>> m = adapt(Encoder())
    >>> ids = torch.tensor([[1, 2, 0]])
    >>> m({"input_ids": ids, "attention_mask": (ids != 0).float()}).shape
    torch.Size([1, 2])
    """
    if not isinstance(model, nn.Module):
        fail("model", "adapt", "a torch nn.Module", type(model).__name__)
    if getattr(model, _MARK, None):
        return model
    handles = (
        model.register_forward_pre_hook(_unpack_inputs, with_kwargs=True),
        model.register_forward_hook(_logits_output, with_kwargs=True),
    )
    # The ids of the hooks (not the handles, which hold references to the hook dicts and do not
    # survive deepcopy); unadapt finds them by id in the copied dicts as well.
    object.__setattr__(model, _MARK, tuple(h.id for h in handles))
    return model


def unadapt(model: nn.Module) -> nn.Module:
    """Remove the hooks :func:`adapt` installed (no-op for a model that is not adapted)."""
    ids = getattr(model, _MARK, None)
    if ids:
        pre_id, post_id = ids
        model._forward_pre_hooks.pop(pre_id, None)
        model._forward_pre_hooks_with_kwargs.pop(pre_id, None)
        model._forward_hooks.pop(post_id, None)
        model._forward_hooks_with_kwargs.pop(post_id, None)
        object.__delattr__(model, _MARK)
    return model


def is_adapted(model: nn.Module) -> bool:
    """Whether :func:`adapt` hooks are installed on ``model``."""
    return bool(getattr(model, _MARK, None))


@contextmanager
def adapted(model: nn.Module) -> Iterator[nn.Module]:
    """Scope :func:`adapt` to a ``with`` block: the hooks are removed on exit (also on an exception),
    unless the model was already adapted before the block."""
    already = is_adapted(model)
    adapt(model)
    try:
        yield model
    finally:
        if not already:
            unadapt(model)
