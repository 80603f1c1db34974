"""Error-type rates, between-group summaries, intersections and custom metrics of the subgroup audit,
checked against fairlearn and scikit-learn on the same predictions, a pandas groupby, and the exact
laws behind the fast resampling."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as flm
from sklearn.metrics import balanced_accuracy_score, precision_score

from pruneviz.analysis import subgroups as sg
from pruneviz.analysis.subgroups import (
    RATE_METRICS,
    SUMMARY_METRICS,
    disparate_impact,
    group_metrics,
    metric_key,
)
from pruneviz.exceptions import DataError, ValidationError

FAIRLEARN_RATES = {
    "selection_rate": flm.selection_rate,
    "tpr": flm.true_positive_rate,
    "fpr": flm.false_positive_rate,
    "fnr": flm.false_negative_rate,
    "tnr": flm.true_negative_rate,
}


def frame(label, prediction, *, run="r", classes=2, seed=0) -> pd.DataFrame:
    """An outputs frame with logits whose argmax is the prediction."""
    n = len(label)
    z = np.random.default_rng(seed).normal(size=(n, classes))
    z[np.arange(n), prediction] += 3.0
    out = pd.DataFrame({"run": run, "sample_id": np.arange(n), "label": label, "prediction": prediction})
    return pd.concat([out, pd.DataFrame(z, columns=[f"logit_{k}" for k in range(classes)])], axis=1)


def uneven(n: int, seed: int, classes: int = 2):
    """Labels, two populations' predictions and uneven groups (sizes from 5 % to 50 %), all random."""
    rng = np.random.default_rng(seed)
    site = rng.choice(["north", "south", "east", "west-and-a-long-name"], n, p=[0.5, 0.3, 0.15, 0.05])
    sex = rng.choice(["f", "m"], n, p=[0.4, 0.6])
    base = np.where(site == "north", 0.6, 0.3)  # groups differ in base rate
    label = (rng.random(n) < base).astype(int) if classes == 2 else rng.integers(0, classes, n)
    flip_d, flip_p = rng.random(n) < 0.2, rng.random(n) < np.where(sex == "f", 0.45, 0.25)
    dense = np.where(flip_d, (label + 1 + rng.integers(0, classes - 1, n)) % classes, label)
    pruned = np.where(flip_p, (label + 1 + rng.integers(0, classes - 1, n)) % classes, label)
    groups = pd.DataFrame({"sample_id": np.arange(n), "site": site, "sex": sex})
    return label, dense, pruned, groups


@pytest.mark.reference
@pytest.mark.parametrize("seed", [0, 1])
def test_rates_and_summaries_equal_fairlearn_on_uneven_groups(seed):
    label, dense, pruned, groups = uneven(3000, seed)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p", seed=1)
    di = disparate_impact(
        d, p, groups, group="site", metric=[*RATE_METRICS, *SUMMARY_METRICS], min_group_size=1, bootstrap=20,
        permutations=20,
    )  # fmt: skip
    sf = groups.site.to_numpy()
    for population, pred in (("dense", dense), ("pruned", pruned)):
        ours = di[(di.statistic == population) & (di.group != "(all)")]
        mf = sg_frame = flm.MetricFrame(
            metrics={
                **FAIRLEARN_RATES,
                "precision": lambda y, yp: precision_score(y, yp, zero_division=np.nan),
                "balanced_accuracy": balanced_accuracy_score,
            },
            y_true=label,
            y_pred=pred,
            sensitive_features=sf,
        )
        for metric in (*RATE_METRICS,):
            got = ours[ours.metric == metric].set_index("group").value
            np.testing.assert_allclose(got.loc[mf.by_group.index], mf.by_group[metric], rtol=0, atol=1e-12)
            assert (
                ours.loc[ours.metric == metric, "class"]
                .eq("" if metric == "balanced_accuracy" else "1")
                .all()
            )
        whole = di[(di.statistic == population) & (di.group == "(all)")].set_index("metric").value
        np.testing.assert_allclose(
            whole[list(RATE_METRICS)], sg_frame.overall[list(RATE_METRICS)], atol=1e-12
        )
        summaries = {
            "demographic_parity_difference": flm.demographic_parity_difference(
                label, pred, sensitive_features=sf
            ),
            "demographic_parity_ratio": flm.demographic_parity_ratio(label, pred, sensitive_features=sf),
            "equalized_odds_difference": flm.equalized_odds_difference(label, pred, sensitive_features=sf),
            "equalized_odds_ratio": flm.equalized_odds_ratio(label, pred, sensitive_features=sf),
            "equal_opportunity_difference": mf.difference()["tpr"],
        }
        for name, ref in summaries.items():
            assert whole[name] == pytest.approx(ref, abs=1e-12), name
    delta = di[(di.statistic == "delta") & (di.group == "(all)")].set_index("metric").value
    dense_s = di[(di.statistic == "dense") & (di.group == "(all)")].set_index("metric").value
    pruned_s = di[(di.statistic == "pruned") & (di.group == "(all)")].set_index("metric").value
    np.testing.assert_allclose(delta, dense_s - pruned_s, atol=1e-15)


@pytest.mark.reference
def test_multiclass_rates_are_one_vs_rest_with_a_macro_mean():
    label, dense, _, groups = uneven(2500, 3, classes=4)
    table = group_metrics(
        frame(label, dense, classes=4), groups, group="sex", metrics=list(RATE_METRICS), min_group_size=1,
        bootstrap=10,
    )  # fmt: skip
    sf = groups.sex.to_numpy()
    for c in range(4):
        mf = flm.MetricFrame(
            metrics=FAIRLEARN_RATES,
            y_true=(label == c).astype(int),  # one-vs-rest: class c against the others
            y_pred=(dense == c).astype(int),
            sensitive_features=sf,
        )
        for metric in FAIRLEARN_RATES:
            got = table[(table.metric == metric) & (table["class"] == str(c))].set_index("group").value
            np.testing.assert_allclose(got.loc[["f", "m"]], mf.by_group[metric], atol=1e-12)
    for metric in ("tpr", "fpr", "precision"):
        rows = table[(table.metric == metric) & (table.group == "f")].set_index("class").value
        assert rows["macro"] == pytest.approx(rows[[str(c) for c in range(4)]].mean(), abs=1e-12)
    assert "macro" not in set(table.loc[table.metric == "selection_rate", "class"])  # always 1 / classes
    ba = table[(table.metric == "balanced_accuracy")].set_index("group").value
    f = sf == "f"
    assert ba["f"] == pytest.approx(balanced_accuracy_score(label[f], dense[f]), abs=1e-12)


@pytest.mark.reference
def test_a_population_rate_is_the_mean_over_its_runs():
    label, dense, pruned, groups = uneven(800, 4)
    runs = pd.concat([frame(label, dense, run="a"), frame(label, pruned, run="b", seed=2)], ignore_index=True)
    table = group_metrics(
        runs, groups, group="site", metrics=["tpr", "precision"], min_group_size=1, bootstrap=5
    )
    for metric, fn in (
        ("tpr", flm.true_positive_rate),
        ("precision", lambda y, p: precision_score(y, p, zero_division=np.nan)),
    ):
        ref = np.mean(
            [
                flm.MetricFrame(
                    metrics=fn, y_true=label, y_pred=pred, sensitive_features=groups.site
                ).by_group
                for pred in (dense, pruned)
            ],
            axis=0,
        )
        got = table[(table.metric == metric) & (table.group != "(all)")].value.to_numpy()
        np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.reference
def test_intersectional_cells_equal_a_pandas_groupby():
    label, dense, pruned, groups = uneven(2000, 5)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p", seed=1)
    di = disparate_impact(
        d, p, groups, group=("site", "sex"), metric=["accuracy", "fpr"], bootstrap=20, permutations=20, min_group_size=50,
    )  # fmt: skip
    assert set(di.attribute) == {"site × sex"}
    both = groups.assign(correct=(dense == label).astype(float), fp=np.where(label == 0, dense == 1, np.nan))
    by = both.groupby(["site", "sex"])
    expected = pd.DataFrame({"accuracy": by.correct.mean(), "fpr": by.fp.mean(), "n": by.size()})
    expected.index = [f"{a} × {b}" for a, b in expected.index]
    rows = di[(di.statistic == "dense") & (di.group != "(all)")]
    for metric in ("accuracy", "fpr"):
        got = rows[rows.metric == metric].set_index("group")
        np.testing.assert_allclose(got.value.loc[expected.index], expected[metric], atol=1e-12)
        assert (got.n.loc[expected.index] == expected.n).all()
        assert (got.small == (got.n < 50)).all()
    assert rows.group.nunique() == len(expected) == 8
    # a small cell is kept in the rows and left out of the disparity
    delta = di[(di.statistic == "delta") & (di.metric == "accuracy") & (di.group != "(all)")].set_index(
        "group"
    )
    big = delta[~delta.small].value
    disparity = di.query("statistic == 'disparity' and metric == 'accuracy'").value.item()
    assert disparity == pytest.approx(big.max() - big.min(), abs=1e-12) and delta.small.any()


def test_a_custom_metric_works_like_a_named_one():
    label, dense, pruned, groups = uneven(600, 6)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p", seed=1)

    def mean_true_probability(y_true, y_pred, y_prob):
        return float(np.mean(y_prob[np.arange(len(y_true)), y_true]))

    di = disparate_impact(
        d, p, groups, group="site", metric=["accuracy", mean_true_probability], bootstrap=30, permutations=30
    )
    rows = di[(di.metric == "mean_true_probability") & (di.statistic == "pruned")].set_index("group")
    z = p[[f"logit_{k}" for k in range(2)]].to_numpy()
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for g in ("north", "south"):
        m = groups.site.to_numpy() == g
        assert rows.loc[g, "value"] == pytest.approx(prob[m][np.arange(m.sum()), label[m]].mean(), abs=1e-12)
    assert rows.loc["(all)", "value"] == pytest.approx(prob[np.arange(600), label].mean(), abs=1e-12)
    assert (rows.ci_low <= rows.value).all() and (rows.value <= rows.ci_high).all()
    assert di[di.metric == "mean_true_probability"].statistic.tolist().count("psi") == 4
    # the cache key changes when the function does, and is stable otherwise
    assert metric_key(mean_true_probability) == metric_key(mean_true_probability)

    def mean_true_probability_2(y_true, y_pred, y_prob):
        return float(np.median(y_prob[np.arange(len(y_true)), y_true]))

    assert (
        metric_key(mean_true_probability).split(":")[1] != metric_key(mean_true_probability_2).split(":")[1]
    )


@pytest.mark.parametrize("metric", ["fpr", "demographic_parity_difference"])
def test_permutation_null_keeps_its_false_positive_rate_on_noise(metric):
    # 40 noise data sets: groups unrelated to either population. A test at 5 % may reject about 2 of
    # them (binomial 40 × 0.05: 5 or more happens 4.8 % of the time); a broken null rejects most.
    rejections = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = 1500
        label = (rng.random(n) < 0.4).astype(int)
        dense = np.where(rng.random(n) < 0.15, 1 - label, label)
        pruned = np.where(rng.random(n) < 0.25, 1 - label, label)
        groups = pd.DataFrame({"sample_id": np.arange(n), "g": rng.integers(0, 4, n)})
        di = disparate_impact(
            frame(label, dense, run="d"), frame(label, pruned, run="p"), groups, group="g", metric=metric,
            bootstrap=10, permutations=199, seed=seed,
        )  # fmt: skip
        stat = "disparity" if metric == "fpr" else "delta"
        rejections += int(di.loc[(di.group == "(all)") & (di.statistic == stat), "p_value"].item() <= 0.05)
    assert rejections <= 5, rejections


def test_fast_resampling_matches_resampling_the_samples():
    # the profile path (multinomial cells, hypergeometric tables) against the sample path on the same data
    label, dense, pruned, groups = uneven(4000, 7)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p", seed=1)
    kw = dict(
        group="site", metric=["tpr", "fpr", "equalized_odds_difference"], bootstrap=2000, permutations=2000
    )
    fast = disparate_impact(d, p, groups, **kw)
    original = sg._profiles
    try:
        sg._profiles = lambda *a, **k: None
        slow = disparate_impact(d, p, groups, **kw)
    finally:
        sg._profiles = original
    np.testing.assert_allclose(fast.value, slow.value, atol=1e-12, equal_nan=True)
    for col in ("ci_low", "ci_high", "null_low", "null_high"):
        np.testing.assert_allclose(fast[col], slow[col], atol=0.012, equal_nan=True)
    tested = fast.p_value.notna()
    np.testing.assert_allclose(fast.p_value[tested], slow.p_value[tested], atol=0.03)


@pytest.mark.reference
def test_shuffled_tables_keep_the_margins_and_the_hypergeometric_mean():
    rng = np.random.default_rng(0)
    counts, sizes = np.array([5, 0, 17, 3]), np.array([10, 1, 14])
    tables = sg._shuffled_tables(counts, sizes, 20_000, rng)
    assert (
        (tables.sum(axis=2) == sizes).all() and (tables.sum(axis=1) == counts).all() and (tables >= 0).all()
    )
    expected = np.outer(sizes, counts) / counts.sum()  # E[cell] of the multivariate hypergeometric law
    np.testing.assert_allclose(tables.mean(axis=0), expected, atol=0.05)


def test_undefined_rates_are_nan_with_a_reason_never_zero():
    label, dense, pruned, groups = uneven(400, 8)
    label = label.copy()
    south = groups.site.to_numpy() == "south"
    label[south] = 0  # no positives in the south: TPR and FNR are undefined there
    pruned = np.where(south, 0, pruned)  # and the pruned model predicts no positive there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        di = disparate_impact(
            frame(label, dense, run="d"), frame(label, pruned, run="p"), groups, group="site",
            metric=["tpr", "precision", "fpr"], bootstrap=20, permutations=20, min_group_size=1,
        )  # fmt: skip
    south_rows = di[di.group == "south"].set_index(["metric", "statistic"])
    for stat in ("dense", "pruned", "delta", "psi"):
        assert np.isnan(south_rows.loc[("tpr", stat), "value"])
        assert "no samples of class 1" in south_rows.loc[("tpr", stat), "note"]
    assert np.isnan(south_rows.loc[("precision", "pruned"), "value"])
    assert "pruned runs predict class 1 for no sample" in south_rows.loc[("precision", "pruned"), "note"]
    assert (
        south_rows.loc[("fpr", "pruned"), "value"] == 0.0 and south_rows.loc[("fpr", "pruned"), "note"] == ""
    )
    assert pd.isna(south_rows.loc[("tpr", "psi"), "significant"])
    north = di[(di.group == "north") & (di.metric == "tpr")]
    assert north.value.notna().all() and (north.note == "").all()
    # the disparity is over the groups where the rate is defined
    tpr_delta = di[(di.metric == "tpr") & (di.statistic == "delta") & (di.group != "(all)")].value.dropna()
    disparity = di.query("metric == 'tpr' and statistic == 'disparity'").value.item()
    assert disparity == pytest.approx(tpr_delta.max() - tpr_delta.min(), abs=1e-12)


def test_bad_fairness_inputs_are_refused_with_clear_messages():
    label, dense, pruned, groups = uneven(300, 9)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p")
    one = groups.assign(site="north")
    with pytest.raises(DataError, match=r"'group' parameter of disparate_impact must be a group column with at "
                       r"least two groups.*Got 'site' with the single group 'north'"):  # fmt: skip
        disparate_impact(d, p, one, group="site")
    with pytest.raises(DataError, match=r"'group' parameter of group_metrics must be an intersection with at "
                       r"least one cell of min_group_size=200.*'site × sex' with 8 cells of at most"):  # fmt: skip
        group_metrics(d, groups, group=["site", "sex"], min_group_size=200)
    with pytest.raises(ValidationError, match=r"'group' parameter.*distinct names.*Got \('site', 'site'\)"):
        disparate_impact(d, p, groups, group=("site", "site"))

    def explodes(y_true, y_pred, y_prob):
        raise ZeroDivisionError("no positives")

    with pytest.raises(
        ValidationError,
        match=r"'metric' parameter of disparate_impact must be a function .* that runs on every group. Got "
        r"explodes raising ZeroDivisionError: no positives on the group 'east'",
    ):
        disparate_impact(d, p, groups, group="site", metric=explodes)

    def vector(y_true, y_pred, y_prob):
        return y_true == y_pred

    with pytest.raises(
        ValidationError, match=r"returning one number. Got vector returning ndarray of shape \(\d+,\)"
    ):
        group_metrics(d, groups, group="site", metrics=[vector])
    with pytest.raises(ValidationError, match=r"'metric' parameter of disparate_impact must be distinct"):
        disparate_impact(d, p, groups, group="site", metric=["tpr", "tpr"])
    with pytest.raises(ValidationError, match=r"'metrics' parameter of group_metrics must be one of.*did you "
                       r"mean 'tpr'"):  # fmt: skip
        group_metrics(d, groups, group="site", metrics=["tpt"])
    with pytest.raises(ValidationError, match=r"'metrics' parameter of group_metrics must be one of"):
        group_metrics(
            d, groups, group="site", metrics=["demographic_parity_difference"]
        )  # needs two populations


@pytest.fixture(scope="module")
def audited(small_zoo, tmp_path_factory):
    """A copy of the session's small zoo (digits, two dense MLPs) with one pruned population."""
    import shutil

    from pruneviz.zoo import Zoo, prune_population

    zoo = Zoo(shutil.copytree(small_zoo.path, tmp_path_factory.mktemp("fair") / "zoo"))
    prune_population(zoo, methods=["global_magnitude"], sparsities=[0.8], finetune=None, progress=False)
    return zoo


def confident_right(y_true, y_pred, y_prob):
    """A metric of one's own: the share of samples right with probability above 0.9."""
    return float(np.mean((y_pred == y_true) & (y_prob.max(axis=1) > 0.9)))


def test_a_custom_metric_round_trips_through_cache_view_and_report(audited, monkeypatch):
    from pruneviz import charts as C
    from pruneviz.study import run_subgroups
    from pruneviz.views import StudyState
    from pruneviz.views.report import audit_context

    kw = dict(group=("class", "ink"), bootstrap=30, permutations=30, min_group_size=5)
    table = run_subgroups(audited, metric=["tpr", confident_right], **kw)
    assert set(table.attribute) == {"class × ink"}
    assert set(table.metric) == {"tpr", "confident_right"}
    assert (table.loc[table.metric == "tpr", "class"] != "").all()  # digits: one-vs-rest, ten classes
    mine = table[
        (table.metric == "confident_right") & (table.group == "(all)") & (table.statistic == "pruned")
    ]
    pruned = audited.runs(kind="pruned")
    out = audited.outputs(pruned.run.tolist(), split="clean", subset="test")
    prob = np.exp(out.filter(like="logit_").to_numpy())
    prob /= prob.sum(axis=1, keepdims=True)
    expected = ((out.prediction == out.label).to_numpy() & (prob.max(axis=1) > 0.9)).mean()
    assert mine.value.item() == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(sg, "disparate_impact", lambda *a, **k: pytest.fail("recomputed a cached frame"))
    again = run_subgroups(audited, metric=["tpr", confident_right], **kw)
    pd.testing.assert_frame_equal(again, table)
    monkeypatch.undo()

    state = StudyState(audited, audit_metrics=["accuracy", confident_right], group="ink")
    assert state.param.metric.objects == ["accuracy", "confident_right"]
    state.metric = "confident_right"
    frame = state.subgroups()
    chart = C.subgroup_chart(frame, metric=state.metric)
    assert chart.usermeta["pruneviz"]["options"]["metric"] == "confident_right"
    assert (
        chart.usermeta["pruneviz"]["rows"] == frame[(frame.metric == "confident_right")].group.nunique() - 1
    )
    context = audit_context(state)
    captions = [t["caption"] for d in context["decisions"] for t in d["tables"]]
    assert any(c.startswith("confident right by ink") for c in captions), captions
    assert any("confident right" in f for d in context["decisions"] for f in d["findings"])


def test_a_study_audits_each_column_and_the_pairs_with_a_cell_large_enough():
    from pruneviz.data import Dataset
    from pruneviz.study.plan import audited_groups

    rng = np.random.default_rng(0)
    n = 400
    groups = {
        "sex": rng.choice(["f", "m"], n),
        "age": rng.choice(["young", "old"], n),
        "site": np.arange(n) % 40,  # 40 sites: every cell of site × anything has at most 5 test samples
    }
    subset = np.where(np.arange(n) % 2 == 0, "test", "train")
    data = Dataset(rng.normal(size=(n, 3)), rng.integers(0, 2, n), groups=groups, subset=subset)
    assert audited_groups(data, None) == ["class", "sex", "age", "site", ("sex", "age")]
    assert audited_groups(data, [["age", "sex"]])[-1] == ("age", "sex")
    assert audited_groups(data, [["sex", "site"]]) == ["class", "sex", "age", "site"]  # all cells small
    assert audited_groups(data, []) == ["class", "sex", "age", "site"]
    with pytest.raises(
        ValidationError, match=r"'intersections' parameter .* group columns .*Got \['sex', 'sx'\]"
    ):
        audited_groups(data, [["sex", "sx"]])


def test_the_charts_show_one_metric_at_a_time_and_the_gaps():
    from pruneviz import charts as C

    label, dense, pruned, groups = uneven(3000, 10)
    d, p = frame(label, dense, run="d"), frame(label, pruned, run="p", seed=1)
    di = disparate_impact(
        d, p, groups, group="site", metric=["accuracy", "tpr", "equalized_odds_difference"], bootstrap=50,
        permutations=50, min_group_size=200,
    )  # fmt: skip
    chart = C.subgroup_chart(di, metric="tpr")
    meta = chart.usermeta["pruneviz"]
    assert meta["options"]["metric"] == "tpr" and meta["options"]["klass"] == "1" and meta["rows"] == 4
    spec = chart.to_dict()
    bars = [layer for layer in spec["spec"]["layer"] if "x" in layer.get("encoding", {})]
    assert bars[0]["encoding"]["x"]["axis"]["labelAngle"] == -40  # "west-and-a-long-name" outgrows its band
    # the axis spans the groups that are not small: the small group's interval is cut at its edge
    y = next(layer["encoding"]["y"] for layer in bars if "scale" in layer["encoding"]["y"])
    domain = y["scale"]["domain"]
    psi = di[(di.metric == "tpr") & (di.statistic == "psi") & (di.group != "(all)")]
    big = psi[~psi.small]
    assert domain[0] <= big.ci_low.min() and big.ci_high.max() <= domain[1]
    assert C.subgroup_chart(di).usermeta["pruneviz"]["options"]["metric"] == "accuracy"  # the first
    with pytest.raises(ValidationError, match=r"'metric' parameter of subgroup_chart must be a metric of"):
        C.subgroup_chart(di, metric="fpr")
    gaps = C.fairness_gap_chart(di)
    assert gaps.usermeta["pruneviz"]["rows"] == 2  # dense and pruned of one gap
    with pytest.raises(
        DataError, match=r"'impact' parameter of fairness_gap_chart must be a frame with rows"
    ):
        C.fairness_gap_chart(di[di.metric == "accuracy"])
