"""Who pays for pruning: per-group changes with their uncertainty and the permutation null."""

from __future__ import annotations

import altair as alt
import pandas as pd

from pruneviz._validation import check_choice, data_fail, fail
from pruneviz.charts._base import check_frame, finish, label_order, model_labels, percent, title

__all__ = ["subgroup_chart"]

ALL = "(all)"
FINDINGS = ("significant", "not significant", "group", "small group")
FINDING_COLOURS = ("#d62728", "#4c78a8", "#4c78a8", "#bbbbbb")
PERCENT_METRICS = {"accuracy", "error_rate"}


def subgroup_chart(
    impact: pd.DataFrame, *, statistic: str = "psi", highlight: object | None = None
) -> alt.FacetChart:
    """Per group, what pruning cost it: ``statistic="delta"`` shows Δ_g (the metric's change from dense
    to pruned) against the overall Δ (dashed); ``"psi"`` shows the excess gap ψ_g = Δ_g − Δ against 0,
    with a grey band for the central interval of the permutation null (what groups unrelated to the
    outputs would show; needs ``null_low``/``null_high``). Black lines are bootstrap intervals (``ci_low``,
    ``ci_high``); ``*`` marks a ψ_g significant after Holm's adjustment; small groups are pale. One panel per
    comparison (method × sparsity). ``highlight`` outlines one group (e.g. the group of the sample
    picked in a linked view) and names it in the subtitle.

    Takes :func:`~pruneviz.analysis.run_subgroups` or :func:`~pruneviz.analysis.disparate_impact`
    (Hooker et al. 2020; Tran et al. 2022). For loss-like metrics (error rate, NLL, ECE, Brier) a
    negative Δ_g is a loss.
    """
    where = "subgroup_chart"
    source = "run_subgroups / disparate_impact"
    check_frame(
        impact, "impact", where, source, ["group", "statistic", "value", "ci_low", "ci_high", "n", "small"]
    )
    statistic = check_choice(statistic, "statistic", where, ("delta", "psi"))
    frame = impact.copy()
    frame["group"] = frame["group"].astype(str)
    frame["comparison"] = model_labels(frame) if "method" in frame.columns else "pruned vs dense"
    if "attribute" in frame.columns and frame["attribute"].nunique() > 1:
        frame["comparison"] = frame["comparison"] + " · " + frame["attribute"].astype(str)
    rows = frame[(frame["statistic"] == statistic) & (frame["group"] != ALL)].copy()
    if rows.empty:
        data_fail(
            "impact",
            where,
            f"a frame with statistic == {statistic!r} rows",
            "none",
            f"pass {source}'s frame.",
        )
    overall = frame[(frame["statistic"] == "delta") & (frame["group"] == ALL)].set_index("comparison")[
        "value"
    ]
    rows["reference"] = rows["comparison"].map(overall) if statistic == "delta" else 0.0
    significant = (
        rows["significant"].astype("boolean").fillna(False).astype(bool)
        if "significant" in rows.columns
        else pd.Series(False, index=rows.index)
    )
    small = rows["small"].astype(bool)
    if statistic == "psi":
        finding = significant.map({True: "significant", False: "not significant"})
    else:
        finding = pd.Series("group", index=rows.index)
    rows["finding"] = finding.where(~small, "small group")
    rows["star"] = significant.map({True: "*", False: ""})
    has_null = (
        statistic == "psi"
        and {"null_low", "null_high"} <= set(rows.columns)
        and rows["null_low"].notna().any()
    )
    cols = ["comparison", "group", "value", "ci_low", "ci_high", "n", "finding", "star", "reference"]
    cols += ["null_low", "null_high"] if has_null else []
    cols += [c for c in ("p_value", "p_adjusted") if c in rows.columns]
    data = rows[cols].reset_index(drop=True)
    groups = list(dict.fromkeys(data["group"]))
    order = (
        label_order(rows, "comparison")
        if "method" in rows.columns
        else list(dict.fromkeys(data["comparison"]))
    )

    metric = str(frame["metric"].iloc[0]) if "metric" in frame.columns else "metric"
    fmt = ".1%" if metric in PERCENT_METRICS else ".3g"
    unit = " (% points)" if metric in PERCENT_METRICS else ""
    what = {"accuracy": "accuracy lost", "error_rate": "error rate change"}.get(metric, f"change in {metric}")
    y_title = f"Δ_g, {what}{unit}" if statistic == "delta" else f"ψ_g, excess {what}{unit}"
    findings = (
        ["significant", "not significant", "small group"] if statistic == "psi" else ["group", "small group"]
    )
    palette = dict(zip(FINDINGS, FINDING_COLOURS, strict=True))
    attribute = str(frame["attribute"].iloc[0]) if "attribute" in frame.columns else "group"

    x = alt.X("group:N", sort=groups, title=f"Group ({attribute})", axis=alt.Axis(labelAngle=0))
    y_axis = alt.Axis(format=fmt, title=y_title)
    layers = []
    if has_null:
        layers.append(
            alt.Chart()
            .mark_bar(color="#999999", opacity=0.25, width={"band": 0.95})
            .encode(x=x, y=alt.Y("null_low:Q", axis=y_axis), y2="null_high:Q")
        )
    tooltip = [
        c
        for c in ("group", "value", "ci_low", "ci_high", "n", "p_value", "p_adjusted", "finding")
        if c in data.columns
    ]
    if highlight is not None:
        highlight = str(highlight)
        if highlight not in groups:
            fail("highlight", where, f"one of the groups ({groups[:8]})", highlight, "pass a group shown.")
        layers.append(
            alt.Chart()
            .transform_filter(alt.datum.group == highlight)
            .mark_bar(width={"band": 0.95}, fill=None, stroke="black", strokeWidth=2, strokeDash=[3, 2])
            .encode(x=x, y=alt.Y("ci_low:Q", axis=y_axis), y2="ci_high:Q")
        )
    layers += [
        alt.Chart()
        .mark_bar(width={"band": 0.6})
        .encode(
            x=x,
            y=alt.Y("value:Q", axis=y_axis),
            color=alt.Color(
                "finding:N",
                title=None,
                scale=alt.Scale(domain=findings, range=[palette[f] for f in findings]),
            ),
            opacity=alt.condition(alt.datum.finding == "small group", alt.value(0.5), alt.value(0.9)),
            tooltip=tooltip,
        ),
        alt.Chart().mark_rule(color="black").encode(x=x, y="ci_low:Q", y2="ci_high:Q"),
        alt.Chart()
        .transform_filter(alt.datum.value >= 0)
        .mark_text(baseline="bottom", dy=-2, fontSize=15, fontWeight="bold")
        .encode(x=x, y="ci_high:Q", text="star:N"),
        alt.Chart()
        .transform_filter(alt.datum.value < 0)
        .mark_text(baseline="top", dy=2, fontSize=15, fontWeight="bold")
        .encode(x=x, y="ci_low:Q", text="star:N"),
        alt.Chart().mark_rule(strokeDash=[5, 4], color="#555555").encode(y="mean(reference):Q"),
    ]
    notes = [
        "Black: bootstrap interval. "
        + ("Grey band: central interval of the permutation null. " if has_null else "")
        + ("* significant after Holm's adjustment. " if statistic == "psi" else "")
        + ("Dashed: Δ over all samples." if statistic == "delta" else "Dashed: 0, the average sample."),
    ]
    if highlight is not None:
        notes.append(f"Dotted outline: group {highlight}, the picked sample's.")
    disparity = frame[(frame["statistic"] == "disparity") & (frame["group"] == ALL)]
    if len(order) == 1 and len(disparity):
        d = disparity.iloc[0]
        p = f", p = {d['p_value']:.3g}" if "p_value" in d and pd.notna(d["p_value"]) else ""
        shown = percent(d["value"]) if metric in PERCENT_METRICS else f"{d['value']:.3g}"
        notes.append(f"Disparity Ψ = max Δ_g − min Δ_g = {shown}{p}.")
    panel = alt.layer(*layers).properties(width=max(220, 28 * len(groups)), height=220)
    chart = panel.facet(
        facet=alt.Facet("comparison:N", sort=order, title=None), columns=min(3, len(order)), data=data
    ).properties(
        title=title(f"Who pays for pruning: {'ψ_g' if statistic == 'psi' else 'Δ_g'} by {attribute}", *notes)
    )
    options = {"statistic": statistic, "highlight": highlight}
    return finish(chart, where, options, rows=len(data), source_rows=len(impact))
