"""Per-group metrics and bootstrap intervals: pruneviz against fairlearn's MetricFrame side by side.

Targets (BENCHMARKS.md, `subgroups` and `subgroups (error-type)`): error-type rates, DP/EO gaps and an
intersection on 100k samples × 20 groups with 1,000 resamples <= 1 s, equal to fairlearn's (<= 1e-12);
per-group numbers identical to fairlearn's (<= 1e-12) on 10k samples
× 100 groups; a 100-resample bootstrap in <= 0.1 s (>= 50× faster than MetricFrame's ``n_boot=100``); the
permutation null marks a pure-noise gap as not significant. Also reported: the full ``disparate_impact``
(1000 bootstrap resamples + 1000 permutations) on the same data, and ``run_subgroups`` on a zoo whose
runs store 80 evaluation splits of 10k samples (one split read per run, a shared dense population read
once) against reading whole outputs files for every comparison.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, timed, write_json

from pruneviz.analysis.subgroups import disparate_impact, group_metrics, sample_groups
from pruneviz.study import run_subgroups
from pruneviz.study.populations import comparisons

T = TypeVar("T")

N, GROUPS, CLASSES = 10_000, 100, 10


def outputs(correct: np.ndarray, label: np.ndarray, run: str, rng: np.random.Generator) -> pd.DataFrame:
    """An outputs frame (as evaluate writes it) whose predictions are right where ``correct`` is."""
    prediction = np.where(correct, label, (label + 1 + rng.integers(0, CLASSES - 1, N)) % CLASSES)
    z = rng.normal(size=(N, CLASSES)).astype(np.float32)
    z[np.arange(N), prediction] += 3.0
    frame = pd.DataFrame({"run": run, "sample_id": np.arange(N), "label": label, "prediction": prediction})
    return pd.concat([frame, pd.DataFrame(z, columns=[f"logit_{k}" for k in range(CLASSES)])], axis=1)


def zoo_figures(quick: bool) -> tuple[dict[str, object], dict[str, object]]:
    """``run_subgroups`` (100 resamples, 100 permutations) on a zoo with 80 stored splits per run."""
    from exemplars import stored_zoo, whole_file_outputs  # the same synthetic zoo as benchmarks/exemplars.py

    dense_models = 2 if quick else 5
    settings = {"bootstrap": 100, "permutations": 100}
    with tempfile.TemporaryDirectory() as tmp:
        zoo = stored_zoo(Path(tmp) / "zoo", dense_models=dense_models, sparsities=(0.5, 0.9), splits=80, n=N)
        comps = comparisons(zoo)
        groups = sample_groups(zoo.dataset(comps[0].dataset))

        def legacy(split: str) -> None:
            for comp in comps:
                d = whole_file_outputs(zoo, comp.dense, split, "test")
                p = whole_file_outputs(zoo, comp.pruned, split, "test")
                disparate_impact(d, p, groups, **settings)

        fresh = iter(f"s{i}" for i in range(1, 80))  # a new split per call: nothing cached yet
        t = interleaved_medians(
            {
                "ours": lambda: run_subgroups(zoo, split=next(fresh), **settings),
                "legacy": lambda: legacy(next(fresh)),
            },
            repeats=3 if quick else 5,
            warmup=0,
        )
    tag = f"zoo_{dense_models}x2_splits80_n{N}"
    figures = {
        f"{tag}_run_subgroups_cold_s": t["ours"],
        f"{tag}_whole_file_loop_s": t["legacy"],
        f"{tag}_run_subgroups_speedup": t["legacy"] / t["ours"],
    }
    row = {
        "task": f"run_subgroups on a zoo, {len(comps)} comparisons sharing {dense_models} dense runs "
        "(80 splits stored; 100 + 100 draws)",
        "pruneviz s": t["ours"],
        "whole files s": t["legacy"],
        "ratio": t["legacy"] / t["ours"],
    }
    return figures, row


RATES = ["selection_rate", "tpr", "fpr", "fnr", "tnr", "precision", "balanced_accuracy"]
GAPS = ["demographic_parity_difference", "equalized_odds_difference"]
N_RATES, GROUPS_RATES = 100_000, 20


def rate_figures(quick: bool) -> tuple[dict[str, object], list[dict[str, object]]]:
    """Error-type rates, between-group gaps and intersections: 100k binary predictions × 20 groups (and
    an intersection of 5 × 4 columns, 20 cells), 1000 bootstrap resamples, against MetricFrame."""
    from fairlearn import metrics as flm
    from sklearn.metrics import balanced_accuracy_score, precision_score

    rng = np.random.default_rng(1)
    n = N_RATES
    label = (rng.random(n) < 0.35).astype(int)
    g = rng.integers(0, GROUPS_RATES, n)
    a, b = rng.integers(0, 5, n), rng.integers(0, 4, n)
    groups = pd.DataFrame({"sample_id": np.arange(n), "g": g, "a": a, "b": b})

    def frame(flip: float, run: str) -> pd.DataFrame:
        pred = np.where(rng.random(n) < flip, 1 - label, label)
        return pd.DataFrame({"run": run, "sample_id": np.arange(n), "label": label, "prediction": pred})

    dense, pruned = frame(0.1, "d"), frame(0.2, "p")
    y, pred = label, dense["prediction"].to_numpy()
    peer_metrics = {
        "selection_rate": flm.selection_rate,
        "tpr": flm.true_positive_rate,
        "fpr": flm.false_positive_rate,
        "fnr": flm.false_negative_rate,
        "tnr": flm.true_negative_rate,
        "precision": lambda t, p: precision_score(t, p, zero_division=np.nan),
        "balanced_accuracy": balanced_accuracy_score,
    }

    def ours_one() -> pd.DataFrame:
        return group_metrics(dense, groups, group="g", metrics=RATES, bootstrap=1000)

    def ours_both() -> pd.DataFrame:
        return disparate_impact(
            dense, pruned, groups, group="g", metric=[*RATES, *GAPS], bootstrap=1000, permutations=1000
        )

    def ours_cross() -> pd.DataFrame:
        return disparate_impact(
            dense, pruned, groups, group=("a", "b"), metric=[*RATES, *GAPS], bootstrap=1000, permutations=1000
        )

    def peer(resamples: int) -> object:
        kw = {"n_boot": resamples, "ci_quantiles": [0.025, 0.975], "random_state": 0} if resamples else {}
        return flm.MetricFrame(metrics=peer_metrics, y_true=y, y_pred=pred, sensitive_features=g, **kw)

    t = interleaved_medians(
        {"one": ours_one, "both": ours_both, "cross": ours_cross, "peer_point": lambda: peer(0)},
        repeats=3 if quick else 7,
        warmup=1,
    )
    # MetricFrame resamples ~0.5 s each here: time a few and scale the per-resample cost to 1000
    timed_boot = 2 if quick else 5
    _, peer_s = timed(lambda: peer(timed_boot), repeats=1)
    peer_1000 = t["peer_point"] + (peer_s - t["peer_point"]) * 1000 / timed_boot
    ours = ours_one()
    by_group = peer(0).by_group
    diff = 0.0
    for metric in RATES:
        got = ours[(ours.metric == metric) & (ours.group != "(all)")].set_index("group").value
        diff = max(
            diff,
            float(
                np.abs(
                    got.loc[[str(i) for i in by_group.index]].to_numpy() - by_group[metric].to_numpy()
                ).max()
            ),
        )
    both = ours_both()
    dpd = both.query("metric == 'demographic_parity_difference' and statistic == 'dense'").value.item()
    eod = both.query("metric == 'equalized_odds_difference' and statistic == 'dense'").value.item()
    diff = max(
        diff,
        abs(dpd - flm.demographic_parity_difference(y, pred, sensitive_features=g)),
        abs(eod - flm.equalized_odds_difference(y, pred, sensitive_features=g)),
    )
    figures: dict[str, object] = {
        "rates_samples": n,
        "rates_groups": GROUPS_RATES,
        "rates_group_metrics_boot1000_s": t["one"],
        "rates_disparate_impact_boot1000_perm1000_s": t["both"],
        "rates_intersection_5x4_boot1000_perm1000_s": t["cross"],
        "rates_peer_point_s": t["peer_point"],
        "rates_peer_boot1000_s": peer_1000,
        "rates_peer_resamples_timed": timed_boot,
        "rates_boot_speedup": peer_1000 / t["one"],
        "rates_max_abs_diff_vs_peer": diff,
    }
    figures["target_rates_met"] = t["both"] <= 1.0 and t["cross"] <= 1.0 and diff <= 1e-12
    rows = [
        {
            "task": f"7 error-type rates per group, {n} samples × {GROUPS_RATES} groups, 1000 bootstrap "
            f"resamples (fairlearn: {timed_boot} timed, scaled)",
            "pruneviz s": t["one"],
            "fairlearn s": peer_1000,
            "ratio": peer_1000 / t["one"],
        },
        {
            "task": "disparate_impact of the rates + DP/EO gaps, dense vs pruned, 1000 bootstrap + 1000 "
            "permutations",
            "pruneviz s": t["both"],
            "fairlearn s": "n/a",
            "ratio": "n/a",
        },
        {
            "task": "same on an intersection of two columns (5 × 4 cells)",
            "pruneviz s": t["cross"],
            "fairlearn s": "n/a",
            "ratio": "n/a",
        },
    ]
    return figures, rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    label = rng.integers(0, CLASSES, N)
    dense = outputs(rng.random(N) < 0.9, label, "dense", rng)
    noise = outputs(rng.random(N) < 0.9, label, "pruned", rng)  # same accuracy for every group
    groups = pd.DataFrame({"sample_id": np.arange(N), "group": rng.integers(0, GROUPS, N)})
    y, pred, sens = label, dense["prediction"].to_numpy(), groups["group"].to_numpy()

    def ours_point() -> pd.DataFrame:
        return group_metrics(dense, groups, group="group", metrics=["accuracy"], bootstrap=1)

    def peer_point() -> MetricFrame:
        return MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=sens)

    def ours_boot() -> pd.DataFrame:
        return group_metrics(dense, groups, group="group", metrics=["accuracy"], bootstrap=100)

    def peer_boot(resamples: int) -> MetricFrame:
        return MetricFrame(
            metrics=accuracy_score,
            y_true=y,
            y_pred=pred,
            sensitive_features=sens,
            n_boot=resamples,
            ci_quantiles=[0.025, 0.975],
            random_state=0,
        )

    def ours_full() -> pd.DataFrame:
        return disparate_impact(dense, noise, groups, group="group", bootstrap=1000, permutations=1000)

    point_t = interleaved_medians({"ours": ours_point, "peer": peer_point}, repeats=5 if args.quick else 15)
    boot, boot_s = timed(ours_boot, repeats=5 if args.quick else 15)
    full_t = interleaved_medians({"ours": ours_full}, repeats=3 if args.quick else 7, warmup=1)
    # MetricFrame's bootstrap costs ~0.1 s per resample on 2 cores: --quick times 10 resamples and
    # extrapolates linearly (point estimate + 100 × per-resample cost); the full run times n_boot=100.
    peer_resamples = 10 if args.quick else 100
    peer_ci, peer_s = timed(lambda: peer_boot(peer_resamples), repeats=1 if args.quick else 3)
    peer_boot_s = point_t["peer"] + (peer_s - point_t["peer"]) * 100 / peer_resamples

    ours = ours_point().set_index("group")["value"]
    peer = peer_point()
    by_group = peer.by_group
    idx = [str(g) for g in by_group.index]
    diff = np.abs(ours.loc[idx].to_numpy() - by_group.to_numpy()).max()
    boot = boot.set_index("group")
    ci_diff = max(
        np.abs(boot.loc[idx, "ci_low"].to_numpy() - peer_ci.by_group_ci[0].to_numpy()).max(),
        np.abs(boot.loc[idx, "ci_high"].to_numpy() - peer_ci.by_group_ci[1].to_numpy()).max(),
    )
    di = ours_full()
    psi = di[di.statistic == "psi"]
    disparity = di[di.statistic == "disparity"].iloc[0]

    figures: dict[str, object] = {
        "samples": N,
        "groups": GROUPS,
        "per_group_s": point_t["ours"],
        "peer_per_group_s": point_t["peer"],
        "per_group_speedup": point_t["peer"] / point_t["ours"],
        "per_group_max_abs_diff": float(diff),
        "overall_abs_diff": abs(float(ours["(all)"]) - float(peer.overall)),
        "bootstrap_100_s": boot_s,
        "peer_bootstrap_100_s": peer_boot_s,
        "peer_bootstrap_resamples_timed": peer_resamples,
        "bootstrap_speedup": peer_boot_s / boot_s,
        "bootstrap_interval_max_abs_diff_vs_peer": float(ci_diff),
        "disparate_impact_1000_1000_s": full_t["ours"],
        "noise_disparity": float(disparity["value"]),
        "noise_disparity_p_value": float(disparity["p_value"]),
        "noise_disparity_significant": bool(disparity["significant"]),
        "noise_groups_significant": int(psi["significant"].sum()),
        "noise_groups_raw_p_below_0_05": int((psi["p_value"] < 0.05).sum()),
    }
    figures["target_identical_met"] = figures["per_group_max_abs_diff"] <= 1e-12
    figures["target_bootstrap_met"] = boot_s <= 0.1 and figures["bootstrap_speedup"] >= 50
    figures["target_noise_met"] = (
        not figures["noise_disparity_significant"] and not figures["noise_groups_significant"]
    )
    zoo_figs, zoo_row = zoo_figures(args.quick)
    figures |= zoo_figs
    rate_figs, rate_rows = rate_figures(args.quick)
    figures |= rate_figs

    rows = [
        {
            "task": f"per-group accuracy, {N} samples × {GROUPS} groups",
            "pruneviz s": point_t["ours"],
            "fairlearn s": point_t["peer"],
            "ratio": point_t["peer"] / point_t["ours"],
        },
        {
            "task": "same with a 100-resample bootstrap"
            + ("" if peer_resamples == 100 else f" (fairlearn: {peer_resamples} timed, scaled)"),
            "pruneviz s": boot_s,
            "fairlearn s": peer_boot_s,
            "ratio": peer_boot_s / boot_s,
        },
        {
            "task": "disparate_impact, 1000 bootstrap + 1000 permutations",
            "pruneviz s": full_t["ours"],
            "fairlearn s": "n/a",
            "ratio": "n/a",
        },
    ]
    print(f"## Per-group metrics, {N} samples × {GROUPS} groups\n")
    print(markdown(rows))
    print(
        f"\nper-group accuracy vs fairlearn: max |diff| = {diff:.1e}; bootstrap interval ends differ from "
        f"fairlearn's (other resamples) by at most {ci_diff:.3f}"
    )
    print(
        f"pure-noise gap: Ψ = {disparity['value']:.3f}, permutation p = {disparity['p_value']:.3f}; "
        f"{figures['noise_groups_significant']} of {GROUPS} groups significant after Holm "
        f"({figures['noise_groups_raw_p_below_0_05']} with raw p < 0.05)"
    )
    print(f"\n## Error-type rates, {N_RATES} samples × {GROUPS_RATES} groups\n")
    print(markdown(rate_rows))
    print(f"\nrates and DP/EO gaps vs fairlearn: max |diff| = {rate_figs['rates_max_abs_diff_vs_peer']:.1e}")
    print("\n## Reading populations from a zoo with 80 stored splits per run\n")
    print(markdown([zoo_row]))
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
