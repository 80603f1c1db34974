"""Pruning quality on the embedded default (digits) and MNIST-1D: the published orderings at 90-95 %.

Checks, with mean and spread over seeds (BENCHMARKS.md, `engine`):
- LAMP >= global magnitude >= uniform (layer-wise) magnitude, one-shot with equal fine-tuning
  (Lee et al. 2021 report this ordering at high sparsity);
- iterative magnitude pruning with rewinding to initialisation >= one-shot pruning with the same
  rewinding, at equal sparsity, every (re)training the full schedule (Frankle & Carbin 2019, fig. 4);
  one-shot global magnitude fine-tuned from the trained weights with the full schedule is reported
  beside them (full mode), a strong baseline (Renda et al. 2020);
- Wanda masks and SparseGPT reconstruction equal reference implementations of their formulas.
An ordering that does not hold is reported, not hidden.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

from pruneviz.data import load_digits, load_mnist1d
from pruneviz.models import build_model
from pruneviz.prune import (
    compute_masks,
    iterative_magnitude,
    layer_inputs,
    one_shot,
    optimal_reconstruction,
    prunable_layers,
    reconstruction_error,
    sparsegpt_layer,
)
from pruneviz.prune.allocation import Structure
from pruneviz.testing import sequential_obs_reference, wanda_reference
from pruneviz.train import TrainConfig, evaluate, fit

ONE_SHOT = ("magnitude", "global_magnitude", "lamp")


def accuracy(model, data) -> float:
    return float(evaluate(model, data)["correct"].mean())


def study(name, dataset, seeds, sparsities, train_cfg, tune_cfg, imp_rounds, extra):
    splits = dataset.split(seed=0)
    acc: dict[tuple[str, float], list[float]] = {}
    dense_acc = []
    for seed in seeds:
        init = build_model(
            "cnn", input_shape=dataset.info.input_shape, num_classes=dataset.num_classes, seed=seed
        )
        dense = build_model(
            "cnn", input_shape=dataset.info.input_shape, num_classes=dataset.num_classes, seed=seed
        )
        fit(dense, splits.train, config=train_cfg, seed=seed, progress=False)
        dense_acc.append(accuracy(dense, splits.test))
        for s in sparsities:
            for method in ONE_SHOT:
                r = one_shot(dense, splits.train, method=method, sparsity=s, finetune=tune_cfg, seed=seed)
                acc.setdefault((method, s), []).append(accuracy(r.model, splits.test))
            for label, rounds in (("imp_rewind", imp_rounds), ("oneshot_rewind", 1)):
                ticket = iterative_magnitude(
                    init, splits.train, sparsity=s, rounds=rounds, config=train_cfg, trained=dense, seed=seed
                )
                acc.setdefault((label, s), []).append(accuracy(ticket.model, splits.test))
            if extra:
                full = one_shot(
                    dense, splits.train, method="global_magnitude", sparsity=s, finetune=train_cfg, seed=seed
                )
                acc.setdefault(("oneshot_finetune_full", s), []).append(accuracy(full.model, splits.test))
    return dense_acc, acc


def orderings(acc, sparsities):
    out = {}
    for s in sparsities:
        mean = {m: statistics.mean(acc[(m, s)]) for m in (*ONE_SHOT, "imp_rewind", "oneshot_rewind")}
        out[f"lamp_ge_global_{s:g}"] = mean["lamp"] >= mean["global_magnitude"]
        out[f"global_ge_uniform_{s:g}"] = mean["global_magnitude"] >= mean["magnitude"]
        out[f"imp_ge_oneshot_{s:g}"] = mean["imp_rewind"] >= mean["oneshot_rewind"]
    return out


def reference_checks() -> dict[str, float]:
    """Wanda's mask and SparseGPT's reconstruction on a trained digits MLP against the references."""
    data = load_digits()
    parts = data.split(seed=0)
    model = build_model("mlp", input_shape=data.info.input_shape, num_classes=10, hidden=(64, 32), seed=0)
    fit(model, parts.train, config=TrainConfig(epochs=10), progress=False)
    layers = prunable_layers(model)
    calib = parts.train.take(np.arange(256))
    masks = compute_masks(model, method="wanda", sparsity=0.5, data=calib)
    inputs = layer_inputs(model, layers, calib)
    mismatches = 0
    for name, m in layers.items():
        ref = wanda_reference(m.weight.detach().numpy(), inputs[name].T.numpy(), 0.5)
        mismatches += int((masks[name].numpy() != ref).sum())
    name, m = "features.3", layers["features.3"]
    w, x = m.weight.detach().double(), inputs[name]
    out = {"wanda_mask_mismatches": float(mismatches)}
    for label, struct, sparsity in (
        ("unstructured_0.5", Structure("unstructured"), 0.5),
        ("2_4", Structure("nm", n=2, m=4), None),
    ):
        new, keep = sparsegpt_layer(w, x, sparsity=sparsity, structure=struct)
        err = reconstruction_error(w, new, x)
        ref = reconstruction_error(w, sequential_obs_reference(w, x, keep), x)
        opt = reconstruction_error(w, optimal_reconstruction(w, keep, x), x)
        out[f"sparsegpt_{label}_rel_diff_vs_dense_solve"] = abs(err - ref) / ref
        out[f"sparsegpt_{label}_error_over_lstsq_optimum"] = err / opt
        out[f"sparsegpt_{label}_error_over_no_reconstruction"] = err / reconstruction_error(w, w * keep, x)
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    start = time.perf_counter()
    sparsities = (0.9, 0.95)
    if args.quick:
        configs = [
            ("digits", load_digits(), (0, 1), TrainConfig(epochs=20), TrainConfig(epochs=4, lr=1e-3), 2)
        ]
    else:
        configs = [
            ("digits", load_digits(), (0, 1, 2), TrainConfig(epochs=30), TrainConfig(epochs=8, lr=1e-3), 3),
            ("mnist1d", load_mnist1d(), (0, 1, 2), TrainConfig(epochs=30), TrainConfig(epochs=8, lr=1e-3), 3),
        ]
    figures: dict[str, object] = {}
    rows = []
    for name, ds, seeds, train_cfg, tune_cfg, rounds in configs:
        dense_acc, acc = study(name, ds, seeds, sparsities, train_cfg, tune_cfg, rounds, extra=not args.quick)
        figures[f"{name}_dense_mean"] = statistics.mean(dense_acc)
        for (method, s), values in sorted(acc.items()):
            mean, spread = statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
            figures[f"{name}_{method}_{s:g}_mean"] = mean
            figures[f"{name}_{method}_{s:g}_std"] = spread
            rows.append(
                {
                    "dataset": name,
                    "method": method,
                    "sparsity": s,
                    "test acc mean": mean,
                    "std": spread,
                    "seeds": len(values),
                }
            )
        for key, held in orderings(acc, sparsities).items():
            figures[f"{name}_{key}"] = held
    figures.update(reference_checks())
    figures["seconds"] = time.perf_counter() - start
    print("## Pruning quality (CNN; one-shot + equal brief fine-tuning; tickets rewound to init)\n")
    print(markdown(rows))
    print("\n## Published orderings (True = holds on the means)\n")
    print(markdown([{"check": k, "holds": v} for k, v in figures.items() if isinstance(v, bool)]))
    print("\n## Reference checks\n")
    print(
        markdown(
            [{"figure": k, "value": v} for k, v in figures.items() if k.startswith(("wanda", "sparsegpt"))]
        )
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
