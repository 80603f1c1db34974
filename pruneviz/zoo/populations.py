"""Pruned populations: every dense parent × method × sparsity, fine-tuned, stored like dense runs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from pruneviz._validation import check_choice, check_fraction, check_instance, check_int, fail
from pruneviz.data.dataset import Dataset, DataSplits
from pruneviz.models.registry import build_from_spec, count_parameters
from pruneviz.prune.accounting import count_macs, measure_latency
from pruneviz.prune.allocation import parse_structure
from pruneviz.prune.api import CHANNEL_METHODS, population_method_names
from pruneviz.prune.calibration import DEFAULT_CALIBRATION
from pruneviz.prune.masks import prunable_layers
from pruneviz.prune.schedules import PruneResult, gradual, iterative_magnitude, one_shot
from pruneviz.train import TrainConfig
from pruneviz.zoo.build import evaluate_splits
from pruneviz.zoo.store import RunRecord, Zoo, digest

DEFAULT_FINETUNE = TrainConfig(epochs=5, batch_size=64, lr=1e-3)

__all__ = ["SCHEDULES", "PruneSettings", "prune_population", "pruned_record", "pruned_run_id"]


#: when pruning happens: once then fine-tuning (``one_shot``), iterative magnitude pruning with weight
#: rewinding (``imp``; Frankle & Carbin 2019, rewinding to an early step: Frankle et al. 2020), or
#: gradual magnitude pruning on the cubic schedule during fine-tuning (``gradual``; Zhu & Gupta 2017)
SCHEDULES = ("one_shot", "imp", "gradual")
#: the methods the ``imp`` and ``gradual`` schedules prune with (both rank weights by magnitude)
MAGNITUDE_METHODS = ("magnitude", "global_magnitude")


@dataclass(frozen=True)
class PruneSettings:
    """How a population is pruned, beyond its method, structure and sparsity: the allocation (``None``:
    the method's own), layers excluded, the fine-tuning budget, the calibration size, the seed and how
    Wanda and SparseGPT calibrate (``calibration``: ``"sequential"``, block by block, or ``"dense"``; see
    :func:`~pruneviz.prune.compute_masks`). One object, so :func:`prune_population` and a sweep's tasks
    prune alike and name their runs alike.

    ``schedule`` is one of :data:`SCHEDULES`. ``imp`` runs ``rounds`` rounds, each pruning the smallest
    surviving weights (to ``1 - (1 - sparsity)^(r / rounds)`` after round r), rewinding the survivors to
    their values after ``rewind_step`` steps of training the seed's initialisation (0: the
    initialisation itself) and retraining with ``finetune``. ``gradual`` prunes during ``finetune`` on
    the cubic schedule, recomputing the mask ``updates`` times between ``start_fraction`` and
    ``end_fraction`` of the steps. Both use magnitude (``magnitude``: per layer, ``global_magnitude``:
    global) on unstructured weights and need a fine-tuning budget.
    """

    allocation: str | None = None
    exclude: tuple[str, ...] = ()
    finetune: TrainConfig | None = DEFAULT_FINETUNE
    calibration_size: int = 512
    seed: int = 0
    schedule: str = "one_shot"
    rounds: int = 3
    rewind_step: int = 0
    updates: int = 10
    start_fraction: float = 0.0
    end_fraction: float = 0.75
    calibration: str = DEFAULT_CALIBRATION

    def __post_init__(self) -> None:
        where = "PruneSettings"
        check_choice(self.schedule, "schedule", where, SCHEDULES)
        check_int(self.rounds, "rounds", where, minimum=1)
        check_int(self.rewind_step, "rewind_step", where, minimum=0)
        check_int(self.updates, "updates", where, minimum=1)
        check_fraction(self.start_fraction, "start_fraction", where)
        check_fraction(self.end_fraction, "end_fraction", where, closed_high=True)
        if self.schedule != "one_shot" and self.finetune is None:
            fail(
                "finetune",
                where,
                f"a training budget (TrainConfig) for schedule={self.schedule!r} (it prunes while training)",
                None,
                "pass finetune=TrainConfig(epochs=5), or use schedule='one_shot' to prune without training.",
            )

    def to_json(self) -> dict[str, Any]:
        """The settings as stored in a pruned run's schedule and hashed into its id (a schedule other
        than ``one_shot`` adds its name and parameters, so its runs have ids of their own). ``calibration``
        is written only when it is not the default (``"sequential"``), so the ids of runs named before the
        option existed stay the same; a stored schedule without it reads back as the default."""
        out: dict[str, Any] = {
            "allocation": self.allocation,
            "exclude": list(self.exclude),
            "finetune": self.finetune.to_json() if self.finetune else None,
            "calibration_size": self.calibration_size,
            "seed": self.seed,
        }
        if self.calibration != DEFAULT_CALIBRATION:
            out["calibration"] = self.calibration
        if self.schedule == "imp":
            out.update(schedule="imp", rounds=self.rounds, rewind_step=self.rewind_step)
        elif self.schedule == "gradual":
            out.update(
                schedule="gradual",
                updates=self.updates,
                start_fraction=self.start_fraction,
                end_fraction=self.end_fraction,
            )
        return out

    @classmethod
    def from_json(cls, settings: Mapping[str, Any], *, finetune: TrainConfig | None) -> PruneSettings:
        """The settings :meth:`to_json` stored (the fine-tuning budget given as a TrainConfig)."""
        extra = {k: settings[k] for k in (*_SCHEDULE_FIELDS, "calibration") if k in settings}
        return cls(
            settings["allocation"],
            tuple(settings["exclude"]),
            finetune,
            settings["calibration_size"],
            settings["seed"],
            **extra,
        )

    def initial_model(self, parent: RunRecord) -> nn.Module | None:
        """The model IMP rewinds from: ``parent``'s architecture initialised from its seed, as a dense
        run built by pruneviz started (an imported run: its factory called under the same seed).
        ``None`` for the schedules that do not rewind."""
        if self.schedule != "imp":
            return None
        return build_from_spec(parent.model_spec, seed=parent.seed)

    def check(self, method: str, structure: str, where: str) -> None:
        """A schedule other than ``one_shot`` prunes unstructured weights by magnitude."""
        if self.schedule == "one_shot":
            return
        if method not in MAGNITUDE_METHODS:
            fail(
                "methods",
                where,
                f"one of {list(MAGNITUDE_METHODS)} with schedule={self.schedule!r} (it prunes by magnitude)",
                method,
                "use schedule='one_shot' for the other methods.",
            )
        if structure != "unstructured":
            fail(
                "structure",
                where,
                f"'unstructured' with schedule={self.schedule!r}",
                structure,
                "use schedule='one_shot' for N:M, block and channel structures.",
            )

    def prune(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        method: str,
        sparsity: float,
        structure: str,
        init: nn.Module | None = None,
    ) -> PruneResult:
        """Prune ``model`` (trained) with these settings: :func:`~pruneviz.prune.one_shot` (a channel
        method such as ``channel_l1`` prunes channels by its criterion),
        :func:`~pruneviz.prune.iterative_magnitude` from ``init`` (:meth:`initial_model`), or
        :func:`~pruneviz.prune.gradual`."""
        where = "PruneSettings.prune"
        self.check(method, structure, where)
        if self.schedule == "one_shot":
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
        assert self.finetune is not None  # checked in __post_init__
        default = "global" if method == "global_magnitude" else "uniform"
        allocation = self.allocation or default
        if self.schedule == "gradual":
            return gradual(
                model,
                data,
                sparsity=sparsity,
                config=self.finetune,
                allocation=allocation,
                start_fraction=self.start_fraction,
                end_fraction=self.end_fraction,
                updates=self.updates,
                exclude=self.exclude,
                seed=self.seed,
            )
        if init is None:
            fail(
                "init",
                where,
                "the model's initialisation for schedule='imp' (it rewinds to it)",
                None,
                "pass init=settings.initial_model(parent_record).",
            )
        result = iterative_magnitude(
            init,
            data,
            sparsity=sparsity,
            rounds=self.rounds,
            config=self.finetune,
            rewind_step=self.rewind_step,
            allocation=allocation,
            exclude=self.exclude,
            trained=model,
            seed=self.seed,
        )
        result.schedule["round_sparsities"] = [
            1.0 - (1.0 - sparsity) ** (r / self.rounds) if r < self.rounds else float(sparsity)
            for r in range(1, self.rounds + 1)
        ]
        return result


_SCHEDULE_FIELDS = ("schedule", "rounds", "rewind_step", "updates", "start_fraction", "end_fraction")


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
    schedule: str = "one_shot",
    rounds: int = 3,
    rewind_step: int = 0,
    updates: int = 10,
    progress: bool = True,
) -> pd.DataFrame:
    """Add a pruned run for every dense parent × method × sparsity; skip those already present.

    ``schedule`` says when pruning happens (see :class:`PruneSettings`): ``one_shot`` (default), ``imp``
    (``rounds`` rounds of magnitude pruning with rewinding to ``rewind_step``, retraining with
    ``finetune`` each round) or ``gradual`` (cubic schedule over ``finetune``, ``updates`` mask
    updates); the latter two take the magnitude methods and unstructured weights. The run record's
    ``schedule`` says which, with its parameters; each schedule's runs have ids of their own.

    Mask methods (``lamp``, ``snip``, ...) use ``structure`` (unstructured, N:M, block); channel methods
    (``channel_l1``, ``channel_random``, ``channel_taylor``) remove channels physically. Each run is
    fine-tuned on the parent's training part with the pruned weights held at zero, evaluated on the
    validation and test parts, and stored with its masks (or channel plan).

    Returns the zoo's summary rows of the population's runs.
    """
    where = "prune_population"
    check_instance(
        zoo,
        Zoo,
        "zoo",
        where,
        "an open pruneviz Zoo",
        "open the folder first: zoo=pruneviz.Zoo('path/to/zoo').",
    )
    methods = [
        check_choice(m, "methods", where, population_method_names()) for m in _as_list(methods, "methods")
    ]
    sparsities = [check_fraction(s, "sparsities", where) for s in _as_list(sparsities, "sparsities")]
    struct = parse_structure(structure, where=where)
    calibration_size = check_int(calibration_size, "calibration_size", where, minimum=1)
    options = PruneSettings(
        allocation,
        tuple(exclude),
        finetune,
        calibration_size,
        seed,
        schedule=schedule,
        rounds=rounds,
        rewind_step=rewind_step,
        updates=updates,
    )
    for method in methods:
        options.check(method, "channel" if method in CHANNEL_METHODS else struct.name, where)
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
        result = options.prune(
            model,
            splits.train,
            method=method,
            sparsity=sparsity,
            structure=struct_name,
            init=options.initial_model(parent),
        )
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
    outputs = evaluate_splits(model, splits)
    val, test = outputs[outputs.subset == "val"], outputs[outputs.subset == "test"]
    shape = parent.model_spec.input_shape
    dense_prunable = sum(m.weight.numel() for m in prunable_layers(dense_model).values())
    kept = sum(int((m.weight != 0).sum()) for m in prunable_layers(model).values())
    example = (splits.val if len(splits.val) else splits.train).x[
        :1
    ]  # token ids are no zeros of a float type
    macs = count_macs(model, shape, example=example).iloc[-1]
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
            "latency_b1": measure_latency(model, shape, batch_size=1, repeats=15, example=example)[
                "median_s"
            ],
        },
    )
    return record, outputs
