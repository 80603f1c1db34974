"""Prunable weights and explicit mask objects.

A :class:`Masks` maps the key of a prunable weight (see :mod:`pruneviz.prune.weights`: a module name for
a module's ``weight``, ``"<module>.<parameter>"`` for attention input projections) to a boolean tensor
of that weight's shape: ``True`` keeps a weight, ``False`` prunes it. Applying masks to a model is
explicit (:meth:`Masks.apply_`), and so is keeping pruned weights at zero while training
(:meth:`Masks.keep_zero`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from pruneviz._validation import fail
from pruneviz.prune.weights import PRUNABLE_TYPES, PrunableWeight, parameter_name_of, prunable_weights

__all__ = ["PRUNABLE_TYPES", "Masks", "PrunableWeight", "prunable_layers", "prunable_weights"]


def prunable_layers(
    model: nn.Module,
    *,
    exclude: Iterable[str] = (),
    where: str = "prune",
    include_embeddings: bool = False,
) -> dict[str, PrunableWeight]:
    """The model's prunable weights by key, minus ``exclude``: the same as
    :func:`~pruneviz.prune.weights.prunable_weights` (each value has ``.weight``, ``.module`` and the
    ``(out, in)`` orientation helpers).

    Raises if a name in ``exclude`` is not a prunable weight of the model, or if nothing is left.
    """
    return prunable_weights(model, exclude=exclude, include_embeddings=include_embeddings, where=where)


def _check_mask(name: object, mask: object, where: str) -> None:
    """A keep-mask must be a tensor of 0/1 (or bool) values: 0.3 or 2 or NaN would scale weights."""
    if not isinstance(name, str) or not isinstance(mask, torch.Tensor):
        fail(
            "masks",
            where,
            "a mapping of layer name (str) -> keep-mask tensor",
            None,
            "pass torch tensors of 0/1 or bool values, keyed by the layer names of prunable_weights(model).",
            got=f"{type(name).__name__} key {name!r} -> {type(mask).__name__} value",
        )
    if mask.dtype == torch.bool:
        return
    if mask.is_complex() or mask.is_meta:
        fail("masks", where, "bool or 0/1 keep-masks", None, got=f"a {mask.dtype} mask for layer {name!r}")
    bad = ~((mask == 0) | (mask == 1))
    if bool(bad.any()):
        shown = sorted({f"{float(v):g}" for v in mask[bad].flatten()[:50].tolist()})[:3]
        fail(
            "masks",
            where,
            "keep-masks of only 0/1 (or True/False) values",
            None,
            "threshold soft scores first, e.g. (scores > t), or use torch.bool masks.",
            got=f"{int(bad.sum())} value(s) such as {', '.join(shown)} in the mask of layer {name!r}",
        )


class Masks(Mapping[str, torch.Tensor]):
    """Boolean keep-masks by layer name. ``True`` keeps a weight.

    >>> m = Masks({"fc": torch.tensor([[True, False], [True, True]])})
    >>> m.sparsity()
    0.25
    """

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        where = "Masks"
        if not isinstance(masks, Mapping):
            fail(
                "masks",
                where,
                "a mapping of layer name -> keep-mask tensor",
                masks,
                "pass e.g. Masks({'fc': torch.ones(8, 4, dtype=torch.bool)}).",
            )
        for name, mask in masks.items():
            _check_mask(name, mask, where)
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

    def _weights(self, model: nn.Module, where: str) -> dict[str, PrunableWeight]:
        modules = dict(model.named_modules())
        out = {}
        for name, mask in self._masks.items():
            pname = parameter_name_of(model, name)
            w = None
            if pname is not None:
                module_name, _, param = pname.rpartition(".")
                w = PrunableWeight.of(
                    modules[module_name], key=name, module_name=module_name, param_name=param
                )
            if w is None or tuple(w.shape) != tuple(mask.shape):
                fail(
                    "model",
                    where,
                    f"a model with layer {name!r} of weight shape {tuple(mask.shape)}",
                    None,
                    got="no such layer" if w is None else f"weight shape {tuple(w.shape)}",
                    fix="apply masks to the architecture they were computed for.",
                )
            out[name] = w
        return out

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> nn.Module:
        """Zero the pruned weights of ``model`` in place; return the model."""
        for name, w in self._weights(model, "Masks.apply_").items():
            w.weight.mul_(self._masks[name].to(w.weight.device, w.weight.dtype))
        return model

    def keep_zero(self, model: nn.Module) -> Callable[[nn.Module], None]:
        """A callback for ``fit(after_step=...)`` that re-zeroes pruned weights after every step."""
        weights = self._weights(model, "Masks.keep_zero")
        masks = {n: self._masks[n].to(w.weight.device) for n, w in weights.items()}

        @torch.no_grad()
        def after_step(_: nn.Module) -> None:
            for n, w in weights.items():
                w.weight.masked_fill_(~masks[n], 0.0)

        return after_step

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``{"<key>.weight": mask}`` for safetensors (every key gets the suffix, also a parameter key
        such as ``"attn.in_proj_weight"``, so :meth:`from_tensors` inverts it exactly)."""
        return {f"{k}.weight": v for k, v in self._masks.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> Masks:
        return cls({k.removesuffix(".weight"): v for k, v in tensors.items()})

    @classmethod
    def from_model(
        cls, model: nn.Module, *, exclude: Iterable[str] = (), include_embeddings: bool = False
    ) -> Masks:
        """Masks that keep exactly the non-zero weights of ``model``'s prunable weights."""
        layers = prunable_weights(
            model, exclude=exclude, include_embeddings=include_embeddings, where="Masks.from_model"
        )
        return cls({n: w.weight.detach() != 0 for n, w in layers.items()})
