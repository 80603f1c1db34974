"""Loss landscapes: 1-D and 2-D slices through weight space around a model, and straight lines between
two models (dense → pruned, or two pruned runs). Every point reports loss and accuracy with standard
errors; the model is restored bit for bit afterwards and pruned weights stay exactly zero throughout.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn

from pruneviz._log import bar
from pruneviz._validation import check_int, check_positive_float, fail
from pruneviz.analysis._points import PointEvaluator
from pruneviz.analysis.perturb import gaussian_direction, loss_and_accuracy
from pruneviz.data.dataset import Dataset


def centred_grid(steps: int, radius: float, *, where: str) -> np.ndarray:
    """``steps`` evenly spaced points on ``[-radius, radius]`` with 0 exactly in the middle."""
    steps = check_int(steps, "steps", where, minimum=3)
    if steps % 2 == 0:
        fail(
            "steps",
            where,
            "an odd number of points, so that the grid is centred on the model itself",
            steps,
            f"use steps={steps + 1}.",
        )
    radius = check_positive_float(radius, "radius", where)
    grid = np.linspace(-radius, radius, steps)
    grid[steps // 2] = 0.0
    return grid


def landscape_1d(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int = 21,
    radius: float = 1.0,
    masks: dict[str, torch.Tensor] | None = None,
    normalization: str = "filter",
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
    workers: int | None = None,
) -> pd.DataFrame:
    """Loss and accuracy along one filter-normalised Gaussian direction (Li et al. 2018), on a centred,
    symmetric grid of ``steps`` points in ``[-radius, radius]``. Frame: ``alpha``, ``loss``, ``loss_se``,
    ``accuracy``, ``accuracy_se`` plus the settings (``direction_seed``, ``normalization``, ``samples``).
    ``progress`` shows a bar over the grid points; ``workers`` points run at once (default one per torch
    thread, see :class:`~pruneviz.analysis._points.PointEvaluator`, which also folds BatchNorm)."""
    grid = centred_grid(steps, radius, where="landscape_1d")
    direction = gaussian_direction(model, masks=masks, normalization=normalization, seed=seed)
    engine = PointEvaluator(model, data, [direction], batch_size=batch_size, workers=workers)
    results = engine.evaluate([(a,) for a in grid], progress=progress, desc="landscape 1-D")
    rows = [{"alpha": float(a), **r} for a, r in zip(grid, results, strict=True)]
    return pd.DataFrame(rows).assign(direction_seed=seed, normalization=normalization, samples=len(data))


def landscape_2d(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int = 21,
    radius: float = 1.0,
    masks: dict[str, torch.Tensor] | None = None,
    normalization: str = "filter",
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
    workers: int | None = None,
) -> pd.DataFrame:
    """Loss and accuracy on a ``steps × steps`` centred grid spanned by two independent filter-normalised
    Gaussian directions (seeds ``seed`` and ``seed + 1``). Frame: ``alpha``, ``beta``, ``loss``,
    ``loss_se``, ``accuracy``, ``accuracy_se`` plus the settings. ``progress`` shows a bar over the
    grid points; ``workers`` as in :func:`landscape_1d`."""
    grid = centred_grid(steps, radius, where="landscape_2d")
    d1 = gaussian_direction(model, masks=masks, normalization=normalization, seed=seed)
    d2 = gaussian_direction(model, masks=masks, normalization=normalization, seed=seed + 1)
    points = [(float(a), float(b)) for a in grid for b in grid]
    engine = PointEvaluator(model, data, [d1, d2], batch_size=batch_size, workers=workers)
    results = engine.evaluate(points, progress=progress, desc="landscape 2-D")
    rows = [{"alpha": a, "beta": b, **r} for (a, b), r in zip(points, results, strict=True)]
    return pd.DataFrame(rows).assign(direction_seed=seed, normalization=normalization, samples=len(data))


def interpolation(
    start: nn.Module,
    end: nn.Module,
    data: Dataset,
    *,
    steps: int = 21,
    extend: float = 0.0,
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Loss and accuracy along the straight line ``θ(t) = (1 - t) θ_start + t θ_end`` for ``t`` in
    ``[-extend, 1 + extend]`` (Goodfellow et al. 2015), e.g. from a dense model to its pruned version.
    Parameters and floating-point buffers (BatchNorm statistics) are interpolated alike. Neither model
    is changed (a copy is moved). Frame: ``t``, ``loss``, ``loss_se``, ``accuracy``, ``accuracy_se``.
    ``progress`` shows a bar over the points of the line."""
    where = "interpolation"
    steps = check_int(steps, "steps", where, minimum=2)
    if not (isinstance(extend, int | float) and extend >= 0):
        fail("extend", where, "a number >= 0", extend)
    a_state, b_state = start.state_dict(), end.state_dict()
    mismatch = [k for k in a_state if k not in b_state or a_state[k].shape != b_state[k].shape]
    if mismatch or set(a_state) != set(b_state):
        fail(
            "end",
            where,
            "a model of the same architecture as start (same parameter names and shapes)",
            None,
            got=f"differences at {(mismatch or sorted(set(a_state) ^ set(b_state)))[:3]}",
            fix="interpolate between runs of one architecture; a channel-pruned model has other shapes.",
        )
    work = copy.deepcopy(start)
    rows = []
    with torch.no_grad():
        for t in bar(np.linspace(-extend, 1 + extend, steps), show=progress, desc="interpolation"):
            mixed = {
                k: (1 - t) * a_state[k] + t * b_state[k] if a_state[k].is_floating_point() else a_state[k]
                for k in a_state
            }
            work.load_state_dict(mixed)
            rows.append({"t": float(t), **loss_and_accuracy(work, data, batch_size=batch_size)})
    return pd.DataFrame(rows).assign(samples=len(data))
