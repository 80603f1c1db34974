"""Pruned populations: every dense parent × method × sparsity, fine-tuned, stored like dense runs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from pruneviz._validation import check_choice, check_fraction, check_int, fail
from pruneviz.data.dataset import Dataset, DataSplits
from pruneviz.models.registry import count_parameters
from pruneviz.prune.accounting import count_macs, measure_latency
from pruneviz.prune.allocation import parse_structure
from pruneviz.prune.api import CHANNEL_METHODS, population_method_names
from pruneviz.prune.calibration import DEFAULT_CALIBRATION
from pruneviz.prune.masks import prunable_layers
from pruneviz.prune.schedules import PruneResult, one_shot
from pruneviz.train import TrainConfig, evaluate
from pruneviz.zoo.store import RunRecord, Zoo, digest

DEFAULT_FINETUNE = TrainConfig(epochs=5, batch_size=64, lr=1e-3)

__all__ = ["PruneSettings", "prune_population", "pruned_record", "pruned_run_id"]


@dataclass(frozen=True)
class PruneSettings:
    """How a population is pruned, beyond its method, structure and sparsity: the allocation (``None``:
    the method's own), layers excluded, the fine-tuning budget, the calibration size, the seed and how
    Wanda and SparseGPT calibrate (``"sequential"``, block by block, or ``"dense"``; see
    :func:`~pruneviz.prune.compute_masks`). One object, so :func:`prune_population` and a sweep's tasks
    prune alike and name their runs alike."""

    allocation: str | None = None
    exclude: tuple[str, ...] = ()
    finetune: TrainConfig | None = DEFAULT_FINETUNE
    calibration_size: int = 512
    seed: int = 0
    calibration: str = DEFAULT_CALIBRATION

    def to_json(self) -> dict[str, Any]:
        """The settings as stored in a pruned run's schedule and hashed into its id. ``calibration`` is
        written only when it is not the default (``"sequential"``), so the ids of runs named before the
        option existed stay the same; a stored schedule without it reads back as the default."""
        out = {
            "allocation": self.allocation,
            "exclude": list(self.exclude),
            "finetune": self.finetune.to_json() if self.finetune else None,
            "calibration_size": self.calibration_size,
            "seed": self.seed,
        }
        if self.calibration != DEFAULT_CALIBRATION:
            out["calibration"] = self.calibration
        return out

    def prune(
        self, model: nn.Module, data: Dataset, *, method: str, sparsity: float, structure: str
    ) -> PruneResult:
        """:func:`~pruneviz.prune.one_shot` with these settings; a channel method (``channel_l1``, ...)
        prunes channels by its criterion."""
        return one_shot(
            model,
            data,
            method=CHANNEL_METHODS.get(method, method),
            sparsity=sparsity,
            structure=structure,
            allocation=self.allocation,
            finetune=self.finetune,
            exclude=self.exclude,
            calibration_size=self.calibration_size,
            seed=self.seed,
            progress=False,
            calibration=self.calibration,
        )


def pruned_run_id(parent: str, method: str, structure: str, sparsity: float, settings: dict) -> str:
    """Deterministic id of a pruned run: parent, method, structure and sparsity, plus a settings hash."""
    tag = digest(
        {"parent": parent, "method": method, "structure": structure, "sparsity": sparsity, **settings}
    )
    return f"{parent}~{method}-{structure.replace(':', '_')}-{sparsity:g}-{tag}"


def prune_population(
    zoo: Zoo,
    *,
    methods: Sequence[str],
    sparsities: Sequence[float],
    structure: str = "unstructured",
    allocation: str | None = None,
    finetune: TrainConfig | None = DEFAULT_FINETUNE,
    parents: Iterable[str] | None = None,
    exclude: Sequence[str] = (),
    calibration_size: int = 512,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Add a pruned run for every dense parent × method × sparsity; skip those already present.

    Mask methods (``lamp``, ``snip``, ...) use ``structure`` (unstructured, N:M, block); channel methods
    (``channel_l1``, ``channel_random``, ``channel_taylor``) remove channels physically. Each run is
    fine-tuned on the parent's training part with the pruned weights held at zero, evaluated on the
    validation and test parts, and stored with its masks (or channel plan).

    Returns the zoo's summary rows of the population's runs.
    """
    where = "prune_population"
    methods = [
        check_choice(m, "methods", where, population_method_names()) for m in _as_list(methods, "methods")
    ]
    sparsities = [check_fraction(s, "sparsities", where) for s in _as_list(sparsities, "sparsities")]
    struct = parse_structure(structure, where=where)
    calibration_size = check_int(calibration_size, "calibration_size", where, minimum=1)
    options = PruneSettings(allocation, tuple(exclude), finetune, calibration_size, seed)
    dense = zoo.runs(kind="dense")
    parent_ids = list(dense.run) if parents is None else list(parents)
    unknown = [p for p in parent_ids if p not in set(dense.run)]
    if unknown:
        fail(
            "parents",
            where,
            f"ids of dense runs in the zoo ({list(dense.run)})",
            unknown,
            "list them with zoo.runs(kind='dense'), or omit parents to use all.",
        )
    if not parent_ids:
        fail(
            "zoo",
            where,
            "a zoo with at least one dense run",
            str(zoo.path),
            "build one with `pruneviz zoo build`.",
        )
    from tqdm.auto import tqdm

    jobs = [(p, m, s) for p in parent_ids for m in methods for s in sparsities]
    done: list[str] = []
    for parent_id, method, sparsity in tqdm(jobs, desc="prune", disable=not progress, leave=False):
        struct_name = "channel" if method in CHANNEL_METHODS else struct.name
        rid = pruned_run_id(parent_id, method, struct_name, sparsity, options.to_json())
        done.append(rid)
        if zoo.has_run(rid):
            continue
        parent = zoo.run(parent_id)
        splits = zoo.splits(parent.dataset)
        model = zoo.load_model(parent_id)
        start = time.perf_counter()
        result = options.prune(model, splits.train, method=method, sparsity=sparsity, structure=struct_name)
        seconds = time.perf_counter() - start
        record, outputs = pruned_record(
            parent, rid, method, struct_name, sparsity, result, model, splits, options, seconds
        )
        with torch.no_grad():
            zoo.add_run(record, result.model, outputs, masks=result.masks)
    summary = zoo.summary()
    return summary[summary["run"].isin(done)].reset_index(drop=True)


def _as_list(values, name: str) -> list:
    if isinstance(values, str | float | int):
        return [values]
    out = list(values)
    if not out:
        fail(name, "prune_population", "a non-empty list", out, f"pass at least one value in {name}=[...].")
    return out


def pruned_record(
    parent: RunRecord,
    rid: str,
    method: str,
    structure: str,
    target: float,
    result: PruneResult,
    dense_model: nn.Module,
    splits: DataSplits,
    settings: PruneSettings,
    seconds: float,
) -> tuple[RunRecord, pd.DataFrame]:
    """The record and per-sample outputs (validation and test) of a pruned run, as the zoo stores them:
    the one place they are assembled, for :func:`prune_population` and a sweep's workers alike."""
    model = result.model
    outputs = pd.concat(
        [evaluate(model, splits.val, subset="val"), evaluate(model, splits.test, subset="test")],
        ignore_index=True,
    )
    val, test = outputs[outputs.subset == "val"], outputs[outputs.subset == "test"]
    shape = parent.model_spec.input_shape
    dense_prunable = sum(m.weight.numel() for m in prunable_layers(dense_model).values())
    kept = sum(int((m.weight != 0).sum()) for m in prunable_layers(model).values())
    macs = count_macs(model, shape).iloc[-1]
    schedule = {**result.schedule, **settings.to_json()}
    if result.plan is not None:
        schedule["channel_plan"] = result.plan
    record = RunRecord(
        run=rid,
        kind="pruned",
        dataset=parent.dataset,
        model_spec=parent.model_spec,
        seed=parent.seed,
        parent=parent.run,
        method=method,
        structure=structure,
        target_sparsity=float(target),
        sparsity=1.0 - kept / dense_prunable,
        schedule=schedule,
        train_config=parent.train_config,
        metrics={
            "val_accuracy": float(val["correct"].mean()),
            "test_accuracy": float(test["correct"].mean()),
            "test_loss": float(test["loss"].mean()),
            "params": count_parameters(model),
            "nonzero_params": int(sum(int((p != 0).sum()) for p in model.parameters())),
            "dense_macs": int(macs["dense_macs"]),
            "effective_macs": int(macs["effective_macs"]),
        },
        timing={
            "prune_and_finetune": round(seconds, 3),
            "latency_b1": measure_latency(model, shape, batch_size=1, repeats=15)["median_s"],
        },
    )
    return record, outputs
