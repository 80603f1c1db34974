"""Scoped changes to a model: eval mode and forward hooks, put back when the block ends, also on error.

Every analysis and every pruning criterion that runs a model for its own purposes goes through these two,
so that no model is left in another mode and no hook is left behind (DESIGN.md §5).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import nn

__all__ = ["eval_mode", "forward_hooks"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every module of ``model`` in eval mode inside the block; each module's own flag restored after.

    >>> m = nn.Sequential(nn.Dropout(), nn.Linear(2, 2)).train()
    >>> m[1].eval() and None
    >>> with eval_mode(m):
    ...     m.training
    False
    >>> m.training, m[1].training
    (True, False)
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextlib.contextmanager
def forward_hooks(
    hooks: Iterable[tuple[nn.Module, Callable[..., Any]]], *, pre: bool = False, with_kwargs: bool = False
) -> Iterator[None]:
    """Register each ``(module, hook)`` as a forward hook (a forward pre-hook with ``pre=True``) for the
    block; all of them are removed when it ends, also when registering or the block raises.
    ``with_kwargs=True`` hands the hooks the keyword arguments too (``hook(module, args, kwargs, out)``;
    see ``nn.Module.register_forward_hook``).

    >>> m = nn.Linear(2, 2)
    >>> with forward_hooks([(m, lambda mod, i, o: None)]):
    ...     len(m._forward_hooks)
    1
    >>> len(m._forward_hooks)
    0
    """
    handles = []
    try:
        for module, hook in hooks:
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook, with_kwargs=True) if with_kwargs else register(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
