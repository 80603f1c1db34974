"""Analyses at real size: a 28x28 LeNet and a CIFAR-shaped ResNet-20, 10k test samples, dense and 90 % pruned.

Targets (issue 19): ``run_curvature`` <= 10 s per run with the top-1 eigenvalue within 1 % of a
100-iteration reference and the trace within its reported standard error of a reference; the 21 x 21
``run_landscape`` <= 60 s; ``run_cka`` over 10 x 10 layers <= 20 s; ``zoo analyse`` of an 80-run study of
the 28x28 size <= 20 minutes on 2 cores.

The data is synthetic and shaped like MNIST (1x28x28) and CIFAR-10 (3x32x32): ten classes, each a smooth
random template under noise, 9000 training, 1000 validation and 10000 test samples (nothing is
downloaded). Each model is trained for one epoch (the analyses' cost does not depend on how well) and
pruned 90 % by global magnitude without fine-tuning. The analyses run with their defaults, through the
zoo, as ``zoo analyse`` runs them. The reference of the curvature is the same analysis on the same samples
with 100 Lanczos iterations and 100 trace probes. Each run's curvature is then asked for half the
relative error of its top eigenvalue that the default budget gave (``target_rse``): the samples and
seconds that takes. CKA reports the median and largest jackknife ``sample_se`` of its grid.

``--only analyse`` times ``analyse_zoo`` (full settings) on a 28x28 study of 2 dense seeds and 4 pruned
children, and scales the time of each step to an 80-run study of 8 dense seeds and 72 children: a step
over runs by 80 / 6, a step over children (pairs, families, comparisons) by 72 / 4. ``--only analyse80``
(not part of a plain run: about half an hour) builds that 80-run study (8 seeds, each pruned to nine
sparsities from 10 % to 90 %) and times ``analyse_zoo`` on it: the measured figure the estimate stands in for.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

from pruneviz.analysis.curvature import GroupedHessian, curvature_summary
from pruneviz.data import Dataset
from pruneviz.study import run_cka, run_curvature, run_landscape
from pruneviz.study.runs import _subset
from pruneviz.train import TrainConfig
from pruneviz.zoo import Zoo, build_dense_population, prune_population

SHAPES = {"lenet": ("cnn", (1, 28, 28)), "resnet20": ("resnet20", (3, 32, 32))}


def synthetic(shape: tuple[int, ...], n: int = 20000, seed: int = 0) -> Dataset:
    """Ten classes, each a smooth random template (bilinear from 7x7) under unit noise, squashed to pixels
    in [0, 1], and 10 % of the labels drawn at random (so that no model reaches zero loss and a degenerate
    Hessian)."""
    gen = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.randn(10, shape[0], 7, 7, generator=gen), size=shape[1:], mode="bilinear")
    y = torch.randint(0, 10, (n,), generator=gen)
    x = torch.sigmoid(0.3 * templates[y] + torch.randn(n, *shape, generator=gen))  # pixels in [0, 1]
    flip = torch.rand(n, generator=gen) < 0.1
    y = torch.where(flip, torch.randint(0, 10, (n,), generator=gen), y)
    return Dataset(x, y, name=f"synthetic{'x'.join(map(str, shape))}")


def study(
    root: Path, name: str, seeds: int = 1, sparsities: tuple[float, ...] = (0.9,)
) -> tuple[Zoo, list[str]]:
    arch, shape = SHAPES[name]
    zoo = Zoo.create(root / name)
    dense = build_dense_population(
        zoo, synthetic(shape), arch=arch, seeds=seeds, config=TrainConfig(epochs=1, batch_size=128),
        val_fraction=0.05, test_fraction=0.5, progress=False,
    )  # fmt: skip
    children = prune_population(
        zoo, methods=["magnitude"], sparsities=list(sparsities), finetune=None, progress=False
    )
    return zoo, [*dense.run, *children.run]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def spread(layers: list[str], count: int) -> list[str]:
    """``count`` layers spread evenly from first to last."""
    if len(layers) <= count:
        return layers
    return [layers[round(i * (len(layers) - 1) / (count - 1))] for i in range(count)]


def model_section(root: Path, name: str) -> dict[str, object]:
    zoo, (dense, pruned) = study(root, name)
    out: dict[str, object] = {}
    for label, run in (("dense", dense), ("pruned90", pruned)):
        key = f"{name}_{label}"
        curv, seconds = timed(lambda run=run: run_curvature(zoo, run))
        table = curv.set_index("metric")
        samples = int(table.samples.iloc[0])
        data = _subset(zoo, run, "train", samples, 0)
        op = GroupedHessian(zoo.load_model(run), data, masks=dict(zoo.masks(run)) or None)
        ref = curvature_summary(op, k=1, iterations=100, probes=100, seed=1).set_index("metric")
        top, ref_top = table.loc["eigenvalue_1", "value"], ref.loc["eigenvalue_1", "value"]
        trace, se = table.loc["trace", "value"], table.loc["trace", "se"]
        ref_trace, ref_se = ref.loc["trace", "value"], ref.loc["trace", "se"]
        z = abs(trace - ref_trace) / math.hypot(se, ref_se)
        out.update({
            f"{key}_curvature_s": seconds,
            f"{key}_curvature_samples": samples,
            f"{key}_curvature_hvps": int(table.loc["trace", "hvps"]),
            f"{key}_top1": top,
            f"{key}_top1_reference": ref_top,
            f"{key}_top1_rel_err": abs(top - ref_top) / abs(ref_top),
            f"{key}_top1_sample_se": table.loc["eigenvalue_1", "sample_se"],
            f"{key}_trace": trace,
            f"{key}_trace_se": se,
            f"{key}_trace_sample_se": table.loc["trace", "sample_se"],
            f"{key}_trace_reference": ref_trace,
            f"{key}_trace_reference_se": ref_se,
            f"{key}_trace_error_in_se": z,
        })  # fmt: skip
        top_rse = table.loc["eigenvalue_1", "sample_se"] / abs(top)
        out[f"{key}_top1_rse"] = top_rse
        # an error instead of a sample count: half the relative error the auto budget gave
        target = float(f"{top_rse / 2:.2g}")
        grown, seconds = timed(lambda run=run, target=target: run_curvature(zoo, run, target_rse=target))
        row = grown.set_index("metric").loc["eigenvalue_1"]
        out.update({
            f"{key}_curvature_target_rse": target,
            f"{key}_curvature_target_s": seconds,
            f"{key}_curvature_target_samples": int(row.samples),
            f"{key}_curvature_target_top1_rse": row.sample_se / abs(row.value),
        })  # fmt: skip
        land, seconds = timed(lambda run=run: run_landscape(zoo, run, dims=2, steps=21))
        out[f"{key}_landscape_21x21_s"] = seconds
        out[f"{key}_landscape_samples"] = int(land.samples.iloc[0])
        out[f"{key}_landscape_max_loss_se"] = float(land.loss_se.max())
        centre = land[(land.alpha == 0) & (land.beta == 0)].iloc[0]
        out[f"{key}_landscape_centre_loss_rse"] = centre.loss_se / centre.loss
    model = zoo.load_model(dense)
    # ten layers spread over the convolutions and linear layers, or over every leaf module (activations
    # and pooling too) where the model has fewer than ten of those (LeNet has five)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if len(layers) < 10:
        layers = [
            n
            for n, m in model.named_modules()
            if n and not list(m.children()) and not isinstance(m, nn.Flatten)
        ]
    layers = spread(layers, 10)
    grid, seconds = timed(lambda: run_cka(zoo, dense, pruned, layers_a=layers, layers_b=layers))
    out[f"{name}_cka_layers"] = f"{len(layers)}x{len(layers)}"
    out[f"{name}_cka_s"] = seconds
    out[f"{name}_cka_median_sample_se"] = float(grid.sample_se.median())
    out[f"{name}_cka_max_sample_se"] = float(grid.sample_se.max())
    out[f"{name}_cka_samples"] = 512
    out[f"{name}_params"] = sum(p.numel() for p in model.parameters())
    return out


def analyse_section(root: Path) -> dict[str, object]:
    from pruneviz.study import analyse_zoo
    from pruneviz.study.plan import study_items
    from pruneviz.study.registry import analysis

    zoo, runs = study(root, "lenet", seeds=2, sparsities=(0.5, 0.9))
    report, seconds = timed(lambda: analyse_zoo(zoo, progress=False))
    children = len(runs) - 2
    out: dict[str, object] = {"analyse_small_study_runs": len(runs), "analyse_small_study_s": seconds}
    estimate = 0.0
    for row in report.itertuples():
        # scale each step by what its items cover: runs (x 80 / 6) or children, alone or in their
        # families and comparisons (x 72 / 4)
        scopes = {analysis(a).scope for item in study_items(zoo, row.step) for a in item.analyses}
        factor = 80 / len(runs) if scopes <= {"run", "runs"} else 72 / children
        out[f"analyse_step_{row.step}_s"] = row.seconds
        estimate += row.seconds * factor
    out["analyse_80_runs_estimated_s"] = estimate
    out["analyse_80_runs_target_met"] = estimate <= 20 * 60
    return out


def analyse80_section(root: Path) -> dict[str, object]:
    """The 80-run study itself: 8 dense seeds, each pruned to nine sparsities, analysed whole."""
    from pruneviz.study import analyse_zoo

    sparsities = tuple(round(0.1 * i, 1) for i in range(1, 10))
    (zoo, runs), build = timed(lambda: study(root, "lenet", seeds=8, sparsities=sparsities))
    report, seconds = timed(lambda: analyse_zoo(zoo, progress=False))
    out: dict[str, object] = {
        "analyse80_runs": len(runs),
        "analyse80_build_s": build,
        "analyse80_s": seconds,
        "analyse80_target_met": seconds <= 20 * 60,
    }
    out.update({f"analyse80_step_{row.step}_s": row.seconds for row in report.itertuples()})
    return out


SECTIONS = {
    "lenet": lambda root: model_section(root, "lenet"),
    "resnet20": lambda root: model_section(root, "resnet20"),
    "analyse": analyse_section,
    "analyse80": analyse80_section,
}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], sections=tuple(SECTIONS))
    warnings.simplefilter("ignore")
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for section, run in SECTIONS.items():
            if args.only != section and (args.only is not None or section == "analyse80"):
                continue
            start = time.perf_counter()
            root = Path(tmp)
            figures.update(run(root))
            print(f"{section}: {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for name in ("lenet", "resnet20"):
        for label in ("dense", "pruned90"):
            key = f"{name}_{label}"
            if f"{key}_curvature_s" not in figures:
                continue
            rows.append({
                "": key,
                "curvature s (<=10)": figures[f"{key}_curvature_s"],
                "samples": figures[f"{key}_curvature_samples"],
                "top-1 rel. err (<=1 %)": figures[f"{key}_top1_rel_err"],
                "trace err / se": figures[f"{key}_trace_error_in_se"],
                "landscape 21x21 s (<=60)": figures[f"{key}_landscape_21x21_s"],
                "cka s (<=20)": figures[f"{name}_cka_s"],
            })  # fmt: skip
    if rows:
        print(markdown(rows))
    estimate = figures.get("analyse_80_runs_estimated_s")
    if isinstance(estimate, float):
        print(f"zoo analyse, 80-run 28x28 study (scaled): {estimate / 60:.1f} min")
    measured = figures.get("analyse80_s")
    if isinstance(measured, float):
        print(f"zoo analyse, 80-run 28x28 study (timed): {measured / 60:.1f} min")
    write_json(args.json, figures, args.quick, section=args.only)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
