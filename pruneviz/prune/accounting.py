"""What a pruned model costs: sparsity, parameters, dense and effective MACs, measured latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from pruneviz._scope import eval_mode, forward_hooks
from pruneviz._validation import check_int
from pruneviz.prune.masks import PRUNABLE_TYPES


def sparsity_by_layer(model: nn.Module) -> pd.DataFrame:
    """One row per Linear/Conv layer: ``layer``, ``kind``, ``params`` (weight entries), ``zeros``,
    ``sparsity`` (fraction of weight entries that are exactly zero), plus a final ``layer="total"`` row."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES):
            w = m.weight.detach()
            zeros = int((w == 0).sum())
            rows.append({"layer": name, "kind": type(m).__name__, "params": w.numel(), "zeros": zeros})
    df = pd.DataFrame(rows, columns=["layer", "kind", "params", "zeros"])
    total = pd.DataFrame([{"layer": "total", "kind": "", "params": df.params.sum(), "zeros": df.zeros.sum()}])
    df = pd.concat([df, total], ignore_index=True)
    df["sparsity"] = df.zeros / df.params.where(df.params > 0, 1)
    return df


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int]) -> pd.DataFrame:
    """Multiply-accumulates per Linear/Conv layer for one sample.

    ``dense_macs`` counts every weight; ``effective_macs`` counts only non-zero weights (what a perfect
    sparse kernel would do). A last row ``layer="total"`` sums them.
    """
    rows: list[dict[str, object]] = []

    def hook_for(name: str):
        def hook(m: nn.Module, inputs, out):
            w = m.weight
            # output positions per sample: rows of a Linear's output, spatial positions of a conv's
            positions = out.numel() // out.shape[-1] if isinstance(m, nn.Linear) else out[0, 0].numel()
            dense = positions * w.numel()  # each weight is used once per output position
            density = float((w != 0).sum()) / w.numel()
            rows.append(
                {
                    "layer": name,
                    "kind": type(m).__name__,
                    "dense_macs": dense,
                    "effective_macs": round(dense * density),
                }
            )

        return hook

    hooks = [(m, hook_for(n)) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    with forward_hooks(hooks), eval_mode(model):
        model(torch.zeros(1, *input_shape))
    df = pd.DataFrame(rows, columns=["layer", "kind", "dense_macs", "effective_macs"])
    total = {
        "layer": "total",
        "kind": "",
        "dense_macs": df.dense_macs.sum(),
        "effective_macs": df.effective_macs.sum(),
    }
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


@torch.no_grad()
def measure_latency(
    model: nn.Module, input_shape: Sequence[int], *, batch_size: int = 1, repeats: int = 30, warmup: int = 5
) -> dict[str, float]:
    """Wall-clock latency of one forward pass on CPU: median and interquartile range in seconds."""
    where = "measure_latency"
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    repeats = check_int(repeats, "repeats", where, minimum=3)
    x = torch.zeros(batch_size, *input_shape)  # zeros: the caller's random state is left alone
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
    model: nn.Module, *, batch_sizes: Sequence[int] = (1, 16, 256), input_shape: Sequence[int] | None = None
) -> pd.DataFrame:
    """Per layer and batch size: the path :func:`pruneviz.kernels.sparsify` runs the layer with on this
    machine, and its measured against its theoretical speedup over dense (``1 / density``). See
    :func:`pruneviz.kernels.speedup_table`; timings are measured once per machine and layer shape."""
    from pruneviz.kernels import speedup_table

    return speedup_table(model, batch_sizes=batch_sizes, input_shape=input_shape)
