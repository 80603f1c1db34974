"""What a pruned model costs: sparsity, parameters, dense and effective MACs, measured latency."""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import check_int, check_model, fail
from pruneviz.data.inputs import Inputs
from pruneviz.prune.weights import PrunableWeight, all_prunable_weights


def _probe(
    input_shape: Sequence[int], example: torch.Tensor | Inputs | None, batch_size: int, where: str
) -> torch.Tensor | Inputs:
    """The input a cost is measured on: zeros of ``(batch_size, *input_shape)``, or the first sample
    of ``example`` repeated ``batch_size`` times (models whose inputs are not floats: token ids)."""
    if example is None:
        return torch.zeros(batch_size, *input_shape)  # zeros: the caller's random state is left alone
    if not isinstance(example, torch.Tensor | Inputs) or len(example) < 1:
        fail(
            "example",
            where,
            "a batch of model inputs (a tensor or Inputs with at least one sample)",
            type(example).__name__,
            "pass dataset.x[:1].",
        )
    return example[torch.zeros(batch_size, dtype=torch.long)]


def sparsity_by_layer(model: nn.Module, *, include_embeddings: bool = False) -> pd.DataFrame:
    """One row per prunable weight (see :func:`~pruneviz.prune.prunable_weights`; embedding tables with
    ``include_embeddings=True``): ``layer`` (its key), ``kind`` (the module's class name), ``params``
    (weight entries), ``zeros``, ``sparsity`` (fraction of weight entries that are exactly zero), plus a
    final ``layer="total"`` row."""
    check_model(model, "model", "sparsity_by_layer", half=True)
    rows = []
    for key, pw in all_prunable_weights(model, include_embeddings=include_embeddings).items():
        w = pw.weight.detach()
        zeros = int((w == 0).sum())
        rows.append({"layer": key, "kind": type(pw.module).__name__, "params": w.numel(), "zeros": zeros})
    df = pd.DataFrame(rows, columns=["layer", "kind", "params", "zeros"])
    total = pd.DataFrame([{"layer": "total", "kind": "", "params": df.params.sum(), "zeros": df.zeros.sum()}])
    df = pd.concat([df, total], ignore_index=True)
    df["sparsity"] = df.zeros / df.params.where(df.params > 0, 1)
    return df


@torch.no_grad()
def count_macs(
    model: nn.Module, input_shape: Sequence[int], *, example: torch.Tensor | Inputs | None = None
) -> pd.DataFrame:
    """Multiply-accumulates per prunable weight for one sample (embedding look-ups count none).

    ``dense_macs`` counts every weight; ``effective_macs`` counts only non-zero weights (what a perfect
    sparse kernel would do). A weight is used once per output position (Linear, GPT-2 ``Conv1D``:
    tokens; convolutions: spatial positions), once per *input* position for a transposed convolution,
    and once per query, key or value token for an attention projection (``out_proj``: per query token).
    A last row ``layer="total"`` sums them. The model runs on zeros of ``input_shape``, or on the first
    sample of ``example`` (needed for token ids, which zeros of a float type are not).
    """
    check_model(model, "model", "count_macs", half=True)
    rows: list[dict[str, object]] = []

    def add(key: str, kind: str, w: torch.Tensor, positions: int) -> None:
        dense = positions * w.numel()
        density = float((w != 0).sum()) / w.numel()
        effective = round(dense * density)
        rows.append({"layer": key, "kind": kind, "dense_macs": dense, "effective_macs": effective})

    def hook_for(key: str, pw):
        def hook(m: nn.Module, inputs, out):
            if pw.kind in ("linear", "conv1d_gpt2"):
                positions = out.numel() // out.shape[-1]
            elif pw.kind == "conv_transpose":
                positions = inputs[0][0, 0].numel()
            else:
                positions = out[0, 0].numel()
            add(key, type(m).__name__, pw.weight, positions)

        return hook

    def attention_hook_for(entries):
        def hook(m: nn.MultiheadAttention, args, kwargs, _out):
            bound = inspect.signature(m.forward).bind(*args, **kwargs).arguments
            tokens = {k: bound[name].numel() // bound[name].shape[-1] for k, name in _QKV.items()}
            for key, pw in entries:
                if pw.param_name == "in_proj_weight":
                    w = pw.weight
                    e = w.shape[0] // 3
                    for i, k in enumerate("qkv"):
                        add(f"{key}[{k}]", "MultiheadAttention", w[i * e : (i + 1) * e], tokens[k])
                elif pw.kind == "attention":
                    add(key, "MultiheadAttention", pw.weight, tokens[pw.param_name[0]])
                else:  # out_proj, called inside the attention
                    add(key, type(pw.module).__name__, pw.weight, tokens["q"])

        return hook

    plain: list[tuple[nn.Module, Callable[..., Any]]] = []
    attention: dict[nn.MultiheadAttention, list[tuple[str, PrunableWeight]]] = {}
    for key, pw in all_prunable_weights(model).items():
        parent = _attention_of(model, pw)
        if parent is not None:
            attention.setdefault(parent, []).append((key, pw))
        else:
            plain.append((pw.module, hook_for(key, pw)))
    with (
        forward_hooks(plain),
        forward_hooks([(m, attention_hook_for(e)) for m, e in attention.items()], with_kwargs=True),
        eval_mode(model),
    ):
        model(_probe(input_shape, example, 1, "count_macs"))
    df = pd.DataFrame(rows, columns=["layer", "kind", "dense_macs", "effective_macs"])
    df = _merge_qkv(df)
    total = {
        "layer": "total",
        "kind": "",
        "dense_macs": df.dense_macs.sum(),
        "effective_macs": df.effective_macs.sum(),
    }
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


_QKV = {"q": "query", "k": "key", "v": "value"}


def _attention_of(model: nn.Module, pw) -> nn.MultiheadAttention | None:
    """The attention module that runs ``pw``: its own for input projections, its parent for out_proj."""
    if pw.kind == "attention":
        return pw.module
    parent_name = pw.module_name.rpartition(".")[0]
    if pw.kind == "linear" and pw.module_name.endswith("out_proj"):
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, nn.MultiheadAttention) and parent.out_proj is pw.module:
            return parent
    return None


def _merge_qkv(df: pd.DataFrame) -> pd.DataFrame:
    """One row per in_proj_weight: its query, key and value parts summed."""
    base = df.layer.str.replace(r"\[[qkv]\]$", "", regex=True)
    if bool((base == df.layer).all()):
        return df
    merged = (
        df.assign(layer=base)
        .groupby("layer", sort=False, as_index=False)
        .agg(
            kind=("kind", "first"), dense_macs=("dense_macs", "sum"), effective_macs=("effective_macs", "sum")
        )
    )
    return merged[["layer", "kind", "dense_macs", "effective_macs"]]


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    example: torch.Tensor | Inputs | None = None,
) -> dict[str, float]:
    """Wall-clock latency of one forward pass on CPU: median and interquartile range in seconds.

    The batch is zeros of ``input_shape``, or the first sample of ``example`` repeated (token ids)."""
    where = "measure_latency"
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    repeats = check_int(repeats, "repeats", where, minimum=3)
    x = _probe(input_shape, example, batch_size, where)
    times = []
    with eval_mode(model):
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4)
    return {"median_s": statistics.median(times), "iqr_s": q[2] - q[0], "repeats": repeats}


def kernel_speedups(
    model: nn.Module,
    *,
    batch_sizes: Sequence[int] = (1, 16, 256),
    input_shape: Sequence[int] | None = None,
    example: Any = None,
) -> pd.DataFrame:
    """Per layer and batch size: the path :func:`pruneviz.kernels.sparsify` runs the layer with on this
    machine, and its measured against its theoretical speedup over dense (``1 / density``). See
    :func:`pruneviz.kernels.speedup_table`; timings are measured once per machine and layer shape.
    ``example`` (real inputs of any kind, e.g. token ids with their mask) replaces ``input_shape``."""
    from pruneviz.kernels import speedup_table

    if example is not None:
        return speedup_table(model, batch_sizes=batch_sizes, example_input=example)
    return speedup_table(model, batch_sizes=batch_sizes, input_shape=input_shape)
