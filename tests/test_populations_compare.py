"""Which runs a population analysis compares: comparisons(), and reading populations' outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import blobs
from pruneviz.exceptions import ValidationError, ZooError
from pruneviz.study import populations as P
from pruneviz.study import run_exemplars, run_subgroups
from pruneviz.study.populations import (
    COMPARISON_KEYS,
    comparisons,
    population_outputs,
    population_reader,
    settings_digest,
)
from pruneviz.train import TrainConfig
from pruneviz.zoo import Zoo, build_dense_population, prune_population

ONE = TrainConfig(epochs=1, batch_size=64, lr=3e-3)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, small_zoo, digits):
    """Digits: 2 dense MLPs (the session's small zoo) and 1 dense CNN; blobs: 1 dense MLP. Every dense
    run pruned by global magnitude at 50 %; the MLPs on digits pruned a second time with another seed."""
    zoo = Zoo(shutil.copytree(small_zoo.path, tmp_path_factory.mktemp("compare") / "z"))
    tiny_cnn = {"channels": (4, 8), "hidden": (16,)}
    build_dense_population(
        zoo, digits, arch="cnn", seeds=1, config=ONE, model_options=tiny_cnn, progress=False
    )
    build_dense_population(zoo, blobs(), arch="mlp", seeds=1, config=ONE, progress=False)
    prune_population(zoo, methods=["global_magnitude"], sparsities=[0.5], finetune=None, progress=False)
    mlps = small_zoo.runs(kind="dense").run.tolist()
    prune_population(
        zoo,
        methods=["global_magnitude"],
        sparsities=[0.5],
        finetune=None,
        parents=mlps,
        seed=1,
        progress=False,
    )
    return zoo


def dense_of(zoo: Zoo, arch: str, blob: bool = False) -> list[str]:
    runs = zoo.runs(kind="dense", arch=arch)
    return runs.run[runs.dataset.str.startswith("blobs") == blob].tolist()


def test_comparisons_split_by_dataset_arch_and_settings_with_parents_as_dense(zoo):
    runs = zoo.runs()
    parent = dict(zip(runs.run, runs.parent, strict=True))
    comps = comparisons(zoo)  # two datasets: fine by default, each comparison within one
    assert [(c.dataset.split("-")[0], c.arch) for c in comps] == [
        ("blobs", "mlp"), ("digits", "cnn"), ("digits", "mlp"), ("digits", "mlp"),
    ]  # fmt: skip
    assert sum(len(c.pruned) for c in comps) == len(zoo.runs(kind="pruned"))
    for c in comps:
        assert list(c.keys) == list(COMPARISON_KEYS) and c.keys["arch"] == c.arch
        assert c.sparsity == 0.5 and c.keys["dense_runs"] == len(c.dense)
        assert set(c.dense) == {parent[r] for r in c.pruned}  # the dense parents, nothing else
        assert all(zoo.run(r).arch == c.arch and zoo.run(r).dataset == c.dataset for r in c.dense + c.pruned)
    blob, cnn, mlp_a, mlp_b = comps
    assert cnn.dense == tuple(dense_of(zoo, "cnn")) and blob.dense == tuple(dense_of(zoo, "mlp", blob=True))
    assert mlp_a.dense == mlp_b.dense == tuple(dense_of(zoo, "mlp"))
    # the two prune_population calls differ only in their seed: separate comparisons
    assert mlp_a.settings != mlp_b.settings and len(mlp_a.pruned) == len(mlp_b.pruned) == 2
    seeds = {c.settings: {zoo.run(r).schedule["seed"] for r in c.pruned} for c in (mlp_a, mlp_b)}
    assert sorted(map(tuple, seeds.values())) == [(0,), (1,)]
    assert blob.settings == cnn.settings == settings_digest(zoo.run(cnn.pruned[0]).schedule)


def test_settings_digest_ignores_per_run_entries():
    base = {"allocation": None, "finetune": None, "seed": 0, "schedule": "one_shot"}
    assert settings_digest({**base, "channel_plan": {"conv1": [0, 2]}}) == settings_digest(base)
    assert settings_digest({**base, "seed": 1}) != settings_digest(base)
    assert settings_digest({**base, "allocation": "uniform"}) != settings_digest(base)
    assert len(settings_digest(base)) == 8


def test_explicit_runs_select_and_mismatches_are_refused(zoo):
    mlp, cnn, blob = dense_of(zoo, "mlp"), dense_of(zoo, "cnn"), dense_of(zoo, "mlp", blob=True)
    pruned = zoo.runs(kind="pruned")
    # dense given: pruned defaults to its children, the dense population is the given dense runs
    only = comparisons(zoo, dense=[mlp[0]])
    assert len(only) == 2 and all(c.dense == (mlp[0],) for c in only)
    assert {r for c in only for r in c.pruned} == set(pruned.run[pruned.parent == mlp[0]])
    mixed = comparisons(zoo, dense=np.array([cnn[0], *mlp]))  # any sequence of ids; zoo order kept
    assert [(c.arch, c.dense) for c in mixed] == [
        ("cnn", tuple(cnn)),
        ("mlp", tuple(mlp)),
        ("mlp", tuple(mlp)),
    ]
    # pruned given alone: compared with its parents
    child = pruned.run[pruned.parent == mlp[1]].iloc[0]
    (one,) = comparisons(zoo, pruned=[child])
    assert one.dense == (mlp[1],) and one.pruned == (child,)

    with pytest.raises(
        ValidationError,
        match=r"'pruned' parameter of run_exemplars must be ids of pruned runs of the dataset and arch "
        r"of some given dense run \(\[\('blobs-.*', 'mlp'\)\]\)\. Got run '.*' \(dataset 'digits-.*', "
        r"arch 'mlp'\) instead\. Fix: compare runs of one dataset",
    ):
        run_exemplars(zoo, dense=blob, pruned=[child])  # other dataset
    with pytest.raises(ValidationError, match=r"'pruned' parameter of run_subgroups.*Got run .* arch 'mlp'"):
        run_subgroups(zoo, dense=cnn, pruned=[child])  # other architecture
    with pytest.raises(ValidationError, match=r"'dense' parameter of comparisons must be ids of dense runs"):
        comparisons(zoo, dense=[child])
    with pytest.raises(ValidationError, match=r"'pruned' parameter of comparisons must be ids of pruned"):
        comparisons(zoo, pruned=cnn)
    with pytest.raises(ValidationError, match=r"'dense' parameter .*a list of run ids.*Fix: pass dense=\["):
        comparisons(zoo, dense=cnn[0])
    with pytest.raises(ValidationError, match=r"'pruned' parameter .*a non-empty list"):
        comparisons(zoo, pruned=[])
    with pytest.raises(ValidationError, match=r"'dense' parameter .*ids of runs in the zoo.*Got 'nope'"):
        comparisons(zoo, dense=["nope"])


def test_population_analyses_run_on_a_multi_dataset_multi_arch_zoo(zoo, monkeypatch):
    scores = run_exemplars(zoo)
    keys = scores[list(COMPARISON_KEYS)].drop_duplicates()
    assert len(keys) == 4 and sorted(keys.arch) == ["cnn", "mlp", "mlp", "mlp"]
    assert keys.dataset.nunique() == 2 and keys[keys.arch == "cnn"].dense_runs.item() == 1
    n_test = {d: (zoo.outputs(zoo.runs(dataset=d).run.iloc[0], subset="test").split == "clean").sum()
              for d in keys.dataset}  # fmt: skip
    assert scores.groupby(list(COMPARISON_KEYS)).size().to_dict() == {
        tuple(k): n_test[k[0]] for k in keys.itertuples(index=False)
    }

    # the MLP dense population on digits serves two comparisons: its outputs are read once
    reads: list[str] = []
    real = pd.read_parquet

    def spy(path, *args, **kwargs):
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy)
    table = run_subgroups(zoo, bootstrap=np.int64(20), permutations=np.int64(20), min_group_size=np.int64(5))
    mlp = dense_of(zoo, "mlp")
    assert sum(f"/{mlp[0]}/outputs.parquet" in r for r in reads) == 1
    assert table[list(COMPARISON_KEYS)].drop_duplicates().shape[0] == 4
    assert table.significant.dtype == "boolean"


def test_population_outputs_read_one_split_and_word_missing_ones(zoo, monkeypatch):
    run = dense_of(zoo, "cnn")[0]
    clean = zoo.outputs(run, split="clean", subset="test")
    zoo_copy = Zoo(shutil.copytree(zoo.path, zoo.path.parent / "with-fog"))
    zoo_copy.add_outputs(run, clean.drop(columns="run").assign(split="fog@1", prediction=0))
    calls: list[dict] = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda p, **k: calls.append(k) or real(p, **k))
    got = population_outputs(zoo_copy, [run], split="clean", subset="test")
    pd.testing.assert_frame_equal(got, clean)
    assert calls == [{"filters": [("split", "==", "clean"), ("subset", "==", "test")]}]
    fog = population_outputs(zoo_copy, [run], split="fog@1", subset="test")
    assert (fog.split == "fog@1").all() and (fog.prediction == 0).all() and len(fog) == len(clean)
    with pytest.raises(
        ValidationError,
        match=r"'split' parameter of population must be a split evaluated for run .* on subset 'test' "
        r"\(\['clean', 'fog@1'\]\)\. Got 'blur' instead",
    ):
        population_outputs(zoo_copy, [run], split="blur")
    with pytest.raises(ValidationError, match=r"'subset' parameter of population must be one of"):
        population_outputs(zoo_copy, [run], subset="tset")
    with pytest.raises(ZooError, match=r"'run' parameter of Zoo.run"):
        population_outputs(zoo_copy, ["nope"])

    def broken(path, **kwargs):
        raise OSError("truncated file")

    monkeypatch.setattr(pd, "read_parquet", broken)
    with pytest.raises(ZooError, match=rf"outputs of run '{run}' .*cannot be read \(truncated file\)"):
        population_outputs(zoo_copy, [run])


def test_population_reader_keeps_only_what_it_is_asked_to(zoo, monkeypatch):
    mlp = dense_of(zoo, "mlp")
    seen: list[str] = []
    real = P._run_outputs
    monkeypatch.setattr(P, "_run_outputs", lambda z, r, *a: seen.append(r) or real(z, r, *a))
    read = population_reader(zoo, split="clean", subset="test")
    first = read(mlp, keep=True)
    assert read(mlp, keep=True) is first and read(mlp[:1], keep=True).equals(first[first.run == mlp[0]])
    assert seen == mlp  # kept runs are not read again, in any population
    read(dense_of(zoo, "cnn"))
    read(dense_of(zoo, "cnn"))
    assert seen[2:] == dense_of(zoo, "cnn") * 2
    with pytest.raises(ValidationError, match=r"'split' parameter of run_x must be the name of an"):
        population_reader(zoo, split="", where="run_x")
