"""Seeded, deterministic training and fine-tuning, and evaluation into per-sample output frames."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._scope import eval_mode
from pruneviz._seed import seeded
from pruneviz._validation import (
    check_choice,
    check_instance,
    check_int,
    check_model,
    check_positive_float,
    data_fail,
    fail,
)
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import Inputs
from pruneviz.exceptions import DivergenceError
from pruneviz.models.adapter import adapted

OPTIMIZERS = ("adam", "sgd")
#: ``fit`` stops when a step's loss exceeds this multiple of the first step's loss (or is not finite)
DIVERGENCE_FACTOR = 1e6


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. The learning rate follows a cosine decay to zero over all steps.

    ``optimizer`` is ``"adam"`` (AdamW when ``weight_decay > 0``) or ``"sgd"`` (Nesterov momentum 0.9).
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        where = "TrainConfig"
        check_int(self.epochs, "epochs", where, minimum=0)
        check_int(self.batch_size, "batch_size", where, minimum=1)
        check_positive_float(self.lr, "lr", where)
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            fail("weight_decay", where, "a number >= 0", self.weight_decay)
        check_choice(self.optimizer, "optimizer", where, OPTIMIZERS)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    if config.weight_decay > 0:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr)


def fit(
    model: nn.Module,
    train: Dataset,
    *,
    config: TrainConfig = TrainConfig(),
    seed: int = 0,
    val: Dataset | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    after_backward: Callable[[nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> pd.DataFrame:
    """Train ``model`` in place on ``train`` with cross-entropy; return the per-epoch history.

    Everything random (shuffling, dropout) is drawn from ``seed``, so the same model, data, config and
    seed give bit-identical weights on the same machine. ``after_backward(model)`` runs when the
    gradients are ready, before each optimiser step (movement scores read them); ``after_step(model)``
    runs after every step (pruning uses it to keep masked weights at zero). Fine-tuning is the same
    call on an already trained model.

    Returns a frame with columns ``epoch``, ``metric`` (``train_loss``, ``train_accuracy``, and with
    ``val`` also ``val_loss``, ``val_accuracy``), ``value``.
    """
    where = "fit"
    check_model(model, "model", where)
    _check_dataset(train, "train", where)
    check_instance(
        config,
        TrainConfig,
        "config",
        where,
        "a pruneviz TrainConfig",
        "pass config=TrainConfig(epochs=..., lr=...) (a dict d works as TrainConfig(**d)).",
    )
    seed = check_int(seed, "seed", where, minimum=0)
    if val is not None:
        _check_dataset(val, "val", where, fix="pass val=None, or split with val_fraction > 0.")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        total = sum(1 for _ in model.parameters())
        fail(
            "model",
            where,
            "a model with at least one trainable parameter (requires_grad=True)",
            None,
            "unfreeze the layers to train, e.g. for p in model.parameters(): p.requires_grad_(True).",
            got=f"a {type(model).__name__} with all {total} parameter(s) frozen",
        )
    with adapted(model):
        _check_model_fits(model, train, where)
        return _fit(model, train, config, seed, val, after_step, after_backward, progress, desc)


def _fit(
    model: nn.Module,
    train: Dataset,
    config: TrainConfig,
    seed: int,
    val: Dataset | None,
    after_step: Callable[[nn.Module], None] | None,
    after_backward: Callable[[nn.Module], None] | None,
    progress: bool,
    desc: str,
) -> pd.DataFrame:
    from tqdm.auto import tqdm

    rows: list[tuple[int, str, float]] = []
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    first_loss: float | None = None
    with seeded(seed) as gen:
        opt = _make_optimizer(model, config)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
        bar = tqdm(range(config.epochs), desc=desc, disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            loss_sum, correct = 0.0, 0
            for step, (xb, yb) in enumerate(train.loader_batches(config.batch_size, generator=gen)):
                opt.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                value = loss.item()
                if first_loss is None:
                    first_loss = value
                if not math.isfinite(value) or value > DIVERGENCE_FACTOR * max(first_loss, 1e-12):
                    what = (
                        "non-finite"
                        if not math.isfinite(value)
                        else (f"more than {DIVERGENCE_FACTOR:g} times the first loss ({first_loss:.4g})")
                    )
                    raise DivergenceError(
                        f"Training diverged: the loss became {value:.4g} ({what}) in epoch {epoch}, "
                        f"step {step} (batch {step + 1} of {steps_per_epoch}). "
                        f"Fix: lower the learning rate (lr={config.lr:g}) or check the inputs' scale."
                    )
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                opt.step()
                sched.step()
                if after_step is not None:
                    after_step(model)
                loss_sum += loss.item() * len(yb)
                correct += int((logits.argmax(1) == yb).sum())
            rows += [
                (epoch, "train_loss", loss_sum / len(train)),
                (epoch, "train_accuracy", correct / len(train)),
            ]
            if val is not None:
                out = evaluate(model, val, progress=False)
                rows += [
                    (epoch, "val_loss", float(out["loss"].mean())),
                    (epoch, "val_accuracy", float(out["correct"].mean())),
                ]
            bar.set_postfix(loss=f"{loss_sum / len(train):.3f}")
    model.eval()
    return pd.DataFrame(rows, columns=["epoch", "metric", "value"])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    *,
    split: str = "clean",
    subset: str = "test",
    batch_size: int = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-sample outputs of ``model`` on ``data``, one row per sample.

    Columns: ``sample_id``, ``subset`` (which part of the data: train/val/test), ``split`` (evaluation
    condition: ``clean``, a corruption, an attack), ``label``, ``prediction``, ``loss`` (cross-entropy),
    ``correct``, ``confidence`` (max softmax probability) and ``logit_0 .. logit_{K-1}``.
    The model is put in eval mode and left there. Non-finite logits raise an error naming the samples.
    """
    where = "evaluate"
    check_model(model, "model", where)
    _check_dataset(data, "data", where)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    with adapted(model):
        _check_model_fits(model, data, where)
        model.eval()
        chunks = [model(data.x[i : i + batch_size]) for i in range(0, len(data), batch_size)]
    logits = torch.cat(chunks).float()
    bad = ~torch.isfinite(logits).all(1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        data_fail(
            "model",
            where,
            "finite logits for every sample",
            f"NaN/inf logits for {int(bad.sum())} sample(s), "
            f"the first with sample_id {int(data.sample_id[i])}",
            "check the model's weights for NaN/inf (a diverged run) and the inputs' scale.",
        )
    loss = F.cross_entropy(logits, data.y, reduction="none")
    pred = logits.argmax(1)
    conf = logits.softmax(1).max(1).values
    frame = pd.DataFrame(
        {
            "sample_id": data.sample_id,
            "subset": subset,
            "split": split,
            "label": data.y.numpy(),
            "prediction": pred.numpy(),
            "loss": loss.numpy(),
            "correct": (pred == data.y).numpy(),
            "confidence": conf.numpy(),
        }
    )
    logit_cols = pd.DataFrame(logits.numpy(), columns=[f"logit_{k}" for k in range(logits.shape[1])])
    return pd.concat([frame, logit_cols], axis=1)


def logits_of(outputs: pd.DataFrame) -> np.ndarray:
    """The ``(N, K)`` logits array held in an :func:`evaluate` frame's ``logit_*`` columns."""
    check_instance(
        outputs,
        pd.DataFrame,
        "outputs",
        "logits_of",
        "a frame from evaluate() with logit_* columns",
        "pass the frame evaluate(model, data) returned.",
    )
    cols = [c for c in outputs.columns if str(c).startswith("logit_")]
    if not cols:
        fail("outputs", "logits_of", "a frame from evaluate() with logit_* columns", list(outputs.columns))
    cols.sort(key=lambda c: int(c.split("_")[1]))
    return outputs[cols].to_numpy()


def _check_dataset(value: Any, param: str, where: str, *, fix: str | None = None) -> Dataset:
    """``value`` must be a non-empty pruneviz :class:`Dataset`."""
    check_instance(
        value,
        Dataset,
        param,
        where,
        "a pruneviz Dataset",
        f"wrap arrays as pruneviz.data.Dataset(x, y), or load one: {param}=pruneviz.load_dataset('digits').",
    )
    if len(value) == 0:
        data_fail(param, where, "a non-empty Dataset", "0 samples", fix or "pass a dataset with samples.")
    return value


def _check_model_fits(model: nn.Module, data: Dataset, where: str) -> None:
    """Run one sample through the model to turn shape mismatches into a clear error."""
    try:
        with eval_mode(model), torch.no_grad():
            out = model(data.x[:1])
    except (RuntimeError, TypeError, IndexError) as exc:
        takes = (
            f"the keyword inputs {list(data.x.keys())}"
            if isinstance(data.x, Inputs)
            else f"inputs of shape (N, {', '.join(map(str, data.info.input_shape))})"
        )
        fix = (
            "give the dataset the inputs the model's forward takes (names and shapes)"
            if isinstance(data.x, Inputs)
            else f"build the model with input_shape={data.info.input_shape}"
        )
        raise fail(
            "model", where, f"a model that accepts {takes}", type(model).__name__, f"{fix} ({exc})."
        ) from exc
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        fail(
            "model",
            where,
            f"outputs of shape (N, {data.num_classes}) (one logit per class)",
            None,
            got=f"outputs of shape {tuple(out.shape)}",
            fix=f"build the model with num_classes={data.num_classes}.",
        )


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Return ``(fn(), seconds)``."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
