from __future__ import annotations

import math
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from conftest import FAST, blobs
from pruneviz.analysis import exemplars as ex
from pruneviz.analysis.exemplars import (
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    SUMMARY_METRICS,
    exemplar_flags,
    exemplar_scores,
    exemplar_summary,
)
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.study import run_exemplar_summary, run_exemplars
from pruneviz.study.populations import COMPARISON_KEYS
from pruneviz.zoo import Zoo, build_dense_population, prune_population


def outputs(predictions: dict[str, list[int]], sample_ids, labels, **extra) -> pd.DataFrame:
    """A population's outputs frame: one run per entry of ``predictions``."""
    frames = [
        pd.DataFrame({"run": run, "sample_id": sample_ids, "label": labels, "prediction": pred, **extra})
        for run, pred in predictions.items()
    ]
    return pd.concat(frames, ignore_index=True)


def random_populations(seed: int, m_dense: int, m_pruned: int, n: int, k: int):
    """Two populations on the same shuffled, non-contiguous sample ids, most votes on the label."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(50 * n, n, replace=False)
    labels = rng.integers(0, k, n)

    def population(prefix: str, m: int, noise: float) -> pd.DataFrame:
        preds = {
            f"{prefix}{r}": np.where(rng.random(n) < noise, rng.integers(0, k, n), labels) for r in range(m)
        }
        frame = outputs(preds, ids, labels, split="clean", subset="test")
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)

    return population("d", m_dense, 0.3), population("p", m_pruned, 0.6)


# 3 dense + 2 pruned models, 5 samples, 3 classes; every value below is worked out by hand.
IDS = [10, 11, 12, 13, 14]
LABELS = [0, 1, 2, 0, 1]
DENSE = {"d0": [0, 1, 0, 0, 2], "d1": [0, 1, 1, 1, 2], "d2": [0, 2, 2, 1, 2]}
PRUNED = {"p0": [0, 2, 2, 1, 1], "p1": [0, 1, 2, 0, 0]}


@pytest.mark.reference
def test_hand_computed_scores_ties_and_ranks():
    dense = outputs(DENSE, IDS, LABELS).iloc[::-1]  # row order must not matter
    scores = exemplar_scores(dense, outputs(PRUNED, IDS, LABELS))
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert scores.sample_id.tolist() == IDS and scores.label.tolist() == LABELS
    # dense votes [3,0,0] [0,2,1] [1,1,1] [1,2,0] [0,0,3]; pruned [2,0,0] [0,1,1] [0,0,2] [1,1,0] [1,1,0]
    assert scores.dense_modal.tolist() == [0, 1, 0, 1, 2]  # sample 12: a three-way tie -> class 0
    assert scores.pruned_modal.tolist() == [0, 1, 2, 0, 0]  # ties 1/2 -> 1 and 0/1 -> 0
    assert scores.modal_tie.tolist() == [False, True, True, True, True]
    # 12, 13 and 14 differ only through a tied mode: no exemplar under the default rule
    assert not scores.exemplar.any()
    np.testing.assert_allclose(scores.taxicab, [0, 1 / 3, 4 / 3, 1 / 3, 2], rtol=0, atol=1e-15)
    # 14 (2) > 12 (4/3) > 11 (1/3) > 13 (1/3) > 10 (0): equal distances go to the smaller id
    assert scores["rank"].tolist() == [5, 3, 2, 4, 1]
    # the old rule, on request: ties to the smallest class, then compared
    smallest = exemplar_scores(dense, outputs(PRUNED, IDS, LABELS), ties="smallest")
    assert smallest.exemplar.tolist() == [False, False, True, True, True]
    # 14 (2) > 12 (4/3) > 13 (1/3, exemplar) > 11 (1/3) > 10 (0)
    assert smallest["rank"].tolist() == [5, 4, 2, 3, 1]
    cols = [c for c in SCORE_COLUMNS if c not in ("exemplar", "rank")]
    pd.testing.assert_frame_equal(smallest[cols], scores[cols])  # nothing else depends on the rule
    np.testing.assert_allclose(scores.dense_accuracy, [1, 2 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(scores.pruned_accuracy, [1, 1 / 2, 1, 1 / 2, 1 / 2])
    np.testing.assert_allclose(scores.dense_agreement, [1, 2 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(scores.pruned_agreement, [1, 1 / 2, 1, 1 / 2, 1 / 2])
    swapped = exemplar_scores(outputs(PRUNED, IDS, LABELS), dense)
    np.testing.assert_array_equal(swapped.taxicab, scores.taxicab)  # the distance is symmetric


@pytest.mark.reference
@pytest.mark.parametrize("ties", ["exclude", "smallest"])
@pytest.mark.parametrize("sizes", [(7, 4), (1, 5), (12, 12)])
def test_scores_equal_a_per_sample_loop(sizes, ties):
    dense, pruned = random_populations(3, *sizes, n=60, k=5)
    scores = exemplar_scores(dense, pruned, num_classes=5, ties=ties).set_index("sample_id")
    for sid, row in scores.iterrows():
        d = Counter(dense.prediction[dense.sample_id == sid])
        p = Counter(pruned.prediction[pruned.sample_id == sid])
        m_d, m_p = sum(d.values()), sum(p.values())
        taxicab = sum(abs(d[c] / m_d - p[c] / m_p) for c in range(5))
        assert row.taxicab == pytest.approx(taxicab, abs=1e-12)
        modes_d = [c for c in d if d[c] == max(d.values())]
        modes_p = [c for c in p if p[c] == max(p.values())]
        modal_d, modal_p = min(modes_d), min(modes_p)
        tie = len(modes_d) > 1 or len(modes_p) > 1
        exemplar = modal_d != modal_p and (ties == "smallest" or not tie)
        assert (row.dense_modal, row.pruned_modal, row.exemplar) == (modal_d, modal_p, exemplar)
        assert row.modal_tie == tie
        assert row.pruned_accuracy == pytest.approx(p[row.label] / m_p)
        assert row.dense_agreement == pytest.approx(max(d.values()) / m_d)
    order = sorted(scores.index, key=lambda s: (-scores.taxicab[s], not scores.exemplar[s], s))
    assert scores.loc[order, "rank"].tolist() == list(range(1, 61))


@pytest.mark.reference
def test_single_models_reduce_to_plain_disagreement():
    dense, pruned = random_populations(5, 1, 1, n=200, k=4)
    scores = exemplar_scores(dense, pruned)
    d = dense.set_index("sample_id").prediction.loc[scores.sample_id].to_numpy()
    p = pruned.set_index("sample_id").prediction.loc[scores.sample_id].to_numpy()
    np.testing.assert_array_equal(scores.exemplar, d != p)
    np.testing.assert_array_equal(scores.taxicab, np.where(d != p, 2.0, 0.0))
    assert not scores.modal_tie.any()


@pytest.mark.reference
def test_modal_ties_are_reported_and_never_make_an_exemplar_unless_asked():
    # two dense and two pruned models on 8 samples: with two votes, any split within a population ties
    ids, labels = list(range(8)), [0, 1, 2, 3, 0, 1, 2, 3]
    dense = {"d0": [0, 1, 2, 3, 0, 1, 2, 3], "d1": [0, 1, 2, 3, 1, 1, 2, 0]}
    pruned = {"p0": [0, 2, 2, 3, 0, 1, 3, 1], "p1": [0, 2, 1, 3, 1, 0, 3, 2]}
    # dense modes: 0, 1, 2, 3, {0,1}, 1, 2, {0,3}; pruned: 0, 2, {1,2}, 3, {0,1}, {0,1}, 3, {1,2}
    d, p = outputs(dense, ids, labels), outputs(pruned, ids, labels)
    scores = exemplar_scores(d, p)
    assert scores.modal_tie.tolist() == [False, False, True, False, True, True, False, True]
    # untied and different: 1 (1 vs 2) and 6 (2 vs 3); the tied ones never count by default, not even
    # sample 5 (1 vs {0,1}) or sample 7 ({0,3} vs {1,2}, whose smallest tied classes 0 and 1 differ)
    assert scores.exemplar.tolist() == [False, True, False, False, False, False, True, False]
    old = exemplar_scores(d, p, ties="smallest")
    # smallest class of each tie: 2 -> 1 (vs 2), 4 -> 0 vs 0, 5 -> 1 vs 0, 7 -> 0 vs 1
    assert old.exemplar.tolist() == [False, True, True, False, False, True, True, True]
    assert (scores.exemplar <= old.exemplar).all()  # the default only removes exemplars made by ties
    assert (scores.exemplar & scores.modal_tie).sum() == 0
    # a single model never ties, so one-model populations are unaffected by the rule
    one_d, one_p = outputs({"d0": dense["d0"]}, ids, labels), outputs({"p0": pruned["p0"]}, ids, labels)
    a, b = exemplar_scores(one_d, one_p), exemplar_scores(one_d, one_p, ties="smallest")
    assert not a.modal_tie.any() and a.exemplar.equals(b.exemplar) and a.exemplar.sum() == 3
    summary = exemplar_summary(scores, min_group_size=1).set_index(["attribute", "group", "metric"])
    assert summary.value["(all)", "(all)", "n_exemplars"] == 2


def test_a_bad_ties_rule_is_refused_with_a_clear_message():
    d, p = outputs(DENSE, IDS, LABELS), outputs(PRUNED, IDS, LABELS)
    with pytest.raises(
        ValidationError,
        match=r"^The 'ties' parameter of exemplar_scores must be one of \['exclude', 'smallest'\]\. "
        r"Got 'smalest' instead\. Fix: did you mean 'smallest'\?",
    ):
        exemplar_scores(d, p, ties="smalest")
    for bad in (None, True, "Exclude"):
        with pytest.raises(ValidationError, match=r"'ties' parameter of exemplar_scores must be one of"):
            exemplar_scores(d, p, ties=bad)


def test_a_frame_without_run_column_is_one_model_and_blocks_change_nothing(monkeypatch):
    dense, pruned = random_populations(9, 6, 3, n=97, k=7)
    full = exemplar_scores(dense, pruned)
    monkeypatch.setattr(ex, "_MAX_CELLS", 7 * 10)  # ten samples per block, rows sorted by sample
    pd.testing.assert_frame_equal(exemplar_scores(dense, pruned), full)
    one = pruned[pruned.run == "p0"].drop(columns="run")
    np.testing.assert_array_equal(
        exemplar_scores(dense, one).pruned_modal,
        one.set_index("sample_id").prediction.loc[full.sample_id].to_numpy(),
    )


def test_exemplar_flags_modal_and_top_fraction():
    scores = exemplar_scores(*random_populations(1, 5, 5, n=40, k=3))
    assert exemplar_flags(scores).equals(scores.exemplar)
    top = exemplar_flags(scores, top_fraction=0.07)  # ceil(2.8) = 3 samples
    assert top.sum() == 3 and set(scores["rank"][top]) == {1, 2, 3}
    # q = 1 flags every sample that changed, not the three on which both populations vote alike
    assert (scores.taxicab == 0).sum() == 3
    assert exemplar_flags(scores, top_fraction=1.0).equals((scores.taxicab > 0).rename("exemplar"))
    with pytest.raises(
        ValidationError, match=r"'top_fraction' parameter of exemplar_flags must be .*\(0, 1\]"
    ):
        exemplar_flags(scores, top_fraction=0.0)
    with pytest.raises(DataError, match=r"single comparison .*repeated sample id"):
        exemplar_flags(pd.concat([scores, scores]))


def few_changed(n: int = 100, changed: tuple[int, ...] = (3, 40, 77)):
    """3 dense + 3 pruned models on ``n`` samples that vote identically except on ``changed``."""
    ids, labels = np.arange(1000, 1000 + n), np.arange(n) % 4
    dense = {f"d{r}": labels.copy() for r in range(3)}
    pruned = {f"p{r}": labels.copy() for r in range(3)}
    for i in changed:  # one pruned model (or two) votes another class
        pruned["p0"][i] = (labels[i] + 1) % 4
        if i == 40:
            pruned["p1"][i] = (labels[i] + 1) % 4
    return outputs(dense, ids, labels), outputs(pruned, ids, labels)


@pytest.mark.reference
def test_taxicab_top_fraction_never_flags_samples_that_did_not_change():
    scores = exemplar_scores(*few_changed())
    changed = scores.taxicab > 0
    assert changed.sum() == 3  # samples 3, 40, 77: distances 2/3, 4/3, 2/3
    for q in (0.02, 0.1, 0.5, 1.0):
        flags = exemplar_flags(scores, top_fraction=q)
        assert not flags[~changed].any()  # the lowest sample ids used to fill the quota at distance 0
        assert flags.sum() == min(math.ceil(q * 100), 3)
    assert exemplar_flags(scores, top_fraction=0.02)[changed].sum() == 2  # the cap still applies
    assert scores.sample_id[exemplar_flags(scores, top_fraction=0.01)].tolist() == [1040]

    summary = exemplar_summary(scores, top_fraction=0.1, min_group_size=1)
    value = summary.set_index(["attribute", "group", "metric"]).value
    assert summary.definition.iloc[0] == "taxicab top 0.1"  # what was asked
    assert value["(all)", "(all)", "n_exemplars"] == 3  # what it gave, not ceil(0.1 · 100) = 10
    assert value["(all)", "(all)", "exemplar_rate"] == pytest.approx(0.03)
    assert value["(all)", "(all)", "exemplar_share"] == 1.0
    # samples 3 and 77 are class 3 and 1, sample 40 class 0: 25 samples each
    assert value["class", "0", "exemplar_rate"] == pytest.approx(1 / 25)
    assert value["class", "2", "n_exemplars"] == 0
    # identical populations: nothing changed, so nothing is flagged at any q
    dense, _ = few_changed()
    same = exemplar_summary(exemplar_scores(dense, dense), top_fraction=1.0)
    assert same.set_index(["attribute", "group", "metric"]).value["(all)", "(all)", "n_exemplars"] == 0
    with pytest.raises(ValidationError, match=r"'scores' parameter of exemplar_flags .*Got 'taxicab'"):
        exemplar_flags(scores.drop(columns="taxicab"), top_fraction=0.1)
    assert exemplar_flags(scores.drop(columns="taxicab")).equals(scores.exemplar)  # modal: not needed


@pytest.mark.reference
def test_summary_matches_a_direct_pandas_computation():
    dense, pruned = random_populations(2, 9, 6, n=300, k=4)
    scores = exemplar_scores(dense, pruned)
    rng = np.random.default_rng(0)
    groups = pd.DataFrame({"sample_id": scores.sample_id, "site": rng.choice(["a", "b", "c"], 300)})
    groups = pd.concat([groups, pd.DataFrame({"sample_id": [-1], "site": ["z"]})])  # unscored rows are fine
    summary = exemplar_summary(scores, groups=groups.iloc[::-1])
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(SUMMARY_COLUMNS) == ["definition", "attribute", "group", "metric", "value", "small"]
    assert (summary.definition == "modal").all()
    assert summary.attribute.unique().tolist() == ["(all)", "class", "site"]
    value = summary.set_index(["attribute", "group", "metric"]).value

    df = scores.merge(groups, on="sample_id").pipe(lambda f: f.assign(**{"class": f.label.astype(str)}))
    overall_rate = df.exemplar.mean()
    assert value["(all)", "(all)", "n_exemplars"] == scores.exemplar.sum() > 0
    for column in ("class", "site"):
        for level, part in df.groupby(column):
            got = value[column, str(level)]
            ex_part, rest = part[part.exemplar], part[~part.exemplar]
            assert got["n_samples"] == len(part)
            assert got["exemplar_rate"] == pytest.approx(part.exemplar.mean())
            assert got["over_representation"] == pytest.approx(part.exemplar.mean() / overall_rate)
            assert got["exemplar_share"] == pytest.approx(len(ex_part) / df.exemplar.sum())
            assert got["pruned_accuracy"] == pytest.approx(part.pruned_accuracy.mean())
            for pop in ("dense", "pruned"):
                on = ex_part[f"{pop}_accuracy"].mean() if len(ex_part) else np.nan
                assert got[f"{pop}_accuracy_exemplars"] == pytest.approx(on, nan_ok=True)
                assert got[f"{pop}_accuracy_without_exemplars"] == pytest.approx(
                    rest[f"{pop}_accuracy"].mean()
                )
    # the accuracy of every model in the population, averaged, is the overall population accuracy
    assert value["(all)", "(all)", "dense_accuracy"] == pytest.approx(
        (dense.prediction == dense.label).mean()
    )
    assert not summary.small.any()  # 300 samples, groups of about 75 and 100

    top = exemplar_summary(scores, group_columns=["class"], top_fraction=0.1)
    assert top.definition.iloc[0] == "taxicab top 0.1" and top.attribute.unique().tolist() == [
        "(all)",
        "class",
    ]
    assert top.set_index(["attribute", "group", "metric"]).value["(all)", "(all)", "n_exemplars"] == 30
    assert len(top) == 5 * len(SUMMARY_METRICS)  # all + 4 classes


def test_summary_without_exemplars_reports_nan_ratios():
    dense, _ = random_populations(4, 3, 1, n=20, k=3)
    value = exemplar_summary(exemplar_scores(dense, dense)).set_index(["attribute", "group", "metric"]).value
    assert value["(all)", "(all)", "n_exemplars"] == 0
    assert math.isnan(value["class", "0", "over_representation"])
    assert math.isnan(value["(all)", "(all)", "pruned_accuracy_exemplars"])


def test_summary_flags_small_groups_and_keeps_them():
    scores = exemplar_scores(*random_populations(6, 3, 3, n=100, k=3))
    sites = np.where(np.arange(100) < 8, "rare", np.where(np.arange(100) % 2, "a", "b"))
    groups = pd.DataFrame({"sample_id": scores.sample_id, "site": sites})
    summary = exemplar_summary(scores, groups=groups, group_columns=["site"], min_group_size=np.int64(47))
    n = summary[summary.metric == "n_samples"].set_index("group")
    assert n.value.to_dict() == {"(all)": 100, "a": 46, "b": 46, "rare": 8}  # small groups are kept
    assert n.small.to_dict() == {"(all)": False, "a": True, "b": True, "rare": True}
    assert summary.groupby("group").small.nunique().eq(1).all()  # one flag per group, on all its metrics
    default = exemplar_summary(scores, groups=groups, group_columns=["site"])  # min_group_size=30
    assert default[default.small].group.unique().tolist() == ["rare"]
    with pytest.raises(
        ValidationError, match=r"'min_group_size' parameter of exemplar_summary must be a positive integer"
    ):
        exemplar_summary(scores, min_group_size=0)


def test_bad_inputs_get_clear_errors():
    dense = outputs(DENSE, IDS, LABELS, split="clean", subset="test")
    pruned = outputs(PRUNED, IDS, LABELS, split="clean", subset="test")
    where = "exemplar_scores"
    with pytest.raises(DataError, match=rf"'pruned' parameter of {where} .*same 5 sample ids.*not shared"):
        exemplar_scores(dense, outputs(PRUNED, [10, 11, 12, 13, 99], LABELS))
    with pytest.raises(DataError, match=r"labels disagree for 1 sample\(s\), the first with sample_id 12"):
        exemplar_scores(dense, outputs(PRUNED, IDS, [0, 1, 0, 0, 1]))
    with pytest.raises(DataError, match=r"'dense' parameter .*at least one model.*Got an empty frame"):
        exemplar_scores(dense.iloc[:0], pruned)
    with pytest.raises(DataError, match=r"'pruned' parameter .*predictions in \[0, 3\) \(num_classes=3\)"):
        exemplar_scores(dense, pruned.assign(prediction=pruned.prediction.replace(2, 3)), num_classes=3)
    with pytest.raises(DataError, match=r"'dense' parameter .*labels in \[0, 2\).*Got 1 row"):
        exemplar_scores(dense.iloc[:5], pruned.iloc[:5], num_classes=2)
    with pytest.raises(DataError, match=r"non-negative class indices in its 'prediction' column"):
        exemplar_scores(dense, pruned.assign(prediction=pruned.prediction - 1))
    with pytest.raises(DataError, match=r"integer values in its 'prediction' column"):
        exemplar_scores(dense, pruned.assign(prediction=pruned.prediction + 0.5))
    two_splits = pd.concat([pruned, pruned.assign(split="gaussian_noise")])
    with pytest.raises(DataError, match=r"'pruned' parameter .*single split.*Got 2 splits"):
        exemplar_scores(dense, two_splits)
    with pytest.raises(DataError, match=r"same split as the dense population \('clean'\)"):
        exemplar_scores(dense, pruned.assign(split="gaussian_noise"))
    with pytest.raises(DataError, match=r"one row per sample for every run.*repeated sample ids"):
        exemplar_scores(dense, pd.concat([pruned, pruned]))
    with pytest.raises(ValidationError, match=r"'pruned' parameter .*columns present.*Got 'prediction'"):
        exemplar_scores(dense, pruned.drop(columns="prediction"))
    with pytest.raises(ValidationError, match=r"'dense' parameter .*outputs DataFrame. Got 'dict'"):
        exemplar_scores({"sample_id": IDS}, pruned)

    scores = exemplar_scores(dense, pruned)
    groups = pd.DataFrame({"sample_id": IDS[:4], "site": list("abab")})
    with pytest.raises(DataError, match=r"'groups' parameter .*1 scored sample\(s\) missing.*sample_id 14"):
        exemplar_summary(scores, groups=groups)
    with pytest.raises(ValidationError, match=r"'group_columns' parameter .*Got 'site' instead"):
        exemplar_summary(scores, group_columns=["site"])
    with pytest.raises(
        ValidationError, match=r"'group_columns' .*a list of column names.*Fix: pass \['class'\]"
    ):
        exemplar_summary(scores, group_columns="class")


# -- zoo layer ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo(tmp_path_factory, small_zoo):
    """A copy of the session's small zoo (2 dense MLPs on digits) with pruned children and a second dataset."""
    zoo = Zoo(shutil.copytree(small_zoo.path, tmp_path_factory.mktemp("exemplars") / "z"))
    prune_population(zoo, methods=["global_magnitude"], sparsities=[0.5, 0.9], finetune=None, progress=False)
    build_dense_population(zoo, blobs(), arch="mlp", seeds=1, config=FAST, progress=False)  # another dataset
    return zoo


def test_run_exemplars_end_to_end_and_cached(zoo, monkeypatch):
    runs = zoo.runs()
    digits = runs.dataset[runs.kind != "dense"].iloc[0]  # run ids sort by hash: find digits by its children
    digits_runs = runs[runs.dataset == digits]
    dense = digits_runs.run[digits_runs.kind == "dense"].tolist()
    scores = run_exemplars(zoo, dense=dense)
    assert list(scores.columns) == [*COMPARISON_KEYS, *SCORE_COLUMNS]
    assert set(scores.sparsity_target) == {0.5, 0.9} and (scores.method == "global_magnitude").all()
    assert (scores.arch == "mlp").all() and scores.settings.nunique() == 1
    assert (scores.dense_runs == 2).all() and (scores.pruned_runs == 2).all()
    n_test = (zoo.outputs(dense[0], subset="test").split == "clean").sum()
    assert len(scores) == 2 * n_test
    one = scores[scores.sparsity_target == 0.9].drop(columns=list(COMPARISON_KEYS)).reset_index(drop=True)
    pruned = digits_runs.run[digits_runs.sparsity_target == 0.9].tolist()
    direct = exemplar_scores(
        zoo.outputs(dense, split="clean", subset="test"), zoo.outputs(pruned, split="clean", subset="test")
    )
    pd.testing.assert_frame_equal(one, direct)

    summary = run_exemplar_summary(zoo, dense=dense, top_fraction=0.2)
    assert list(summary.columns) == [*COMPARISON_KEYS, *SUMMARY_COLUMNS]
    assert set(summary.attribute) == {"(all)", "class", "ink"}
    assert (summary.definition == "taxicab top 0.2").all()
    ds = zoo.dataset(digits)
    expected = exemplar_summary(direct, groups=ds.groups.assign(sample_id=ds.sample_id), top_fraction=0.2)
    got = summary[summary.sparsity_target == 0.9].drop(columns=list(COMPARISON_KEYS)).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)

    monkeypatch.setattr(ex, "exemplar_scores", lambda *a, **k: pytest.fail("recomputed cached scores"))
    monkeypatch.setattr(ex, "exemplar_summary", lambda *a, **k: pytest.fail("recomputed a cached summary"))
    pd.testing.assert_frame_equal(run_exemplars(zoo, dense=dense), scores)
    pd.testing.assert_frame_equal(run_exemplar_summary(zoo, dense=dense, top_fraction=0.2), summary)
    # numpy numbers are normalised before the cache key: the same cached frames come back
    again = run_exemplar_summary(
        zoo, dense=dense, top_fraction=np.float64(0.2), min_group_size=np.int64(30), split=np.str_("clean")
    )
    pd.testing.assert_frame_equal(again, summary)
    # a zoo with two datasets works without selecting one (the blobs run has no pruned children)
    pd.testing.assert_frame_equal(run_exemplars(zoo), scores)


def test_run_exemplars_refuses_runs_it_cannot_compare_and_bad_settings(zoo, tmp_path):
    runs = zoo.runs()
    digits = runs.dataset[runs.kind != "dense"].iloc[0]  # the blobs run has no pruned children
    other = runs.run[runs.dataset != digits].tolist()
    pruned = runs.run[runs.kind != "dense"].tolist()
    with pytest.raises(
        ValidationError,
        match=r"'pruned' parameter of run_exemplars must be ids of pruned runs of the dataset and arch of "
        r"some given dense run \(\[\('blobs-",
    ):
        run_exemplars(zoo, dense=other, pruned=pruned)
    with pytest.raises(
        ValidationError,
        match=r"'dense' parameter of run_exemplar_summary must be dense runs with pruned runs to compare "
        r"against. Got 1 dense run\(s\) without pruned children",
    ):
        run_exemplar_summary(zoo, dense=other)  # the blobs run has no pruned children
    with pytest.raises(ValidationError, match=r"'subset' parameter of run_exemplars must be one of"):
        run_exemplars(zoo, subset="tset")
    with pytest.raises(ValidationError, match=r"'split' parameter of run_exemplars must be the name of"):
        run_exemplars(zoo, split=3)
    with pytest.raises(ValidationError, match=r"'split' parameter of run_exemplar_summary .*Got 'blur'"):
        run_exemplar_summary(zoo, dense=runs.run[runs.kind == "dense"][:2].tolist(), split="blur")
    with pytest.raises(ValidationError, match=r"'top_fraction' parameter of run_exemplar_summary"):
        run_exemplar_summary(zoo, top_fraction=1.5)
    with pytest.raises(
        ValidationError,
        match=r"'min_group_size' parameter of run_exemplar_summary must be a positive integer",
    ):
        run_exemplar_summary(zoo, min_group_size=2.0)
    with pytest.raises(ValidationError, match=r"'zoo' parameter of run_exemplars must be a pruneviz Zoo"):
        run_exemplars(str(zoo.path))
    empty = Zoo.create(tmp_path / "empty")
    assert list(run_exemplars(empty).columns) == [*COMPARISON_KEYS, *SCORE_COLUMNS]
    assert list(run_exemplar_summary(empty).columns) == [*COMPARISON_KEYS, *SUMMARY_COLUMNS]
