"""How weights are laid out as matrices for the sparse formats; shared with the pruning engine, which sits
above this layer and imports it from here."""

from __future__ import annotations

import torch


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A weight as the ``(out, in * kernel)`` matrix the formats store (the ``F.unfold`` column order)."""
    return weight.detach().reshape(weight.shape[0], -1)


def nm_view(t: torch.Tensor) -> torch.Tensor:
    """(out, kernel..., in): N:M groups run along the input-channel axis (as in NVIDIA's ASP)."""
    if t.ndim == 2:
        return t
    return t.movedim(1, -1).reshape(t.shape[0], -1)


def nm_unview(flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`nm_view` for a weight of ``shape``."""
    if len(shape) == 2:
        return flat
    moved = (shape[0], *shape[2:], shape[1])
    return flat.reshape(moved).movedim(-1, 1)


def compress_nm(flat: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept values of an ``(out, K)`` matrix with at most ``n`` non-zeros in every group of ``m``
    consecutive columns, and their positions within the group (uint8), both ``(out, K * n / m)``.

    Non-zeros come first in position order; a group with fewer than ``n`` non-zeros is padded with the
    positions of its first zeros (whose values are 0). The caller checks the pattern."""
    groups = flat.reshape(flat.shape[0], -1, m)
    order = torch.argsort((groups == 0).to(torch.int8), dim=-1, stable=True)[..., :n]
    order = order.sort(dim=-1).values
    values = torch.gather(groups, -1, order)
    return values.reshape(flat.shape[0], -1), order.to(torch.uint8).reshape(flat.shape[0], -1)
