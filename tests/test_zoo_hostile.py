"""A zoo from someone else: names from its index never point outside its folder (issue 20, paths)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3

import numpy as np
import pytest

from pruneviz.cli import main
from pruneviz.data import Dataset
from pruneviz.exceptions import ValidationError, ZooError
from pruneviz.zoo import Zoo
from pruneviz.zoo.store import INDEX_FILE, check_plain_name


def _listing(folder) -> dict[str, str]:
    """Every file below ``folder`` with the hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def hostile(tmp_path, small_zoo):
    """A copy of a zoo whose index was edited to name a run by a path, beside a folder of bystanders."""
    bystander = tmp_path / "bystander"
    (bystander / "runs" / "victim").mkdir(parents=True)
    (bystander / "runs" / "victim" / "outputs.parquet").write_bytes(b"not yours")
    zoo_path = tmp_path / "shared" / "zoo"
    shutil.copytree(small_zoo.path, zoo_path)
    return zoo_path, bystander


@pytest.mark.parametrize("evil", ["../../bystander/runs/victim", "/etc", "a/b", "..", ".hidden", "x\0y"])
def test_a_run_id_that_is_a_path_refuses_the_zoo_and_touches_nothing_outside(hostile, evil, capsys):
    zoo_path, bystander = hostile
    before = _listing(bystander)
    con = sqlite3.connect(zoo_path / INDEX_FILE)
    first = con.execute("SELECT run FROM runs ORDER BY run").fetchone()[0]
    con.execute("UPDATE runs SET run = ? WHERE run = ?", (evil, first))
    con.commit()
    con.close()
    zoo = Zoo(zoo_path)
    with pytest.raises(ZooError, match="not a plain name.*outside the zoo's folder"):
        zoo.runs()
    with pytest.raises(ZooError, match="not a plain name"):
        zoo.load_model(evil)
    with pytest.raises(ZooError, match="not a plain name"):
        zoo.outputs(evil)
    assert main(["zoo", "analyse", str(zoo_path), "--quick", "--quiet", "--steps", "spectrum"]) == 2
    assert "not a plain name" in capsys.readouterr().err
    # the app's first page (what a request to `pruneviz serve` builds) says what is wrong, in place
    from pruneviz.app import build_app

    page = build_app(zoo_path)
    alerts = [o for o in page.main.objects if type(o).__name__ == "Alert"]
    assert alerts and "not a plain name" in alerts[0].object
    report = zoo_path.parent / "audit.html"
    assert main(["audit", "--zoo", str(zoo_path), "--out", str(report)]) == 2
    assert "not a plain name" in capsys.readouterr().err and not report.exists()
    assert _listing(bystander) == before


@pytest.mark.parametrize("name", ["../../x", "a/b", "/abs", "nul\0name", ".", ""])
def test_a_dataset_named_like_a_path_is_refused_and_nothing_is_written(tmp_path, name):
    zoo = Zoo.create(tmp_path / "zoo")
    data = Dataset(np.random.default_rng(0).random((20, 3)), np.arange(20) % 2, name=name)
    with pytest.raises(
        ValidationError, match="'dataset.name' parameter of Zoo.add_dataset must be a plain name"
    ):
        zoo.add_dataset(data)
    assert list((tmp_path / "zoo" / "datasets").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]


def test_plain_names_pass_and_keep_their_spelling():
    for name in ("digits-4f4f039c", "cnn-s0-abc~lamp-unstructured-0.9-1a2b", "adult census", "x"):
        assert check_plain_name(name, "run id", "test") == name
    for name in (" lead", "trail ", "a\\b", 7, None):
        with pytest.raises(ValidationError, match="'run id' parameter of test must be a plain name"):
            check_plain_name(name, "run id", "test")


def test_unknown_splits_subsets_and_mistyped_filters_name_the_valid_choices(small_zoo):
    run = small_zoo.run_ids()[0]
    with pytest.raises(
        ValidationError, match=r"'split' parameter of Zoo.outputs must be a split these runs.*'clean'"
    ):
        small_zoo.outputs(run, split="nope")
    with pytest.raises(
        ValidationError, match=r"'subset' parameter of Zoo.outputs must be one of.*did you mean 'train'"
    ):
        small_zoo.outputs(run, subset="training")
    with pytest.raises(ValidationError, match=r"'seed' parameter of Zoo.runs must be a number.*Got '0'"):
        small_zoo.runs(seed="0")
    assert len(small_zoo.outputs(run, split="clean", subset="test")) > 0
    assert len(small_zoo.runs(seed=0)) == 1 and len(small_zoo.runs(kind="dense")) == 2


def test_a_failed_add_dataset_leaves_nothing_behind(tmp_path, monkeypatch):
    from pruneviz.zoo import store

    zoo = Zoo.create(tmp_path / "zoo")
    data = Dataset(np.zeros((40, 3)), [0, 1] * 20, name="tiny")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_json_atomic", disk_full)  # the last file of the dataset fails
    with pytest.raises(OSError, match="No space left"):
        zoo.add_dataset(data)
    assert zoo.datasets().empty
    assert not [p for p in (tmp_path / "zoo").rglob("*") if "tiny" in p.name]  # no orphan dataset folder
    monkeypatch.undo()
    key = zoo.add_dataset(data)  # and a retry succeeds
    assert len(zoo.dataset(key)) == 40
