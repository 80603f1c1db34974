"""Compression-identified exemplars (modal + taxicab) from per-sample outputs: pruneviz against plain pandas.

Target (BENCHMARKS.md, `exemplars`): 30 + 30 models × 10k samples in <= 1 s, reading from the outputs
frames included. There is no maintained peer, so the side-by-side baseline is a straightforward pandas
implementation of the same scores (groupby + value_counts + idxmax); both must give identical results.

A second table reads from a zoo whose runs store outputs on 80 evaluation splits (10k test samples
each, as after corruptions and attacks): ``run_exemplars`` reads one split of each run with a parquet
row filter and reads a dense population shared by several comparisons once; the baseline reads whole
outputs files and every population again for every comparison, as the first version did.

The synthetic outputs look like a zoo's: 10 classes; each sample has a difficulty and a confusable class;
dense models are right ~96 % of the time, pruned ones less often on the harder samples, so a few percent
of the samples change their modal label.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, write_json

from pruneviz.analysis.exemplars import exemplar_scores
from pruneviz.data.dataset import Dataset
from pruneviz.models.registry import ModelSpec, build_from_spec
from pruneviz.study import run_exemplars
from pruneviz.study.populations import comparisons, population_outputs
from pruneviz.zoo.store import RunRecord, Zoo

K = 10


def population(prefix: str, models: int, difficulty: np.ndarray, ids, labels, confuser, seed: int):
    """Outputs frames of ``models`` runs shaped like ``pruneviz.train.evaluate``'s (logits included)."""
    rng = np.random.default_rng(seed)
    n = ids.size
    frames = []
    for r in range(models):
        wrong = rng.random(n) < difficulty
        other = np.where(rng.random(n) < 0.7, confuser, rng.integers(0, K, n))
        pred = np.where(wrong, other, labels)
        logits = rng.normal(size=(n, K)).astype(np.float32)
        logits[np.arange(n), pred] += 4.0
        frame = pd.DataFrame(
            {
                "run": f"{prefix}-{r}",
                "sample_id": ids,
                "subset": "test",
                "split": "clean",
                "label": labels,
                "prediction": pred,
                "loss": rng.random(n).astype(np.float32),
                "correct": pred == labels,
                "confidence": rng.random(n).astype(np.float32),
            }
        )
        logit_cols = pd.DataFrame(logits, columns=[f"logit_{k}" for k in range(K)])
        frames.append(pd.concat([frame, logit_cols], axis=1))
    return pd.concat(frames, ignore_index=True)


def synthetic(models: int, n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(5 * n, n, replace=False))  # a test subset: ids with gaps
    labels = rng.integers(0, K, n)
    confuser = (labels + rng.integers(1, K, n)) % K
    hard = rng.beta(0.4, 6.0, n)
    dense = population("dense", models, np.clip(hard, 0, 1), ids, labels, confuser, seed + 1)
    pruned = population("pruned", models, np.clip(1.8 * hard + 0.01, 0, 1), ids, labels, confuser, seed + 2)
    return dense, pruned


def pandas_scores(dense: pd.DataFrame, pruned: pd.DataFrame) -> pd.DataFrame:
    """The same scores written the obvious pandas way (label counts per sample, then row operations)."""

    def counts(frame: pd.DataFrame) -> pd.DataFrame:
        table = frame.groupby("sample_id")["prediction"].value_counts().unstack(fill_value=0)
        return table.reindex(columns=range(K), fill_value=0).sort_index()

    cd, cp = counts(dense), counts(pruned)
    md, mp = cd.sum(axis=1), cp.sum(axis=1)
    label = dense.groupby("sample_id")["label"].first().sort_index()
    out = pd.DataFrame({"sample_id": cd.index, "label": label.to_numpy()})
    out["dense_modal"] = cd.idxmax(axis=1).to_numpy()  # first maximum: the smallest tied class
    out["pruned_modal"] = cp.idxmax(axis=1).to_numpy()
    tie_d = cd.eq(cd.max(axis=1), axis=0).sum(axis=1) > 1
    tie_p = cp.eq(cp.max(axis=1), axis=0).sum(axis=1) > 1
    # the default tie rule: a tied mode in either population is never an exemplar
    out["exemplar"] = (out.dense_modal != out.pruned_modal) & ~(tie_d | tie_p).to_numpy()
    out["taxicab"] = (cd.div(md, axis=0) - cp.div(mp, axis=0)).abs().sum(axis=1).to_numpy()
    # rank on the distance rounded to 12 digits, so float noise in the sum cannot reorder ties
    order = out.assign(t=out.taxicab.round(12)).sort_values(
        ["t", "exemplar", "sample_id"], ascending=[False, False, True]
    )
    out.loc[order.index, "rank"] = np.arange(1, len(out) + 1)
    out["rank"] = out["rank"].astype(np.int64)
    out["dense_accuracy"] = dense.groupby("sample_id")["correct"].mean().sort_index().to_numpy()
    out["pruned_accuracy"] = pruned.groupby("sample_id")["correct"].mean().sort_index().to_numpy()
    out["dense_agreement"] = (cd.max(axis=1) / md).to_numpy()
    out["pruned_agreement"] = (cp.max(axis=1) / mp).to_numpy()
    out["modal_tie"] = (tie_d | tie_p).to_numpy()
    return out


def identical(ours: pd.DataFrame, peer: pd.DataFrame) -> tuple[bool, float]:
    """Same columns, every value within 1e-12 (integers and flags exactly); the largest taxicab gap."""
    gap = float(np.abs(ours.taxicab.to_numpy() - peer.taxicab.to_numpy()).max())
    same = list(ours.columns) == list(peer.columns) and all(
        np.allclose(ours[c].to_numpy(dtype=float), peer[c].to_numpy(dtype=float), rtol=0, atol=1e-12)
        for c in ours.columns
    )
    return same, gap


def stored_zoo(root: Path, *, dense_models: int, sparsities: tuple[float, ...], splits: int, n: int) -> Zoo:
    """A zoo of ``dense_models`` dense runs, each pruned at every sparsity, whose runs store outputs on
    ``n`` test samples × ``splits`` evaluation splits (``clean``, ``s1``, ...). The weights are a tiny
    MLP's; only the outputs files matter here."""
    rng = np.random.default_rng(0)
    data = Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, K, n), name="synthetic")
    zoo = Zoo.create(root)
    key = zoo.add_dataset(data)
    spec = ModelSpec("mlp", (4,), K, {"hidden": [8]})
    model = build_from_spec(spec)
    ids, labels = data.sample_id, data.y.numpy()
    confuser = (labels + 1) % K
    hard = rng.beta(0.4, 6.0, n)
    names = ["clean", *(f"s{i}" for i in range(1, splits))]

    def store(run: str, parent: str | None, sparsity: float, seed: int) -> None:
        one = population(run, 1, np.clip((1 + 2 * sparsity) * hard, 0, 1), ids, labels, confuser, seed)
        outputs = pd.concat([one.drop(columns="run").assign(split=s) for s in names], ignore_index=True)
        record = RunRecord(
            run=run,
            kind="dense" if parent is None else "pruned",
            dataset=key,
            model_spec=spec,
            seed=seed,
            parent=parent,
            method=None if parent is None else "global_magnitude",
            structure=None if parent is None else "unstructured",
            target_sparsity=sparsity,
            sparsity=sparsity,
            schedule={} if parent is None else {"schedule": "one_shot", "seed": 0},
        )
        zoo.add_run(record, model, outputs)

    for d in range(dense_models):
        store(f"dense-{d}", None, 0.0, d)
        for s in sparsities:
            store(f"dense-{d}~{s:g}", f"dense-{d}", s, d + 100)
    return zoo


def whole_file_outputs(zoo: Zoo, runs, split: str, subset: str) -> pd.DataFrame:
    """The first version's read: every run's whole outputs file, then the split selected in pandas."""
    frames = []
    for rid in runs:
        out = zoo.outputs(rid, subset=subset)
        frames.append(out[out["split"] == split])
    return pd.concat(frames, ignore_index=True)


def zoo_figures(quick: bool) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Reading populations from a zoo with 80 stored splits per run: one split vs whole files."""
    dense_models, splits, n = (2, 80, 10_000) if quick else (5, 80, 10_000)
    sparsities = (0.5, 0.9)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        zoo = stored_zoo(
            Path(tmp) / "zoo", dense_models=dense_models, sparsities=sparsities, splits=splits, n=n
        )
        build_s = time.perf_counter() - t0
        dense = [f"dense-{d}" for d in range(dense_models)]
        comps = comparisons(zoo)
        read = interleaved_medians(
            {
                "split": lambda: population_outputs(zoo, dense, split="s7", subset="test"),
                "whole": lambda: whole_file_outputs(zoo, dense, "s7", "test"),
            },
            repeats=3 if quick else 7,
            warmup=1,
        )

        def legacy(split: str) -> None:
            for comp in comps:
                exemplar_scores(
                    whole_file_outputs(zoo, comp.dense, split, "test"),
                    whole_file_outputs(zoo, comp.pruned, split, "test"),
                )

        fresh = iter(f"s{i}" for i in range(1, splits))  # a new split per call: nothing cached yet
        analysis = interleaved_medians(
            {"ours": lambda: run_exemplars(zoo, split=next(fresh)), "legacy": lambda: legacy(next(fresh))},
            repeats=3 if quick else 5,
            warmup=0,
        )
        same = run_exemplars(zoo, split="s3")
        direct = exemplar_scores(
            whole_file_outputs(zoo, comps[0].dense, "s3", "test"),
            whole_file_outputs(zoo, comps[0].pruned, "s3", "test"),
        )
        first = same[same.sparsity == comps[0].sparsity][direct.columns].reset_index(drop=True)
        identical = bool(first.equals(direct))
    tag = f"zoo_{dense_models}x{len(sparsities)}_splits{splits}_n{n}"
    figures = {
        f"{tag}_build_s": build_s,
        f"{tag}_read_split_s": read["split"],
        f"{tag}_read_whole_s": read["whole"],
        f"{tag}_read_speedup": read["whole"] / read["split"],
        f"{tag}_run_exemplars_cold_s": analysis["ours"],
        f"{tag}_whole_file_loop_s": analysis["legacy"],
        f"{tag}_run_exemplars_speedup": analysis["legacy"] / analysis["ours"],
        f"{tag}_identical": identical,
    }
    population_label = f"{dense_models} dense runs, {splits} splits × {n} samples each"
    rows = [
        {
            "task": f"read one split of {population_label}",
            "pruneviz s": read["split"],
            "whole files s": read["whole"],
            "ratio": read["whole"] / read["split"],
        },
        {
            "task": f"run_exemplars, {len(comps)} comparisons sharing them (cold)",
            "pruneviz s": analysis["ours"],
            "whole files s": analysis["legacy"],
            "ratio": analysis["legacy"] / analysis["ours"],
        },
    ]
    return figures, rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    configs = [(30, 10_000)] if args.quick else [(5, 10_000), (30, 10_000), (30, 50_000)]
    repeats = 3 if args.quick else 9
    figures: dict[str, object] = {}
    rows = []
    for models, n in configs:
        dense, pruned = synthetic(models, n)
        pruned = pruned.sample(frac=1.0, random_state=0).reset_index(drop=True)  # row order must not matter
        ours, peer = exemplar_scores(dense, pruned), pandas_scores(dense, pruned)
        same, gap = identical(ours, peer)
        times = interleaved_medians(
            {
                "ours": lambda d=dense, p=pruned: exemplar_scores(d, p),
                "peer": lambda d=dense, p=pruned: pandas_scores(d, p),
            },
            repeats,
            warmup=1,
        )
        tag = f"m{models}_n{n}"
        figures |= {
            f"{tag}_pruneviz_s": times["ours"],
            f"{tag}_pandas_s": times["peer"],
            f"{tag}_speedup": times["peer"] / times["ours"],
            f"{tag}_identical": same,
            f"{tag}_taxicab_max_abs_diff": gap,
            f"{tag}_exemplar_fraction": float(ours.exemplar.mean()),
        }
        rows.append(
            {
                "populations": f"{models} + {models} models × {n} samples",
                "pruneviz s": times["ours"],
                "pandas s": times["peer"],
                "ratio": times["peer"] / times["ours"],
                "identical": same,
                "exemplars": f"{ours.exemplar.mean():.1%}",
            }
        )
    target = figures["m30_n10000_pruneviz_s"]
    figures["target_met"] = bool(target <= 1.0 and figures["m30_n10000_identical"])
    print("## Compression-identified exemplars from outputs frames (10 classes)\n")
    print(markdown(rows))
    verdict = "met" if figures["target_met"] else "missed"
    print(f"\nTarget 30 + 30 models × 10k samples <= 1 s: {target:.3f} s ({verdict})")
    zoo_figs, zoo_rows = zoo_figures(args.quick)
    figures |= zoo_figs
    print("\n## Reading populations from a zoo with 80 stored splits per run\n")
    print(markdown(zoo_rows))
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
