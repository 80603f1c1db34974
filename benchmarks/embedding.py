"""Aligned UMAP embeddings of dense and pruned features: pruneviz's aligned_umap against umap-learn's
AlignedUMAP on the same data, side by side, for time, trustworthiness and alignment.

Target (BENCHMARKS.md, `geometry` / `realsize`): the aligned UMAP view >= 1.3x faster than the peer's cold
fit (AlignedUMAP, 32 s for 2 x 2k x 64 on the reference machine) with trustworthiness within 0.01.

Two timings, both sides alike:
- cold: the first fit in a fresh Python process (pruneviz, torch and numpy already imported; importing
  umap-learn and numba's compilation inside the timing) -- how `geometry.py` measures `umap_cold_fit_s`;
  each fit runs in a child process of its own, ours and the peer's alternating;
- warm: a fit on fresh data in a process where both have already fitted once (numba compiled), ours and
  the peer's interleaved.
Data: the `geometry.py` shape (2 x 2000 x 64 Gaussian features, the "pruned" copy with noise 0.3), a new
draw for every repeat and the same draw for both sides; and, for a representation with real structure,
sklearn's digits (1797 samples) through a random ReLU layer, dense and 80 % magnitude-pruned. Quality:
sklearn's trustworthiness (n_neighbors 15, as the embedding's) of each view against its own features, and
misalignment (mean distance between a sample's two positions over the RMS radius of the dense view).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

N_NEIGHBORS = 15


def gaussian_pair(n: int, seed: int) -> dict[str, np.ndarray]:
    """The shape of `geometry.py`'s UMAP section: n x 64 Gaussian features and a noisy copy."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 64)).astype(np.float32)
    return {"dense": base, "pruned": base + 0.3 * rng.normal(size=base.shape).astype(np.float32)}


def digits_pair() -> dict[str, np.ndarray]:
    """sklearn's digits through a random ReLU layer (64 -> 48), dense and with 80 % of the weights removed
    by magnitude."""
    from sklearn.datasets import load_digits

    x = load_digits().data
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    w = np.random.default_rng(0).normal(size=(64, 48)) / 8
    pruned = np.where(np.abs(w) >= np.quantile(np.abs(w), 0.8), w, 0.0)
    return {"dense": np.maximum(x @ w, 0), "pruned": np.maximum(x @ pruned, 0)}


def fit(side: str, feats: dict[str, np.ndarray], seed: int) -> list[np.ndarray]:
    """The two layouts from pruneviz (``ours``) or umap-learn's AlignedUMAP (``peer``, called as pruneviz
    called it before: identity relation, random_state=seed)."""
    if side == "ours":
        from pruneviz.analysis.geometry import aligned_umap

        frame = aligned_umap(feats, n_neighbors=N_NEIGHBORS, seed=seed)
        return [frame.loc[frame.model == k, ["x", "y"]].to_numpy() for k in feats]
    import umap

    n = len(next(iter(feats.values())))
    mapper = umap.AlignedUMAP(n_neighbors=N_NEIGHBORS, min_dist=0.1, random_state=seed, transform_seed=seed)
    return list(mapper.fit(list(feats.values()), relations=[{i: i for i in range(n)}]).embeddings_)


def quality(feats: dict[str, np.ndarray], views: list[np.ndarray]) -> dict[str, float]:
    from sklearn.manifold import trustworthiness

    dense, pruned = views
    radius = np.sqrt(((dense - dense.mean(0)) ** 2).sum(1).mean())
    return {
        "trust_dense": float(trustworthiness(feats["dense"], dense, n_neighbors=N_NEIGHBORS)),
        "trust_pruned": float(trustworthiness(feats["pruned"], pruned, n_neighbors=N_NEIGHBORS)),
        "misalignment": float(np.linalg.norm(dense - pruned, axis=1).mean() / radius),
    }


def timed_fit(side: str, feats: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    views = fit(side, feats, seed)
    seconds = time.perf_counter() - t0
    return {"fit_s": seconds, **quality(feats, views)}


def child(side: str, n: int, data_seed: int) -> None:
    """One cold fit in this fresh process; prints its figures as one JSON line."""
    import torch  # noqa: F401  (imported before the timing, as pruneviz imports it)

    import pruneviz.analysis.geometry  # noqa: F401

    warnings.simplefilter("ignore")
    print(json.dumps(timed_fit(side, gaussian_pair(n, data_seed), seed=0)))


def cold_fit(side: str, n: int, data_seed: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", side, str(n), str(data_seed)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(runs: dict[str, list[dict[str, float]]], prefix: str) -> dict[str, float]:
    """Medians of the fit times, means of the quality figures, and the ratio peer / ours."""
    out: dict[str, float] = {}
    for side, rs in runs.items():
        out[f"{prefix}_{side}_s"] = statistics.median(r["fit_s"] for r in rs)
        for key in ("trust_dense", "trust_pruned", "misalignment"):
            out[f"{prefix}_{side}_{key}"] = float(np.mean([r[key] for r in rs]))
    out[f"{prefix}_speedup"] = out[f"{prefix}_peer_s"] / out[f"{prefix}_ours_s"]
    out[f"{prefix}_trust_shortfall"] = max(
        out[f"{prefix}_peer_{v}"] - out[f"{prefix}_ours_{v}"] for v in ("trust_dense", "trust_pruned")
    )
    return out


def warm_and_digits(n: int, repeats: int) -> dict[str, object]:
    """Warm fits in this process, interleaved on fresh Gaussian data, and on the digits features."""
    from pruneviz.analysis.geometry import aligned_umap  # noqa: F401

    for side in ("ours", "peer"):  # compile both first
        fit(side, gaussian_pair(200, 99), seed=0)
    warm: dict[str, list[dict[str, float]]] = {"ours": [], "peer": []}
    for r in range(repeats):
        feats = gaussian_pair(n, 10 + r)
        for side in ("ours", "peer"):
            warm[side].append(timed_fit(side, feats, seed=0))
    digits = digits_pair()
    structured: dict[str, list[dict[str, float]]] = {"ours": [], "peer": []}
    for seed in range(repeats):
        for side in ("ours", "peer"):
            structured[side].append(timed_fit(side, digits, seed=seed))
    return {
        **summary(warm, "warm"),
        **summary(structured, "digits"),
        "digits_points": f"2x{len(digits['dense'])}x48",
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    n = 500 if args.quick else 2000
    repeats = 1 if args.quick else 3
    figures: dict[str, object] = {"points": f"2x{n}x64", "repeats": repeats, "trust_n_neighbors": N_NEIGHBORS}

    # -- cold: each fit in a fresh process, alternating sides, a new draw of the data per repeat --------
    cold: dict[str, list[dict[str, float]]] = {"ours": [], "peer": []}
    for r in range(repeats):
        for side in ("ours", "peer"):
            cold[side].append(cold_fit(side, n, data_seed=r))
    figures.update(summary(cold, "cold"))

    sections = ["cold"]
    if not args.quick:  # quick: the cold fits only (each child also measures its layouts' quality)
        sections += ["warm", "digits"]
        figures.update(warm_and_digits(n, repeats))

    figures["target_cold_speedup_met"] = figures["cold_speedup"] >= 1.3
    if "warm" in sections:
        figures["target_warm_speedup_met"] = figures["warm_speedup"] >= 1.3
    figures["target_trust_met"] = all(figures[f"{p}_trust_shortfall"] <= 0.01 for p in sections)

    rows = []
    labels = {"cold": f"cold fit 2x{n}x64", "warm": f"warm fit 2x{n}x64", "digits": "digits"}
    for prefix in sections:
        label = labels[prefix]
        rows.append(
            {
                "measure": f"{label} (s, median)",
                "pruneviz": figures[f"{prefix}_ours_s"],
                "AlignedUMAP": figures[f"{prefix}_peer_s"],
                "ratio": figures[f"{prefix}_speedup"],
            }
        )
        for key in ("trust_dense", "trust_pruned", "misalignment"):
            rows.append(
                {
                    "measure": f"{label}: {key} (mean)",
                    "pruneviz": figures[f"{prefix}_ours_{key}"],
                    "AlignedUMAP": figures[f"{prefix}_peer_{key}"],
                    "ratio": figures[f"{prefix}_ours_{key}"] - figures[f"{prefix}_peer_{key}"],
                }
            )
    print(markdown(rows))
    print("(ratio: peer / pruneviz for times, pruneviz - peer for quality; targets >= 1.3x and >= -0.01)")
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
