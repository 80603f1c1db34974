"""Memory formats for forward passes: a model moved to channels-last where that changes nothing but speed.

On a CPU, oneDNN's convolutions on channels-last (NHWC) activations take about half the time of the same
convolutions on contiguous (NCHW) ones at the sizes of an analysis, and a model moved there computes the
same function. Not every model can be moved: a ``view`` that needs contiguous activations raises, and a
model could in principle compute something else. :func:`inference_layout` therefore tries it on two
samples and keeps the move only where the logits agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def to_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """``model.to(memory_format=...)`` in place: a keyword ``Module.to`` accepts but its type stubs do
    not list. Returns the model."""
    to: Any = model.to
    return to(memory_format=memory_format)


def inference_layout(model: nn.Module, x: Any) -> nn.Module:
    """``model`` (a private copy: it is moved in place) in the channels-last memory format where it has
    2-D convolutions, ``x`` is a batch of images (an ``(N, C, H, W)`` tensor, ``N ≥ 2``), and the logits
    on two of them stay the same (to 1e-4); otherwise it is returned in the contiguous format.

    >>> net = inference_layout(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), torch.zeros(2, 3, 5, 5))
    >>> net[0].weight.is_contiguous(memory_format=torch.channels_last)
    True
    """
    from pruneviz.models.adapter import adapted

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or len(x) < 2:
        return model
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model
    example = x[:2]
    with torch.no_grad(), adapted(model):
        model.eval()
        before = model(example)
        try:
            to_memory_format(model, torch.channels_last)
            after = model(example)
        except RuntimeError:
            after = None
    if after is None or not torch.allclose(after, before, rtol=1e-4, atol=1e-5):
        return to_memory_format(model, torch.contiguous_format)
    return model
