"""What every chart shares: checking its input frame, naming models, capping rows, titling, theming."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import altair as alt
import pandas as pd

from pruneviz._validation import check_int, data_fail, fail
from pruneviz.charts._theme import DENSE, DENSE_COLOUR, apply_theme, method_colour, method_order

MAX_ROWS = 5000  # Altair refuses to inline more rows than this
SAMPLE_SELECTION = "sample"  # the name of the sample_id selection that links views


def sample_selection(selected: int | None = None) -> alt.Parameter:
    """The point selection on ``sample_id`` (named ``"sample"``) that links views of the same samples:
    click a sample to pick it out in every panel, shift-click to add, double-click to clear.
    ``selected`` starts it on that sample (a selection made in another view)."""
    extra: dict[str, Any] = {} if selected is None else {"value": [{"sample_id": int(selected)}]}
    return alt.selection_point(
        name=SAMPLE_SELECTION, fields=["sample_id"], on="click", clear="dblclick", **extra
    )


def check_frame(frame: Any, param: str, where: str, source: str, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` must be a non-empty DataFrame with ``columns``; else a house-style error naming the
    chart ``where`` and the ``source`` of the frame it expects."""
    if not isinstance(frame, pd.DataFrame):
        fail(
            param,
            where,
            f"a DataFrame from {source}",
            None,
            f"pass the frame {source} returns.",
            got=f"a {type(frame).__name__}",
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = list(frame.columns)
        shown = have if len(have) <= 16 else [*have[:16], "..."]
        fail(
            param,
            where,
            f"a frame from {source}, with the columns {list(columns)}",
            None,
            got=f"a frame without {missing if len(missing) > 1 else repr(missing[0])} (columns: {shown})",
            fix=f"pass the frame {source} returns, unchanged or filtered by rows.",
        )
    if frame.empty:
        data_fail(
            param,
            where,
            f"a non-empty frame from {source}",
            "an empty frame",
            "check the filter that emptied it.",
        )
    return frame


def check_max_points(value: Any, where: str) -> int:
    return check_int(value, "max_points", where, minimum=1)


def pick(value: Any, param: str, where: str, available: Iterable[Hashable], what: str) -> Any:
    """``value`` must be one of ``available`` (values found in the frame)."""
    options = list(dict.fromkeys(available))
    if value not in options:
        fail(
            param,
            where,
            f"{what} present in the frame ({options[:20]})",
            value,
            "pass one of the values listed.",
        )
    return value


def sparsity_column(frame: pd.DataFrame) -> str:
    """The column to group models by: the target sparsity where the frame has one."""
    return "sparsity_target" if "sparsity_target" in frame.columns else "sparsity"


def method_of(frame: pd.DataFrame) -> pd.Series:
    """The ``method`` column with dense runs (missing method) named ``"dense"``."""
    if "method" not in frame.columns:
        return pd.Series(DENSE, index=frame.index)
    return (
        frame["method"]
        .astype(object)
        .where(frame["method"].notna() & (frame["method"] != ""), DENSE)
        .astype(str)
    )


def model_labels(frame: pd.DataFrame) -> pd.Series:
    """A short name of the model behind every row: ``"dense"``, ``"lamp 90%"``, ``"magnitude 50% (2:4)"``;
    the run id where the frame has no method, and ``"model"`` where it has neither."""
    if "method" not in frame.columns:
        if "run" in frame.columns:
            return frame["run"].astype(str)
        return pd.Series("model", index=frame.index)
    method = method_of(frame)
    col = sparsity_column(frame)
    sparsity = frame[col] if col in frame.columns else pd.Series(math.nan, index=frame.index)
    structure = frame["structure"].fillna("").astype(str) if "structure" in frame.columns else None
    out = []
    for i, (m, s) in enumerate(zip(method, sparsity, strict=True)):
        if m == DENSE:
            out.append(DENSE)
            continue
        text = m if pd.isna(s) else f"{m} {percent(s)}"
        if structure is not None and structure.iloc[i] not in ("", "unstructured", "channel"):
            text += f" ({structure.iloc[i]})"
        out.append(text)
    return pd.Series(out, index=frame.index)


def with_models(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``model`` (:func:`model_labels`; the run id appended where several runs
    share a label) and ``method`` (dense named) columns."""
    out = frame.copy()
    out["model"] = model_labels(out)
    out["method"] = method_of(out)
    if "run" in out.columns and (out.groupby("model")["run"].nunique() > 1).any():
        out["model"] = out["model"] + " · " + out["run"].astype(str)
    return out


def model_colour(frame: pd.DataFrame, order: Sequence[str]) -> alt.Color:
    """Colour by ``model``: each model in its method's colour when no two models share a method, else a
    categorical palette (dense stays dense-grey either way)."""
    methods = frame.drop_duplicates("model").set_index("model")["method"]
    if methods.duplicated().any():
        spare = [c for c in CATEGORICAL if c != DENSE_COLOUR]
        colours, i = [], 0
        for m in order:
            if methods[m] == DENSE:
                colours.append(DENSE_COLOUR)
            else:
                colours.append(spare[i % len(spare)])
                i += 1
    else:
        colours = [method_colour(methods[m]) for m in order]
    legend = None if len(order) == 1 else alt.Legend(title="Model")
    return alt.Color(
        "model:N", legend=legend, sort=list(order), scale=alt.Scale(domain=list(order), range=colours)
    )


CATEGORICAL = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#b279a2",
    "#72b7b2",
    "#eeca3b",
    "#9d755d",
    "#ff9da6",
    "#bab0ac",
    "#1f77b4",
    "#8c564b",
)


def label_order(frame: pd.DataFrame, label: str = "model") -> list[str]:
    """Labels sorted dense first, then by method (fixed order) and sparsity."""
    keys = frame.assign(_m=method_of(frame))
    col = sparsity_column(frame)
    rank = {m: i for i, m in enumerate(method_order(keys["_m"]))}
    keys["_r"] = keys["_m"].map(rank)
    keys["_s"] = keys[col] if col in keys.columns else 0.0
    return list(dict.fromkeys(keys.sort_values(["_r", "_s"], kind="stable")[label]))


def percent(x: float) -> str:
    """``0.9`` -> ``"90%"``, ``0.955`` -> ``"95.5%"``."""
    return f"{100 * float(x):.3g}%"


def count(n: int) -> str:
    return f"{n:,}"


def one_comparison(frame: pd.DataFrame, param: str, where: str, keys: Sequence[str]) -> None:
    """Refuse a frame holding several comparisons (distinct values of the ``keys`` present)."""
    present = [k for k in keys if k in frame.columns]
    if not present:
        return
    combos = frame[present].astype(str).drop_duplicates()
    if len(combos) > 1:
        first = dict(combos.iloc[0])
        fail(
            param,
            where,
            f"a frame of one comparison (one value of each of {present})",
            None,
            got=f"{len(combos)} comparisons",
            fix=f"filter it to one, e.g. frame[(frame[{present[0]!r}] == {first[present[0]]!r}) & ...].",
        )


def cap_rows(
    frame: pd.DataFrame,
    max_rows: int,
    *,
    by: str | None = None,
    keep: Iterable[Hashable] = (),
    seed: int = 0,
    unit: str = "points",
) -> tuple[pd.DataFrame, str | None]:
    """At most ``max_rows`` rows of ``frame``, drawn deterministically (``seed``), in their original order.

    With ``by`` (e.g. ``"sample_id"``), whole groups are kept or dropped, so a sample kept in one run is
    kept in every run; the values in ``keep`` are kept first. Returns the rows and a note for the chart
    (``None`` when nothing was dropped)."""
    total = len(frame)
    if total <= max_rows:
        return frame, None
    if by is None:
        chosen = frame.sample(n=max_rows, random_state=seed).sort_index()
        note = f"{count(max_rows)} of {count(total)} {unit} shown (a random sample, seed {seed})"
        return chosen, note
    sizes = frame.groupby(by, sort=False).size()
    keep = [k for k in dict.fromkeys(keep) if k in sizes.index]
    rest = sizes.drop(index=keep).sample(frac=1.0, random_state=seed)
    order = pd.concat([sizes.loc[keep], rest])
    within = order.cumsum() <= max_rows
    ids = order.index[within.to_numpy()]
    chosen = frame[frame[by].isin(ids)]
    note = (
        f"{count(len(chosen))} of {count(total)} {unit} shown ({count(len(ids))} of {count(len(sizes))} "
        f"{by} values drawn at random, seed {seed})"
    )
    return chosen, note


def title(text: str, *notes: str | None) -> alt.Title:
    """A chart title with the non-empty ``notes`` as subtitle lines."""
    lines = [n for n in notes if n]
    return alt.Title(text, subtitle=lines) if lines else alt.Title(text)


def finish(chart: Any, where: str, options: Mapping[str, Any], *, rows: int, source_rows: int) -> Any:
    """Theme ``chart`` and record in its ``usermeta`` what made it (exported with the chart); the chart
    composes with ``|``, ``&`` and ``+`` (see :func:`composable`)."""
    chart = apply_theme(chart)
    chart.usermeta = {
        "pruneviz": {
            "chart": where,
            "options": {k: _plain(v) for k, v in options.items()},
            "rows": int(rows),
            "source_rows": int(source_rows),
        }
    }
    return composable(chart)


# -- composing charts ----------------------------------------------------------------------------------
# Vega-Lite allows ``usermeta`` at the top level only: the parts of a composition give theirs up, and the
# composition records them as its ``parts``.
_COMPOSABLE: dict[type, type] = {}


def composable(chart: Any) -> Any:
    """``chart`` as an instance of a subclass of its Altair class whose ``|``, ``&`` and ``+`` move the
    parts' ``usermeta`` to the composition (``{"pruneviz": {"chart": "composition", "parts": [...]}}``)."""
    base = type(chart)
    if base in _COMPOSABLE.values():
        return chart
    if base not in _COMPOSABLE:
        name = f"Composable{base.__name__}"
        _COMPOSABLE[base] = globals()[name] = type(name, (base,), {
            "__or__": lambda self, other: _compose(alt.hconcat, self, other),
            "__and__": lambda self, other: _compose(alt.vconcat, self, other),
            "__add__": lambda self, other: _compose(alt.layer, self, other),
            "__module__": __name__,
            "__qualname__": name,
        })  # fmt: skip
    object.__setattr__(chart, "__class__", _COMPOSABLE[base])  # Altair's __setattr__ stores schema keys
    return chart


def _compose(how: Any, *charts: Any) -> Any:
    parts: list[Any] = []
    metas: list[Any] = []
    for chart in charts:
        meta = getattr(chart, "usermeta", alt.Undefined)
        if meta is not alt.Undefined:
            chart = chart.copy(deep=False)
            chart.usermeta = alt.Undefined
            meta = meta.get("pruneviz", meta) if isinstance(meta, dict) else meta
            metas.extend(meta.get("parts", [meta]) if isinstance(meta, dict) else [meta])
        parts.append(chart)
    out = how(*parts)
    out.usermeta = {"pruneviz": {"chart": "composition", "parts": metas}}
    return composable(out)


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return repr(value)


def format_for(metric: str) -> str:
    """Axis number format: percentages for fractions of samples, SI prefixes for counts."""
    if metric in FRACTION_METRICS:
        return ".0%"
    if metric in COUNT_METRICS:
        return "~s"
    return ",.4~g"


FRACTION_METRICS = {"test_accuracy", "val_accuracy", "accuracy", "error", "error_rate", "sparsity", "ece"}
COUNT_METRICS = {"params", "nonzero_params", "dense_macs", "effective_macs"}

# axis titles, in words with units, of the quantities the analyses report
AXIS_TITLES = {
    "test_accuracy": "Test accuracy (%)",
    "val_accuracy": "Validation accuracy (%)",
    "test_loss": "Test loss (cross-entropy, nats)",
    "accuracy": "Accuracy (%)",
    "error": "Error (%)",
    "error_rate": "Error rate (%)",
    "params": "Parameters (count)",
    "nonzero_params": "Non-zero parameters (count)",
    "dense_macs": "MACs per sample, dense (count)",
    "effective_macs": "Effective MACs per sample (count)",
    "latency_b1_s": "Latency, batch of 1 (ms)",
    "train_s": "Training time (s)",
    "prune_and_finetune_s": "Pruning and fine-tuning time (s)",
    "sparsity": "Layer sparsity (% of weights zero)",
    "spectral_norm": "Spectral norm (largest singular value)",
    "frobenius_norm": "Frobenius norm",
    "stable_rank": "Stable rank (‖W‖²_F / ‖W‖²₂)",
    "effective_rank": "Effective rank (entropy of singular values)",
    "rank": "Numerical rank (singular values)",
    "zero_singular_values": "Zero singular values (count)",
    "condition_number": "Condition number at the numerical rank (σ_1 / σ_r)",
    "condition_number_full": "Full condition number (σ_1 / σ_min)",
    "alpha": "Power-law exponent α of the ESD",
    "alpha_hat": "α̂ = α · log₁₀ λ_max",
    "ks_distance": "KS distance of the power-law fit",
    "lambda_max": "Largest ESD eigenvalue λ_max",
    "pq_index": "PQ index (sparsity of weights, 0–1)",
    "operator_norm": "Operator norm of the convolution",
    "circular_operator_norm": "Circular operator norm (FFT)",
    "feature_norm": "Feature norm ‖h‖",
    "weight_norm": "Class weight norm ‖w_y‖",
    "cosine": "Cosine between h and w_y",
    "angle": "Angle between h and w_y (degrees)",
    "bias": "Class bias b_y (logits)",
    "logit": "True-class logit z_y",
    "margin": "Margin z_y − max other logit (logits)",
    "loss": "Loss (cross-entropy, nats)",
    "trace": "Hessian trace",
    "ece": "Expected calibration error (%)",
    "nll": "Negative log-likelihood (nats)",
    "brier": "Brier score",
}


def axis_title(metric: str) -> str:
    return AXIS_TITLES.get(metric, metric.replace("_", " ").capitalize())


# short names of the logit-geometry quantities, for titles
SHORT_NAMES = {
    "feature_norm": "feature norm",
    "weight_norm": "class weight norm",
    "cosine": "cosine",
    "angle": "angle",
    "bias": "class bias",
    "logit": "true-class logit",
    "margin": "margin",
}


def short_name(metric: str) -> str:
    return SHORT_NAMES.get(metric, axis_title(metric).split(" (")[0].lower())
