"""Robustness splits stored in a zoo: attacks, corruptions and calibration on every split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneviz.analysis.attacks import AttackSettings, robust_accuracy
from pruneviz.exceptions import ValidationError
from pruneviz.study.runs import run_attacks, run_calibration, run_reliability

ATTACKS = [AttackSettings("fgsm", eps=0.1), AttackSettings("pgd", eps=0.1, steps=3)]


def _two_runs(zoo) -> list[str]:
    runs = zoo.runs()
    dense = runs[runs.kind == "dense"].run.iloc[0]
    child = runs[(runs.parent == dense) & (runs.method == "lamp")].run.iloc[-1]
    return [dense, child]


def test_attacks_are_stored_as_splits_with_their_settings(study_zoo, monkeypatch):
    runs = _two_runs(study_zoo)
    table = run_attacks(study_zoo, runs=runs, attacks=ATTACKS)
    assert len(table) == 2 * 3 and set(table.split) == {"clean", *[a.split for a in ATTACKS]}
    for rid in runs:
        part = table[table.run == rid].set_index("split")
        assert part.loc["clean", "eps"] == 0 and part.loc[ATTACKS[1].split, "steps"] == 3
        assert part.loc[ATTACKS[1].split, "value"] <= part.loc["clean", "value"]
        stored = study_zoo.splits_of(rid)
        assert {a.split for a in ATTACKS} <= set(stored.split)
    # the stored robust accuracy equals a fresh attack of the same model (deterministic under the seed)
    model = study_zoo.load_model(runs[1])
    data = study_zoo.splits(study_zoo.run(runs[1]).dataset).test
    fresh = robust_accuracy(model, data, attacks=ATTACKS).set_index("split")["value"]
    got = table[table.run == runs[1]].set_index("split")["value"]
    for a in ATTACKS:
        assert got[a.split] == pytest.approx(fresh[a.split], abs=1e-12)
    # a second call reuses the stored splits
    import pruneviz.study.runs as mod

    monkeypatch.setattr(mod, "attack", lambda *a, **k: pytest.fail("attacked again"))
    pd.testing.assert_frame_equal(run_attacks(study_zoo, runs=runs, attacks=ATTACKS), table)


def test_calibration_covers_every_stored_split(study_zoo):
    runs = _two_runs(study_zoo)
    run_attacks(study_zoo, runs=runs[:1], attacks=ATTACKS[:1])
    cal = run_calibration(study_zoo, runs=runs[:1])
    assert {"clean", ATTACKS[0].split} <= set(cal.split)
    assert set(cal.metric) == {"accuracy", "confidence", "ece", "nll", "brier"}
    wide = cal[cal.split == "clean"].set_index("metric")["value"]
    out = study_zoo.outputs(runs[0], split="clean", subset="test")
    assert wide["accuracy"] == pytest.approx(out["correct"].mean())
    rel = run_reliability(study_zoo, runs[0], bins=10)
    assert rel["count"].sum() == len(out) and (rel.run == runs[0]).all()
    with pytest.raises(ValidationError, match="'split' parameter of run_reliability"):
        run_reliability(study_zoo, runs[0], split="fog@9")


def test_stored_outputs_are_immutable(study_zoo):
    rid = _two_runs(study_zoo)[0]
    clean = study_zoo.outputs(rid, split="clean").drop(columns="run")
    with pytest.raises(ValidationError, match="already stored"):
        study_zoo.add_outputs(rid, clean)
    with pytest.raises(ValidationError, match="'attacks' parameter of run_attacks"):
        run_attacks(study_zoo, runs=[rid], attacks=AttackSettings("fgsm", eps=0.1))
    assert np.isfinite(clean["loss"]).all()


def test_corruptions_are_stored_once_and_feed_the_geometry(study_zoo, monkeypatch):
    from pruneviz.analysis.corruptions import corrupt
    from pruneviz.study.runs import (
        run_corruption_errors,
        run_corruptions,
        run_logit_geometry,
        run_logit_geometry_change,
    )

    runs = _two_runs(study_zoo)
    table = run_corruptions(study_zoo, runs=runs, corruptions=["fog", "rotate"], severities=[1, 5])
    assert set(table.split) == {"clean", "fog@1", "fog@5", "rotate@1", "rotate@5"}
    acc = table[table.metric == "accuracy"].set_index(["run", "split"])["value"]
    err = table[table.metric == "error"].set_index(["run", "split"])["value"]
    assert np.allclose(acc + err, 1.0)
    # stored outputs are the model's outputs on the corrupted data
    data = study_zoo.splits(study_zoo.run(runs[1]).dataset).test
    model = study_zoo.load_model(runs[1])
    from pruneviz.train import evaluate

    fresh = evaluate(model, corrupt(data, "rotate", severity=5), split="rotate@5")
    assert acc[(runs[1], "rotate@5")] == pytest.approx(fresh["correct"].mean())
    # the logit geometry of a corruption split recreates exactly the stored corrupted logits
    geo = run_logit_geometry(study_zoo, runs[1], split="fog@5")
    stored = (
        study_zoo.outputs(runs[1], split="fog@5", subset="test").set_index("sample_id").loc[geo.sample_id]
    )
    z = stored[[c for c in stored.columns if c.startswith("logit_")]].to_numpy()
    assert np.allclose(geo["logit"], z[np.arange(len(z)), geo["label"]], atol=1e-4)
    moved = run_logit_geometry_change(study_zoo, runs[1], runs[1], split_after="fog@5")
    assert (moved.split_after == "fog@5").all() and moved["change"].abs().max() > 0
    # mCE relative to the dense parent: the parent itself is unnormalised, the child normalised
    mce = run_corruption_errors(study_zoo, runs=runs, corruptions=["fog", "rotate"], severities=[1, 5])
    child = mce[(mce.run == runs[1]) & (mce.metric == "ce")].set_index("corruption")["value"]
    fog = table.set_index(["run", "split", "metric"])["value"]
    expected = (fog[(runs[1], "fog@1", "error")] + fog[(runs[1], "fog@5", "error")]) / (
        fog[(runs[0], "fog@1", "error")] + fog[(runs[0], "fog@5", "error")]
    )
    assert child["fog"] == pytest.approx(expected)
    assert not mce[mce.run == runs[0]]["normalised"].any()
    import pruneviz.analysis.corruptions as corr_mod

    monkeypatch.setattr(corr_mod, "corrupt", lambda *a, **k: pytest.fail("corrupted again"))
    again = run_corruptions(study_zoo, runs=runs, corruptions=["fog", "rotate"], severities=[1, 5])
    pd.testing.assert_frame_equal(again, table)


def test_corruption_input_errors(study_zoo, tmp_path, tiny):
    from pruneviz.exceptions import ValidationError as VE
    from pruneviz.study.runs import corruption_split, parse_split, run_corruptions
    from pruneviz.train import TrainConfig
    from pruneviz.zoo import Zoo, build_dense_population

    rid = _two_runs(study_zoo)[0]
    with pytest.raises(VE, match=r"'severities' parameter of run_corruptions must be an integer in \[1, 5\]"):
        run_corruptions(study_zoo, runs=[rid], corruptions=["fog"], severities=[6])
    with pytest.raises(VE, match="'name' parameter of .*did you mean 'fog'"):
        run_corruptions(study_zoo, runs=[rid], corruptions=["fgo"], severities=[1])
    assert parse_split(corruption_split("fog", 3, suite="cifar10_c", seed=2)) == ("fog", 3, "cifar10_c", 2)
    with pytest.raises(VE, match="'split' parameter of parse_corruption_split"):
        parse_split("fog@0")
    tab = Zoo.create(tmp_path / "tab")
    build_dense_population(tab, tiny, arch="mlp", seeds=1, config=TrainConfig(epochs=1), progress=False)
    with pytest.raises(VE, match="image corruption was asked of tabular data"):
        run_corruptions(tab, corruptions=["fog"], severities=[1])


def test_repeated_settings_are_evaluated_once_and_duplicates_refused(study_zoo):
    from pruneviz.study.runs import run_corruptions, run_logit_geometry

    rid = _two_runs(study_zoo)[1]
    table = run_corruptions(study_zoo, runs=[rid], corruptions=["fog", "fog"], severities=[2, 2])
    assert (table.split == "fog@2").sum() == 2  # accuracy and error, once
    # the default suite named explicitly writes the same label (no second copy of the data)
    again = run_corruptions(
        study_zoo, runs=[rid], corruptions=["fog"], severities=[np.int64(2)], suite="mnist_c"
    )
    assert set(again.split) == {"clean", "fog@2"}
    splits = study_zoo.splits_of(rid)
    assert (
        splits.loc[splits.split == "fog@2", "samples"]
        == splits.loc[splits.split == "clean", "samples"].iloc[0]
    ).all()
    twice = run_attacks(study_zoo, runs=[rid], attacks=[ATTACKS[0], ATTACKS[0]])
    assert (twice.split == ATTACKS[0].split).sum() == 1
    out = study_zoo.outputs(rid, split="clean", subset="test").drop(columns="run")
    dup = pd.concat([out, out]).assign(split="copy")
    with pytest.raises(ValidationError, match="one row per sample in each split"):
        study_zoo.add_outputs(rid, dup)
    with pytest.raises(ValidationError, match="adversarial inputs are specific to the model attacked"):
        run_logit_geometry(study_zoo, rid, split=ATTACKS[0].split)
    # numpy integers key the cache like plain integers
    first = run_logit_geometry(study_zoo, rid, samples=50)
    assert run_logit_geometry(study_zoo, rid, samples=np.int64(50)).equals(first)
