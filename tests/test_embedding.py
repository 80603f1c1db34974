"""Aligned UMAP embeddings: the neighbour graph's parts against independent references, and the layouts'
trustworthiness and alignment against umap-learn's own ``AlignedUMAP`` on the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneviz.analysis import geometry
from pruneviz.analysis.geometry import _knn_with_self, _neighbourhood_jaccard, aligned_umap
from pruneviz.exceptions import DataError, ValidationError


def _digits_features(n: int) -> dict[str, np.ndarray]:
    """Features of the same ``n`` digits from a random ReLU layer and from that layer 80 % magnitude-pruned:
    a dense and a pruned representation with real cluster structure (sklearn's bundled digits)."""
    from sklearn.datasets import load_digits

    x = load_digits().data[:n]
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    w = np.random.default_rng(0).normal(size=(64, 48)) / 8
    pruned = np.where(np.abs(w) >= np.quantile(np.abs(w), 0.8), w, 0.0)
    return {"dense": np.maximum(x @ w, 0), "pruned": np.maximum(x @ pruned, 0)}


def _misalignment(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between the two positions of a sample, relative to the RMS radius of the first view."""
    radius = np.sqrt(((a - a.mean(0)) ** 2).sum(1).mean())
    return float(np.linalg.norm(a - b, axis=1).mean() / radius)


@pytest.mark.reference
def test_neighbours_with_self_match_sklearn_across_chunks():
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(0).normal(size=(230, 7))
    idx, dist = _knn_with_self(torch.as_tensor(x), 6, chunk=50)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=6).fit(x).kneighbors(x)
    assert idx.dtype == np.int32 and dist.dtype == np.float32
    assert (idx[:, 0] == np.arange(230)).all()  # each sample is its own first neighbour (umap's convention)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    # duplicated samples: the sample itself still comes first, its twin second at distance 0
    twin = np.concatenate([x[:20], x[:20]])
    idx, dist = _knn_with_self(torch.as_tensor(twin), 3)
    assert (idx[:, 0] == np.arange(40)).all() and (idx[:, 1] == (np.arange(40) + 20) % 40).all()
    assert (dist[:, :2] == 0).all()


@pytest.mark.reference
def test_neighbourhood_jaccard_matches_set_arithmetic():
    from scipy import sparse

    a = sparse.random(40, 40, density=0.15, random_state=1, format="csr")
    b = sparse.random(40, 40, density=0.15, random_state=2, format="csr")
    keep = np.ones(40)
    keep[5] = 0  # an empty row in one graph only
    b = sparse.diags(keep) @ b
    b.eliminate_zeros()
    weights = _neighbourhood_jaccard(a, b)
    for i in range(40):
        na, nb = set(a[i].indices), set(b[i].indices)
        expected = len(na & nb) / len(na | nb) if na | nb else 1.0
        assert weights[i] == pytest.approx(expected, abs=1e-7)
    empty = sparse.csr_matrix((3, 3))
    assert (_neighbourhood_jaccard(empty, empty) == 1).all()


def test_aligned_umap_refuses_bad_input():
    pytest.importorskip("umap")
    x = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValidationError, match="'features' parameter of aligned_umap.*at least two"):
        aligned_umap({"dense": x})
    with pytest.raises(ValidationError, match="'features' parameter of aligned_umap.*same samples"):
        aligned_umap({"dense": x, "pruned": x[:10]})
    with pytest.raises(ValidationError, match="at least 3 samples"):
        aligned_umap({"dense": x[:2], "pruned": x[:2]})
    with pytest.raises(ValidationError, match="'min_dist' parameter of aligned_umap must be a number in"):
        aligned_umap({"dense": x, "pruned": x}, min_dist=2.0)
    with pytest.raises(ValidationError, match="'n_epochs' parameter of aligned_umap"):
        aligned_umap({"dense": x, "pruned": x}, n_epochs=0)
    with pytest.raises(ValidationError, match="'alignment' parameter of aligned_umap"):
        aligned_umap({"dense": x, "pruned": x}, alignment=-1.0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        aligned_umap({"dense": x, "pruned": bad})


@pytest.mark.slow
@pytest.mark.reference
def test_aligned_umap_is_as_trustworthy_and_as_aligned_as_umaps_aligned_umap():
    """Trustworthiness (Venna & Kaski 2001, sklearn's) of each view within 0.01 of ``umap.AlignedUMAP`` on
    the same features, averaged over three seeds on both sides (the peer's layout depends on its
    ``transform_seed`` only), and linked samples at least as close across the views."""
    umap = pytest.importorskip("umap")
    from sklearn.manifold import trustworthiness

    feats = _digits_features(500)
    names = list(feats)
    relation = {i: i for i in range(500)}
    ours, peer, ours_gap, peer_gap = [], [], [], []
    for seed in range(3):
        frame = aligned_umap(feats, seed=seed)
        views = [frame.loc[frame.model == k, ["x", "y"]].to_numpy() for k in names]
        assert np.isfinite(np.concatenate(views)).all()
        ours.append([trustworthiness(feats[k], v, n_neighbors=15) for k, v in zip(names, views, strict=True)])
        ours_gap.append(_misalignment(*views))
        fitted = umap.AlignedUMAP(n_neighbors=15, min_dist=0.1, random_state=0, transform_seed=seed).fit(
            [feats[k] for k in names], relations=[relation]
        )
        views = fitted.embeddings_
        peer.append([trustworthiness(feats[k], v, n_neighbors=15) for k, v in zip(names, views, strict=True)])
        peer_gap.append(_misalignment(*views))
    ours_t, peer_t = np.mean(ours, 0), np.mean(peer, 0)
    assert (ours_t >= peer_t - 0.01).all(), (ours_t, peer_t)
    assert ours_t.min() > 0.9  # the digits' structure is really there (a broken layout scores ~0.5)
    assert np.mean(ours_gap) <= 1.25 * np.mean(peer_gap), (ours_gap, peer_gap)


@pytest.mark.slow
@pytest.mark.reference
def test_aligned_umap_above_the_exact_neighbour_limit_uses_nn_descent(monkeypatch):
    """Beyond ``_EXACT_KNN_MAX`` samples the graph comes from NN-descent; on small data it finds
    (nearly) the exact neighbours, so the fuzzy graphs agree."""
    pytest.importorskip("umap")
    x = torch.as_tensor(_digits_features(400)["dense"])
    exact = geometry._fuzzy_graph(x, 15, np.random.RandomState(0))
    monkeypatch.setattr(geometry, "_EXACT_KNN_MAX", 100)
    approx = geometry._fuzzy_graph(x, 15, np.random.RandomState(0))
    assert np.mean(_neighbourhood_jaccard(exact, approx)) > 0.95
    assert abs(exact.sum() - approx.sum()) / exact.sum() < 0.02
