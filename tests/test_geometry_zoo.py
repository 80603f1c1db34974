"""Feature geometry read from a zoo: CKA, kNN overlap, logit geometry and embeddings, cached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pruneviz.exceptions import DataError, ValidationError
from pruneviz.study.runs import (
    run_cka,
    run_embedding,
    run_knn_overlap,
    run_logit_geometry,
    run_logit_geometry_change,
)
from pruneviz.zoo import Zoo, build_dense_population


def _pair(zoo: Zoo, method: str = "channel_l1", sparsity: float = 0.9) -> tuple[str, str]:
    runs = zoo.runs()
    child = runs[(runs.method == method) & (runs.sparsity_target == sparsity)].iloc[0]
    return child.parent, child.run


def test_geometry_runs_read_the_zoo_and_cache(study_zoo, monkeypatch):
    dense, pruned = _pair(study_zoo)
    grid = run_cka(study_zoo, dense, pruned, samples=64)
    assert {"run_a", "run_b", "method", "sparsity", "layer_a", "layer_b", "value"} <= set(grid.columns)
    assert (grid.method == "channel_l1").all() and grid["value"].between(-1, 1).all()
    self_grid = run_cka(study_zoo, dense, dense, samples=64)
    assert np.allclose(self_grid.query("layer_a == layer_b")["value"], 1.0)
    knn = run_knn_overlap(study_zoo, dense, pruned, k=5, samples=100)
    assert len(knn) == 100 and knn["value"].between(0, 1).all() and knn["sample_id"].is_unique
    geo = run_logit_geometry(study_zoo, pruned)
    test_ids = study_zoo.outputs(pruned, split="clean", subset="test")
    assert len(geo) == len(test_ids) and set(geo.sample_id) == set(test_ids.sample_id)
    # the logit geometry agrees with the logits the zoo stored for the run
    stored = test_ids.set_index("sample_id").loc[geo.sample_id]
    z = stored[[c for c in stored.columns if c.startswith("logit_")]].to_numpy()
    assert np.allclose(geo["logit"], z[np.arange(len(z)), geo["label"]], atol=1e-4)
    change = run_logit_geometry_change(study_zoo, dense, pruned)
    assert change["rank"].min() == 1 and set(change.metric) >= {"margin", "feature_norm", "angle"}
    emb = run_embedding(study_zoo, [dense, pruned], samples=100)
    assert set(emb.run) == {dense, pruned} and len(emb) == 200
    assert (emb.groupby("run")["sample_id"].apply(lambda s: s.is_unique)).all()
    assert emb.groupby("run")["disparity"].first()[dense] == 0.0

    import pruneviz.study.runs as runs

    monkeypatch.setattr(runs, "cka_grid", lambda *a, **k: pytest.fail("recomputed a cached analysis"))
    monkeypatch.setattr(runs, "aligned_pca", lambda *a, **k: pytest.fail("recomputed a cached analysis"))
    pd.testing.assert_frame_equal(run_cka(study_zoo, dense, pruned, samples=64), grid)
    pd.testing.assert_frame_equal(run_embedding(study_zoo, [dense, pruned], samples=100), emb)


def test_geometry_runs_refuse_bad_input(study_zoo, tmp_path, digits, tiny):
    dense, pruned = _pair(study_zoo)
    with pytest.raises(ValidationError, match="'layers_a' parameter of cka_grid.*did you mean"):
        run_cka(study_zoo, dense, pruned, layers_a=["classifer"], samples=16)
    with pytest.raises(ValidationError, match="'layer' parameter of run_knn_overlap"):
        run_knn_overlap(study_zoo, dense, pruned, layer="nope", samples=16)
    with pytest.raises(ValidationError, match="'method' parameter of run_embedding.*did you mean 'umap'"):
        run_embedding(study_zoo, [dense, pruned], method="uamp")
    with pytest.raises(ValidationError, match="'runs' parameter of run_embedding"):
        run_embedding(study_zoo, dense)
    # runs from different datasets
    from pruneviz.train import TrainConfig

    other = Zoo.create(tmp_path / "two")
    build_dense_population(
        other, digits.take(np.arange(300)), arch="mlp", seeds=1, config=TrainConfig(epochs=1), progress=False
    )
    build_dense_population(other, tiny, arch="mlp", seeds=1, config=TrainConfig(epochs=1), progress=False)
    a, b = other.runs().run
    with pytest.raises(DataError, match="'run_b' parameter of run_cka must be a run of the same dataset"):
        run_cka(other, a, b)


@pytest.mark.slow
def test_aligned_umap_embeds_dense_and_pruned_and_reopens_from_the_cache(study_zoo, monkeypatch):
    dense, pruned = _pair(study_zoo)
    emb = run_embedding(study_zoo, [dense, pruned], method="umap", samples=120)
    assert set(emb.run) == {dense, pruned} and len(emb) == 240
    assert np.isfinite(emb[["x", "y"]].to_numpy()).all() and (emb.embedding == "umap").all()
    # linked samples sit near each other: aligned positions correlate across the two runs
    a = emb[emb.run == dense].set_index("sample_id")[["x", "y"]]
    b = emb[emb.run == pruned].set_index("sample_id").loc[a.index, ["x", "y"]]
    assert np.corrcoef(a["x"], b["x"])[0, 1] > 0.5
    import pruneviz.study.runs as runs

    monkeypatch.setattr(runs, "aligned_umap", lambda *a, **k: pytest.fail("refitted a cached UMAP"))
    pd.testing.assert_frame_equal(run_embedding(study_zoo, [dense, pruned], method="umap", samples=120), emb)
