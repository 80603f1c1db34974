"""The state behind the views, without a browser: options, focus, frames and readable problems."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import FAST
from pruneviz.exceptions import PrunevizError, ZooError
from pruneviz.views.state import StudyState
from pruneviz.zoo import Zoo, build_dense_population


def test_options_fill_from_the_zoo_and_the_focus_follows_the_choices(study_zoo):
    state = StudyState(study_zoo)
    assert state.problem is None
    assert set(state.param.methods.objects) == {"lamp", "channel_l1"}
    assert state.param.sparsities.objects == [0.5, 0.9]
    assert state.param.group.objects == ["class", "ink"] and state.group == "ink"
    runs = study_zoo.runs()
    for method in ("lamp", "channel_l1"):
        for sparsity in (0.5, 0.9):
            state.param.update(method=method, sparsity=sparsity)
            row = runs.set_index("run").loc[state.child]
            assert (row.method, row.sparsity_target, row.parent) == (method, sparsity, state.parent)
    state.methods = ["lamp"]
    overview = state.overview()
    assert set(overview.method) == {"dense", "lamp"}
    assert set(state.run_table().method) == {"dense", "lamp"}
    state.sparsities = [0.9]
    subgroups = state.subgroups()
    assert set(subgroups.method) == {"lamp"} and set(subgroups.sparsity_target) == {0.9}


def test_pair_frames_come_from_the_zoo_cache(study_zoo):
    state = StudyState(study_zoo, method="lamp", sparsity=0.9)
    cka = state.cka()
    assert (cka.run_a == state.parent).all() and (cka.run_b == state.child).all()
    emb = state.embedding()
    assert set(emb.run) == {state.parent, state.child}
    ex = state.exemplars()
    assert set(ex.method) == {"lamp"} and np.allclose(ex.sparsity_target, 0.9)
    assert set(state.reliability().run) == {state.parent, state.child}


def test_problems_read_as_sentences(tmp_path, digits, study_zoo):
    empty = StudyState(Zoo.create(tmp_path / "empty"))
    assert "no runs yet" in empty.problem
    with pytest.raises(ZooError, match="no runs yet"):
        empty.overview()
    dense_only = Zoo.create(tmp_path / "dense")
    build_dense_population(
        dense_only, digits.take(np.arange(300)), arch="mlp", seeds=1, config=FAST, progress=False
    )
    state = StudyState(dense_only)
    assert "no pruned runs" in state.problem
    with pytest.raises(ZooError, match="no pruned runs"):
        state.cka()
    # a run whose files are gone
    broken_path = tmp_path / "broken"
    shutil.copytree(study_zoo.path, broken_path)
    broken = Zoo(broken_path)
    state = StudyState(broken, method="lamp", sparsity=0.5)
    (broken_path / "runs" / state.child / "outputs.parquet").unlink()
    with pytest.raises(PrunevizError, match=f"outputs of run '{state.child}'.*cannot be read"):
        state.corruptions()


def test_a_parent_of_another_dataset_is_refused(tmp_path, digits, tiny):
    zoo = Zoo.create(tmp_path / "two")
    build_dense_population(zoo, digits.take(np.arange(300)), arch="mlp", seeds=1, config=FAST, progress=False)
    build_dense_population(zoo, tiny, arch="mlp", seeds=1, config=FAST, progress=False)
    state = StudyState(zoo)
    assert len(state.param.dataset.objects) == 2
    other = zoo.runs().query("dataset != @state.dataset").run.iloc[0]
    state.param.parent.objects = [*state.param.parent.objects, other]  # e.g. a stale URL
    state.parent = other
    with pytest.raises(ZooError, match="must share one dataset"):
        state.overview()
