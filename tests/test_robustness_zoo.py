"""Robustness splits stored in a zoo: attacks, corruptions and calibration on every split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneviz.analysis.attacks import AttackSettings, robust_accuracy
from pruneviz.analysis.runs import run_attacks, run_calibration, run_reliability
from pruneviz.exceptions import ValidationError

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
    import pruneviz.analysis.runs as mod

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
