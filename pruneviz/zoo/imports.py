"""Bring your own model: store an already-trained dense model in a zoo, as if the zoo had built it.

The model is stored by its *factory reference* (``"package.module:callable"``, see
:func:`pruneviz.models.resolve_factory`) and the keyword options that rebuild its architecture, plus its
weights as safetensors. Before anything is written, the factory is called and must rebuild a model whose
state dict has exactly the same keys, shapes and dtypes, and which, given the weights, computes the same
logits; so :meth:`Zoo.load_model` gives back the model that was imported, and pruned children rebuild
through the same factory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from pruneviz._io import PICKLE_SUFFIXES, load_state_dict_file
from pruneviz._scope import eval_mode
from pruneviz._validation import check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.data.sources import dataset_names, load_dataset
from pruneviz.exceptions import CheckpointError
from pruneviz.models.adapter import adapted
from pruneviz.models.registry import ModelSpec, arch_label, build_factory, resolve_factory
from pruneviz.train import TrainConfig, evaluate
from pruneviz.zoo.build import dense_record, evaluate_splits
from pruneviz.zoo.store import Zoo, check_plain_name, digest

__all__ = ["add_model", "dataset_from_argument", "import_weights", "imported_run_id", "json_options"]

#: how many validation samples the imported and the rebuilt model must agree on
_CHECK_SAMPLES = 16


def _weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """A hash of a state dict's names, dtypes, shapes and values (what makes an imported run itself)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def imported_run_id(
    dataset: str, spec: ModelSpec, seed: int, train_config: Mapping[str, Any], weights: str
) -> str:
    """The id of an imported dense run: the factory's name, the seed and a hash of the dataset, the
    spec, the training description and the weights' digest, so the same import twice is one run."""
    tag = digest(
        {
            "dataset": dataset,
            "spec": spec.to_json(),
            "seed": seed,
            "train": dict(train_config),
            "weights": weights,
        }
    )
    return f"{arch_label(spec.arch)}-s{seed}-{tag}"


def _mismatch(given: Mapping[str, torch.Tensor], built: Mapping[str, torch.Tensor]) -> list[str]:
    """What differs between two state dicts: missing, unexpected and mis-shaped (or mis-typed) keys."""
    missing = [k for k in built if k not in given]
    unexpected = [k for k in given if k not in built]
    shaped = [
        f"{k} {tuple(given[k].shape)} {str(given[k].dtype).removeprefix('torch.')} vs "
        f"{tuple(built[k].shape)} {str(built[k].dtype).removeprefix('torch.')}"
        for k in given
        if k in built and (given[k].shape != built[k].shape or given[k].dtype != built[k].dtype)
    ]
    parts = []
    for label, items in (
        ("missing (the rebuilt model has them, the given weights not)", missing),
        ("unexpected (in the given weights only)", unexpected),
        ("mis-shaped (given vs rebuilt)", shaped),
    ):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    return parts


def _check_same_logits(
    model: nn.Module, rebuilt: nn.Module, data: Dataset, reference: str, where: str
) -> None:
    """The imported model and its rebuilt copy must compute the same logits on a few samples."""
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = data.x[:_CHECK_SAMPLES]
    with torch.no_grad(), adapted(model), eval_mode(model), eval_mode(rebuilt):
        try:
            given = model(x.to(device)).detach().to("cpu").float()
        except (RuntimeError, TypeError, IndexError) as exc:
            raise fail(
                "model",
                where,
                "a model that accepts the dataset's inputs",
                type(model).__name__,
                f"give the dataset the inputs the model's forward takes ({exc}).",
            ) from exc
        again = rebuilt(x).detach().float()
    if given.shape != again.shape or not torch.allclose(given, again, rtol=1e-4, atol=1e-5):
        gap = (given - again).abs().max().item() if given.shape == again.shape else float("nan")
        fail(
            "options",
            where,
            f"options with which {reference!r} rebuilds a model that computes the given model's logits",
            None,
            got=f"logits that differ by up to {gap:.3g} on the first {len(x)} samples with the same weights",
            fix="pass every option that changes the computation (activation, scaling, ...) even if it "
            "adds no weights, and import the model in the form the factory builds.",
        )


def add_model(
    zoo: Zoo,
    model: nn.Module,
    dataset: Dataset,
    *,
    factory: str,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    evaluate: bool = True,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> str:
    """Store an already-trained dense ``model`` of ``dataset`` in ``zoo`` as a dense run; return its id.

    ``factory`` (``"package.module:callable"``) and ``options`` must rebuild the model's architecture:
    ``factory(**options)`` is called (seeded with ``seed``) and its state dict must have the model's
    keys, shapes and dtypes exactly, and with the model's weights loaded it must compute the same
    logits; otherwise nothing is stored and the error lists the first differences. The dataset is
    added (if new) and split with ``split_seed``, ``val_fraction`` and ``test_fraction`` (as
    :meth:`Zoo.add_dataset`); with ``evaluate`` the per-sample outputs on its validation and test parts
    are stored, as for a run the zoo trained, so every analysis and :func:`prune_population` see it
    like any dense run. ``train_config`` describes how it was trained (a :class:`TrainConfig` also lets
    schedules that retrain, such as IMP, reuse it). Importing the same model twice returns the same id.

    >>> import tempfile
    >>> from pruneviz.testing.models import TinyEncoder, token_dataset
    >>> zoo = Zoo.create(tempfile.mkdtemp() + "/z")
    >>> run = add_model(zoo, TinyEncoder(dim=8, layers=1), token_dataset(n=40),
    ...                 factory="pruneviz.testing.models:TinyEncoder", options={"dim": 8, "layers": 1})
    >>> zoo.run(run).arch
    'pruneviz.testing.models:TinyEncoder'
    """
    where = "Zoo.add_model"
    if not isinstance(zoo, Zoo):
        fail("zoo", where, "a pruneviz Zoo", type(zoo).__name__, "open one with pruneviz.zoo.Zoo(path).")
    if not isinstance(model, nn.Module):
        fail("model", where, "a torch nn.Module (the trained model)", type(model).__name__)
    if not isinstance(dataset, Dataset):
        fail(
            "dataset",
            where,
            "a pruneviz Dataset",
            type(dataset).__name__,
            "wrap your data with pruneviz.data.Dataset(x, y, ...) or load one with load_dataset.",
        )
    seed = check_int(seed, "seed", where, minimum=0)
    if options is not None and not isinstance(options, Mapping):
        fail("options", where, "a mapping of keyword arguments of the factory", options)
    opts = dict(options or {})
    try:
        spec = ModelSpec(factory, dataset.info.input_shape, dataset.num_classes, opts)
        json.dumps(spec.to_json())
    except TypeError as exc:
        raise fail(
            "options",
            where,
            "JSON-serialisable values (numbers, strings, lists) — they are stored in the zoo",
            opts,
            "pass plain values; build objects inside the factory.",
        ) from exc
    if isinstance(train_config, TrainConfig):
        train = {"source": "imported", **train_config.to_json()}
    elif train_config is None or isinstance(train_config, Mapping):
        train = {"source": "imported", **dict(train_config or {})}
    else:
        fail("train_config", where, "a TrainConfig, a mapping or None", type(train_config).__name__)
    if not isinstance(factory, str) or ":" not in factory:
        fail(
            "factory",
            where,
            "a factory reference 'package.module:callable' that builds the model from options",
            factory,
            f"pass e.g. factory='{type(model).__module__}:{type(model).__qualname__}'.",
        )
    resolve_factory(factory, where=where)
    rebuilt = build_factory(factory, opts, seed=seed)
    given = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    problems = _mismatch(given, rebuilt.state_dict())
    if problems:
        fail(
            "options",
            where,
            f"options with which {factory!r} rebuilds the model's architecture (same state dict keys, "
            "shapes and dtypes)",
            opts,
            f"the state dicts differ — {'; '.join(problems)}. Pass the options that rebuild the "
            "architecture (sizes, number of classes, vocabulary), or the factory that built the model.",
        )
    rebuilt.load_state_dict(given, strict=True)
    rebuilt.eval()
    key = zoo.add_dataset(
        dataset, split_seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    splits = zoo.splits(key)
    _check_same_logits(model, rebuilt, splits.val, factory, where)
    rid = imported_run_id(key, spec, seed, train, _weights_digest(given))
    check_plain_name(rid, "run id", where)
    if zoo.has_run(rid):
        return rid
    # without evaluate: the columns evaluate writes, no rows (outputs can be added with Zoo.add_outputs)
    outputs = evaluate_splits(rebuilt, splits) if evaluate else evaluate_splits_columns(rebuilt, splits)
    record = dense_record(rid, key, spec, seed, train, rebuilt, outputs, None, example=splits.val.x[:1])
    if not evaluate:
        record = dataclasses.replace(record, metrics={"params": record.metrics["params"]})
    zoo.add_run(record, rebuilt, outputs)
    return rid


def evaluate_splits_columns(model: nn.Module, splits: Any) -> pd.DataFrame:
    """An empty frame with the columns :func:`evaluate_splits` gives (for an import without outputs)."""
    return evaluate(model, splits.val.take([0]), subset="val").iloc[:0]


def import_weights(
    zoo: Zoo,
    weights: str | os.PathLike[str],
    dataset: Dataset,
    *,
    factory: str,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    evaluate: bool = True,
    split_seed: int = 0,
) -> str:
    """:func:`add_model` for a state dict in a ``.safetensors`` file: the factory builds the model,
    the file's tensors are loaded into it strictly, and it is imported. Pickle checkpoints (``.pt``,
    ``.pth``, ``.bin``, ...) are refused — unpickling can run code; convert them with
    ``safetensors.torch.save_file(state_dict, "model.safetensors")`` where you trust them."""
    where = "import_weights"
    path = Path(weights)
    if path.suffix != ".safetensors":
        pickled = path.suffix in PICKLE_SUFFIXES or not path.suffix
        kind = "a pickle checkpoint" if pickled else "not safetensors"
        fail(
            "weights",
            where,
            "a .safetensors file of the model's state dict (pickle files are never loaded: unpickling "
            "can run arbitrary code)",
            str(path),
            f'it is {kind}. Convert it once, where you trust the file: python -c "import torch; '
            "from safetensors.torch import save_file; "
            f"save_file(torch.load('{path.name}', weights_only=True), '{path.stem}.safetensors')\" "
            "(a checkpoint that wraps the state dict needs its ['state_dict'] entry), then pass the "
            ".safetensors file.",
            error=CheckpointError,
        )
    state = load_state_dict_file(path)
    model = build_factory(factory, options, seed=seed)
    problems = _mismatch(state, model.state_dict())
    if problems:
        fail(
            "options",
            where,
            f"options with which {factory!r} builds the architecture of the weights in {str(weights)!r}",
            dict(options or {}),
            f"the state dicts differ — {'; '.join(problems)}. Pass the options that rebuild the "
            "architecture the weights were saved from.",
        )
    model.load_state_dict(state, strict=True)
    return add_model(
        zoo,
        model,
        dataset,
        factory=factory,
        options=options,
        seed=seed,
        train_config=train_config,
        evaluate=evaluate,
        split_seed=split_seed,
    )


def json_options(text: str | None, param: str, where: str) -> dict[str, Any]:
    """Keyword options given as JSON text (a command-line flag): an object, or ``{}`` for ``None``."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise fail(
            param,
            where,
            "a JSON object of keyword options, e.g. '{\"num_classes\": 10}'",
            text,
            f"quote the whole object for the shell and use double quotes inside ({exc}).",
        ) from exc
    if not isinstance(value, dict):
        fail(param, where, "a JSON object of keyword options, e.g. '{\"num_classes\": 10}'", text)
    return value


def dataset_from_argument(data: str, options: Mapping[str, Any] | None = None) -> Dataset:
    """The dataset a command line names: a built-in source (:func:`~pruneviz.data.load_dataset` name,
    with ``options``), or the path of a ``.csv`` file (the ``csv`` source; ``options`` must give its
    ``target`` column)."""
    opts = dict(options or {})
    if data not in dataset_names() and Path(data).suffix.lower() == ".csv":
        return load_dataset("csv", path=data, **opts)
    if data not in dataset_names():
        fail(
            "data",
            "pruneviz zoo import",
            f"a dataset name ({', '.join(dataset_names())}) or the path of a .csv file",
            data,
            'pass e.g. --data digits, or --data mnist --data-options \'{"root": "DIR"}\'.',
        )
    return load_dataset(data, **opts)
