"""Prunable layers and explicit mask objects.

A :class:`Masks` maps the name of a prunable module (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``) to a
boolean tensor of its weight's shape: ``True`` keeps a weight, ``False`` prunes it. Applying masks to a
model is explicit (:meth:`Masks.apply_`), and so is keeping pruned weights at zero while training
(:meth:`Masks.keep_zero`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from pruneviz._validation import fail

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def prunable_layers(
    model: nn.Module, *, exclude: Iterable[str] = (), where: str = "prune"
) -> dict[str, nn.Module]:
    """The model's prunable modules by name (Linear and Conv layers), minus ``exclude``.

    Raises if a name in ``exclude`` is not a prunable module of the model, or if nothing is left.
    """
    found = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    excluded = list(exclude)
    unknown = [n for n in excluded if n not in found]
    if unknown:
        fail(
            "exclude",
            where,
            f"names of prunable layers of the model ({sorted(found)})",
            unknown if len(unknown) > 1 else unknown[0],
            "copy the layer names from pruneviz.prune.prunable_layers(model).",
        )
    layers = {n: m for n, m in found.items() if n not in set(excluded)}
    if not layers:
        fail(
            "model",
            where,
            "a model with at least one prunable layer (Linear, Conv1d, Conv2d) not excluded",
            type(model).__name__,
            "pass a model with linear or convolutional layers, or exclude fewer layers.",
        )
    for name, m in layers.items():
        if not bool(torch.isfinite(m.weight).all()):
            fail(
                "model",
                where,
                "finite weights (no NaN or inf)",
                None,
                got=f"non-finite values in layer {name!r}",
                fix="the model diverged; retrain it or load a healthy checkpoint.",
            )
    return layers


class Masks(Mapping[str, torch.Tensor]):
    """Boolean keep-masks by layer name. ``True`` keeps a weight.

    >>> m = Masks({"fc": torch.tensor([[True, False], [True, True]])})
    >>> m.sparsity()
    0.25
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._masks = {k: v.detach().to(device="cpu", dtype=torch.bool) for k, v in masks.items()}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._masks[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"Masks(layers={len(self)}, sparsity={self.sparsity():.4f})"

    def sparsity(self) -> float:
        """Fraction of masked-out weights over all masked layers."""
        total = sum(m.numel() for m in self._masks.values())
        kept = sum(int(m.sum()) for m in self._masks.values())
        return 0.0 if total == 0 else 1.0 - kept / total

    def sparsity_by_layer(self) -> pd.DataFrame:
        """One row per layer: ``layer``, ``params``, ``pruned``, ``sparsity``."""
        rows = [
            {
                "layer": k,
                "params": m.numel(),
                "pruned": int((~m).sum()),
                "sparsity": float((~m).sum()) / m.numel(),
            }
            for k, m in self._masks.items()
        ]
        return pd.DataFrame(rows, columns=["layer", "params", "pruned", "sparsity"])

    def _modules(self, model: nn.Module, where: str) -> dict[str, nn.Module]:
        modules = dict(model.named_modules())
        out = {}
        for name, mask in self._masks.items():
            m = modules.get(name)
            if m is None or not hasattr(m, "weight") or tuple(m.weight.shape) != tuple(mask.shape):
                fail(
                    "model",
                    where,
                    f"a model with layer {name!r} of weight shape {tuple(mask.shape)}",
                    None,
                    got="no such layer" if m is None else f"weight shape {tuple(m.weight.shape)}",
                    fix="apply masks to the architecture they were computed for.",
                )
            out[name] = m
        return out

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of ``model`` in place; return the model."""
        for name, m in self._modules(model, "Masks.apply_").items():
            m.weight.mul_(self._masks[name].to(m.weight.device, m.weight.dtype))
        return model

    def keep_zero(self, model: nn.Module) -> Callable[[nn.Module], None]:
        """A callback for ``fit(after_step=...)`` that re-zeroes pruned weights after every step."""
        modules = self._modules(model, "Masks.keep_zero")
        masks = {n: self._masks[n].to(m.weight.device) for n, m in modules.items()}

        @torch.no_grad()
        def after_step(_: nn.Module) -> None:
            for n, m in modules.items():
                m.weight.masked_fill_(~masks[n], 0.0)

        return after_step

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<layer>.weight": mask}`` for safetensors."""
        return {f"{k}.weight": v for k, v in self._masks.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> Masks:
        return cls({k.removesuffix(".weight"): v for k, v in tensors.items()})

    @classmethod
    def from_model(cls, model: nn.Module, *, exclude: Iterable[str] = ()) -> Masks:
        """Masks that keep exactly the non-zero weights of ``model``'s prunable layers."""
        layers = prunable_layers(model, exclude=exclude, where="Masks.from_model")
        return cls({n: m.weight.detach() != 0 for n, m in layers.items()})
