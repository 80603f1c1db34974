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
from pruneviz.sweeps.plan import Task
from pruneviz.train import fit
from pruneviz.zoo.build import dense_record, evaluate_splits
from pruneviz.zoo.populations import PruneSettings, pruned_record
from pruneviz.zoo.store import RunRecord, rebuild_model

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
    assert config is not None  # a dense task always carries its training configuration
    model = build_from_spec(spec, seed=seed)
    start = time.perf_counter()
    fit(model, splits.train, config=config, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    outputs = evaluate_splits(model, splits)
    record = dense_record(task.run, task.dataset, spec, seed, config, model, outputs, seconds)
    return record, model, None, outputs


def _pruned(
    task: Task, splits: DataSplits, parent: RunRecord, parent_weights: bytes
) -> tuple[RunRecord, torch.nn.Module, Any, pd.DataFrame]:
    settings = task.settings
    assert task.method is not None and task.structure is not None  # a pruned task names both
    options = PruneSettings.from_json(settings, finetune=task.config)
    model = rebuild_model(parent, _load_bytes(parent_weights))
    start = time.perf_counter()
    result = options.prune(
        model,
        splits.train,
        method=task.method,
        sparsity=task.sparsity,
        structure=task.structure,
        init=options.initial_model(parent),
    )
    seconds = time.perf_counter() - start
    # the record is assembled as prune_population assembles it, so both fill a zoo alike
    record, outputs = pruned_record(
        parent, task.run, task.method, task.structure, task.sparsity, result, model, splits, options, seconds
    )
    return record, result.model, result.masks, outputs
