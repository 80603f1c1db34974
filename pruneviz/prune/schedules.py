"""When to prune: one-shot (+ fine-tuning), iterative magnitude pruning with rewinding, gradual.

Each schedule takes a model and training data, leaves the given model unchanged, and returns a
:class:`PruneResult` with a new pruned model. Training uses :func:`pruneviz.train.fit`, so everything
is seeded; pruned weights are held at exactly zero while training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pruneviz._validation import check_choice, check_fraction, check_instance, check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.allocation import ALLOCATIONS, allocate, parse_structure
from pruneviz.prune.api import prune_
from pruneviz.prune.channels import ChannelPlan, prune_channels
from pruneviz.prune.criteria import magnitude
from pruneviz.prune.masks import Masks, prunable_layers
from pruneviz.prune.weights import PrunableWeight, weights_of
from pruneviz.train import TrainConfig, fit


@dataclass
class PruneResult:
    """A pruned model, its masks (``None`` after channel removal, which leaves no zeros to mask), the
    channel plan (channel pruning only), the fine-tuning history and a description of the schedule."""

    model: nn.Module
    masks: Masks | None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    schedule: dict[str, Any] = field(default_factory=dict)
    plan: ChannelPlan | None = None


def calibration_subset(data: Dataset, size: int, *, seed: int = 0) -> Dataset:
    """``size`` samples of ``data`` drawn without replacement from ``seed`` (all of them if fewer)."""
    check_instance(
        data,
        Dataset,
        "data",
        "calibration_subset",
        "a pruneviz Dataset",
        "pass the training samples as a pruneviz.data.Dataset.",
    )
    size = check_int(size, "calibration_size", "one_shot", minimum=1)
    if size >= len(data):
        return data
    idx = np.sort(np.random.default_rng(seed).permutation(len(data))[:size])
    return data.take(idx)


def one_shot(
    model: nn.Module,
    train: Dataset,
    *,
    method: str,
    sparsity: float | None = None,
    structure: str = "unstructured",
    allocation: str | None = None,
    finetune: TrainConfig | None = None,
    exclude: Iterable[str] = (),
    calibration_size: int = 512,
    seed: int = 0,
    progress: bool = False,
    calibration: str = "sequential",
    blocks: Sequence[str] | None = None,
) -> PruneResult:
    """Prune once with ``method``, then optionally fine-tune with the masks held.

    ``calibration_size`` samples of ``train`` calibrate the data-driven methods; ``calibration`` and
    ``blocks`` choose how Wanda and SparseGPT use them (block by block by default; see
    :func:`~pruneviz.prune.compute_masks`).

    For ``structure="channel"`` the channels are physically removed (``method`` then names the
    criterion: ``magnitude`` = L1 of filters, ``random``, ``taylor`` or ``snip``) and the smaller
    model is fine-tuned as it is.
    """
    struct = parse_structure(structure, where="one_shot")
    calib = calibration_subset(train, calibration_size, seed=seed)
    history = pd.DataFrame()
    schedule = {"schedule": "one_shot", "finetune": finetune.to_json() if finetune else None}
    if struct.kind == "channel":
        criterion = {"global_magnitude": "magnitude", "channel_l1": "magnitude"}.get(method, method)
        if sparsity is None:
            fail("sparsity", "one_shot", "a float in [0, 1)", None, "pass e.g. sparsity=0.5.")
        result = prune_channels(
            model,
            sparsity=sparsity,
            input_shape=train.info.input_shape,
            criterion=criterion,
            data=calib,
            exclude=exclude,
            seed=seed,
        )
        if finetune is not None:
            history = fit(
                result.model, train, config=finetune, seed=seed, progress=progress, desc="fine-tune"
            )
        return PruneResult(result.model.eval(), None, history, schedule, result.plan)
    work = copy.deepcopy(model)
    masks = prune_(
        work,
        method=method,
        sparsity=sparsity,
        structure=struct,
        allocation=allocation,
        data=calib,
        exclude=exclude,
        seed=seed,
        calibration=calibration,
        blocks=blocks,
    )
    if finetune is not None:
        history = fit(
            work,
            train,
            config=finetune,
            seed=seed,
            after_step=masks.keep_zero(work),
            progress=progress,
            desc="fine-tune",
        )
    return PruneResult(work.eval(), masks, history, schedule)


class _StopAt(Exception):
    """Ends training early, carrying the state dict reached."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.state = state


def weights_at_step(
    model: nn.Module, train: Dataset, *, config: TrainConfig, seed: int, step: int
) -> dict[str, Any]:
    """The state dict that training ``model`` (a copy) with ``config`` and ``seed`` reaches after ``step``
    optimiser steps — the rewinding point of Frankle et al. 2020. Step 0 is the initialisation."""
    step = check_int(step, "rewind_step", "weights_at_step", minimum=0)
    work = copy.deepcopy(model)
    if step == 0:
        return copy.deepcopy(work.state_dict())
    steps = 0

    def after(m: nn.Module) -> None:
        nonlocal steps
        steps += 1
        if steps == step:
            raise _StopAt(copy.deepcopy(m.state_dict()))

    try:
        fit(work, train, config=config, seed=seed, after_step=after, progress=False)
    except _StopAt as stop:
        return stop.state
    fail(
        "rewind_step",
        "weights_at_step",
        f"at most the number of training steps ({steps} with this config)",
        step,
        "choose an earlier step, or 0 to rewind to the initialisation.",
    )


def iterative_magnitude(
    init: nn.Module,
    train: Dataset,
    *,
    sparsity: float,
    rounds: int = 3,
    config: TrainConfig = TrainConfig(),
    rewind_step: int = 0,
    allocation: str = "global",
    exclude: Iterable[str] = (),
    trained: nn.Module | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PruneResult:
    """Iterative magnitude pruning with weight rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    Train ``init`` (or take ``trained``, its trained version with the same ``config`` and ``seed``);
    then ``rounds`` times: prune the smallest surviving weights so that the sparsity after round r is
    ``1 - (1 - sparsity)^(r / rounds)``, rewind the survivors to their values after ``rewind_step``
    steps of the original training (0 = initialisation), and retrain with the mask held. Retraining
    runs the whole ``config`` schedule with a fresh optimiser (Frankle et al. 2020 resume the original
    schedule at the rewinding step instead; at step 0 the two coincide).
    """
    where = "iterative_magnitude"
    sparsity = check_fraction(sparsity, "sparsity", where)
    rounds = check_int(rounds, "rounds", where, minimum=1)
    check_choice(allocation, "allocation", where, ALLOCATIONS)
    layers = prunable_layers(init, exclude=exclude, where=where)
    rewind = weights_at_step(init, train, config=config, seed=seed, step=rewind_step)
    if trained is None:
        trained = copy.deepcopy(init)
        fit(trained, train, config=config, seed=seed, progress=progress, desc="dense")
    current = copy.deepcopy(trained)
    histories = []
    masks: Masks | None = None
    for r in range(1, rounds + 1):
        target = 1.0 - (1.0 - sparsity) ** (r / rounds) if r < rounds else sparsity
        cur_layers = weights_of(current, layers)
        scores = magnitude(current, cur_layers)
        if masks is not None:  # pruned weights stay pruned
            scores = {n: torch.where(masks[n], s, torch.full_like(s, -1.0)) for n, s in scores.items()}
        masks = allocate(
            scores,
            sparsity=target,
            structure=parse_structure("unstructured"),
            allocation=allocation,
            layers=cur_layers,
        )
        current.load_state_dict(rewind)
        masks.apply_(current)
        h = fit(
            current,
            train,
            config=config,
            seed=seed,
            after_step=masks.keep_zero(current),
            progress=progress,
            desc=f"IMP round {r}",
        )
        histories.append(h.assign(round=r))
    schedule = {"schedule": "imp", "rounds": rounds, "rewind_step": rewind_step, "train": config.to_json()}
    return PruneResult(current.eval(), masks, pd.concat(histories, ignore_index=True), schedule)


def cubic_sparsity(step: int, *, final: float, initial: float, start: int, end: int) -> float:
    """Zhu & Gupta 2017, eq. 1: ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t_end - t0))^3`` on [t0, t_end]."""
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1.0 - (step - start) / (end - start)) ** 3


def _scheduled(
    model: nn.Module,
    train: Dataset,
    *,
    sparsity: float,
    config: TrainConfig,
    scorer: Callable[[nn.Module], dict[str, torch.Tensor]],
    allocation: str,
    layers: dict[str, PrunableWeight],
    start_fraction: float,
    end_fraction: float,
    updates: int,
    seed: int,
    after_backward: Callable[[nn.Module], None] | None,
    progress: bool,
    desc: str,
) -> tuple[nn.Module, Masks, pd.DataFrame]:
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    start, end = int(start_fraction * total), max(int(start_fraction * total) + 1, int(end_fraction * total))
    update_steps = set(np.linspace(start, end, updates + 1).round().astype(int).tolist()[1:])
    t = 0  # optimiser steps taken
    current: Masks | None = None  # the masks of the last update
    weights = weights_of(model, layers)

    @torch.no_grad()
    def after_step(m: nn.Module) -> None:
        nonlocal t, current
        t += 1
        if t in update_steps:
            s_t = cubic_sparsity(t, final=sparsity, initial=0.0, start=start, end=end)
            scores = scorer(m)
            current = allocate(
                scores,
                sparsity=s_t,
                structure=parse_structure("unstructured"),
                allocation=allocation,
                layers=layers,
            )
        if current is not None:
            for n, w in weights.items():
                w.weight.masked_fill_(~current[n], 0.0)

    history = fit(
        model,
        train,
        config=config,
        seed=seed,
        after_step=after_step,
        after_backward=after_backward,
        progress=progress,
        desc=desc,
    )
    masks = current
    if masks is None:  # training ended before the last scheduled update
        cur = scorer(model)
        masks = allocate(
            cur,
            sparsity=sparsity,
            structure=parse_structure("unstructured"),
            allocation=allocation,
            layers=layers,
        )
        masks.apply_(model)
    return model, masks, history


def _during_training(
    model: nn.Module,
    train: Dataset,
    *,
    schedule: str,
    sparsity: float,
    config: TrainConfig,
    allocation: str,
    start_fraction: float,
    end_fraction: float,
    updates: int,
    exclude: Iterable[str],
    seed: int,
    progress: bool,
) -> PruneResult:
    """Shared body of :func:`gradual` (magnitude scores) and :func:`movement_prune` (movement scores)."""
    sparsity = check_fraction(sparsity, "sparsity", schedule)
    updates = check_int(updates, "updates", schedule, minimum=1)
    check_fraction(start_fraction, "start_fraction", schedule)
    check_fraction(end_fraction, "end_fraction", schedule, closed_high=True)
    if end_fraction <= start_fraction:
        fail(
            "end_fraction",
            schedule,
            f"greater than start_fraction ({start_fraction})",
            end_fraction,
            "end the pruning window after it starts, e.g. start_fraction=0.1, end_fraction=0.75.",
        )
    work = copy.deepcopy(model)
    layers = prunable_layers(work, exclude=exclude, where=schedule)
    after_backward = None
    if schedule == "movement_prune":
        movement = {n: torch.zeros_like(m.weight) for n, m in layers.items()}

        @torch.no_grad()
        def after_backward(_: nn.Module) -> None:
            for n, m in layers.items():
                if m.weight.grad is not None:
                    movement[n] -= m.weight.grad * m.weight

        def scorer(m: nn.Module) -> dict[str, torch.Tensor]:  # the movement, whatever the weights now
            return {n: s.clone() for n, s in movement.items()}
    else:

        def scorer(m: nn.Module) -> dict[str, torch.Tensor]:
            return magnitude(m, layers)

    _, masks, history = _scheduled(
        work,
        train,
        sparsity=sparsity,
        config=config,
        scorer=scorer,
        allocation=allocation,
        layers=layers,
        start_fraction=start_fraction,
        end_fraction=end_fraction,
        updates=updates,
        seed=seed,
        after_backward=after_backward,
        progress=progress,
        desc=schedule,
    )
    description = {
        "schedule": "movement" if schedule == "movement_prune" else "gradual",
        "start": start_fraction,
        "end": end_fraction,
        "updates": updates,
        "train": config.to_json(),
    }
    return PruneResult(work.eval(), masks, history, description)


def gradual(
    model: nn.Module,
    train: Dataset,
    *,
    sparsity: float,
    config: TrainConfig = TrainConfig(),
    allocation: str = "uniform",
    start_fraction: float = 0.0,
    end_fraction: float = 0.75,
    updates: int = 10,
    exclude: Iterable[str] = (),
    seed: int = 0,
    progress: bool = False,
) -> PruneResult:
    """Gradual magnitude pruning during training (Zhu & Gupta 2017): the sparsity follows the cubic
    schedule from 0 to ``sparsity`` between ``start_fraction`` and ``end_fraction`` of all steps, the
    magnitude mask being recomputed ``updates`` times; the rest of training fine-tunes the final mask."""
    return _during_training(
        model,
        train,
        schedule="gradual",
        sparsity=sparsity,
        config=config,
        allocation=allocation,
        start_fraction=start_fraction,
        end_fraction=end_fraction,
        updates=updates,
        exclude=exclude,
        seed=seed,
        progress=progress,
    )


def movement_prune(
    model: nn.Module,
    train: Dataset,
    *,
    sparsity: float,
    config: TrainConfig = TrainConfig(epochs=5, lr=1e-3),
    allocation: str = "global",
    start_fraction: float = 0.0,
    end_fraction: float = 0.75,
    updates: int = 10,
    exclude: Iterable[str] = (),
    seed: int = 0,
    progress: bool = False,
) -> PruneResult:
    """Movement pruning during fine-tuning (Sanh et al. 2020): scores ``S = -Σ_t g_t ⊙ w_t`` accumulate
    over the fine-tuning steps, and the weights with the lowest scores are removed following the cubic
    schedule. Pruned weights are held at zero (hard movement pruning, an approximation of the paper's
    straight-through masked forward pass)."""
    return _during_training(
        model,
        train,
        schedule="movement_prune",
        sparsity=sparsity,
        config=config,
        allocation=allocation,
        start_fraction=start_fraction,
        end_fraction=end_fraction,
        updates=updates,
        exclude=exclude,
        seed=seed,
        progress=progress,
    )


__all__ = [
    "PruneResult",
    "calibration_subset",
    "cubic_sparsity",
    "gradual",
    "iterative_magnitude",
    "movement_prune",
    "one_shot",
    "weights_at_step",
]
