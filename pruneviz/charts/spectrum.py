"""Per-layer spectral statistics: norms, ranks, condition numbers and heavy-tail exponents."""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import pandas as pd

from pruneviz._validation import fail
from pruneviz.charts._base import (
    axis_title,
    check_frame,
    finish,
    label_order,
    model_colour,
    title,
    with_models,
)

__all__ = ["spectrum_chart"]

FULL = "condition_number_full"
COLLAPSE = "collapsed: σ_min = 0, full condition number infinite"

LOG_METRICS = {
    "condition_number",
    "condition_number_full",
    "spectral_norm",
    "frobenius_norm",
    "lambda_max",
    "operator_norm",
    "circular_operator_norm",
}


def spectrum_chart(
    spectrum: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("spectral_norm", "condition_number", "stable_rank", "alpha"),
) -> alt.HConcatChart:
    """Per-layer spectral statistics of each model, layers in model order, one panel per metric.

    Takes :func:`~pruneviz.analysis.spectrum_table` / :func:`~pruneviz.analysis.run_spectrum`
    (``layer``, ``metric``, ``value``); frames of several runs may be concatenated (seeds of one
    method and sparsity are averaged). Norms and condition numbers use a log scale when all are
    positive. An infinite value (e.g. the condition number of a fully pruned layer) is drawn as a
    triangle at the top of its panel; missing values (e.g. α where there is no power-law fit) are left
    out. Rank collapse is marked where the frame has ``condition_number_full``: on the
    ``condition_number`` panel (κ at the numerical rank, which stays finite, even falls, as pruning kills
    whole neurons), a ring around each layer whose full ``σ_1 / σ_min`` is infinite.
    """
    where = "spectrum_chart"
    source = "run_spectrum / spectrum_table"
    check_frame(spectrum, "spectrum", where, source, ["layer", "metric", "value"])
    present = list(dict.fromkeys(spectrum["metric"].astype(str)))
    if isinstance(metrics, str) or not len(metrics):
        fail("metrics", where, "a list of metrics", metrics, f"pass e.g. metrics={present[:2]}.")
    unknown = [m for m in metrics if m not in present]
    if unknown:
        fail("metrics", where, f"metrics present in the frame ({present})", unknown, "pick from the list.")
    # the full condition number comes along to mark rank collapse on the condition-number panel
    full = [FULL] if "condition_number" in metrics and FULL in present else []
    frame = with_models(spectrum[spectrum["metric"].isin([*metrics, *full])])
    frame["layer"] = frame["layer"].astype(str)
    layers = list(dict.fromkeys(spectrum["layer"].astype(str)))
    order = label_order(frame)
    long = frame.groupby(["model", "method", "layer", "metric"], sort=False)["value"].mean().reset_index()
    long["infinite"] = long["value"].map(lambda v: math.isinf(v) if pd.notna(v) else False)
    singular = long.loc[(long["metric"] == FULL) & long["infinite"], ["model", "layer"]]
    keys = pd.MultiIndex.from_frame(long[["model", "layer"]])
    long["collapsed"] = (
        (long["metric"] == "condition_number")
        & ~long["infinite"]
        & keys.isin(pd.MultiIndex.from_frame(singular)).astype(bool)
    )
    long["note"] = long["collapsed"].map({True: COLLAPSE, False: ""})
    colour = model_colour(long, order)
    x = alt.X("layer:N", sort=layers, title="Layer (in model order)", axis=alt.Axis(labelAngle=-40))
    panels, plotted, collapse_shown = [], [], False
    for metric in metrics:
        part = long[long["metric"] == metric].copy()
        finite = part.loc[~part["infinite"], "value"].dropna()
        log = metric in LOG_METRICS and len(finite) > 0 and bool((finite > 0).all())
        top = float(finite.max()) if len(finite) else 1.0
        part["shown"] = part["value"].where(
            ~part["infinite"], top * (10.0 if log else 1.1) if top > 0 else 1.0
        )
        part = part.dropna(subset=["shown"])
        plotted.append(part)
        base = alt.Chart().transform_filter(alt.datum.metric == metric)
        y = alt.Y("shown:Q", title=axis_title(metric), scale=alt.Scale(type="log") if log else alt.Scale())
        tooltip = ["model", "layer", alt.Tooltip("value:Q", format=".4g")]
        line = (
            base.transform_filter(~alt.datum.infinite)
            .mark_line(point=True)
            .encode(x=x, y=y, color=colour, tooltip=tooltip)
        )
        inf = (
            base.transform_filter(alt.datum.infinite)
            .mark_point(shape="triangle-up", size=90, filled=True)
            .encode(x=x, y=y, color=colour, tooltip=tooltip)
        )
        marks = [line, inf]
        if part["collapsed"].any():
            marks.append(
                base.transform_filter(alt.datum.collapsed)
                .mark_point(shape="circle", size=260, filled=False, strokeWidth=2)
                .encode(x=x, y=y, color=colour, tooltip=[*tooltip, alt.Tooltip("note:N", title="rank")])
            )
            collapse_shown = True
        panels.append(
            alt.layer(*marks).properties(
                width=max(200, 34 * len(layers)), height=200, title=axis_title(metric).split(" (")[0]
            )
        )
    data = pd.concat(plotted, ignore_index=True)
    notes = [
        "Triangles: infinite (e.g. the condition number of a fully pruned layer). Seeds averaged.",
        "Rings: rank collapse, σ_min = 0 so the full σ_1 / σ_min is infinite; the condition number "
        "is shown at the numerical rank."
        if collapse_shown
        else None,
    ]
    chart = alt.hconcat(*panels, data=data, title=title("Spectra of the layers' weights", *notes))
    return finish(chart, where, {"metrics": list(metrics)}, rows=len(data), source_rows=len(spectrum))
