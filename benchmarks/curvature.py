"""Hessian top eigenvalues and trace: pruneviz against PyHessian 0.1, side by side, on tiny CNNs trained on
digits whose full Hessian is computed exactly (dense and 50 % pruned).

Targets (BENCHMARKS.md, `curvature`): top-1 <= 0.1 % error in <= 10 HVPs; top-5 <= 0.5 % (worst) in <= 20
HVPs; trace <= 1 % error in <= 99 HVPs in >= 9 of 10 seeds, always with a standard error; wall time <=
PyHessian's. PyHessian runs with its defaults (power iteration / Hutchinson, maxIter=100, tol=1e-3). On the
pruned model PyHessian has no notion of a mask, so it differentiates the pruned weights too: its numbers
there answer a different question, and are reported as such.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

from pruneviz.analysis import HessianOperator, hessian_eigenvalues, hessian_trace
from pruneviz.data import load_digits
from pruneviz.prune import compute_masks
from pruneviz.train import TrainConfig, fit


def tiny_cnns() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10)
    )  # fmt: skip
    b = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10),
    )  # fmt: skip
    return {"cnn_a": a, "cnn_b": b}


def exact(model: nn.Module, data, masks) -> tuple[np.ndarray, float]:
    """The full Hessian in float64 (the operator's dense form, which tests/test_curvature.py checks against
    autograd's double-backward Hessian to 1e-9)."""
    op = HessianOperator(model, data, masks=masks, dtype=torch.float64, batch_size=len(data))
    h = op.dense().numpy()
    return np.sort(np.linalg.eigvalsh(h))[::-1], float(np.trace(h))


def pyhessian_run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int):
    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports the class)

    counter = {"n": 0}
    original = ph.hessian_vector_product

    def counting(*args, **kwargs):
        counter["n"] += 1
        return original(*args, **kwargs)

    ph.hessian_vector_product = counting
    try:
        torch.manual_seed(seed)
        h = ph.hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        out = {}
        t0 = time.perf_counter()
        counter["n"] = 0
        ev, _ = h.eigenvalues(top_n=1)
        out["top1"], out["top1_hvps"], out["top1_s"] = ev[0], counter["n"], time.perf_counter() - t0
        t0 = time.perf_counter()
        counter["n"] = 0
        ev, _ = h.eigenvalues(top_n=5)
        out["top5"], out["top5_hvps"], out["top5_s"] = (
            sorted(ev, reverse=True),
            counter["n"],
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        counter["n"] = 0
        samples = h.trace()
        out["trace"], out["trace_hvps"], out["trace_s"] = (
            float(np.mean(samples)),
            counter["n"],
            time.perf_counter() - t0,
        )
    finally:
        ph.hessian_vector_product = original
    return out


def ours_run(model, data, masks, seed):
    op = HessianOperator(model, data, masks=masks, batch_size=len(data))
    out = {}
    t0 = time.perf_counter()
    top1 = hessian_eigenvalues(op, k=1, iterations=10, seed=seed)
    out["top1"], out["top1_hvps"], out["top1_s"] = (
        top1.eigenvalue[0],
        int(top1.hvps[0]),
        time.perf_counter() - t0,
    )
    t0 = time.perf_counter()
    top5 = hessian_eigenvalues(op, k=5, iterations=20, seed=seed)
    out["top5"], out["top5_hvps"], out["top5_s"] = (
        list(top5.eigenvalue),
        int(top5.hvps[0]),
        time.perf_counter() - t0,
    )
    t0 = time.perf_counter()
    tr = hessian_trace(op, hvps=99, seed=seed)
    out["trace"], out["trace_se"] = tr.value[0], tr.se[0]
    out["trace_hvps"], out["trace_s"] = int(tr.hvps[0]), time.perf_counter() - t0
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    digits = load_digits()
    parts = digits.split(seed=0)
    sample = parts.train.take(np.arange(512))
    x, y = sample.x, sample.y
    seeds = range(2 if args.quick else 10)
    models = tiny_cnns()
    if args.quick:
        models = {"cnn_a": models["cnn_a"]}
    figures: dict[str, object] = {}
    rows = []
    for name, model in models.items():
        fit(model, parts.train, config=TrainConfig(epochs=15, lr=3e-3), progress=False)
        model.eval()
        for variant in ("dense",) if args.quick else ("dense", "pruned50"):
            masks = (
                compute_masks(model, method="global_magnitude", sparsity=0.5)
                if variant == "pruned50"
                else None
            )
            work = model
            if masks is not None:
                import copy

                work = masks.apply_(copy.deepcopy(model))
            evals, trace = exact(work, sample, masks)
            tag = f"{name}_{variant}"
            res = {"ours": [], "pyhessian": []}
            for s in seeds:
                res["ours"].append(ours_run(work, sample, masks, s))
                res["pyhessian"].append(pyhessian_run(work, x, y, s))
            for who, runs in res.items():
                top1_err = [abs(r["top1"] - evals[0]) / abs(evals[0]) for r in runs]
                top5_err = [
                    max(abs(a - b) / abs(b) for a, b in zip(r["top5"], evals[:5], strict=True)) for r in runs
                ]
                tr_err = [abs(r["trace"] - trace) / abs(trace) for r in runs]
                summary = {
                    "top1_err_median": statistics.median(top1_err),
                    "top1_hvps_median": statistics.median(r["top1_hvps"] for r in runs),
                    "top5_worst_err_median": statistics.median(top5_err),
                    "top5_hvps_median": statistics.median(r["top5_hvps"] for r in runs),
                    "trace_err_median": statistics.median(tr_err),
                    "trace_err_worst": max(tr_err),
                    "trace_within_1pct": sum(e <= 0.01 for e in tr_err),
                    "trace_hvps_median": statistics.median(r["trace_hvps"] for r in runs),
                    "seconds_median": statistics.median(
                        r["top1_s"] + r["top5_s"] + r["trace_s"] for r in runs
                    ),
                }
                for k, v in summary.items():
                    figures[f"{tag}_{who}_{k}"] = v
                rows.append({"model": tag, "who": who, **{k: v for k, v in summary.items()}})
            figures[f"{tag}_dim"] = HessianOperator(work, sample, masks=masks).dim
            figures[f"{tag}_exact_top1"] = float(evals[0])
            figures[f"{tag}_exact_trace"] = trace
            figures[f"{tag}_seeds"] = len(seeds)
    print("## Hessian top eigenvalues and trace against the exact Hessian (medians over seeds)\n")
    print(markdown(rows))
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
