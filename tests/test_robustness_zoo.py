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


def test_a_sample_budget_names_its_splits_and_evaluates_the_same_samples_for_every_run(study_zoo):
    from pruneviz.analysis.corruptions import corrupt
    from pruneviz.study.runs import (
        budget_subset,
        corruption_split,
        parse_split,
        run_corruptions,
        run_logit_geometry,
        split_samples,
    )
    from pruneviz.train import evaluate

    runs = _two_runs(study_zoo)
    assert corruption_split("fog", 3, seed=1, samples=40) == "fog@3/seed1/n40"
    assert parse_split("fog@3/seed1/n40") == ("fog", 3, None, 1)
    assert split_samples("fog@3/n40") == ("fog@3", 40) and split_samples("fog@3") == ("fog@3", None)
    assert split_samples(ATTACKS[1].split + "-n40") == (ATTACKS[1].split, 40)
    assert split_samples(AttackSettings("fgsm", eps=0.1, clamp=None).split)[1] is None  # "-noclamp"
    test = study_zoo.splits(study_zoo.run(runs[0]).dataset).test
    small, large = budget_subset(test, 40), budget_subset(test, 80)
    assert len(small) == 40 and set(small.sample_id) < set(large.sample_id)  # a larger budget holds it
    assert np.all(np.diff(np.searchsorted(test.sample_id, small.sample_id)) > 0)  # in stored order
    assert budget_subset(test, len(test)) is test and budget_subset(test, None) is test

    table = run_corruptions(study_zoo, runs=runs, corruptions=["fog"], severities=[4], samples=40)
    assert set(table.split) == {"clean", "fog@4/n40"} and (table.samples == 40).all()
    ids = [set(study_zoo.outputs(r, split="fog@4/n40", subset="test").sample_id) for r in runs]
    assert ids[0] == ids[1] == set(small.sample_id)
    # the stored outputs are the model's on the budget's samples, corrupted; clean on the same samples
    model = study_zoo.load_model(runs[1])
    fresh = evaluate(model, corrupt(small, "fog", severity=4), split="x")
    row = table[(table.run == runs[1]) & (table.metric == "accuracy")].set_index("split")
    assert row.loc["fog@4/n40", "value"] == pytest.approx(fresh["correct"].mean())
    clean = evaluate(model, small, split="x")["correct"].mean()
    assert row.loc["clean", "value"] == pytest.approx(clean)
    a = row.loc["fog@4/n40", "value"]
    assert row.loc["fog@4/n40", "se"] == pytest.approx(np.sqrt(a * (1 - a) / 40))
    # features of the split recreate exactly the stored corrupted logits
    geo = run_logit_geometry(study_zoo, runs[1], split="fog@4/n40", samples=40)
    stored = study_zoo.outputs(runs[1], split="fog@4/n40", subset="test").set_index("sample_id")
    z = stored.loc[geo.sample_id, [c for c in stored.columns if c.startswith("logit_")]].to_numpy()
    assert np.allclose(geo["logit"], z[np.arange(len(z)), geo["label"]], atol=1e-4)

    attacked = run_attacks(study_zoo, runs=runs[:1], attacks=ATTACKS[:1], samples=40)
    assert set(attacked.split) == {"clean", ATTACKS[0].split + "-n40"} and (attacked.samples == 40).all()
    with pytest.raises(ValidationError, match="'samples' parameter of run_attacks"):
        run_attacks(study_zoo, runs=runs[:1], attacks=ATTACKS[:1], samples="most")


def test_corruption_items_cover_each_run_once_with_every_corruption_it_lacks(study_zoo, monkeypatch):
    """Items are run-major where a run's suite fits one: each run's outputs are rewritten once, not once
    per corruption; where it does not, each item is one corruption over a batch of runs."""
    import pruneviz.study.declarations as dec
    from pruneviz.analysis.corruptions import corruption_names
    from pruneviz.study.registry import StudySettings

    dataset = study_zoo.runs().dataset.iloc[0]
    frame = study_zoo.runs().query("dataset == @dataset").reset_index(drop=True)
    settings = StudySettings(overrides={"corruptions": {"samples": 23}})  # a budget no other test stores
    names = corruption_names("mnist_c")
    rows = len(settings.value(dec.CORRUPTIONS, "severities")) * 23
    monkeypatch.setattr(dec, "_ITEM_ROWS", 3 * len(names) * rows)  # room for three runs' suites
    targets = dec.plan_corruptions(study_zoo, frame, dataset, settings)
    assert targets and all(t.extra["corruptions"] == names and len(t.runs) <= 3 for t in targets)
    assert sorted(r for t in targets for r in t.runs) == sorted(frame.run)
    monkeypatch.setattr(dec, "_ITEM_ROWS", 2 * rows)  # not even one run's suite: one corruption each
    targets = dec.plan_corruptions(study_zoo, frame, dataset, settings)
    assert all(len(t.extra["corruptions"]) == 1 and len(t.runs) <= 2 for t in targets)
    pairs = sorted((r, t.extra["corruptions"][0]) for t in targets for r in t.runs)
    assert pairs == sorted((r, n) for r in frame.run for n in names)


def test_auto_budgets_follow_the_model_cost_and_the_planners_agree(study_zoo, monkeypatch):
    import pruneviz.study.runs as mod
    from pruneviz.study.declarations import CORRUPTIONS, plan_attacks, plan_corruptions
    from pruneviz.study.registry import StudySettings

    runs = _two_runs(study_zoo)
    dataset = study_zoo.run(runs[0]).dataset
    frame = study_zoo.runs().set_index("run").loc[runs].reset_index()
    test = len(study_zoo.splits(dataset).test)
    # small models on small data: the whole test set
    assert mod._robustness_samples(study_zoo, runs[0], "test", "auto", 75, "t") is None
    # a model too costly for the whole set: the largest affordable power of two from the minimum up
    monkeypatch.setattr(mod, "_ROBUSTNESS_MINIMUM", 16)
    monkeypatch.setattr(mod, "_ROBUSTNESS_SECONDS", 1e-6)
    assert mod._robustness_samples(study_zoo, runs[0], "test", "auto", 75, "t") == 16
    monkeypatch.setattr(mod, "_ROBUSTNESS_SECONDS", 1e-9 * 75 * 1e3)
    n = mod._robustness_samples(study_zoo, runs[0], "test", "auto", 75, "t")
    assert n is None or (16 <= n < test and n & (n - 1) == 0)
    monkeypatch.setattr(mod, "_ROBUSTNESS_SECONDS", 1e-6)
    settings = StudySettings()
    assert plan_corruptions(study_zoo, frame, dataset, settings)  # nothing stored under /n16 yet
    mod.run_corruptions(study_zoo, runs=runs, severities=settings.value(CORRUPTIONS, "severities"))
    assert plan_corruptions(study_zoo, frame, dataset, settings) == []
    assert {t.runs for t in plan_attacks(study_zoo, frame, dataset, settings)} == {(r,) for r in runs}
    table = mod.run_attacks(study_zoo, runs=runs)
    assert (table.samples == 16).all() and plan_attacks(study_zoo, frame, dataset, settings) == []


def test_corruption_models_run_channels_last_only_where_that_gives_the_same_logits():
    import torch
    from torch import nn

    from pruneviz.data import Dataset
    from pruneviz.models.layout import inference_layout

    class Viewed(nn.Module):  # flattens with .view, which channels-last activations do not allow
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).view(x.shape[0], -1))

    torch.manual_seed(0)
    data = Dataset(torch.rand(6, 3, 8, 8), torch.arange(6) % 5, modality="image")
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():
        before = plain(data.x)
    moved = inference_layout(plain, data.x)
    assert moved[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(moved(data.x), before, rtol=1e-5, atol=1e-6)
    viewed = inference_layout(Viewed(), data.x)
    assert viewed.conv.weight.is_contiguous()
    assert viewed(data.x).shape == (6, 5)  # still runs
    table = Dataset(torch.rand(6, 4), torch.arange(6) % 2, modality="tabular")
    mlp = nn.Sequential(nn.Linear(4, 2))
    assert inference_layout(mlp, table.x) is mlp
