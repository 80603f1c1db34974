from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FAST
from pruneviz.exceptions import CheckpointError, ValidationError, ZooError, ZooSchemaError
from pruneviz.models import ModelSpec, build_model
from pruneviz.prune import Masks
from pruneviz.train import evaluate
from pruneviz.zoo import RunRecord, Zoo, build_dense_population
from pruneviz.zoo import store as store_module


def test_small_zoo_contents(small_zoo, digits):
    runs = small_zoo.runs()
    assert len(runs) == 2 and set(runs.kind) == {"dense"} and runs.seed.tolist() == [0, 1]
    assert {"test_accuracy", "val_accuracy", "params", "train_s"} <= set(runs.columns)
    assert small_zoo.verify().empty
    out = small_zoo.outputs(subset="test")
    assert set(out.run) == set(runs.run) and (out.split == "clean").all()
    splits = small_zoo.splits(runs.dataset[0])
    assert len(out) == 2 * len(splits.test)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(digits)


def test_reloaded_model_reproduces_stored_outputs(small_zoo):
    rid = small_zoo.run_ids()[0]
    record = small_zoo.run(rid)
    model = small_zoo.load_model(rid)
    test = small_zoo.splits(record.dataset).test
    fresh = evaluate(model, test, subset="test")
    stored = small_zoo.outputs(rid, subset="test").drop(columns="run").reset_index(drop=True)
    pd.testing.assert_frame_equal(fresh, stored)
    assert record.metrics["test_accuracy"] == pytest.approx(stored["correct"].mean())


def test_stored_dataset_round_trips(small_zoo, digits):
    key = small_zoo.datasets().dataset[0]
    back = small_zoo.dataset(key)
    assert torch.equal(back.x, digits.x) and torch.equal(back.y, digits.y)
    assert back.groups["ink"].tolist() == digits.groups["ink"].tolist()
    assert back.info.class_names == digits.info.class_names
    expected = digits.split(seed=0, val_fraction=0.1, test_fraction=0.2)
    for mine, theirs in zip(small_zoo.splits(key), expected, strict=True):
        np.testing.assert_array_equal(np.sort(mine.sample_id), np.sort(theirs.sample_id))


def test_resume_skips_finished_runs(small_zoo, digits, monkeypatch):
    import pruneviz.zoo.build as build

    monkeypatch.setattr(build, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    table = build_dense_population(small_zoo, digits, arch="mlp", seeds=2, config=FAST, progress=False)
    assert len(table) == 2 and len(small_zoo.run_ids()) == 2


def test_runs_filters_and_unknown_columns(small_zoo):
    assert len(small_zoo.runs(seed=1)) == 1
    assert small_zoo.runs(kind="pruned").empty
    with pytest.raises(ValidationError, match="a column to filter on"):
        small_zoo.runs(sparsity_ratio=0.5)
    with pytest.raises(ZooError, match="the id of a run in this zoo"):
        small_zoo.run("nope")


# -- opening ------------------------------------------------------------------------------------
def test_opening_what_is_not_a_zoo(tmp_path):
    with pytest.raises(ZooError, match=r"does not exist. Fix: build one with `pruneviz zoo build"):
        Zoo(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ZooError, match=r"is not a pruneviz zoo \(no zoo.sqlite"):
        Zoo(tmp_path / "plain")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zoo.sqlite").write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ZooError, match="corrupt or not a pruneviz index"):
        Zoo(tmp_path / "bad")


def test_newer_schema_is_refused(tmp_path):
    zoo = Zoo.create(tmp_path / "z")
    con = sqlite3.connect(zoo.path / "zoo.sqlite")
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ZooSchemaError, match=r"schema version 99.*Fix: upgrade pruneviz"):
        Zoo(zoo.path)


def test_create_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "f.txt").write_text("mine")
    with pytest.raises(ZooError, match="a new or empty folder"):
        Zoo.create(tmp_path)


# -- writing ------------------------------------------------------------------------------------
def make_run(zoo: Zoo, tiny, seed: int = 0, **changes) -> tuple[RunRecord, torch.nn.Module, pd.DataFrame]:
    key = zoo.add_dataset(tiny)
    spec = ModelSpec("mlp", (4,), 3, {"hidden": [8]})
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=[8], seed=seed)
    fields = {"run": f"mlp-s{seed}", "kind": "dense", "dataset": key, "model_spec": spec, "seed": seed}
    record = RunRecord(**{**fields, **changes})
    return record, model, evaluate(model, zoo.splits(key).test)


def test_runs_are_immutable_and_links_are_checked(tmp_path, tiny):
    zoo = Zoo.create(tmp_path / "z")
    record, model, out = make_run(zoo, tiny)
    zoo.add_run(record, model, out)
    with pytest.raises(ValidationError, match="runs are immutable"):
        zoo.add_run(record, model, out)
    orphan, model2, out2 = make_run(zoo, tiny, seed=1, parent="no-such-run", kind="pruned")
    with pytest.raises(ValidationError, match="'record.parent' parameter"):
        zoo.add_run(orphan, model2, out2)
    child = RunRecord(**{**orphan.__dict__, "parent": record.run, "run": "child"})
    zoo.add_run(child, model2, out2, masks=Masks({"features.1": torch.ones(8, 4, dtype=torch.bool)}))
    assert zoo.runs(kind="pruned").parent.tolist() == [record.run]
    assert zoo.masks("child")["features.1"].dtype == torch.bool and len(zoo.masks(record.run)) == 0


def test_nan_weights_are_refused(tmp_path, tiny):
    zoo = Zoo.create(tmp_path / "z")
    record, model, out = make_run(zoo, tiny)
    with torch.no_grad():
        model.classifier.bias[0] = float("inf")
    with pytest.raises(ValidationError, match=r"finite weights.*classifier.bias"):
        zoo.add_run(record, model, out)
    assert zoo.run_ids() == [] and list((zoo.path / "runs").iterdir()) == []


def test_a_crash_between_rename_and_commit_is_recovered(tmp_path, tiny, monkeypatch):
    zoo = Zoo.create(tmp_path / "z")
    record, model, out = make_run(zoo, tiny)

    def crash(self, rec):
        raise KeyboardInterrupt("killed before the index row was written")

    monkeypatch.setattr(Zoo, "_insert_run", crash)
    with pytest.raises(KeyboardInterrupt):
        zoo.add_run(record, model, out)
    monkeypatch.undo()
    assert not zoo.has_run(record.run) and (zoo.path / "runs" / record.run).is_dir()
    zoo.add_run(record, model, out)  # the rerun replaces the orphan folder
    assert zoo.run_ids() == [record.run] and zoo.verify().empty


def test_a_crash_while_writing_files_leaves_no_trace(tmp_path, tiny, monkeypatch):
    zoo = Zoo.create(tmp_path / "z")
    record, model, out = make_run(zoo, tiny)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "write_json_atomic", broken)
    with pytest.raises(OSError, match="disk full"):
        zoo.add_run(record, model, out)
    assert list((zoo.path / "runs").iterdir()) == [] and zoo.run_ids() == []


def test_leftovers_of_killed_writers_are_swept_by_the_next_writer_only(tmp_path, tiny):
    zoo = Zoo.create(tmp_path / "z")
    stale = zoo.path / "runs" / ".tmp-cnn-s0-deadbeef"
    stale.mkdir()
    Zoo(zoo.path)  # opening is read-only
    assert stale.exists()
    record, model, out = make_run(zoo, tiny)
    zoo.add_run(record, model, out)
    assert not stale.exists() and zoo.run_ids() == [record.run]


def test_a_create_killed_before_its_index_is_resumable(tmp_path):
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / ".zoo.sqlite.0123.tmp").write_bytes(b"half")
    zoo = Zoo.create(tmp_path / "z")
    assert zoo.runs().empty and not (tmp_path / "z" / ".zoo.sqlite.0123.tmp").exists()


def test_truncated_weights_in_a_zoo_are_reported(tmp_path, tiny):
    zoo = Zoo.create(tmp_path / "z")
    record, model, out = make_run(zoo, tiny)
    zoo.add_run(record, model, out)
    weights = zoo.path / "runs" / record.run / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        zoo.load_model(record.run)
    problems = zoo.verify()
    assert problems.name.tolist() == [record.run] and problems.path[0] == str(weights)
    assert "sha256" in problems.problem[0] and "rebuild the run" in problems.fix[0]


def test_analysis_cache_computes_once(tmp_path):
    zoo = Zoo.create(tmp_path / "z")
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"metric": ["cka"], "value": [0.5]})

    first = zoo.cached("cka", ["a", "b"], {"kernel": "linear"}, compute)
    second = Zoo(zoo.path).cached("cka", ["a", "b"], {"kernel": "linear"}, compute)
    zoo.cached("cka", ["a", "b"], {"kernel": "rbf"}, compute)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(first, second)
    with pytest.raises(ValidationError, match="JSON-serialisable"):
        zoo.cached("cka", ["a"], {"fn": object()}, compute)


def test_run_json_mirrors_the_index(small_zoo):
    rid = small_zoo.run_ids()[0]
    on_disk = json.loads((small_zoo.path / "runs" / rid / "run.json").read_text())
    assert on_disk == small_zoo.run(rid).to_json()


def test_runs_are_listed_by_id_whatever_order_they_were_stored_in(study_zoo):
    # stored: both dense parents first, then their pruned children (prune_population's order)
    import sqlite3

    with sqlite3.connect(study_zoo.path / "zoo.sqlite") as con:
        stored = [r for (r,) in con.execute("SELECT run FROM runs ORDER BY rowid")]
    ids = study_zoo.run_ids()
    assert stored != ids and sorted(stored) == ids == list(study_zoo.runs()["run"])
    runs = study_zoo.runs()
    position = {r: i for i, r in enumerate(ids)}
    pruned = runs[runs["kind"] != "dense"]
    assert (pruned["parent"].map(position) < pruned["run"].map(position)).all()  # parents first
