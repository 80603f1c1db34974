"""What a worker computes for one task: plain results that the driver, the only writer, stores.

A result carries the run's :class:`~pruneviz.zoo.RunRecord`, its weights and masks as safetensors bytes
(no pickled tensors) and its per-sample outputs frame. Workers never touch the zoo, so they can run on
machines that cannot see it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load as _load_bytes
from safetensors.torch import save as _save_bytes

from pruneviz._seed import torch_threads
from pruneviz.data.dataset import DataSplits
from pruneviz.models.registry import build_from_spec
from pruneviz.prune.schedules import one_shot
from pruneviz.sweeps.plan import Task
from pruneviz.train import fit
from pruneviz.zoo.build import dense_record, evaluate_splits
from pruneviz.zoo.populations import CHANNEL_METHODS
from pruneviz.zoo.store import RunRecord

__all__ = ["TaskResult", "compute_task"]


@dataclass(frozen=True)
class TaskResult:
    """A computed run: its record, weights (and masks) as safetensors bytes, and per-sample outputs."""

    record: RunRecord
    weights: bytes
    masks: bytes | None
    outputs: pd.DataFrame
    seconds: float

    def state_dict(self) -> dict[str, torch.Tensor]:
        return _load_bytes(self.weights)

    def mask_tensors(self) -> dict[str, torch.Tensor] | None:
        return None if self.masks is None else _load_bytes(self.masks)


def compute_task(
    task: Task,
    splits: DataSplits,
    *,
    parent: RunRecord | None = None,
    parent_weights: bytes | None = None,
    threads: int | None = 1,
) -> TaskResult:
    """Train (dense) or prune and fine-tune (pruned) the run of ``task``, evaluate it on the
    validation and test parts of ``splits``, and return the result without storing it.

    A pruned task needs its stored ``parent`` record and weights (safetensors bytes).
    """
    start = time.perf_counter()
    with torch_threads(threads):
        if task.kind == "dense":
            record, model, masks, outputs = _dense(task, splits)
        else:
            if parent is None or parent_weights is None:
                raise ValueError(f"the pruned task {task.run!r} needs its parent's record and weights")
            record, model, masks, outputs = _pruned(task, splits, parent, parent_weights)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    mask_bytes = _save_bytes({k: v.contiguous() for k, v in masks.to_tensors().items()}) if masks else None
    return TaskResult(record, _save_bytes(state), mask_bytes, outputs, time.perf_counter() - start)


def _dense(task: Task, splits: DataSplits) -> tuple[RunRecord, torch.nn.Module, Any, pd.DataFrame]:
    spec, seed, config = task.model_spec, task.seed, task.config
    model = build_from_spec(spec, seed=seed)
    start = time.perf_counter()
    fit(model, splits.train, config=config, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    outputs = evaluate_splits(model, splits)
    record = dense_record(task.run, task.dataset, spec, seed, config, model, outputs, seconds)
    return record, model, None, outputs


class _Capture:
    """Stands in for the zoo when the record of a pruned run is assembled: keeps what would be stored."""

    def add_run(self, record: RunRecord, model: torch.nn.Module, outputs: pd.DataFrame, *, masks: Any = None):
        self.record, self.model, self.outputs, self.masks = record, model, outputs, masks


def _pruned(
    task: Task, splits: DataSplits, parent: RunRecord, parent_weights: bytes
) -> tuple[RunRecord, torch.nn.Module, Any, pd.DataFrame]:
    from pruneviz.zoo import populations

    model = build_from_spec(parent.model_spec, seed=0)
    model.load_state_dict(_load_bytes(parent_weights), strict=True)
    model.eval()
    settings = dict(task.settings)
    finetune = task.config
    start = time.perf_counter()
    result = one_shot(
        model,
        splits.train,
        method=CHANNEL_METHODS.get(task.method, task.method),
        sparsity=task.sparsity,
        structure=task.structure,
        allocation=settings["allocation"],
        finetune=finetune,
        exclude=settings["exclude"],
        calibration_size=settings["calibration_size"],
        seed=settings["seed"],
        progress=False,
    )
    seconds = time.perf_counter() - start
    # the record is assembled exactly as prune_population assembles it, so both fill a zoo alike
    capture = _Capture()
    populations._store(
        capture, parent, task.run, task.method, task.structure, task.sparsity, result, model, splits,
        settings, seconds,
    )  # fmt: skip
    return capture.record, capture.model, capture.masks, capture.outputs
