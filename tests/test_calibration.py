from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pruneviz.analysis.calibration import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from pruneviz.exceptions import DataError, ValidationError


def random_case(n: int = 300, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=2.0, size=(n, k)), rng.integers(0, k, n)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_and_brier_equal_sklearn(dtype):
    from sklearn.metrics import brier_score_loss, log_loss

    z, y = random_case()
    z = z.astype(dtype)
    p = softmax(z.astype(np.float64))  # we compute in float64 from the given values
    labels = list(range(z.shape[1]))
    assert negative_log_likelihood(z, y) == pytest.approx(log_loss(y, p, labels=labels), abs=1e-12)
    direct = ((p - np.eye(z.shape[1])[y]) ** 2).sum(1).mean()
    assert brier_score(z, y) == pytest.approx(direct, abs=1e-12)
    # sklearn's multiclass Brier is the same unhalved sum (scale_by_half=False; "auto" also leaves K > 2)
    assert brier_score(z, y) == pytest.approx(
        brier_score_loss(y, p, labels=labels, scale_by_half=False), abs=1e-12
    )
    # torch tensors give the same numbers
    assert negative_log_likelihood(torch.from_numpy(z), torch.from_numpy(y)) == negative_log_likelihood(z, y)


@pytest.mark.reference
def test_binary_brier_is_twice_sklearns_default_halved_score():
    from sklearn.metrics import brier_score_loss

    z, y = random_case(k=2, seed=1)
    p = softmax(z)
    # For two classes sklearn's default ("auto") halves the sum, i.e. the binary Brier score of class 1.
    assert brier_score(z, y) == pytest.approx(2 * brier_score_loss(y, p[:, 1]), abs=1e-12)


@pytest.mark.reference
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ece_and_bins_on_a_hand_computed_case(dtype):
    probs = np.array(  # confidences kept off the bin edges
        [
            [0.92, 0.04, 0.04],  # confidence .92, correct
            [0.78, 0.11, 0.11],  # .78, wrong
            [0.45, 0.30, 0.25],  # .45, correct
            [0.38, 0.35, 0.27],  # .38, wrong
        ]
    )
    labels = np.array([0, 1, 0, 2])
    z = np.log(probs).astype(dtype)
    table = reliability_bins(z, labels, bins=2)
    assert table["count"].tolist() == [2, 2]
    assert table[["lo", "hi"]].to_numpy().tolist() == [[0.0, 0.5], [0.5, 1.0]]
    np.testing.assert_allclose(table["confidence"], [0.415, 0.85], atol=1e-6)
    np.testing.assert_allclose(table["accuracy"], [0.5, 0.5])
    np.testing.assert_allclose(table["gap"], [-0.085, 0.35], atol=1e-6)
    # ECE = 2/4 * |0.5 - 0.415| + 2/4 * |0.5 - 0.85|
    assert expected_calibration_error(z, labels, bins=2) == pytest.approx(0.2175, abs=1e-6)
    # one bin: |mean confidence - accuracy|
    assert expected_calibration_error(z, labels, bins=1) == pytest.approx(abs(0.6325 - 0.5), abs=1e-6)
    # ten bins: one sample per filled bin; empty bins are kept with NaN means and do not count
    wide = reliability_bins(z, labels, bins=10)
    assert wide["count"].tolist() == [0, 0, 0, 1, 1, 0, 0, 1, 0, 1]
    assert wide["accuracy"].isna().sum() == 6
    assert expected_calibration_error(z, labels, bins=10) == pytest.approx(
        (abs(0.92 - 1) + abs(0.78 - 0) + abs(0.45 - 1) + abs(0.38 - 0)) / 4, abs=1e-6
    )


@pytest.mark.reference
def test_labels_drawn_from_the_model_are_calibrated():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=1.5, size=(20_000, 3))
    p = softmax(z)
    y = (rng.random(len(p))[:, None] > p.cumsum(1)).sum(1)  # y ~ Categorical(p): calibrated by design
    assert expected_calibration_error(z, y) < 0.02
    assert expected_calibration_error(z, np.roll(y, 1)) > 0.1


def test_calibration_metrics_per_run_and_split():
    frames = []
    for r, run in enumerate(("r1", "r2")):
        for i, split in enumerate(("clean", "noise")):
            z, y = random_case(n=100, k=3, seed=10 * r + i)
            part = pd.DataFrame({"run": run, "sample_id": np.arange(100), "split": split, "label": y})
            logits = pd.DataFrame(z.astype(np.float32), columns=[f"logit_{k}" for k in range(3)])
            frames.append(pd.concat([part, logits], axis=1))
    out = pd.concat(frames, ignore_index=True)
    table = calibration_metrics(out, bins=10)
    assert list(table.columns) == ["run", "split", "metric", "value", "n"]
    assert len(table) == 2 * 2 * 5 and (table["n"] == 100).all()
    for (run, split), part in out.groupby(["run", "split"]):
        z = part[["logit_0", "logit_1", "logit_2"]].to_numpy()
        got = table[(table.run == run) & (table.split == split)].set_index("metric")["value"]
        assert got["ece"] == pytest.approx(expected_calibration_error(z, part.label, bins=10), abs=1e-12)
        assert got["nll"] == pytest.approx(negative_log_likelihood(z, part.label), abs=1e-12)
        assert got["brier"] == pytest.approx(brier_score(z, part.label), abs=1e-12)
        assert got["accuracy"] == pytest.approx(float((z.argmax(1) == part.label).mean()))
        assert got["confidence"] == pytest.approx(softmax(z.astype(np.float64)).max(1).mean())


def test_bad_inputs_are_refused_with_clear_messages():
    z, y = random_case(n=10, k=3)
    bad = z.copy()
    bad[[2, 5], 0] = np.nan
    with pytest.raises(DataError, match=r"NaN/inf logits for 2 of 10 samples \(the first at row 2\)"):
        expected_calibration_error(bad, y)
    with pytest.raises(
        DataError, match=r"'labels' parameter of brier_score must be class labels in \[0, 3\)"
    ):
        brier_score(z, np.full(10, 3))
    with pytest.raises(ValidationError, match=r"one label per row of logits \(10\).*shape \(9,\)"):
        negative_log_likelihood(z, y[:9])
    with pytest.raises(ValidationError, match=r"'logits' parameter.*shape \(N, K\).*shape \(10,\)"):
        brier_score(z[:, 0], y)
    with pytest.raises(ValidationError, match=r"'bins' parameter of reliability_bins must be a positive"):
        reliability_bins(z, y, bins=0)
    with pytest.raises(ValidationError, match=r"integer class labels"):
        brier_score(z, y + 0.5)
    frame = pd.DataFrame(bad, columns=["logit_0", "logit_1", "logit_2"]).assign(label=y, split="clean")
    with pytest.raises(DataError, match=r"calibration_metrics \(split='clean'\).*NaN/inf logits for 2"):
        calibration_metrics(frame)
    with pytest.raises(ValidationError, match=r"'outputs' parameter of calibration_metrics.*Got 'label'"):
        calibration_metrics(frame.drop(columns="label"))
