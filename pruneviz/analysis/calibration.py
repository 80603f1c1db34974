"""Calibration of a classifier's probabilities: reliability bins, ECE, negative log-likelihood, Brier score.

Everything is computed in float64 from the logits (float32 or float64, numpy or torch) and integer
labels: the probabilities are ``softmax(logits)``, the confidence of a sample is its largest probability
and its prediction the class of that probability.

- **Reliability bins and ECE** (Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural
  networks"): the confidences are split into ``bins`` equal-width bins ``(lo, hi]`` of ``[0, 1]``; the
  expected calibration error is the count-weighted mean of ``|accuracy − confidence|`` over the bins.
- **Negative log-likelihood**: the mean of ``−log p_label`` (the cross-entropy of the logits).
- **Brier score** (Brier 1950) in its original multi-class form: the mean over samples of
  ``Σ_k (p_k − onehot_k)²``, which lies in ``[0, 2]``. For two classes this is twice the binary Brier
  score of the positive class that is often quoted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pruneviz._validation import check_columns, check_int, data_fail, fail
from pruneviz.train import logits_of

__all__ = [
    "brier_score",
    "calibration_metrics",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
]  # check_logits_labels, sample_terms and bin_index are shared with the subgroup analysis

CALIBRATION_METRICS = ("accuracy", "confidence", "ece", "nll", "brier")


# -- validation and per-sample terms ---------------------------------------------------------------
def _as_array(value: object, param: str, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | pd.Series | list | tuple):
        return np.asarray(value)
    fail(param, where, "a numpy array or torch tensor", type(value).__name__)


def check_logits_labels(logits: object, labels: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(N, K)`` logits and ``(N,)`` labels; return them as float64 and int64 arrays.

    The logits must be finite (the error counts the samples with NaN/inf logits) with ``K >= 2``; the
    labels integers in ``[0, K)``, one per row of logits.
    """
    z = _as_array(logits, "logits", where)
    y = _as_array(labels, "labels", where)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 2 or not np.issubdtype(z.dtype, np.number):
        fail(
            "logits",
            where,
            "a 2-D numeric array of shape (N, K) with N >= 1 samples and K >= 2 classes",
            None,
            got=f"an array of shape {z.shape} and dtype {z.dtype}",
        )
    z = z.astype(np.float64, copy=False)
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        data_fail(
            "logits",
            where,
            "finite numbers",
            f"NaN/inf logits for {int(bad.sum())} of {len(z)} samples "
            f"(the first at row {int(np.argmax(bad))})",
            "check the model for NaN/inf weights (a diverged run) and drop or re-evaluate those samples.",
        )
    if y.ndim != 1 or len(y) != len(z):
        fail(
            "labels",
            where,
            f"a 1-D array with one label per row of logits ({len(z)})",
            None,
            got=f"an array of shape {y.shape}",
        )
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all()
    )
    if not integral:
        fail("labels", where, "integer class labels", None, got=f"an array of dtype {y.dtype}")
    y = y.astype(np.int64)
    out = (y < 0) | (y >= z.shape[1])
    if out.any():
        i = int(np.argmax(out))
        data_fail(
            "labels",
            where,
            f"class labels in [0, {z.shape[1]}) (one per logit column)",
            f"label {int(y[i])} at row {i} ({int(out.sum())} out of range)",
            "pass the labels the logits were computed for.",
        )
    return z, y


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise ``log softmax`` of a float64 ``(N, K)`` array, computed stably."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def sample_terms(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample ``correct`` (float 0/1), ``confidence``, ``nll`` and ``brier`` of validated arrays."""
    logp = log_softmax(logits)
    p = np.exp(logp)
    rows = np.arange(len(labels))
    pred = p.argmax(axis=1)
    p_true = p[rows, labels]
    brier = (p * p).sum(axis=1) - 2.0 * p_true + 1.0  # Σ_k p_k² − 2 p_y + 1 = Σ_k (p_k − onehot_k)²
    return {
        "correct": (pred == labels).astype(np.float64),
        "confidence": p[rows, pred],
        "nll": -logp[rows, labels],
        "brier": np.maximum(brier, 0.0),
    }


def bin_edges(bins: int) -> np.ndarray:
    """The ``bins + 1`` edges of equal-width confidence bins on ``[0, 1]``."""
    return np.linspace(0.0, 1.0, bins + 1)


def bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Index of the bin ``(lo, hi]`` holding each confidence (a confidence of 0 goes to the first)."""
    idx = np.searchsorted(bin_edges(bins), confidence, side="left") - 1
    return np.clip(idx, 0, bins - 1)


# -- public functions ----------------------------------------------------------------------------------
def reliability_bins(
    logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *, bins: int = 15
) -> pd.DataFrame:
    """Reliability table: accuracy against confidence in ``bins`` equal-width confidence bins.

    Guo, Pleiss, Sun & Weinberger (2017): bin ``m`` holds the samples whose confidence (largest softmax
    probability) lies in ``((m − 1)/M, m/M]``.

    Parameters
    ----------
    logits : array or tensor of shape (N, K)
    labels : array or tensor of shape (N,), integers in [0, K)
    bins : int >= 1

    Returns
    -------
    DataFrame with one row per bin (empty bins included): ``bin``, ``lo``, ``hi``, ``count``,
    ``confidence`` (mean confidence), ``accuracy``, ``gap`` (``confidence − accuracy``: positive when the
    model is over-confident). The three means are NaN for an empty bin.

    Examples
    --------
    >>> import numpy as np
    >>> table = reliability_bins(np.log([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]), bins=2)
    >>> table[["count", "confidence", "accuracy"]].round(6).values.tolist()
    [[0.0, nan, nan], [2.0, 0.8, 0.5]]
    """
    where = "reliability_bins"
    bins = check_int(bins, "bins", where, minimum=1)
    z, y = check_logits_labels(logits, labels, where)
    terms = sample_terms(z, y)
    idx = bin_index(terms["confidence"], bins)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=terms["confidence"], minlength=bins) / count
        acc = np.bincount(idx, weights=terms["correct"], minlength=bins) / count
    edges = bin_edges(bins)
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "lo": edges[:-1],
            "hi": edges[1:],
            "count": count,
            "confidence": conf,
            "accuracy": acc,
            "gap": conf - acc,
        }
    )


def expected_calibration_error(
    logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *, bins: int = 15
) -> float:
    """Expected calibration error ``Σ_m (n_m / N) |acc_m − conf_m|`` over equal-width confidence bins
    (Guo et al. 2017); see :func:`reliability_bins`. In ``[0, 1]``.

    >>> import numpy as np
    >>> round(expected_calibration_error(np.log([[0.9, 0.1], [0.3, 0.7]]), np.array([0, 0]), bins=2), 6)
    0.3
    """
    table = reliability_bins(logits, labels, bins=bins)
    filled = table["count"] > 0
    weights = table.loc[filled, "count"] / table["count"].sum()
    return float((weights * table.loc[filled, "gap"].abs()).sum())


def negative_log_likelihood(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Mean negative log-likelihood ``−(1/N) Σ_i log softmax(z_i)[y_i]`` (the mean cross-entropy).

    >>> import numpy as np
    >>> round(negative_log_likelihood(np.log([[0.5, 0.5]]), np.array([1])), 6)
    0.693147
    """
    z, y = check_logits_labels(logits, labels, "negative_log_likelihood")
    return float(sample_terms(z, y)["nll"].mean())


def brier_score(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Multi-class Brier score (Brier 1950): ``(1/N) Σ_i Σ_k (p_ik − onehot(y_i)_k)²``, in ``[0, 2]``.

    This is the original, unhalved convention (scikit-learn's ``brier_score_loss`` with
    ``scale_by_half=False``); for two classes it is twice the usual binary Brier score.

    >>> import numpy as np
    >>> round(brier_score(np.log([[0.75, 0.25]]), np.array([0])), 6)
    0.125
    """
    z, y = check_logits_labels(logits, labels, "brier_score")
    return float(sample_terms(z, y)["brier"].mean())


def calibration_metrics(outputs: pd.DataFrame, *, bins: int = 15) -> pd.DataFrame:
    """Accuracy, mean confidence, ECE, NLL and Brier score of per-sample outputs, per run and split.

    ``outputs`` is a frame from :func:`pruneviz.train.evaluate` or ``Zoo.outputs`` (``label`` and
    ``logit_*`` columns; optionally ``run``, ``subset`` and ``split``, possibly several of each).
    Conventions as in :func:`reliability_bins`, :func:`negative_log_likelihood` and :func:`brier_score`.

    Returns
    -------
    Tidy frame: the key columns present among ``run``, ``subset``, ``split``, then ``metric`` (one of
    ``accuracy``, ``confidence``, ``ece``, ``nll``, ``brier``), ``value`` and ``n`` (samples).

    Examples
    --------
    >>> import pandas as pd
    >>> out = pd.DataFrame({"split": "clean", "label": [0, 1], "logit_0": [2.0, 0.0], "logit_1": [0.0, 1.0]})
    >>> calibration_metrics(out, bins=10).set_index("metric").value["accuracy"]
    np.float64(1.0)
    """
    where = "calibration_metrics"
    if not isinstance(outputs, pd.DataFrame):
        fail("outputs", where, "a per-sample outputs DataFrame", type(outputs).__name__)
    bins = check_int(bins, "bins", where, minimum=1)
    check_columns(["label"], outputs.columns, "outputs", where)
    if not any(str(c).startswith("logit_") for c in outputs.columns):
        fail("outputs", where, "a frame with logit_* columns (from evaluate)", list(outputs.columns)[:10])
    keys = [c for c in ("run", "subset", "split") if c in outputs.columns]
    parts = outputs.groupby(keys, sort=False, observed=True) if keys else [((), outputs)]
    rows = []
    for key, part in parts:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True)) or "all rows"
        z, y = check_logits_labels(logits_of(part), part["label"].to_numpy(), f"{where} ({label})")
        terms = sample_terms(z, y)
        idx = bin_index(terms["confidence"], bins)
        gap = np.bincount(idx, weights=terms["confidence"] - terms["correct"], minlength=bins)
        values = {
            "accuracy": terms["correct"].mean(),
            "confidence": terms["confidence"].mean(),
            "ece": np.abs(gap).sum() / len(y),
            "nll": terms["nll"].mean(),
            "brier": terms["brier"].mean(),
        }
        for metric, value in values.items():
            rows.append((*key, metric, float(value), len(y)))
    return pd.DataFrame(rows, columns=[*keys, "metric", "value", "n"])
