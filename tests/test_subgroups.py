from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from pruneviz.analysis import subgroups as sg
from pruneviz.analysis.calibration import expected_calibration_error
from pruneviz.analysis.subgroups import COLUMNS, disparate_impact, group_metrics, sample_groups
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.study import run_subgroups
from pruneviz.study.populations import COMPARISON_KEYS
from pruneviz.zoo import Zoo, prune_population

K = 4


def outputs(
    correct: np.ndarray,
    *,
    run: str = "r",
    seed: int = 0,
    ids: np.ndarray | None = None,
    label: np.ndarray | None = None,
) -> pd.DataFrame:
    """An outputs frame whose predictions are right exactly where ``correct`` is True (random logits)."""
    n = len(correct)
    rng = np.random.default_rng(seed)
    label = rng.integers(0, K, n) if label is None else label
    prediction = np.where(correct, label, (label + 1 + rng.integers(0, K - 1, n)) % K)
    z = rng.normal(size=(n, K))
    z[np.arange(n), prediction] += 2.0 + rng.random(n)  # the prediction is the argmax of the logits
    frame = pd.DataFrame(
        {
            "run": run,
            "sample_id": np.arange(n) if ids is None else ids,
            "label": label,
            "prediction": prediction,
        }
    )
    return pd.concat([frame, pd.DataFrame(z, columns=[f"logit_{k}" for k in range(K)])], axis=1)


def population(n: int, accuracy: float, *, runs: int, seed: int = 0) -> pd.DataFrame:
    """``runs`` runs on the same samples and labels, each with its own independent mistakes."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, K, n)
    frames = [outputs(rng.random(n) < accuracy, run=f"r{r}", seed=seed + r, label=label) for r in range(runs)]
    return pd.concat(frames, ignore_index=True)


def random_groups(n: int, groups: int, seed: int = 0, column: str = "site") -> pd.DataFrame:
    g = np.random.default_rng(seed).integers(0, groups, n)
    return pd.DataFrame({"sample_id": np.arange(n), column: np.array([f"g{i}" for i in g])})


@pytest.mark.reference
def test_group_metrics_equal_fairlearn_by_group():
    from functools import partial

    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, zero_one_loss

    n = 600
    rng = np.random.default_rng(1)
    out = outputs(rng.random(n) < 0.7, seed=1)
    groups = random_groups(n, 5, seed=2)
    ours = group_metrics(out, groups, group="site", bootstrap=20)
    z = out[[f"logit_{k}" for k in range(K)]].to_numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = list(range(K))
    mf = MetricFrame(
        metrics={
            "nll": partial(log_loss, labels=labels),
            "brier": partial(brier_score_loss, labels=labels, scale_by_half=False),
        },
        y_true=out.label.to_numpy(),
        y_pred=p,
        sensitive_features=groups.site.to_numpy(),
    )
    # accuracy and error rate compare labels with predictions: give fairlearn the predicted classes
    mf_pred = MetricFrame(
        metrics={"accuracy": accuracy_score, "error_rate": zero_one_loss},
        y_true=out.label.to_numpy(),
        y_pred=out.prediction.to_numpy(),
        sensitive_features=groups.site.to_numpy(),
    )
    wide = ours.pivot(index="group", columns="metric", values="value")
    for metric in ("accuracy", "error_rate"):
        ref = mf_pred.by_group[metric]
        np.testing.assert_allclose(wide.loc[ref.index, metric], ref, rtol=0, atol=1e-12)
        assert wide.loc["(all)", metric] == pytest.approx(mf_pred.overall[metric], abs=1e-12)
    for metric in ("nll", "brier"):
        ref = mf.by_group[metric]
        np.testing.assert_allclose(wide.loc[ref.index, metric], ref, rtol=0, atol=1e-12)
        assert wide.loc["(all)", metric] == pytest.approx(mf.overall[metric], abs=1e-12)
    for g, part in out.groupby(groups.site.to_numpy()):
        zg = part[[f"logit_{k}" for k in range(K)]].to_numpy()
        assert wide.loc[g, "ece"] == pytest.approx(expected_calibration_error(zg, part.label), abs=1e-12)
    counts = ours[ours.metric == "accuracy"].set_index("group")["n"]
    assert counts.drop("(all)").to_dict() == groups.site.value_counts().to_dict() and counts["(all)"] == n


@pytest.mark.reference
def test_population_metrics_are_means_over_runs():
    n = 200
    pop = population(n, 0.8, runs=3, seed=4)
    groups = random_groups(n, 3, seed=5)
    ours = group_metrics(pop, groups, group="site", metrics=["accuracy", "ece"], bootstrap=10)
    ours = ours.set_index(["metric", "group"])["value"]
    merged = pop.merge(groups, on="sample_id")
    merged["correct"] = merged.prediction == merged.label
    per_run = merged.groupby(["run", "site"]).correct.mean().groupby("site").mean()
    np.testing.assert_allclose(ours["accuracy"].loc[per_run.index], per_run, atol=1e-12)
    cols = [f"logit_{k}" for k in range(K)]
    ece = merged.groupby(["run", "site"]).apply(
        lambda f: expected_calibration_error(f[cols].to_numpy(), f.label), include_groups=False
    )
    np.testing.assert_allclose(ours["ece"].loc[per_run.index], ece.groupby("site").mean(), atol=1e-12)


@pytest.mark.reference
def test_delta_psi_and_disparity_by_hand():
    ids = np.arange(12)
    groups = pd.DataFrame({"sample_id": ids, "site": list("aaaabbbbcccc")})
    dense = outputs(np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0], bool), run="d")
    pruned = outputs(np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0], bool), run="p", seed=1)
    di = disparate_impact(
        dense, pruned, groups, group="site", min_group_size=1, bootstrap=50, permutations=50
    )
    value = di.set_index(["group", "statistic"])["value"]
    # dense: a 4/4, b 3/4, c 2/4, all 9/12; pruned: a 3/4, b 1/4, c 2/4, all 6/12
    assert value[("a", "delta")] == pytest.approx(0.25)
    assert value[("b", "delta")] == pytest.approx(0.5)
    assert value[("c", "delta")] == pytest.approx(0.0)
    assert value[("(all)", "delta")] == pytest.approx(0.25)
    assert [value[(g, "psi")] for g in "abc"] == pytest.approx([0.0, 0.25, -0.25])
    assert value[("(all)", "disparity")] == pytest.approx(0.5)
    assert value[("b", "dense")] == pytest.approx(0.75) and value[("b", "pruned")] == pytest.approx(0.25)
    assert list(di.columns) == list(COLUMNS)
    assert di.p_value.notna().sum() == 4 and di.significant.notna().sum() == 4
    # error rate: 1 - accuracy, so the same changes with the opposite sign
    err = disparate_impact(
        dense,
        pruned,
        groups,
        group="site",
        metric="error_rate",
        min_group_size=1,
        bootstrap=5,
        permutations=5,
    )
    err_value = err.set_index(["group", "statistic"])["value"]
    for stat, sign, shift in (("dense", -1, 1), ("pruned", -1, 1), ("delta", -1, 0), ("psi", -1, 0)):
        np.testing.assert_allclose(err_value.xs(stat, level=1), shift + sign * value.xs(stat, level=1))
    assert err_value[("(all)", "disparity")] == pytest.approx(0.5)


def test_bootstrap_intervals_contain_the_estimate_shrink_with_n_and_are_seeded():
    def run(n: int, seed: int = 0) -> pd.DataFrame:
        rng = np.random.default_rng(n)
        dense, pruned = outputs(rng.random(n) < 0.9), outputs(rng.random(n) < 0.75, run="p", seed=1)
        return disparate_impact(
            dense, pruned, random_groups(n, 3), group="site", bootstrap=300, permutations=20, seed=seed
        )

    small, large = run(300), run(3000)
    assert ((small.ci_low <= small.value) & (small.value <= small.ci_high)).all()  # Ψ's interval too
    assert ((large.ci_low <= large.value) & (large.value <= large.ci_high)).all()
    rows = small.statistic != "disparity"
    width_small, width_large = (small.ci_high - small.ci_low)[rows], (large.ci_high - large.ci_low)[rows]
    ratio = width_large.to_numpy() / width_small.to_numpy()  # about 1/sqrt(10)
    assert (ratio < 0.75).all() and np.median(ratio) < 0.45
    pd.testing.assert_frame_equal(run(300), small)
    assert not np.allclose(run(300, seed=1).ci_low, small.ci_low)


def test_permutation_null_separates_noise_from_a_planted_gap():
    n = 2000
    rng = np.random.default_rng(7)
    groups = random_groups(n, 5, seed=8)
    dense = outputs(rng.random(n) < 0.9, run="d")
    noise = outputs(rng.random(n) < 0.9, run="p", seed=2)  # same accuracy everywhere, groups irrelevant
    di = disparate_impact(dense, noise, groups, group="site", bootstrap=100, permutations=500, seed=3)
    assert di.loc[di.statistic == "disparity", "p_value"].item() > 0.05
    assert not di.significant.fillna(False).any()
    hit = groups.site.to_numpy() == "g2"
    planted = rng.random(n) < np.where(hit, 0.6, 0.9)  # group g2 loses 30 points of accuracy
    di = disparate_impact(
        dense, outputs(planted, run="p", seed=2), groups, group="site", bootstrap=100, permutations=500
    )
    psi = di[di.statistic == "psi"].set_index("group")
    assert psi.loc["g2", "p_value"] <= 0.01 and psi.loc["g2", "significant"]
    assert psi.loc["g2", "ci_low"] > 0.15
    assert (psi.drop("g2").value < 0).all()  # the others now lose less than the average sample
    assert di.loc[di.statistic == "disparity", "p_value"].item() <= 0.01


def disparity_coverage(rates, size, *, draws=500, bootstrap=1000, permutations=500, seed=0):
    """Coverage of Ψ's interval over ``draws`` data sets with known true Ψ = max(rates) − min(rates).

    Each data set: ``len(rates)`` groups of ``size`` samples; the dense model is always right, the pruned
    one wrong with probability ``rates[g]`` in group g, so Δ_g = rates[g] exactly. Everything is drawn
    for all data sets at once: the paired bootstrap of disparate_impact, given the data, makes each
    group's (wrong, right) counts multinomial over the observed cells; shuffling the group labels makes
    the groups' wrong counts multivariate hypergeometric. Returns (coverage, share of intervals holding
    their estimate)."""
    rng = np.random.default_rng(seed)
    rates = np.asarray(rates, dtype=float)
    g, n = rates.size, rates.size * size
    big = np.ones(g, dtype=bool)
    wrong = rng.binomial(size, rates, size=(draws, g))
    value = sg._disparity(wrong / size, big)
    cells = np.concatenate([wrong, size - wrong], axis=1) / n
    counts = rng.multinomial(n, cells, size=(bootstrap, draws))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = sg._disparity(counts[..., :g] / (counts[..., :g] + counts[..., g:]), big)
    null = np.stack(
        [rng.multivariate_hypergeometric(np.full(g, size), w, size=permutations) for w in wrong.sum(axis=1)],
        axis=1,
    )
    p = sg._p_value(sg._disparity(null / size, big), value)
    lo, hi = sg._disparity_interval(value, boot, p, 0.95)
    truth = rates.max() - rates.min()
    return float(np.mean((lo <= truth) & (truth <= hi))), float(np.mean((lo <= value) & (value <= hi)))


@pytest.mark.reference
@pytest.mark.parametrize(
    "rates, size",
    [
        ([0.05, 0.15, 0.30], 200),  # separated groups: Ψ = 0.25, a smooth statistic
        ([0.02, 0.06, 0.10, 0.10, 0.10], 400),  # three groups tie at the top: Ψ̂ biased up, Ψ = 0.08
        ([0.2, 0.2, 0.2, 0.2], 300),  # no disparity: Ψ = 0 on the boundary (percentile: 0% coverage)
    ],
)
def test_disparity_interval_has_nominal_coverage_where_psi_is_known(rates, size):
    coverage, holds = disparity_coverage(rates, size)
    assert holds == 1.0  # the interval always holds the estimate
    assert abs(coverage - 0.95) <= 0.02, coverage


@pytest.mark.reference
def test_disparity_interval_holds_the_estimate_when_groups_hardly_differ():
    # the reproducer of issue 16: 10k samples, 100 groups, pruning flips 0.5% of predictions at random.
    # Bootstrap spreads of 100 noisy Δ_g all exceed the observed one; the percentile interval was
    # [0.029, 0.065] around Ψ̂ = 0.020, excluding both Ψ̂ and the true Ψ of 0.
    n = 10_000
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, n)
    dense = pd.DataFrame({"run": "d", "sample_id": np.arange(n), "label": label, "prediction": label})
    flip = rng.random(n) < 0.005
    pruned = dense.assign(run="p", prediction=np.where(flip, (label + 1) % 10, label))
    groups = pd.DataFrame({"sample_id": np.arange(n), "g": np.arange(n) % 100})
    di = disparate_impact(dense, pruned, groups, group="g")
    row = di[di.statistic == "disparity"].iloc[0]
    assert row.value == pytest.approx(0.02) and row.p_value > 0.05
    assert row.ci_low == 0.0 and row.value < row.ci_high  # 0 cannot be told apart from noise, nor ruled out
    # a planted gap that the permutation test finds: the interval then stays above 0
    hit = np.arange(n) % 100 == 7
    planted = pruned.assign(prediction=np.where(hit & (rng.random(n) < 0.5), (label + 1) % 10, label))
    row = disparate_impact(dense, planted, groups, group="g").query("statistic == 'disparity'").iloc[0]
    assert row.p_value < 0.01 and 0.0 < row.ci_low < row.value < row.ci_high


def test_tiny_groups_are_flagged_kept_out_of_disparity_and_quiet():
    n = 300
    rng = np.random.default_rng(9)
    groups = random_groups(n, 2, seed=10)
    groups.loc[17, "site"] = "lonely"
    dense, pruned = outputs(rng.random(n) < 0.9), outputs(rng.random(n) < 0.8, run="p", seed=1)
    pruned.loc[pruned.sample_id == 17, "prediction"] = (pruned.label[17] + 1) % K  # lonely pays fully
    dense.loc[dense.sample_id == 17, "prediction"] = dense.label[17]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        di = disparate_impact(dense, pruned, groups, group="site", bootstrap=200, permutations=100)
    lonely = di[di.group == "lonely"].set_index("statistic")
    assert lonely["small"].all() and (lonely["n"] == 1).all()
    assert lonely.loc["delta", "value"] == 1.0
    assert lonely.loc["dense", "ci_low"] == lonely.loc["dense", "ci_high"] == 1.0  # degenerate, not a crash
    delta = di[di.statistic == "delta"].set_index("group")["value"]
    disparity = di.loc[di.statistic == "disparity", "value"].item()
    assert disparity == pytest.approx(abs(delta["g0"] - delta["g1"]))  # the lonely sample is left out
    none_big = disparate_impact(
        dense, pruned, groups, group="site", min_group_size=n, bootstrap=5, permutations=5
    )
    assert np.isnan(none_big.loc[none_big.statistic == "disparity", "value"].item())


def test_bad_inputs_are_refused_with_clear_messages():
    n = 60
    dense, pruned = outputs(np.ones(n, bool)), outputs(np.ones(n, bool), run="p")
    groups = random_groups(n, 2)
    with pytest.raises(
        ValidationError, match=r"'group' parameter of disparate_impact.*Got 'sites'.*did you mean 'site'"
    ):
        disparate_impact(dense, pruned, groups, group="sites")
    with pytest.raises(
        DataError, match=r"a 'site' group for each of the 60 samples.*Got groups for 50 of them"
    ):
        disparate_impact(dense, pruned, groups.iloc[:50], group="site")
    with pytest.raises(DataError, match=r"'pruned' parameter of disparate_impact.*same 60 sample ids"):
        disparate_impact(
            dense, outputs(np.ones(n, bool), run="p", ids=np.arange(n) + 5), groups, group="site"
        )
    bad = pruned.copy()
    bad.loc[[3, 4], "logit_1"] = np.nan
    with pytest.raises(DataError, match=r"disparate_impact \(pruned outputs\).*NaN/inf logits for 2 of 60"):
        disparate_impact(dense, bad, groups, group="site", metric="nll")
    with pytest.raises(
        ValidationError,
        match=r"'metric' parameter of disparate_impact must be one of.*accurcy.*did you mean 'accuracy'",
    ):
        disparate_impact(dense, pruned, groups, group="site", metric="accurcy")
    with pytest.raises(
        ValidationError, match=r"'bootstrap' parameter of disparate_impact must be a positive integer. Got 0"
    ):
        disparate_impact(dense, pruned, groups, group="site", bootstrap=0)
    with pytest.raises(ValidationError, match=r"'permutations' parameter.*positive integer. Got 2.5"):
        disparate_impact(dense, pruned, groups, group="site", permutations=2.5)
    with pytest.raises(
        ValidationError,
        match=r"'confidence' parameter of disparate_impact must be a float in \(0, 1\). Got 1.0",
    ):
        disparate_impact(dense, pruned, groups, group="site", confidence=1.0)
    two_splits = pd.concat(
        [pruned.assign(split="clean"), pruned.assign(split="fog", sample_id=pruned.sample_id + n)]
    )
    with pytest.raises(
        ValidationError, match=r"'dense' parameter.*a single split. Got outputs of the splits"
    ):
        disparate_impact(two_splits, two_splits.assign(run="p"), groups, group="site")
    with pytest.raises(
        ValidationError, match=r"'metrics' parameter of group_metrics must be a metric name, a function"
    ):
        group_metrics(dense, groups, group="site", metrics=[])
    with pytest.raises(ValidationError, match=r"'groups' parameter of group_metrics must be a DataFrame"):
        group_metrics(dense, groups.site.to_numpy(), group="site")
    with pytest.raises(
        ValidationError, match=r"'groups' parameter.*a sample_id column. Got the columns \['site'\]"
    ):
        group_metrics(dense, groups.drop(columns="sample_id"), group="site")
    with pytest.raises(DataError, match=r"'groups' parameter.*one row per sample_id"):
        group_metrics(dense, pd.concat([groups, groups]), group="site")  # fmt: skip


@pytest.fixture(scope="module")
def pruned_copy(small_zoo, tmp_path_factory):
    """A copy of the session's small zoo with one pruned population added."""
    path = tmp_path_factory.mktemp("subgroups") / "zoo"
    shutil.copytree(small_zoo.path, path)
    zoo = Zoo(path)
    prune_population(zoo, methods=["global_magnitude"], sparsities=[0.8], finetune=None, progress=False)
    return zoo


def test_run_subgroups_reads_the_zoo_and_caches(pruned_copy, monkeypatch):
    zoo = pruned_copy
    table = run_subgroups(zoo, bootstrap=100, permutations=100, min_group_size=20)
    assert list(table.columns) == [
        "dataset", "arch", "method", "structure", "sparsity_target", "settings", "dense_runs", "pruned_runs", *COLUMNS,
    ]  # fmt: skip
    assert list(table.columns[: len(COMPARISON_KEYS)]) == list(COMPARISON_KEYS)
    assert set(table.method) == {"global_magnitude"} and set(table.sparsity_target) == {0.8}
    assert set(table.arch) == {"mlp"} and table.settings.nunique() == 1
    assert table.significant.dtype == "boolean"  # NA survives the cache's parquet round trip
    assert (table.significant.isna() == table.p_adjusted.isna()).all() and table.significant.notna().any()
    assert (table.dense_runs == 2).all() and (table.pruned_runs == 2).all()
    runs = zoo.runs()
    dense_acc = runs[runs.kind == "dense"].test_accuracy.mean()
    overall = table[table.group == "(all)"].set_index("statistic")["value"]
    assert overall["dense"] == pytest.approx(dense_acc, abs=1e-9)
    assert overall["pruned"] == pytest.approx(runs[runs.kind != "dense"].test_accuracy.mean(), abs=1e-9)
    assert set(table.group) == {*(str(c) for c in range(10)), "(all)"}
    ds = zoo.dataset(runs.dataset[0])
    assert sample_groups(ds)["class"].astype(str).tolist() == [str(int(c)) for c in ds.y]

    monkeypatch.setattr(sg, "disparate_impact", lambda *a, **k: pytest.fail("recomputed"))
    again = run_subgroups(zoo, bootstrap=100, permutations=100, min_group_size=20)
    pd.testing.assert_frame_equal(again, table)
    # numpy numbers are checked and normalised before the cache key: the cached frame comes back
    again = run_subgroups(
        zoo, bootstrap=np.int64(100), permutations=np.int32(100), min_group_size=np.int64(20), seed=np.int8(0)
    )
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(ValidationError, match=r"'split' parameter of run_subgroups.*Got 'fog'"):
        run_subgroups(zoo, split="fog", bootstrap=10, permutations=10)


def test_run_subgroups_checks_every_setting_before_reading(pruned_copy, monkeypatch):
    import pruneviz.study.populations as populations

    monkeypatch.setattr(populations, "_run_outputs", lambda *a: pytest.fail("read outputs"))
    monkeypatch.setattr(pruned_copy, "cached", lambda *a: pytest.fail("looked up the cache"))
    cases = [
        (
            {"subset": "tset"},
            r"'subset' parameter of run_subgroups must be one of \['test', 'train', 'val'\]",
        ),
        ({"split": ""}, r"'split' parameter of run_subgroups must be the name of an evaluation split"),
        (
            {"bootstrap": np.float64(2.0)},
            r"'bootstrap' parameter of run_subgroups must be a positive integer",
        ),
        ({"permutations": True}, r"'permutations' parameter of run_subgroups must be a positive integer"),
        ({"seed": -1}, r"'seed' parameter of run_subgroups must be an integer >= 0"),
        ({"min_group_size": 0}, r"'min_group_size' parameter of run_subgroups"),
        ({"confidence": 95}, r"'confidence' parameter of run_subgroups must be a float in \(0, 1\)"),
        ({"metric": "acc"}, r"'metric' parameter of run_subgroups must be one of"),
        ({"group": 3}, r"'group' parameter of run_subgroups must be the name of a group column"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValidationError, match=message):
            run_subgroups(pruned_copy, **kwargs)


def test_significance_is_missing_where_nothing_was_tested(monkeypatch):
    n = 400
    rng = np.random.default_rng(11)
    groups = random_groups(n, 4, seed=12)
    dense, pruned = outputs(rng.random(n) < 0.9), outputs(rng.random(n) < 0.6, run="p", seed=1)
    kw = {"group": "site", "bootstrap": 20, "permutations": 50}
    di = disparate_impact(dense, pruned, groups, **kw)
    assert di.significant.dtype == "boolean"
    assert (di.significant.isna() == di.p_adjusted.isna()).all()
    assert di.significant.notna().sum() == 5  # psi of 4 groups and the disparity
    real_holm = sg._holm

    def holm_with_a_gap(p: np.ndarray) -> np.ndarray:
        out = real_holm(p)
        out[1] = np.nan  # an adjusted p-value that could not be computed for group g1
        return out

    monkeypatch.setattr(sg, "_holm", holm_with_a_gap)
    gap = disparate_impact(dense, pruned, groups, **kw)
    psi = gap[gap.statistic == "psi"].set_index("group")
    assert np.isnan(psi.loc["g1", "p_adjusted"]) and psi.loc["g1", "significant"] is pd.NA
    assert psi.drop("g1").significant.notna().all()
    assert (gap.significant.isna() == gap.p_adjusted.isna()).all()
    none_big = disparate_impact(dense, pruned, groups, min_group_size=n, **kw)
    disparity = none_big[none_big.statistic == "disparity"].iloc[0]
    assert np.isnan(disparity.p_adjusted) and disparity.significant is pd.NA
