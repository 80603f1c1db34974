"""Expanding a sweep spec into tasks with deterministic ids and dependencies.

A task's id is the id of the run it produces, exactly as :func:`pruneviz.zoo.build_dense_population`
and :func:`pruneviz.zoo.prune_population` name it, so a sweep and those functions fill the same zoo
with the same runs, and a rerun recognises every finished task by looking its id up in the zoo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pruneviz.models.registry import ModelSpec
from pruneviz.prune.api import CHANNEL_METHODS
from pruneviz.sweeps.spec import SweepSpec
from pruneviz.train import TrainConfig
from pruneviz.zoo.populations import MAGNITUDE_METHODS, PruneSettings, pruned_run_id
from pruneviz.zoo.store import dense_run_id

__all__ = ["Task", "plan_sweep"]


@dataclass(frozen=True)
class Task:
    """One run to compute: a dense model to train, or a dense parent to prune and fine-tune.

    ``run`` is the id the result is stored under; ``parent`` the task that must be stored first.
    """

    run: str
    kind: str
    dataset: str
    model_spec: ModelSpec
    seed: int
    config: TrainConfig | None
    parent: str | None = None
    method: str | None = None
    structure: str | None = None
    sparsity: float = 0.0
    schedule: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


def plan_sweep(spec: SweepSpec, datasets: Mapping[str, tuple[str, tuple[int, ...], int]]) -> list[Task]:
    """The tasks of ``spec`` in dependency order: every dense run, then every pruned run of it.

    ``datasets`` maps each dataset name of the spec to ``(key, input_shape, num_classes)``: its key in
    the zoo (from :meth:`Zoo.add_dataset`), its input shape and its number of classes.

    >>> from pruneviz.sweeps.spec import parse_spec
    >>> spec = parse_spec('[data]\\ndatasets = ["digits"]\\n[dense]\\narchitectures = ["mlp"]\\nseeds = 2\\n'
    ...                   '[prune]\\nmethods = ["lamp"]\\nsparsities = [0.5]')
    >>> [t.kind for t in plan_sweep(spec, {"digits": ("digits-0", (1, 8, 8), 10)})]
    ['dense', 'dense', 'pruned', 'pruned']
    """
    dense: list[Task] = []
    pruned: list[Task] = []
    seen: set[str] = set()
    for name in spec.datasets:
        key, shape, classes = datasets[name]
        for arch in spec.architectures:
            model_spec = ModelSpec(arch, tuple(shape), int(classes), dict(spec.model_options.get(arch, {})))
            for seed in spec.seeds:
                parent = dense_run_id(key, model_spec, seed, spec.train.to_json())
                dense.append(Task(parent, "dense", key, model_spec, seed, spec.train))
                for task in _pruned_of(spec, parent, key, model_spec, seed):
                    if task.run not in seen:  # channel methods ignore the structure: one run each
                        seen.add(task.run)
                        pruned.append(task)
    return dense + pruned


def _pruned_of(spec: SweepSpec, parent: str, key: str, model_spec: ModelSpec, seed: int) -> list[Task]:
    out = []
    for schedule in spec.schedules:
        options = PruneSettings(
            spec.allocation,
            tuple(spec.exclude),
            spec.finetune,
            spec.calibration_size,
            spec.prune_seed,
            schedule=schedule,
            rounds=spec.rounds,
            rewind_step=spec.rewind_step,
            updates=spec.updates,
        )
        settings = options.to_json()  # as prune_population names and records its runs
        # imp and gradual prune unstructured weights by magnitude: the spec's other methods and
        # structures are pruned one-shot only (parse_spec requires a magnitude method for them)
        one_shot = schedule == "one_shot"
        methods = spec.methods if one_shot else [m for m in spec.methods if m in MAGNITUDE_METHODS]
        structures = spec.structures if one_shot else ["unstructured"]
        for method in methods:
            for structure in structures:
                struct_name = "channel" if method in CHANNEL_METHODS else _structure_name(structure)
                for sparsity in spec.sparsities:
                    rid = pruned_run_id(parent, method, struct_name, sparsity, settings)
                    out.append(
                        Task(
                            rid,
                            "pruned",
                            key,
                            model_spec,
                            seed,
                            spec.finetune,
                            parent=parent,
                            method=method,
                            structure=struct_name,
                            sparsity=float(sparsity),
                            schedule=schedule,
                            settings=settings,
                        )
                    )
    return out


def _structure_name(structure: str) -> str:
    from pruneviz.prune.allocation import parse_structure

    return parse_structure(structure, where="plan_sweep").name
