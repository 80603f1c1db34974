"""Named model inputs: the token ids, attention mask and any other tensors a model takes by keyword.

Image, tabular and signal data reach a model as one float tensor. A transformer encoder takes several
tensors by keyword (``input_ids``, ``attention_mask``, ``token_type_ids``). :class:`Inputs` holds such
tensors, all with one row per sample, and behaves like a tensor where pruneviz needs it to: ``len`` is the
number of samples, indexing by rows (an int, slice, index array or boolean mask) gives the same rows of
every tensor, and :meth:`cat` joins batches. Indexing by a name gives that tensor. A model adapted with
:func:`pruneviz.models.adapt` receives an :class:`Inputs` as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from pruneviz._validation import fail

#: the name of the tensor that marks real tokens (1) and padding (0), as Hugging Face models call it
ATTENTION_MASK = "attention_mask"


class Inputs:
    """Tensors a model takes by keyword, each with one row per sample.

    The first tensor is the *primary* one: its shape gives :attr:`shape` (``input_ids`` for text).

    >>> ids = torch.tensor([[5, 6, 0], [7, 0, 0]])
    >>> x = Inputs({"input_ids": ids, "attention_mask": (ids != 0).long()})
    >>> len(x), x.shape, x[1:]["input_ids"].tolist()
    (2, torch.Size([2, 3]), [[7, 0, 0]])
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        where = "Inputs"
        if not isinstance(tensors, Mapping) or not tensors:
            fail("tensors", where, "a non-empty mapping of name -> tensor", tensors)
        out: dict[str, torch.Tensor] = {}
        n = None
        for name, t in tensors.items():
            if not isinstance(name, str):
                fail("tensors", where, "string names (the model's keyword arguments)", name)
            if isinstance(t, np.ndarray):
                t = torch.from_numpy(np.ascontiguousarray(t))
            if not isinstance(t, torch.Tensor) or t.ndim < 1:
                fail(
                    "tensors",
                    where,
                    f"a tensor with one row per sample for {name!r}",
                    None,
                    got=type(t).__name__ if not isinstance(t, torch.Tensor) else "a 0-d tensor",
                )
            if n is None:
                n = int(t.shape[0])
            elif int(t.shape[0]) != n:
                fail(
                    "tensors",
                    where,
                    f"the same number of rows in every tensor ({n}, from the first)",
                    None,
                    got=f"{int(t.shape[0])} rows in {name!r}",
                )
            out[name] = t
        self._tensors = out

    # -- tensor-like protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(next(iter(self._tensors.values())).shape[0])

    @property
    def shape(self) -> torch.Size:
        """The primary tensor's shape ``(N, *per_sample)``."""
        return next(iter(self._tensors.values())).shape

    @property
    def primary(self) -> str:
        """The name of the first tensor (``input_ids`` for text)."""
        return next(iter(self._tensors))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._tensors[key]
            except KeyError:
                raise KeyError(f"{key!r} is not one of the inputs {list(self._tensors)}") from None
        if isinstance(key, np.ndarray):
            key = torch.from_numpy(key)
        return Inputs({k: t[key] for k, t in self._tensors.items()})

    def __contains__(self, key: object) -> bool:
        return key in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def keys(self) -> Iterable[str]:
        return self._tensors.keys()

    def items(self) -> Iterable[tuple[str, torch.Tensor]]:
        return self._tensors.items()

    def values(self) -> Iterable[torch.Tensor]:
        return self._tensors.values()

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The tensors as a plain dict (a new dict; the tensors are shared)."""
        return dict(self._tensors)

    def to(self, *args: Any, **kwargs: Any) -> Inputs:
        """Move every tensor (``to(device)``); a dtype argument is applied to floating tensors only."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if t.is_floating_point():
                return t.to(*args, **kwargs)
            dev = [a for a in args if isinstance(a, str | torch.device)]
            return t.to(dev[0] if dev else kwargs.get("device", t.device))

        return Inputs({k: move(t) for k, t in self._tensors.items()})

    def contiguous(self) -> Inputs:
        return Inputs({k: t.contiguous() for k, t in self._tensors.items()})

    def token_mask(self) -> torch.Tensor | None:
        """The boolean mask of real (not padded) positions, from ``attention_mask``; None without one."""
        mask = self._tensors.get(ATTENTION_MASK)
        return None if mask is None else mask.bool()

    @staticmethod
    def cat(parts: Iterable[Inputs]) -> Inputs:
        """Join batches row-wise (every part must have the same names)."""
        parts = list(parts)
        if not parts:
            fail("parts", "Inputs.cat", "at least one batch", parts)
        names = list(parts[0].keys())
        for p in parts[1:]:
            if list(p.keys()) != names:
                fail("parts", "Inputs.cat", f"batches with the inputs {names}", list(p.keys()))
        return Inputs({k: torch.cat([p[k] for p in parts]) for k in names})

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}: {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for k, t in self.items()
        )
        return f"Inputs({inner})"


def rows(x: torch.Tensor | Inputs) -> int:
    """The number of samples in a batch of model inputs."""
    return len(x) if isinstance(x, Inputs) else int(x.shape[0])


def concat(parts: list[torch.Tensor] | list[Inputs]) -> torch.Tensor | Inputs:
    """Join batches of model inputs row-wise, whatever their kind."""
    if parts and isinstance(parts[0], Inputs):
        return Inputs.cat(parts)  # type: ignore[arg-type]
    return torch.cat(parts)  # type: ignore[arg-type]


def tensor_inputs(x: torch.Tensor | Inputs, param: str, where: str, what: str) -> torch.Tensor:
    """``x`` when it is one tensor (images, tabular rows, signals); else a clear refusal naming ``what``
    needs a tensor (token sequences with their masks are :class:`Inputs`)."""
    if not isinstance(x, torch.Tensor):
        fail(
            param,
            where,
            f"data whose inputs are one tensor ({what} need a tensor of features)",
            None,
            got=f"inputs of type {type(x).__name__} (token sequences)",
            fix="use it on image, tabular or signal data; for text, the geometry, exemplar and subgroup "
            "analyses apply.",
        )
    return x
