"""A damaged zoo says what is wrong: content hashes, `Zoo.verify`, `pruneviz zoo verify` / `repair`, and
one clear pruneviz error at the first call that touches the damage (issue 20, integrity)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat

import pandas as pd
import pytest
import torch

from conftest import blobs
from pruneviz.cli import main
from pruneviz.exceptions import CheckpointError, PrunevizError, ZooError
from pruneviz.train import TrainConfig
from pruneviz.zoo import Zoo, build_dense_population, prune_population
from pruneviz.zoo.store import INDEX_FILE, MAX_JSON_DEPTH, MAX_MODEL_PARAMETERS

#: names of raw exception types that must not reach a user's message
RAW = re.compile(
    r"sqlite3|JSONDecodeError|DatabaseError|OperationalError|Arrow|SafetensorError|RecursionError"
)


@pytest.fixture(scope="module")
def pruned_zoo(tmp_path_factory) -> Zoo:
    """One dense MLP on blobs and its magnitude-pruned child (masks), built in a second or two."""
    zoo = Zoo.create(tmp_path_factory.mktemp("damage") / "zoo")
    build_dense_population(
        zoo, blobs(), arch="mlp", seeds=1, config=TrainConfig(epochs=2, batch_size=32), progress=False
    )
    prune_population(zoo, methods=["global_magnitude"], sparsities=[0.5], finetune=None, progress=False)
    return zoo


@pytest.fixture()
def zoo(tmp_path, pruned_zoo) -> Zoo:
    """A fresh copy of the pruned zoo to damage."""
    shutil.copytree(pruned_zoo.path, tmp_path / "copy")
    return Zoo(tmp_path / "copy")


def _runs(zoo: Zoo) -> tuple[str, str]:
    runs = zoo.runs()
    return runs[runs.kind == "dense"].run.iloc[0], runs[runs.kind == "pruned"].run.iloc[0]


def _sql(zoo: Zoo, statement: str, *args) -> None:
    con = sqlite3.connect(zoo.path / INDEX_FILE)
    con.execute(statement, args)
    con.commit()
    con.close()


def _clean(message: str) -> str:
    assert not RAW.search(message), message
    return message


def test_an_intact_zoo_verifies_and_records_a_hash_of_every_file(zoo):
    assert zoo.verify().empty
    con = sqlite3.connect(zoo.path / INDEX_FILE)
    files = con.execute("SELECT kind, file FROM files").fetchall()
    con.close()
    assert ("run", "masks.safetensors") in files and ("dataset", "samples.parquet") in files
    assert len(files) == 3 + 3 + 4  # the dataset's three files, the dense run's three, the pruned run's four
    assert main(["zoo", "verify", str(zoo.path)]) == 0


def test_a_zoo_written_before_hashes_opens_and_verifies_as_not_recorded(zoo):
    _sql(zoo, "DROP TABLE files")
    assert zoo.verify().empty
    dense, _ = _runs(zoo)
    weights = zoo.path / "runs" / dense / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # still caught, as unreadable
    assert zoo.verify().name.tolist() == [dense]


@pytest.mark.parametrize("file", ["weights.safetensors", "masks.safetensors", "outputs.parquet"])
@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage", "changed"])
def test_every_damaged_run_file_is_reported_by_verify_and_by_the_first_call(zoo, file, damage):
    _, pruned = _runs(zoo)
    path = zoo.path / "runs" / pruned / file
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    else:  # still readable, with one byte of content changed: only the hash tells
        if file == "outputs.parquet":
            frame = pd.read_parquet(path)
            frame.loc[0, "prediction"] = frame.loc[0, "prediction"] + 1
            frame.to_parquet(path, index=False)
        else:
            from safetensors.torch import load_file, save_file

            state = load_file(path)
            key = next(iter(state))
            state[key] = state[key].clone()
            flat = state[key].view(-1)
            flat[0] = ~flat[0] if file == "masks.safetensors" else 7.0
            save_file(state, path)
    problems = zoo.verify()
    assert not problems.empty and set(problems.kind) == {"run"} and set(problems.name) == {pruned}
    assert str(path) in problems.path.tolist()
    assert all(problems.fix.str.len() > 0)
    for text in problems.problem:
        _clean(text)
    wanted = {
        "missing": "missing",
        "truncated": "sha256|cannot be read|truncated",
        "garbage": "sha256",
        "changed": "sha256",
    }[damage]
    assert problems.problem.str.contains(wanted).any()
    if damage == "changed":
        return  # a readable file with other numbers: only verify can tell
    call = {
        "weights.safetensors": lambda: zoo.load_model(pruned),
        "masks.safetensors": lambda: zoo.masks(pruned),
        "outputs.parquet": lambda: zoo.outputs(pruned),
    }[file]
    if file == "masks.safetensors" and damage == "missing":
        assert len(zoo.masks(pruned)) == 0  # a run without masks is a channel-pruned or dense run's shape
        return
    with pytest.raises((CheckpointError, ZooError)) as info:
        call()
    text = _clean(str(info.value))
    assert str(path) in text and "Fix:" in text


def test_a_dataset_folder_gone_and_a_changed_dataset_file_are_reported(zoo):
    key = zoo.datasets().dataset.iloc[0]
    samples = zoo.path / "datasets" / key / "samples.parquet"
    samples.write_bytes(samples.read_bytes()[:-30])
    problems = zoo.verify()
    assert problems[problems.kind == "dataset"].path.tolist() == [str(samples)]
    shutil.rmtree(zoo.path / "datasets" / key)
    problems = zoo.verify()
    row = problems[problems.kind == "dataset"].iloc[0]
    assert row["name"] == key and "folder is gone" in row["problem"]
    with pytest.raises(ZooError, match="folder .* of dataset .* is gone.*pruneviz zoo verify"):
        zoo.dataset(key)


def test_masks_that_disagree_with_the_weights_are_reported(zoo):
    from safetensors.torch import load_file, save_file

    _, pruned = _runs(zoo)
    folder = zoo.path / "runs" / pruned
    masks = load_file(folder / "masks.safetensors")
    key = next(iter(masks))
    weights = load_file(folder / "weights.safetensors")
    assert key in weights
    # a pruned weight made nonzero (and the hash rewritten, so only the consistency check can see it)
    weights[key] = weights[key].clone()
    cut = ~masks[key].bool()
    weights[key][cut] = 0.5
    save_file(weights, folder / "weights.safetensors")
    # masks that are not binary, in a second copy of the file
    floats = {k: v.float() for k, v in masks.items()}
    other = list(masks)[-1]
    assert other != key
    floats[other][0, 0] = 0.5
    save_file(floats, folder / "masks.safetensors")
    _rehash(zoo, pruned)
    problems = zoo.verify()
    text = " | ".join(problems.problem)
    assert "nonzero where the mask prunes them" in text and "not binary" in text, text
    # masks that keep everything: binary, consistent with the weights (nonzero where they were pruned),
    # but far from the sparsity the index records
    save_file({k: torch.ones_like(v) for k, v in masks.items()}, folder / "masks.safetensors")
    _rehash(zoo, pruned)
    problems = zoo.verify()
    assert problems.problem.str.contains("far from the sparsity").any(), problems.problem.tolist()


def _rehash(zoo: Zoo, run: str) -> None:
    from pruneviz.zoo.store import file_sha256

    con = sqlite3.connect(zoo.path / INDEX_FILE)
    for file in ("weights.safetensors", "masks.safetensors"):
        sha = file_sha256(zoo.path / "runs" / run / file)
        con.execute(
            "UPDATE files SET sha256 = ? WHERE kind = 'run' AND name = ? AND file = ?", (sha, run, file)
        )
    con.commit()
    con.close()


def test_a_malformed_index_is_one_clear_error_and_verify_says_so(zoo, capsys):
    index = zoo.path / INDEX_FILE
    index.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(
        ZooError, match="index .* is corrupt or not a pruneviz index.*Fix: restore the zoo"
    ) as info:
        Zoo(zoo.path)
    _clean(str(info.value))
    assert main(["zoo", "verify", str(zoo.path)]) == 1
    out = capsys.readouterr().out
    assert "index" in out and "corrupt or not a pruneviz index" in out and not RAW.search(out)


def test_a_schema_version_that_is_no_integer_is_refused(zoo):
    _sql(zoo, "UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    with pytest.raises(ZooError, match="schema version 'two', which is not an integer") as info:
        Zoo(zoo.path)
    _clean(str(info.value))


def test_a_missing_column_is_refused_when_the_zoo_opens(zoo):
    _sql(zoo, "ALTER TABLE runs DROP COLUMN metrics")
    with pytest.raises(ZooError, match=r"lacks the column\(s\) \['metrics'\] of 'runs'") as info:
        Zoo(zoo.path)
    _clean(str(info.value))


def test_invalid_json_in_one_runs_metrics_is_named_by_runs_and_verify(zoo):
    dense, _ = _runs(zoo)
    _sql(zoo, "UPDATE runs SET metrics = '{\"acc\": 0.9' WHERE run = ?", dense)
    with pytest.raises(
        ZooError, match=f"metrics of run '{dense}' .* is not valid JSON.*pruneviz zoo verify"
    ) as info:
        zoo.runs()
    _clean(str(info.value))
    problems = zoo.verify()
    assert problems.name.tolist() == [dense] and problems.problem.str.contains("not valid JSON").all()


def test_a_wrong_json_type_in_a_datasets_info_is_named(zoo):
    key = zoo.datasets().dataset.iloc[0]
    _sql(zoo, "UPDATE datasets SET info = '[1, 2, 3]' WHERE dataset = ?", key)
    with pytest.raises(
        ZooError, match="info of dataset .* must be an object of JSON. Got an array instead"
    ) as info:
        zoo.dataset(key)
    _clean(str(info.value))
    assert "must be an object of JSON" in " ".join(zoo.verify().problem)


def test_json_nested_200000_deep_is_refused_unread(zoo):
    dense, _ = _runs(zoo)
    _sql(zoo, "UPDATE runs SET metrics = ? WHERE run = ?", "[" * 200_000 + "]" * 200_000, dense)
    with pytest.raises(ZooError, match=f"nests 200000 levels deep; pruneviz reads at most {MAX_JSON_DEPTH}"):
        zoo.run(dense)
    with pytest.raises(ZooError, match="nests 200000 levels deep"):
        zoo.runs()
    assert zoo.verify().problem.str.contains("nests 200000").any()


def test_an_absurd_model_spec_is_refused_before_allocation(zoo):
    dense, _ = _runs(zoo)
    spec = json.loads(sqlite3.connect(zoo.path / INDEX_FILE).execute(
        "SELECT model_spec FROM runs WHERE run = ?", (dense,)).fetchone()[0])  # fmt: skip
    spec["options"] = {"hidden": [300_000, 300_000]}  # 9e10 weights: 360 GB of float32
    _sql(zoo, "UPDATE runs SET model_spec = ? WHERE run = ?", json.dumps(spec), dense)
    with pytest.raises(ZooError, match=f"more than the {MAX_MODEL_PARAMETERS:,}.*refused before allocating"):
        zoo.load_model(dense)
    assert zoo.verify().problem.str.contains("refused before allocating").any()


def test_a_truncated_cache_entry_is_dropped_and_recomputed_with_a_warning(zoo):
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"metric": ["m"], "value": [float(len(calls))]})

    zoo.cached("demo", [], {"n": 1}, compute)
    (entry,) = (zoo.path / "cache").glob("*.parquet")
    entry.write_bytes(entry.read_bytes()[:20])
    problems = zoo.verify()
    assert problems.kind.tolist() == ["cache"] and "--drop-cache" in problems.fix[0]
    with pytest.warns(UserWarning, match=re.escape(str(entry))):
        again = zoo.cached("demo", [], {"n": 1}, compute)
    assert len(calls) == 2 and again.value.tolist() == [2.0]
    assert zoo.cached("demo", [], {"n": 1}, compute).value.tolist() == [2.0] and len(calls) == 2
    assert zoo.verify().empty


def test_verify_and_repair_on_the_command_line(zoo, capsys):
    zoo.cached("demo", [], {"n": 1}, lambda: pd.DataFrame({"value": [1.0]}))
    zoo.cached("demo", [], {"n": 2}, lambda: pd.DataFrame({"value": [2.0]}))
    dense, _ = _runs(zoo)
    (zoo.path / "runs" / dense / "outputs.parquet").unlink()
    assert main(["zoo", "verify", str(zoo.path)]) == 1
    out = capsys.readouterr().out
    assert dense in out and "the file is missing" in out and "fix" in out
    assert main(["zoo", "repair", str(zoo.path)]) == 2
    assert "--drop-cache" in capsys.readouterr().err
    assert main(["zoo", "repair", str(zoo.path), "--drop-cache"]) == 0
    assert "dropped 2 cache entries" in capsys.readouterr().out
    assert list((zoo.path / "cache").glob("*.parquet")) == []


def test_written_files_honour_the_umask(tmp_path):
    from pruneviz._io import write_json_atomic

    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "a.json", {"a": 1})
        zoo = Zoo.create(tmp_path / "z")
        zoo.add_dataset(blobs(n=30))
        os.umask(0o002)
        write_json_atomic(tmp_path / "b.json", {"b": 2})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664
    written = [p for p in (tmp_path / "z" / "datasets").rglob("*") if p.is_file()]
    assert len(written) == 3
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}


def test_a_field_of_the_wrong_type_in_a_run_row_is_named(zoo):
    _sql(zoo, "UPDATE runs SET seed = 'x'")
    first = zoo.run_ids()[0]
    with pytest.raises(PrunevizError, match=f"row of run '{first}' in .* is malformed") as info:
        zoo.run(first)
    _clean(str(info.value))
    assert sorted(zoo.verify().name) == zoo.run_ids()
