"""Building populations of runs into a zoo, resumably."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from pruneviz._validation import check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.models.registry import ModelSpec, build_from_spec, count_parameters
from pruneviz.prune.accounting import measure_latency
from pruneviz.train import TrainConfig, evaluate, fit, timed
from pruneviz.zoo.store import RunRecord, Zoo, dense_run_id


def _as_seeds(seeds: int | Sequence[int], where: str) -> tuple[int, ...]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return tuple(range(check_int(seeds, "seeds", where, minimum=1)))
    try:
        out = tuple(check_int(s, "seeds", where, minimum=0) for s in seeds)  # type: ignore[union-attr]
    except TypeError:
        fail("seeds", where, "a count >= 1 or a list of seeds >= 0", seeds)
    if not out or len(set(out)) != len(out):
        fail("seeds", where, "a non-empty list of distinct seeds", seeds)
    return out


def evaluate_splits(model: Any, splits: Any) -> pd.DataFrame:
    """Per-sample outputs of a model on the validation and test parts of ``splits`` (an empty part, as
    ``val_fraction=0`` gives, has no rows)."""
    parts = [(splits.val, "val"), (splits.test, "test")]
    return pd.concat(
        [evaluate(model, part, subset=name) for part, name in parts if len(part) > 0], ignore_index=True
    )


def dense_record(
    run: str,
    dataset: str,
    spec: ModelSpec,
    seed: int,
    config: TrainConfig | Mapping[str, Any],
    model: Any,
    outputs: pd.DataFrame,
    seconds: float | None,
    *,
    example: Any = None,
) -> RunRecord:
    """The zoo record of a trained dense model: accuracy and loss from its outputs, parameters, training
    time (``seconds=None``: trained elsewhere) and batch-1 latency (measured on ``example``, a batch of
    inputs, when zeros of the input shape are no input for the model: token ids)."""
    val, test = outputs[outputs.subset == "val"], outputs[outputs.subset == "test"]
    return RunRecord(
        run=run,
        kind="dense",
        dataset=dataset,
        model_spec=spec,
        seed=seed,
        train_config=config.to_json() if isinstance(config, TrainConfig) else dict(config),
        metrics={
            "val_accuracy": float(val["correct"].mean()),
            "test_accuracy": float(test["correct"].mean()),
            "test_loss": float(test["loss"].mean()),
            "params": count_parameters(model),
        },
        timing={
            **({} if seconds is None else {"train": round(seconds, 3)}),
            "latency_b1": measure_latency(model, spec.input_shape, batch_size=1, repeats=15, example=example)[
                "median_s"
            ],
        },
    )


def build_dense_population(
    zoo: Zoo,
    dataset: Dataset,
    *,
    arch: str = "cnn",
    seeds: int | Sequence[int] = 3,
    config: TrainConfig = TrainConfig(),
    model_options: Mapping[str, Any] | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> pd.DataFrame:
    """Train one dense model per seed on ``dataset`` and store each as a run in ``zoo``.

    Runs already in the zoo (same dataset, architecture, options, seed and training config) are skipped,
    so a build that was interrupted resumes where it stopped. Each run stores its weights and its
    per-sample outputs on the validation and test parts (``split="clean"``).

    Returns the zoo's summary rows of the population's runs.
    """
    where = "build_dense_population"
    if not isinstance(zoo, Zoo):
        fail("zoo", where, "a pruneviz Zoo", type(zoo).__name__, "open one with pruneviz.zoo.Zoo(path).")
    seed_list = _as_seeds(seeds, where)
    key = zoo.add_dataset(
        dataset, split_seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    splits = zoo.splits(key)
    spec = ModelSpec(arch, dataset.info.input_shape, dataset.num_classes, dict(model_options or {}))
    run_ids = []
    for seed in seed_list:
        rid = dense_run_id(key, spec, seed, config.to_json())
        run_ids.append(rid)
        if zoo.has_run(rid):
            continue
        model = build_from_spec(spec, seed=seed)
        _, seconds = timed(
            functools.partial(
                fit,
                model,
                splits.train,
                config=config,
                seed=seed,
                progress=progress,
                desc=f"{arch} seed {seed}",
            )
        )
        outputs = evaluate_splits(model, splits)
        record = dense_record(rid, key, spec, seed, config, model, outputs, seconds)
        zoo.add_run(record, model, outputs)
    summary = zoo.summary()
    return summary[summary["run"].isin(run_ids)].reset_index(drop=True)


# The embedded default study: digits, the LeNet-style CNN, three seeds, five pruning methods.
DEMO_ARCH = "cnn"
DEMO_SEEDS = 3
DEMO_TRAIN = TrainConfig(epochs=30, batch_size=64, lr=3e-3)
DEMO_METHODS = ("global_magnitude", "lamp", "random", "snip", "channel_l1")
DEMO_SPARSITIES = (0.5, 0.8, 0.9, 0.95)
