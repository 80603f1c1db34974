"""Feature geometry: CKA against its published formula, a 20 × 20 CKA grid of two ResNet-18-size models,
the first aligned PCA view of 5k points, and AlignedUMAP cold against reopened from the zoo's cache.

Targets (BENCHMARKS.md, `geometry`): CKA within 1e-6 of the reference formula and no NaN for any batch
>= 4; a 20 × 20 layer grid of two ResNet-18-size models on 2k samples <= 60 s; the first aligned PCA
view of 5k points <= 2 s; a cached UMAP reopens in <= 1 s. The peer figure (AlignedUMAP cold fit 32 s
for 2 × 2k × 64) is measured here on the same shape; torch_cka's NaN failures are checked as a
property (every batch size from 4 up).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, timed, write_json

from pruneviz.analysis.activations import activations, classifier_layer
from pruneviz.analysis.geometry import aligned_pca, aligned_umap, cka, cka_grid, default_layers
from pruneviz.models import build_model
from pruneviz.prune import prune_
from pruneviz.testing.references import cka_reference
from pruneviz.zoo import Zoo


def reference_agreement(rng: np.random.Generator) -> tuple[float, bool]:
    """Largest |ours − formula| over random cases, all kernels and estimators; and whether any NaN
    appears for batch sizes 4 … 16, including constant and rank-one features."""
    worst = 0.0
    for n in (8, 40, 120):
        x = rng.normal(size=(n, 20)).astype(np.float32)
        y = (np.tanh(x @ rng.normal(size=(20, 9))) + 0.2 * rng.normal(size=(n, 9))).astype(np.float32)
        for kernel in ("linear", "rbf"):
            for debiased in (False, True):
                ref = cka_reference(x, y, kernel=kernel, unbiased=debiased)
                worst = max(worst, abs(cka(x, y, kernel=kernel, debiased=debiased) - ref))
    nan = False
    for n in range(4, 17):
        for a in (rng.normal(size=(n, 6)), np.ones((n, 6)), np.outer(np.arange(n), np.ones(6))):
            for kernel in ("linear", "rbf"):
                for debiased in (False, True):
                    nan |= not np.isfinite(cka(a, rng.normal(size=(n, 3)), kernel=kernel, debiased=debiased))
    return worst, nan


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {}

    worst, nan = reference_agreement(rng)
    figures["cka_max_abs_diff_vs_formula"] = worst
    figures["cka_nan_for_batch_ge_4"] = nan

    # -- 20 x 20 grid: ResNet-18 dense against a 90 % pruned copy, 2k CIFAR-shaped samples ----------
    n_grid = 256 if args.quick else 2000
    dense = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=0).eval()
    pruned = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, seed=0).eval()
    prune_(pruned, method="global_magnitude", sparsity=0.9)
    layers = [n for n in default_layers(dense) if n != "classifier"][:20]
    x = torch.rand(n_grid, 3, 32, 32)
    grid_mb, t_mb = timed(
        lambda: cka_grid(dense, pruned, x, layers_a=layers, layers_b=layers, debiased=True, batch_size=250),
        1 if args.quick else 3,
    )
    figures.update(
        grid_layers=f"{len(layers)}x{len(layers)}",
        grid_samples=n_grid,
        grid_minibatch_s=t_mb,
        grid_minibatch_nan=bool(grid_mb["value"].isna().any()),
    )
    if not args.quick:
        grid_full, t_full = timed(
            lambda: cka_grid(dense, pruned, x, layers_a=layers, layers_b=layers, reduction="mean"), 1
        )
        figures["grid_full_batch_channel_mean_s"] = t_full
        figures["grid_full_batch_nan"] = bool(grid_full["value"].isna().any())
    t0 = time.perf_counter()
    x_nhwc = x.contiguous(memory_format=torch.channels_last)  # the layout cka_grid feeds the models
    with torch.no_grad():
        for i in range(0, n_grid, 250):
            dense(x_nhwc[i : i + 250])
            pruned(x_nhwc[i : i + 250])
    figures["grid_forward_passes_only_s"] = time.perf_counter() - t0

    # -- first aligned PCA view of 5k points: penultimate features of two models, then PCA+Procrustes -
    n_view = 5000
    cnn_a = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, seed=0).eval()
    cnn_b = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, seed=0).eval()
    prune_(cnn_b, method="global_magnitude", sparsity=0.8)
    xv = torch.rand(n_view, 1, 28, 28)

    def first_view():
        head = classifier_layer(cnn_a)
        feats = {
            "dense": activations(cnn_a, xv, layers=[head], inputs=True)[head],
            "pruned": activations(cnn_b, xv, layers=[head], inputs=True)[head],
        }
        return aligned_pca(feats)

    view, t_view = timed(first_view, 1 if args.quick else 3)
    figures.update(pca_view_points=n_view, pca_view_s=t_view, pca_view_rows=len(view))

    # -- AlignedUMAP: cold fit (the peer figure) and reopened from the zoo's cache -------------------
    n_umap = 500 if args.quick else 2000
    base = rng.normal(size=(n_umap, 64)).astype(np.float32)
    feats = {"dense": base, "pruned": base + 0.3 * rng.normal(size=base.shape).astype(np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Zoo.create(Path(tmp) / "zoo")
        params = {"points": n_umap, "dims": 64}
        t0 = time.perf_counter()
        cold = zoo.cached("embedding", ["dense", "pruned"], params, lambda: aligned_umap(feats, seed=0))
        figures["umap_cold_fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        aligned_umap(feats, seed=0)
        figures["umap_warm_fit_s"] = time.perf_counter() - t0

        def reopen():
            return Zoo(Path(tmp) / "zoo").cached("embedding", ["dense", "pruned"], params, lambda: 1 / 0)

        reopened, t_reopen = timed(reopen, 5)
        figures["umap_cached_reopen_s"] = t_reopen
        figures["umap_reopened_equal"] = bool(reopened.equals(cold))
        figures["umap_points"] = f"2x{n_umap}x64"

    print(
        markdown(
            [
                {"measure": "CKA max |diff| vs formula", "pruneviz": worst, "target": "<= 1e-6"},
                {"measure": "CKA NaN for batch >= 4", "pruneviz": nan, "target": "never"},
                {
                    "measure": f"{len(layers)}x{len(layers)} grid, {n_grid} samples, minibatch (s)",
                    "pruneviz": t_mb,
                    "target": "<= 60",
                },
                {"measure": f"aligned PCA view of {n_view} points (s)", "pruneviz": t_view, "target": "<= 2"},
                {
                    "measure": f"AlignedUMAP cold fit 2x{n_umap}x64 (s)",
                    "pruneviz": figures["umap_cold_fit_s"],
                    "target": "peer 32 s at 2x2000x64",
                },
                {"measure": "cached UMAP reopen (s)", "pruneviz": t_reopen, "target": "<= 1"},
            ]
        )
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
