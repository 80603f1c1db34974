"""Corruption error (CE), mean corruption error (mCE) and their relative forms.

Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations".
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._validation import check_columns, fail

_KEYS = ("corruption", "severity", "error")
_WHERE = "mean_corruption_error"


def _check_errors(frame: Any, param: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        fail(param, _WHERE, "a DataFrame with columns corruption, severity, error", type(frame).__name__)
    check_columns(list(_KEYS), frame.columns, param, _WHERE)
    if frame.empty:
        fail(param, _WHERE, "a non-empty DataFrame (one row per corruption and severity)", None, got="0 rows")
    err = pd.to_numeric(frame["error"], errors="coerce")
    if err.isna().any() or not np.isfinite(err.to_numpy()).all() or (err < 0).any():
        fail(
            param,
            _WHERE,
            "finite, non-negative errors in its 'error' column",
            None,
            got=f"values {frame['error'].head(5).tolist()}",
        )
    sev = frame["severity"]
    ints = sev.map(lambda v: isinstance(v, int | np.integer) and not isinstance(v, bool) and 1 <= v <= 5)
    if not ints.all():
        fail(
            param,
            _WHERE,
            "integer severities in 1..5 in its 'severity' column",
            None,
            got=f"{sev[~ints].head(3).tolist()}",
        )
    dup = frame.duplicated(["corruption", "severity"])
    if dup.any():
        row = frame.loc[dup].iloc[0]
        fail(
            param,
            _WHERE,
            "one row per (corruption, severity)",
            None,
            got=f"repeated rows, e.g. ({row['corruption']!r}, {row['severity']})",
            fix="aggregate first (e.g. mean over seeds), or pass one model's errors at a time.",
        )
    out = frame.copy()
    out["error"] = err.astype(float)
    out["severity"] = sev.astype(int)
    return out


def _check_number(value: Any, param: str) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:
        fail(param, _WHERE, "a finite, non-negative error rate", value)
    return float(value)


def _unknown(name: str, known: Sequence[str]) -> None:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    fail(
        "normalisers",
        _WHERE,
        f"a baseline for every corruption in errors (it has {sorted(known)})",
        None,
        got=f"no baseline for {name!r}",
        fix=f"{hint}add the baseline errors of {name!r}.",
    )


def _baseline_errors(normalisers: Any, name: str, severities: list[int]) -> tuple[float, list[float] | None]:
    """The baseline's error sum for ``name`` over ``severities``, and its errors at those severities when
    the normalisers give them (``None`` when only the sum is given)."""
    if isinstance(normalisers, pd.DataFrame):
        base = normalisers[normalisers["corruption"] == name]
        if base.empty:
            _unknown(name, list(dict.fromkeys(normalisers["corruption"])))
        by_sev = dict(zip(base["severity"].astype(int), base["error"].astype(float), strict=True))
        missing = [s for s in severities if s not in by_sev]
        if missing:
            fail(
                "normalisers",
                _WHERE,
                f"baseline errors of {name!r} at every severity in errors",
                None,
                got=f"none at severity {missing}",
            )
        per = [by_sev[s] for s in severities]
        return float(sum(per)), per
    if name not in normalisers:
        _unknown(name, list(normalisers))
    value = normalisers[name]
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        return _check_number(value, "normalisers"), None
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) and len(value) == 5:
        checked = [_check_number(v, "normalisers") for v in value]
        per = [checked[s - 1] for s in severities]
        return float(sum(per)), per
    fail(
        "normalisers",
        _WHERE,
        f"for {name!r} either the sum of the baseline's errors or its 5 errors at severities 1-5",
        value,
    )


def _mean_row(name: str, metric: str, per: list[tuple[str, float]]) -> tuple[str, str, float, int, str]:
    """The ``"all"`` row of ``metric``: the mean over the corruptions whose value is defined."""
    finite = [v for _, v in per if math.isfinite(v)]
    skipped = [c for c, v in per if not math.isfinite(v)]
    value = float(np.mean(finite)) if finite else math.nan
    if not skipped:
        note = ""
    elif finite:
        note = f"mean over {len(finite)} of {len(per)} corruptions; undefined for {skipped}"
    else:
        note = f"undefined for every corruption ({skipped})"
    return name, metric, value, len(finite), note


def mean_corruption_error(
    errors: pd.DataFrame,
    *,
    normalisers: Mapping[str, float | Sequence[float]] | pd.DataFrame | None = None,
    relative_to_clean: float | None = None,
    baseline_clean: float | None = None,
) -> pd.DataFrame:
    """Corruption errors of one model and their mean, as defined by Hendrycks & Dietterich (2019).

    With ``E_{s,c}`` the model's error under corruption ``c`` at severity ``s`` (the severities present
    for ``c``) and ``E_clean`` its clean error:

    - **unnormalised** (``normalisers=None``): ``CE_c = mean_s E_{s,c}`` — an error rate, not a ratio;
      ``relative CE_c = mean_s (E_{s,c} - E_clean)``.
    - **normalised** by a baseline ``B`` (AlexNet in the paper, or a pruned model's dense parent):
      ``CE_c = Σ_s E_{s,c} / Σ_s B_{s,c}`` and
      ``relative CE_c = Σ_s (E_{s,c} - E_clean) / Σ_s (B_{s,c} - B_clean)`` (needs ``baseline_clean``).
    - ``mCE`` (and ``relative mCE``) is the mean of the CEs (relative CEs) over corruptions.

    Undefined ratios are NaN, not errors: ``CE_c`` is NaN when the baseline's error sum for ``c`` is 0
    (it never errs under ``c``), and ``relative CE_c`` is NaN when its denominator
    ``Σ_s (B_{s,c} - B_clean)`` is ≤ 0 (within 1e-12), i.e. the corruption does not raise the
    baseline's error above its clean error (common for brightness or mild contrast when the baseline is
    a dense parent). The means are taken over the corruptions whose value is finite; the ``corruptions``
    column says how many entered each value and ``note`` names those left out (mCE is NaN when none is
    defined). Invalid input — missing columns or corruption names, negative, NaN or infinite errors,
    severities outside 1..5, repeated rows — still raises :class:`~pruneviz.exceptions.ValidationError`.

    Parameters
    ----------
    errors : DataFrame with columns ``corruption``, ``severity`` (1–5), ``error``; one row per pair.
        Other columns must hold one value each (e.g. ``run``) and are carried to the result.
    normalisers : baseline errors looked up by corruption name: a mapping ``name -> sum over the
        severities present`` or ``name -> [5 errors at severities 1..5]``, or a DataFrame shaped like
        ``errors``.
    relative_to_clean : the model's clean error; adds the relative CEs and relative mCE.
    baseline_clean : the baseline's clean error (needed for relative errors with ``normalisers``).

    Returns
    -------
    DataFrame with the carried columns, then ``corruption`` (``"all"`` for the mean), ``metric``
    (``"ce"``, ``"relative_ce"``, ``"mce"``, ``"relative_mce"``), ``value``, ``normalised`` (bool),
    ``corruptions`` (int: corruptions whose finite value entered the row — 1 or 0 for one corruption,
    the count averaged on an ``"all"`` row) and ``note`` (why a value is NaN or a mean is partial; empty
    otherwise).

    >>> e = pd.DataFrame({"corruption": ["fog"] * 2 + ["snow"] * 2, "severity": [1, 2] * 2,
    ...                   "error": [0.1, 0.3, 0.2, 0.4]})
    >>> mean_corruption_error(e).query("metric == 'mce'").value.round(3).item()
    0.25
    >>> baseline = {"fog": 0.8, "snow": [0.3, 0.5, 0.6, 0.7, 0.8]}
    >>> mean_corruption_error(e, normalisers=baseline).value.round(3).tolist()
    [0.5, 0.75, 0.625]
    >>> easy = {"fog": 0.8, "snow": 0.0}  # the baseline never errs under snow: its CE is undefined
    >>> mean_corruption_error(e, normalisers=easy)[["corruption", "value", "corruptions"]].values.tolist()
    [['fog', 0.5, 1], ['snow', nan, 0], ['all', 0.5, 1]]
    """
    frame = _check_errors(errors, "errors")
    if normalisers is not None:
        if isinstance(normalisers, pd.DataFrame):
            normalisers = _check_errors(normalisers, "normalisers")
        elif not isinstance(normalisers, Mapping):
            fail(
                "normalisers", _WHERE, "a mapping corruption -> baseline errors, or a DataFrame", normalisers
            )
    relative = relative_to_clean is not None
    clean = _check_number(relative_to_clean, "relative_to_clean") if relative else 0.0
    base_clean = 0.0
    if relative and normalisers is not None:
        if baseline_clean is None:
            fail(
                "baseline_clean",
                _WHERE,
                "the baseline's clean error when relative errors are normalised",
                None,
                got="None",
                fix="pass baseline_clean=<the baseline model's clean error>.",
            )
        base_clean = _check_number(baseline_clean, "baseline_clean")
    extra = [c for c in frame.columns if c not in _KEYS]
    varying = [c for c in extra if frame[c].nunique(dropna=False) > 1]
    if varying:
        fail(
            "errors",
            _WHERE,
            "the errors of one model (other columns constant)",
            None,
            got=f"several values in {varying}",
            fix=f"apply it per model, e.g. errors.groupby({varying!r}).apply(...).",
        )
    carried = {c: frame[c].iloc[0] for c in extra}

    rows: list[tuple[str, str, float, int, str]] = []
    ces: list[tuple[str, float]] = []
    rel_ces: list[tuple[str, float]] = []
    for key, part in frame.groupby("corruption", sort=False):
        name = str(key)
        sevs = sorted(part["severity"].tolist())
        mine = part.set_index("severity")["error"].loc[sevs].tolist()
        total = float(sum(mine))
        gap = float(sum(e - clean for e in mine))  # Σ_s (E_s - E_clean)
        ce_note = rel_note = ""
        if normalisers is None:
            ce, rel = total / len(sevs), gap / len(sevs)
        else:
            base, per = _baseline_errors(normalisers, name, sevs)
            if base > 0:
                ce = total / base
            else:
                ce, ce_note = math.nan, f"the baseline's error sum under {name!r} is 0"
            rel, rel_den = math.nan, math.nan
            if relative:
                rel_den = (
                    float(sum(b - base_clean for b in per))
                    if per is not None
                    else base - base_clean * len(sevs)
                )
                if rel_den > 1e-12:
                    rel = gap / rel_den
                else:
                    rel_note = (
                        f"the baseline's errors under {name!r} do not exceed its clean error "
                        f"(Σ(B - B_clean) = {rel_den:.4g})"
                    )
        rows.append((name, "ce", ce, int(math.isfinite(ce)), ce_note))
        ces.append((name, ce))
        if relative:
            rows.append((name, "relative_ce", rel, int(math.isfinite(rel)), rel_note))
            rel_ces.append((name, rel))
    rows.append(_mean_row("all", "mce", ces))
    if relative:
        rows.append(_mean_row("all", "relative_mce", rel_ces))
    out = pd.DataFrame(rows, columns=["corruption", "metric", "value", "corruptions", "note"])
    out.insert(3, "normalised", normalisers is not None)
    out["corruptions"] = out["corruptions"].astype("int64")
    for i, (col, val) in enumerate(carried.items()):
        out.insert(i, col, val)
    return out
