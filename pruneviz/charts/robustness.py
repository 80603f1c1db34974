"""Robustness and calibration charts: corruptions by severity, attacks by strength, reliability."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from pruneviz._validation import check_choice, check_int, data_fail
from pruneviz.charts._base import (
    axis_title,
    check_frame,
    finish,
    label_order,
    method_of,
    model_colour,
    model_labels,
    sparsity_column,
    title,
)

__all__ = ["attack_chart", "corruption_chart", "reliability_chart"]


def _per_model(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean, min and max of ``value`` over the runs (seeds) of each model, per ``keys``."""
    out = frame.assign(model=model_labels(frame), method=method_of(frame))
    return (
        out.groupby(["model", "method", *keys], sort=False)["value"]
        .agg(value="mean", low="min", high="max", runs="size")
        .reset_index()
    )


def _budget_note(frame: pd.DataFrame) -> str | None:
    """ "On n test samples per split (standard error up to x points)" where the frame says so."""
    if "samples" not in frame.columns or frame["samples"].isna().all():
        return None
    low, high = int(frame["samples"].min()), int(frame["samples"].max())
    count = f"{low:,}" if low == high else f"{low:,}–{high:,}"
    note = f"On {count} test samples per split"
    if "se" in frame.columns and frame["se"].notna().any():
        note += f" (standard error of an accuracy up to {100 * float(frame['se'].max()):.1f} points)"
    return note + "."


def corruption_chart(
    corruptions: pd.DataFrame, *, metric: str = "accuracy", columns: int = 5
) -> alt.FacetChart:
    """Accuracy (or error) under each corruption as its severity grows, one panel per corruption, one
    line per model (method × sparsity; the mean over seeds, with a line from the lowest to the highest
    seed). Severity 0 is the clean test set, drawn in every panel.

    Takes :func:`~pruneviz.analysis.run_corruptions` (``corruption``, ``severity``, ``metric``,
    ``value`` and the run keys), Hendrycks & Dietterich (2019); Mu & Gilmer (2019) for MNIST-C.
    """
    where = "corruption_chart"
    metric = check_choice(metric, "metric", where, ("accuracy", "error"))
    columns = check_int(columns, "columns", where, minimum=1)
    check_frame(
        corruptions,
        "corruptions",
        where,
        "run_corruptions",
        ["corruption", "severity", "metric", "value", "method"],
    )
    frame = corruptions[corruptions["metric"] == metric]
    if frame.empty:
        data_fail(
            "corruptions", where, f"rows with metric == {metric!r}", "none", "pass run_corruptions' frame."
        )
    table = _per_model(frame, ["corruption", "severity"])
    names = [c for c in dict.fromkeys(table["corruption"]) if c != "clean"]
    clean = table[table["corruption"] == "clean"]
    data = pd.concat(
        [table[table["corruption"] != "clean"], *[clean.assign(corruption=c) for c in names]],
        ignore_index=True,
    )
    if not names:
        data = table
        names = ["clean"]
    order = label_order(data.assign(**{sparsity_column(corruptions): _sparsity_of(data, corruptions)}))
    colour = model_colour(data, order)
    x = alt.X("severity:Q", title="Severity (0 = clean)", axis=alt.Axis(tickMinStep=1, format="d"))
    y = alt.Y("value:Q", title=axis_title(metric), axis=alt.Axis(format="%"))
    chart = (
        _line_with_spread(x, y, colour, ["model", "corruption", "severity"])
        .properties(width=150, height=130)
        .facet(
            facet=alt.Facet("corruption:N", sort=names, title=None),
            columns=min(columns, len(names)),
            data=data,
        )
        .properties(
            title=title(
                f"{metric.capitalize()} under corruptions, by severity",
                "Lines: mean over seeds; vertical lines: min–max over seeds.",
                _budget_note(frame),
            )
        )
    )
    return finish(
        chart, where, {"metric": metric, "columns": columns}, rows=len(data), source_rows=len(corruptions)
    )


def _sparsity_of(table: pd.DataFrame, source: pd.DataFrame) -> pd.Series:
    """The sparsity of each model label of ``table`` (for ordering), looked up in ``source``."""
    col = sparsity_column(source)
    if col not in source.columns:
        return pd.Series(0.0, index=table.index)
    lookup = source.assign(model=model_labels(source)).drop_duplicates("model").set_index("model")[col]
    return table["model"].map(lookup)


def attack_chart(attacks: pd.DataFrame, *, metric: str = "accuracy") -> alt.FacetChart:
    """Accuracy under white-box attacks against the attack budget ε, one panel per attack (and norm and
    step count), one line per model; ε = 0 is the clean accuracy, drawn in every panel. Mean over seeds
    with a line from the lowest to the highest seed.

    Takes :func:`~pruneviz.analysis.run_attacks` (``attack``, ``eps``, ``metric``, ``value`` and the run
    keys); FGSM (Goodfellow et al. 2015), PGD (Madry et al. 2018).
    """
    where = "attack_chart"
    check_frame(attacks, "attacks", where, "run_attacks", ["attack", "eps", "metric", "value", "method"])
    frame = attacks[attacks["metric"] == metric].copy()
    if frame.empty:
        data_fail("attacks", where, f"rows with metric == {metric!r}", "none", "pass run_attacks' frame.")
    norm = frame["norm"].astype(str) if "norm" in frame.columns else pd.Series("", index=frame.index)
    steps = frame["steps"] if "steps" in frame.columns else pd.Series(1, index=frame.index)
    frame["panel"] = [
        a
        if a == "none"
        else f"{a} ({n}{', ' + str(int(s)) + ' steps' if s and int(s) > 1 else ''})".replace(" ()", "")
        for a, n, s in zip(frame["attack"].astype(str), norm, steps, strict=True)
    ]
    table = _per_model(frame, ["panel", "eps"])
    panels = [p for p in dict.fromkeys(table["panel"]) if p != "none"]
    clean = table[table["panel"] == "none"]
    data = pd.concat(
        [table[table["panel"] != "none"], *[clean.assign(panel=p) for p in panels]], ignore_index=True
    )
    if not panels:
        data, panels = table, ["none"]
    order = label_order(data.assign(**{sparsity_column(attacks): _sparsity_of(data, attacks)}))
    colour = model_colour(data, order)
    x = alt.X("eps:Q", title="Attack budget ε (input units; 0 = clean)")
    y = alt.Y("value:Q", title=axis_title(metric), axis=alt.Axis(format="%"))
    chart = (
        _line_with_spread(x, y, colour, ["model", "panel", "eps"])
        .properties(width=220, height=180)
        .facet(facet=alt.Facet("panel:N", sort=panels, title=None), columns=min(3, len(panels)), data=data)
        .properties(
            title=title(
                f"{metric.capitalize()} under attack, by budget ε",
                "Lines: mean over seeds; vertical lines: min–max over seeds.",
                _budget_note(frame),
            )
        )
    )
    return finish(chart, where, {"metric": metric}, rows=len(data), source_rows=len(attacks))


def reliability_chart(reliability: pd.DataFrame) -> alt.LayerChart:
    """Reliability diagram (Guo et al. 2017): accuracy against mean confidence per confidence bin, one
    line per model, dots sized by the samples in the bin, and the diagonal of perfect calibration
    (below it: over-confident). Runs of one model (seeds) are pooled; each model's expected calibration
    error is given in the legend.

    Takes :func:`~pruneviz.analysis.reliability_bins` / :func:`~pruneviz.analysis.run_reliability`
    (``bin``, ``count``, ``confidence``, ``accuracy``); frames of several runs may be concatenated.
    """
    where = "reliability_chart"
    check_frame(
        reliability,
        "reliability",
        where,
        "run_reliability / reliability_bins",
        ["bin", "count", "confidence", "accuracy"],
    )
    frame = reliability.assign(model=model_labels(reliability), method=method_of(reliability))
    if "split" in frame.columns and frame["split"].nunique() > 1:
        frame["model"] = frame["model"] + " · " + frame["split"].astype(str)
    base_order = label_order(frame)
    frame = frame[frame["count"] > 0]
    frame = frame.assign(
        conf_sum=frame["count"] * frame["confidence"], acc_sum=frame["count"] * frame["accuracy"]
    )
    table = (
        frame.groupby(["model", "method", "bin"], sort=False)[["count", "conf_sum", "acc_sum"]]
        .sum()
        .reset_index()
    )
    table["confidence"] = table["conf_sum"] / table["count"]
    table["accuracy"] = table["acc_sum"] / table["count"]
    gap = (table["count"] * (table["confidence"] - table["accuracy"]).abs()).groupby(table["model"]).sum()
    ece = gap / table.groupby("model")["count"].sum()
    named = {m: f"{m} (ECE {100 * ece[m]:.1f}%)" for m in ece.index}
    table["model"] = table["model"].map(named)
    data = table[["model", "method", "bin", "count", "confidence", "accuracy"]].sort_values(["model", "bin"])
    order = [named[m] for m in base_order if m in named]
    colour = model_colour(data, order)
    x = alt.X(
        "confidence:Q",
        title="Mean confidence in the bin (%)",
        scale=alt.Scale(domain=[0, 1]),
        axis=alt.Axis(format="%"),
    )
    y = alt.Y(
        "accuracy:Q",
        title="Accuracy in the bin (%)",
        scale=alt.Scale(domain=[0, 1]),
        axis=alt.Axis(format="%"),
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"confidence": [0.0], "accuracy": [0.0], "c2": [1.0], "a2": [1.0]}))
        .mark_rule(strokeDash=[5, 4], color="#777777")
        .encode(x="confidence:Q", y="accuracy:Q", x2="c2:Q", y2="a2:Q")
    )
    line = alt.Chart().mark_line().encode(x=x, y=y, color=colour)
    dots = (
        alt.Chart()
        .mark_circle(opacity=0.85)
        .encode(
            x=x,
            y=y,
            color=colour,
            size=alt.Size("count:Q", title="Samples in bin", scale=alt.Scale(range=[15, 300])),
            tooltip=[
                "model",
                "bin",
                "count",
                alt.Tooltip("confidence:Q", format=".1%"),
                alt.Tooltip("accuracy:Q", format=".1%"),
            ],
        )
    )
    chart = alt.layer(diagonal, line, dots, data=data.reset_index(drop=True)).properties(
        width=300,
        height=300,
        title=title("Reliability diagram", "Dashed: perfect calibration; below it, over-confident."),
    )
    return finish(chart, where, {}, rows=len(data), source_rows=len(reliability))


def _line_with_spread(x: alt.X, y: alt.Y, colour: Any, keys: list[str]) -> alt.LayerChart | alt.FacetChart:
    """Mean line with points per model, and a rule from the lowest to the highest seed."""
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(x=x, y=y, color=colour, tooltip=[*keys, alt.Tooltip("value:Q", format=".1%"), "runs"])
    )
    spread = alt.Chart().mark_rule().encode(x=x, y="low:Q", y2="high:Q", color=colour)
    return alt.layer(spread, line)
