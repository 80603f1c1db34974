"""Who pays for pruning: per-group changes with their uncertainty and the permutation null."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from pruneviz._validation import check_choice, data_fail, fail
from pruneviz._vocabulary import METRIC_LABELS
from pruneviz.charts._base import check_frame, finish, label_order, model_labels, percent, title

__all__ = ["fairness_gap_chart", "subgroup_chart"]

ALL = "(all)"
FINDINGS = ("significant", "not significant", "group", "small group")
FINDING_COLOURS = ("#d62728", "#4c78a8", "#4c78a8", "#bbbbbb")
PERCENT_METRICS = set(METRIC_LABELS)
RATE_NAMES = METRIC_LABELS


def _one_metric(impact: pd.DataFrame, metric: str | None, klass: str | None, where: str) -> pd.DataFrame:
    """The rows of one metric (and class) of a subgroup frame; frames without those columns as they are."""
    frame = impact.copy()
    if "metric" not in frame.columns:
        return frame
    per_group = frame[frame["group"].astype(str) != ALL]
    metrics = list(dict.fromkeys(per_group["metric"].astype(str)))
    if metric is None:
        metric = metrics[0] if metrics else str(frame["metric"].iloc[0])
    elif metric not in metrics:
        fail("metric", where, f"a metric of the frame with per-group rows ({metrics})", metric)
    frame = frame[frame["metric"].astype(str) == metric]
    if "class" in frame.columns:
        classes = list(dict.fromkeys(frame["class"].fillna("").astype(str)))
        if klass is None:
            klass = "macro" if "macro" in classes else classes[0]
        elif klass not in classes:
            fail("klass", where, f"a class of the metric {metric!r} ({classes})", klass)
        frame = frame[frame["class"].fillna("").astype(str) == klass]
    return frame.reset_index(drop=True)


def _why(frame: pd.DataFrame, group: str) -> str:
    if "note" not in frame.columns:
        return "the metric is undefined there."
    notes = frame.loc[(frame["group"] == group) & (frame["note"].astype(str) != ""), "note"]
    return (str(notes.iloc[0]) + ".") if len(notes) else "the metric is undefined there."


def subgroup_chart(
    impact: pd.DataFrame,
    *,
    statistic: str = "psi",
    metric: str | None = None,
    klass: str | None = None,
    highlight: object | None = None,
) -> alt.FacetChart:
    """Per group, what pruning cost it: ``statistic="delta"`` shows Δ_g (the metric's change from dense
    to pruned) against the overall Δ (dashed); ``"psi"`` shows the excess gap ψ_g = Δ_g − Δ against 0,
    with a grey band for the central interval of the permutation null (what groups unrelated to the
    outputs would show; needs ``null_low``/``null_high``). Black lines are bootstrap intervals (``ci_low``,
    ``ci_high``); ``*`` marks a ψ_g significant after Holm's adjustment; small groups are pale. One panel per
    comparison (method × sparsity). ``highlight`` outlines one group (e.g. the group of the sample
    picked in a linked view) and names it in the subtitle. A frame of several metrics shows one:
    ``metric`` (default: the first with per-group rows) and, for a one-vs-rest rate, ``klass`` (default:
    class 1 of two, else the ``macro`` mean). Groups where the metric is undefined (a TPR without
    positives) have no bar; the subtitle says so.

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
    frame = _one_metric(impact, metric, klass, where)
    frame["group"] = frame["group"].astype(str)
    frame["comparison"] = model_labels(frame) if "method" in frame.columns else "pruned vs dense"
    if "attribute" in frame.columns and frame["attribute"].nunique() > 1:
        frame["comparison"] = frame["comparison"] + " · " + frame["attribute"].astype(str)
    rows = frame[(frame["statistic"] == statistic) & (frame["group"] != ALL)].copy()
    undefined = sorted(set(rows.loc[rows["value"].isna(), "group"]))
    rows = rows[rows["value"].notna()]
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
    klass = str(frame["class"].iloc[0]) if "class" in frame.columns else ""
    fmt = ".1%" if metric in PERCENT_METRICS else ".3g"
    unit = " (% points)" if metric in PERCENT_METRICS else ""
    what = {"accuracy": "accuracy lost", "error_rate": "error rate change"}.get(
        metric, f"{RATE_NAMES.get(metric, metric)} lost"
    )
    if klass:
        what += " (macro mean over classes)" if klass == "macro" else f" (class {klass})"
    y_title = f"Δ_g, {what}{unit}" if statistic == "delta" else f"ψ_g, excess {what}{unit}"
    findings = (
        ["significant", "not significant", "small group"] if statistic == "psi" else ["group", "small group"]
    )
    palette = dict(zip(FINDINGS, FINDING_COLOURS, strict=True))
    attribute = str(frame["attribute"].iloc[0]) if "attribute" in frame.columns else "group"

    longest = max((len(g) for g in groups), default=0)
    slanted = longest * 7 > max(220, 28 * len(groups)) / max(len(groups), 1)  # labels wider than a band
    x_axis = alt.Axis(labelAngle=-40 if slanted else 0, labelLimit=160, labelOverlap=False)
    x = alt.X("group:N", sort=groups, title=f"Group ({attribute})", axis=x_axis)
    y_axis = alt.Axis(format=fmt, title=y_title)
    # the axis spans the groups that are not small: a tiny group's wide interval is cut at the edge
    big = data[data["finding"] != "small group"] if (data["finding"] != "small group").any() else data
    ends = [big["ci_low"], big["ci_high"], big["value"], data["reference"]]
    ends += [big["null_low"], big["null_high"]] if has_null else []
    low, high = min(float(e.min()) for e in ends), max(float(e.max()) for e in ends)
    if math.isfinite(low) and math.isfinite(high):
        pad = 0.05 * (high - low) or 0.01
        domain = [min(low - pad, 0.0), max(high + pad, 0.0)]
        cut = bool(((data["ci_low"] < domain[0]) | (data["ci_high"] > domain[1])).any())
        y_scale = alt.Scale(domain=domain, clamp=True, nice=False)
    else:
        cut, y_scale = False, alt.Scale()
    layers = []
    if has_null:
        layers.append(
            alt.Chart()
            .mark_bar(color="#999999", opacity=0.25, width={"band": 0.95})
            .encode(x=x, y=alt.Y("null_low:Q", axis=y_axis, scale=y_scale), y2="null_high:Q")
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
            .encode(x=x, y=alt.Y("ci_low:Q", axis=y_axis, scale=y_scale), y2="ci_high:Q")
        )
    layers += [
        alt.Chart()
        .mark_bar(width={"band": 0.6})
        .encode(
            x=x,
            y=alt.Y("value:Q", axis=y_axis, scale=y_scale),
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
    if cut:
        notes.append("Intervals of small groups that leave the axis are cut at its edge.")
    if undefined:
        shown_groups = ", ".join(undefined[:4]) + (" …" if len(undefined) > 4 else "")
        notes.append(f"Undefined (no bar) for {shown_groups}: {_why(frame, undefined[0])}")
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
    options = {"statistic": statistic, "metric": metric, "klass": klass, "highlight": highlight}
    return finish(chart, where, options, rows=len(data), source_rows=len(impact))


GAP_NAMES = {
    "demographic_parity_difference": "Demographic parity difference",
    "demographic_parity_ratio": "Demographic parity ratio",
    "equalized_odds_difference": "Equalized odds difference",
    "equalized_odds_ratio": "Equalized odds ratio",
    "equal_opportunity_difference": "Equal opportunity difference",
}


def fairness_gap_chart(impact: pd.DataFrame, *, klass: str | None = None) -> alt.FacetChart:
    """The between-group gaps of :func:`~pruneviz.analysis.disparate_impact` (demographic parity,
    equalized odds, equal opportunity), dense against pruned for each comparison, with bootstrap
    intervals: one panel per gap. A difference of 0 (a ratio of 1) is parity; a filled point's gap is
    larger than groups unrelated to the outputs produce (permutation p ≤ 0.05). ``klass`` picks the
    class of a one-vs-rest gap (default: class 1 of two, else the ``macro`` mean)."""
    where = "fairness_gap_chart"
    source = "run_subgroups / disparate_impact with summary metrics"
    check_frame(
        impact, "impact", where, source, ["group", "metric", "statistic", "value", "ci_low", "ci_high"]
    )
    rows = impact[
        impact["metric"].isin(list(GAP_NAMES)) & impact["statistic"].isin(["dense", "pruned"])
    ].copy()
    if rows.empty:
        data_fail(
            "impact",
            where,
            f"a frame with rows of the summaries {list(GAP_NAMES)}",
            f"the metrics {sorted(set(impact['metric'].astype(str)))}",
            "compute them: disparate_impact(..., metric=['tpr', 'equalized_odds_difference', ...]).",
        )
    if "class" in rows.columns:
        classes = list(dict.fromkeys(rows["class"].fillna("").astype(str)))
        chosen = klass if klass is not None else ("macro" if "macro" in classes else classes[0])
        if chosen not in classes:
            fail("klass", where, f"a class of the gaps ({classes})", klass)
        rows = rows[rows["class"].fillna("").astype(str) == chosen]
    rows["comparison"] = model_labels(rows) if "method" in rows.columns else "pruned vs dense"
    rows["gap"] = rows["metric"].map(GAP_NAMES)
    rows["population"] = rows["statistic"]
    p = rows["p_value"] if "p_value" in rows.columns else pd.Series(float("nan"), index=rows.index)
    rows["beyond chance"] = (p <= 0.05).map({True: "yes", False: "no"})
    order = label_order(rows, "comparison") if "method" in rows.columns else ["pruned vs dense"]
    data = rows[["comparison", "gap", "population", "value", "ci_low", "ci_high", "beyond chance"]]
    data = data.reset_index(drop=True)
    offset = alt.YOffset("population:N", sort=["dense", "pruned"])
    y = alt.Y("comparison:N", sort=order, title=None, axis=alt.Axis(labelLimit=200))
    colour = alt.Color(
        "population:N", scale=alt.Scale(domain=["dense", "pruned"], range=["#4c78a8", "#f58518"])
    )
    base = alt.Chart().encode(y=y, yOffset=offset, color=colour)
    panel = alt.layer(
        base.mark_rule().encode(x=alt.X("ci_low:Q", title="gap"), x2="ci_high:Q"),
        base.mark_point(size=60, filled=True).encode(
            x="value:Q",
            shape=alt.Shape(
                "beyond chance:N", scale=alt.Scale(domain=["yes", "no"], range=["circle", "diamond"])
            ),
            tooltip=["comparison", "population", "value", "ci_low", "ci_high", "beyond chance"],
        ),
    ).properties(width=260, height=max(60, 26 * len(order)))
    chart = (
        panel.facet(facet=alt.Facet("gap:N", title=None), columns=min(2, data["gap"].nunique()), data=data)
        .resolve_scale(x="independent")
        .properties(
            title=title(
                "Between-group gaps, dense against pruned",
                "0 (a ratio of 1) is parity; lines are bootstrap intervals; a circle's gap is beyond what "
                "random groups produce (permutation p ≤ 0.05).",
            )
        )
    )
    return finish(chart, where, {"klass": klass}, rows=len(data), source_rows=len(impact))
