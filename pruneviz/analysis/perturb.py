"""Perturbing a model's weights safely: every analysis that moves weights goes through here.

:func:`perturbed` writes ``θ + δ`` into the model inside a ``with`` block and restores the original
tensors bit for bit on the way out, whatever happens inside (the restore copies saved clones back).
Directions are mask-aware: a pruned weight's coordinate of every direction is exactly zero, so pruned
weights stay exactly zero at every perturbed point.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._scope import eval_mode
from pruneviz._validation import check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.weights import parameter_name_of

Direction = dict[str, torch.Tensor]


def parameter_masks(model: nn.Module, masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Keep-masks by *parameter* name (``"fc.weight"``) from keep-masks by prunable-weight key (``"fc"``
    for a module's weight, ``"attn.in_proj_weight"`` for a parameter key). Only
    the given masks count: a zero weight without a mask is an ordinary weight that may move."""
    named = dict(model.named_parameters())
    out = {}
    for module_name, mask in (masks or {}).items():
        pname = parameter_name_of(model, module_name) or f"{module_name}.weight"
        if pname not in named:
            fail(
                "masks",
                "perturbed",
                "masks keyed by names of the model's layers",
                module_name,
                "use the masks computed for this architecture.",
            )
        if tuple(mask.shape) != tuple(named[pname].shape):
            fail(
                "masks",
                "perturbed",
                f"a mask of shape {tuple(named[pname].shape)} for {module_name!r}",
                None,
                got=f"shape {tuple(mask.shape)}",
            )
        out[pname] = mask.to(torch.bool)
    return out


def apply_masks(direction: Direction, pmasks: Mapping[str, torch.Tensor]) -> Direction:
    """Zero every pruned coordinate of a direction (in place); return it."""
    for name, mask in pmasks.items():
        if name in direction:
            direction[name].masked_fill_(~mask, 0.0)
    return direction


def gaussian_direction(
    model: nn.Module,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    normalization: str = "filter",
    seed: int = 0,
) -> Direction:
    """A random direction in weight space (Li et al. 2018): Gaussian entries, pruned coordinates zero,
    then ``filter`` normalisation — each output filter (row) of a weight rescaled to the norm of the same
    filter of the weights, counted over kept entries only — or ``layer`` normalisation (whole tensors),
    or ``none``. One-dimensional parameters (biases, norm scales) get a zero direction, as in Li et al."""
    if normalization not in ("filter", "layer", "none"):
        fail("normalization", "gaussian_direction", "'filter', 'layer' or 'none'", normalization)
    gen = torch.Generator().manual_seed(seed)
    pmasks = parameter_masks(model, masks)
    out: Direction = {}
    for name, p in model.named_parameters():
        w = p.detach()
        if w.ndim <= 1:
            out[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.dtype)
        if name in pmasks:
            d.masked_fill_(~pmasks[name], 0.0)
        if normalization == "filter":
            d_rows, w_rows = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
            scale = w_rows.norm(dim=1) / d_rows.norm(dim=1).clamp_min(1e-12)
            d = (d_rows * scale[:, None]).reshape(w.shape)
        elif normalization == "layer":
            d = d * (w.norm() / d.norm().clamp_min(1e-12))
        out[name] = d
    return out


@contextlib.contextmanager
def perturbed(
    model: nn.Module, direction: Direction | None = None, scale: float = 1.0
) -> Iterator[nn.Module]:
    """Inside the block the model's parameters are ``θ + scale · direction`` (missing names unchanged);
    afterwards they are exactly ``θ`` again, also after an exception. Yields the model.

    Nested use is fine; :func:`set_point` moves the point within an open block.
    """
    named = dict(model.named_parameters())
    saved = {n: p.detach().clone() for n, p in named.items()}
    try:
        if direction:
            set_point(model, saved, [(direction, scale)])
        yield model
    finally:
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(saved[n])


@torch.no_grad()
def set_point(
    model: nn.Module, base: Mapping[str, torch.Tensor], steps: list[tuple[Direction, float]]
) -> None:
    """Write ``base + Σ scale_i · direction_i`` into the model's parameters (inside :func:`perturbed`)."""
    for n, p in model.named_parameters():
        p.copy_(base[n])
        for direction, scale in steps:
            if n in direction and scale != 0.0:
                p.add_(direction[n].to(p.dtype), alpha=scale)


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, data: Dataset, *, batch_size: int = 512) -> dict[str, float]:
    """Mean cross-entropy and accuracy over ``data`` with their standard errors (eval mode; the mode is
    restored). Per-sample losses give ``loss_se = std / √n``; accuracy ``acc_se = √(p(1-p)/n)``."""
    loss, acc = _per_sample(model, data, batch_size, "loss_and_accuracy")
    n = loss.numel()
    p = float(acc.mean())
    return {
        "loss": float(loss.mean()),
        "loss_se": mean_se(loss),
        "accuracy": p,
        "accuracy_se": math.sqrt(p * (1 - p) / n),
    }


def mean_se(values: torch.Tensor) -> float:
    """The standard error of the mean of ``values``, ``std / √n`` (0 for one value)."""
    n = values.numel()
    return float(values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0


@torch.no_grad()
def sample_losses(model: nn.Module, data: Dataset, *, batch_size: int = 512) -> torch.Tensor:
    """The cross-entropy of every sample of ``data``, float64 (eval mode; the mode is restored)."""
    return _per_sample(model, data, batch_size, "sample_losses")[0]


def _per_sample(
    model: nn.Module, data: Dataset, batch_size: int, where: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample float64 cross-entropy and correctness (1.0 / 0.0); a NaN or infinite loss is an error."""
    if len(data) == 0:
        fail("data", where, "a non-empty Dataset", "0 samples", "pass the samples to evaluate on.")
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    losses, correct = [], []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(data), batch_size):
            logits = model(data.x[i : i + batch_size])
            y = data.y[i : i + batch_size]
            losses.append(F.cross_entropy(logits, y, reduction="none"))
            correct.append((logits.argmax(1) == y).float())
    loss = torch.cat(losses).double()
    if not math.isfinite(float(loss.mean())):
        raise FloatingPointError(
            "The loss is NaN or inf at this point of weight space. Fix: use a smaller radius or check the "
            "model for NaN/inf weights."
        )
    return loss, torch.cat(correct).double()
