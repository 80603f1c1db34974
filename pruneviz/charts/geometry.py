"""Feature-geometry charts: layer similarity (CKA), aligned embeddings, and how logits move per sample."""

from __future__ import annotations

import altair as alt
import pandas as pd

from pruneviz import _vocabulary as V
from pruneviz._validation import check_int, fail
from pruneviz.charts._base import (
    MAX_ROWS,
    axis_title,
    cap_rows,
    check_frame,
    check_max_points,
    count,
    finish,
    label_order,
    model_labels,
    one_comparison,
    pick,
    sample_selection,
    short_name,
    title,
    with_models,
)
from pruneviz.charts._theme import ACCENT, MUTED

__all__ = ["cka_chart", "embedding_chart", "logit_change_chart", "logit_geometry_chart"]

COMPARISON = V.PAIR_KEYS[:6]  # without the seed


def cka_chart(cka: pd.DataFrame) -> alt.LayerChart:
    """CKA similarity between every layer of one model (rows) and every layer of another (columns),
    layers in model order, as a heatmap with the values written in when the grid is small.

    Takes :func:`~pruneviz.analysis.cka_grid` or :func:`~pruneviz.analysis.run_cka` (``layer_a``,
    ``layer_b``, ``value``; ``sample_se`` goes into the tooltip) of one pair of models. CKA (Kornblith
    et al. 2019) is 1 for representations equal up to rotation and scale, 0 for unrelated ones.
    """
    where = "cka_chart"
    check_frame(cka, "cka", where, "run_cka / cka_grid", ["layer_a", "layer_b", "value"])
    one_comparison(cka, "cka", where, ("run_a", "run_b"))
    rows_a = list(dict.fromkeys(cka["layer_a"].astype(str)))
    rows_b = list(dict.fromkeys(cka["layer_b"].astype(str)))
    columns = ["layer_a", "layer_b", "value"] + (["sample_se"] if "sample_se" in cka.columns else [])
    frame = cka[columns].astype({"layer_a": str, "layer_b": str})
    kernel = str(cka["kernel"].iloc[0]) if "kernel" in cka.columns else "linear"
    debiased = bool(cka["debiased"].iloc[0]) if "debiased" in cka.columns else False
    name_b = model_labels(cka.iloc[:1]).iloc[0] if "method" in cka.columns else "model B"
    name_a = "reference" if "run_a" in cka.columns else "model A"
    notes = [
        f"{'Debiased ' if debiased else ''}{kernel} kernel; 1 = same representation up to rotation and scale."
    ]
    if "run_a" in cka.columns:
        notes.append(f"{name_a}: {cka['run_a'].iloc[0]}; {name_b}: {cka['run_b'].iloc[0]}")
    x = alt.X("layer_b:N", sort=rows_b, title=f"Layer of {name_b}", axis=alt.Axis(labelAngle=-40))
    y = alt.Y("layer_a:N", sort=rows_a, title=f"Layer of {name_a}")
    cells = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "value:Q", title="CKA", scale=alt.Scale(scheme="viridis", domain=[0, 1], clamp=True)
            ),
            tooltip=[
                "layer_a",
                "layer_b",
                alt.Tooltip("value:Q", format=".3f"),
                *(
                    [alt.Tooltip("sample_se:Q", title="sampling error", format=".3f")]
                    if "sample_se" in frame
                    else []
                ),
            ],
        )
    )
    layers = [cells]
    if len(rows_a) <= 12 and len(rows_b) <= 12:
        layers.append(
            alt.Chart()
            .mark_text(fontSize=10)
            .encode(
                x=x,
                y=y,
                text=alt.Text("value:Q", format=".2f"),
                color=alt.condition(alt.datum.value < 0.6, alt.value("white"), alt.value("black")),
            )
        )
    chart = alt.layer(*layers, data=frame).properties(
        width=max(200, 42 * len(rows_b)),
        height=max(160, 32 * len(rows_a)),
        title=title(f"CKA similarity of layers: {name_a} vs {name_b}", *notes),
    )
    return finish(chart, where, {}, rows=len(frame), source_rows=len(cka))


def embedding_chart(
    embedding: pd.DataFrame, *, selected: int | None = None, max_points: int = MAX_ROWS, seed: int = 0
) -> alt.FacetChart:
    """The samples' features of several models in one aligned 2-D space, one panel per model (the
    reference first), coloured by label, with a linked selection: clicking a sample picks it out in
    every panel (the ``"sample"`` selection on ``sample_id``). ``selected`` picks a sample out from
    the start (and is always drawn, also when the points are sampled).

    Takes :func:`~pruneviz.analysis.run_embedding` (``run``, ``sample_id``, ``label``, ``x``, ``y``;
    ``method``/``sparsity`` name the panels). At most ``max_points`` points are drawn: whole samples
    (in every model) are drawn at random with ``seed`` and the subtitle says how many.
    """
    where = "embedding_chart"
    check_frame(embedding, "embedding", where, "run_embedding", ["run", "sample_id", "label", "x", "y"])
    max_points = check_max_points(max_points, where)
    seed = check_int(seed, "seed", where, minimum=0)
    if selected is not None:
        selected = check_int(selected, "selected", where)
    frame = with_models(embedding)  # several runs of one method and sparsity: told apart by run id
    order = list(dict.fromkeys(frame["model"]))
    shown, note = cap_rows(frame, max_points, by="sample_id", seed=seed)
    if selected is not None and selected not in set(shown["sample_id"]):
        extra = frame[frame["sample_id"] == selected]
        if extra.empty:
            note = " ".join(filter(None, [note, f"Sample #{selected} is not among these samples."]))
        shown = pd.concat([shown, extra])
    shown = shown[["model", "run", "sample_id", "label", "x", "y"]].reset_index(drop=True)
    kind = str(frame["embedding"].iloc[0]).upper() if "embedding" in frame.columns else "embedding"
    select = sample_selection(selected)
    points = (
        alt.Chart()
        .mark_circle()
        .encode(
            x=alt.X("x:Q", title=f"Aligned {kind} axis 1 (arbitrary units)"),
            y=alt.Y("y:Q", title=f"Aligned {kind} axis 2 (arbitrary units)"),
            color=alt.Color("label:N", title="Label", scale=alt.Scale(scheme="tableau10")),
            opacity=alt.condition(select, alt.value(0.85), alt.value(0.12)),
            size=alt.condition(select, alt.value(90), alt.value(18), empty=False),
            tooltip=["model", "sample_id", "label"],
        )
        .add_params(select)
        .properties(width=240, height=240)
    )
    chart = points.facet(
        facet=alt.Facet("model:N", sort=order, title=None), columns=min(3, len(order)), data=shown
    ).properties(
        title=title(
            "Aligned embedding of the features, model by model",
            "Click a sample to find it in every model; shift-click adds, double-click clears.",
            note,
        )
    )
    return finish(
        chart,
        where,
        {"max_points": max_points, "seed": seed, "selected": selected},
        rows=len(shown),
        source_rows=len(frame),
    )


def logit_geometry_chart(
    geometry: pd.DataFrame,
    *,
    x: str = "angle",
    y: str = "feature_norm",
    max_points: int = MAX_ROWS,
    seed: int = 0,
) -> alt.FacetChart:
    """The decomposition of each sample's true-class logit ``z_y = ‖w_y‖ ‖h‖ cos θ + b_y``: two of its
    parts against each other (default: the angle θ against the feature norm ‖h‖), one panel per model,
    correct and wrong predictions in two colours.

    Takes :func:`~pruneviz.analysis.run_logit_geometry` or
    :func:`~pruneviz.analysis.logit_geometry` (``sample_id``, ``correct`` and the quantities); frames
    of several runs may be concatenated. At most ``max_points`` points, whole samples drawn with
    ``seed``.
    """
    where = "logit_geometry_chart"
    check_frame(geometry, "geometry", where, "run_logit_geometry", ["sample_id", "correct"])
    quantities = [
        c
        for c in ("feature_norm", "weight_norm", "cosine", "angle", "bias", "logit", "margin")
        if c in geometry.columns
    ]
    for param, value in (("x", x), ("y", y)):
        if value not in quantities:
            fail(param, where, f"a quantity of the frame ({quantities})", value, "pick one from the list.")
    max_points = check_max_points(max_points, where)
    seed = check_int(seed, "seed", where, minimum=0)
    frame = with_models(geometry)
    order = label_order(frame)
    frame["outcome"] = frame["correct"].map({True: "correct", False: "wrong"}).fillna("wrong")
    keep = ["model", "sample_id", "outcome", x, y] + [c for c in ("label",) if c in frame.columns]
    shown, note = cap_rows(frame[list(dict.fromkeys(keep))], max_points, by="sample_id", seed=seed)
    select = sample_selection()
    points = (
        alt.Chart()
        .mark_circle()
        .encode(
            x=alt.X(f"{x}:Q", title=axis_title(x)),
            y=alt.Y(f"{y}:Q", title=axis_title(y)),
            color=alt.Color(
                "outcome:N",
                title="Prediction",
                scale=alt.Scale(domain=["correct", "wrong"], range=["#4c78a8", ACCENT]),
            ),
            opacity=alt.condition(select, alt.value(0.7), alt.value(0.1)),
            size=alt.condition(select, alt.value(90), alt.value(20), empty=False),
            tooltip=[c for c in ("model", "sample_id", "label", x, y) if c in shown.columns],
        )
        .add_params(select)
        .properties(width=240, height=220)
    )
    chart = points.facet(
        facet=alt.Facet("model:N", sort=order, title=None),
        columns=min(3, len(order)),
        data=shown.reset_index(drop=True),
    ).properties(
        title=title(
            f"Logit decomposition: {short_name(x)} against {short_name(y)}",
            note,
        )
    )
    options = {"x": x, "y": y, "max_points": max_points, "seed": seed}
    return finish(chart, where, options, rows=len(shown), source_rows=len(geometry))


def logit_change_chart(
    change: pd.DataFrame,
    *,
    metric: str = "margin",
    top: int = 10,
    bins: int = 40,
    max_points: int = MAX_ROWS,
    seed: int = 0,
) -> alt.HConcatChart:
    """How each sample's logit geometry moved from one model (or split) to another: ``metric`` before
    against after, one dot per sample, with the diagonal of no change; beside it the distribution of the
    changes over all samples. The ``top`` samples whose margin moved most (the analysis' ``rank``) are
    highlighted in both and labelled with their ``sample_id``.

    Takes :func:`~pruneviz.analysis.run_logit_geometry_change` or
    :func:`~pruneviz.analysis.logit_geometry_change` (``sample_id``, ``label``, ``metric``, ``before``,
    ``after``, ``change``, ``rank``) of one comparison. The histogram counts every sample; the scatter
    draws at most ``max_points`` (the top movers always, the rest drawn with ``seed``).
    """
    where = "logit_change_chart"
    source = "run_logit_geometry_change"
    check_frame(change, "change", where, source, ["sample_id", "metric", "before", "after", "change", "rank"])
    one_comparison(change, "change", where, (*COMPARISON, "split_before", "split_after"))
    pick(metric, "metric", where, change["metric"].astype(str), "a metric")
    top = check_int(top, "top", where, minimum=0)
    bins = check_int(bins, "bins", where, minimum=2)
    max_points = check_max_points(max_points, where)
    seed = check_int(seed, "seed", where, minimum=0)
    rows = change[change["metric"].astype(str) == metric].copy()
    rows["mover"] = (rows["rank"] <= top).map({True: "top mover", False: "other"})
    movers = list(rows.loc[rows["rank"] <= top, "sample_id"])
    cols = ["sample_id", "before", "after", "change", "rank", "mover"] + (
        ["label"] if "label" in rows.columns else []
    )
    shown, note = cap_rows(rows[cols], max_points, by="sample_id", keep=movers, seed=seed)
    shown = shown.reset_index(drop=True)
    name = axis_title(metric)
    short = short_name(metric)
    unit = name[name.index(" (") + 2 : -1] if " (" in name else ""
    what = _comparison_name(change)
    select = sample_selection()
    colour = alt.Color(
        "mover:N", title=None, scale=alt.Scale(domain=["top mover", "other"], range=[ACCENT, "#4c78a8"])
    )
    dots = (
        alt.Chart()
        .mark_circle()
        .encode(
            x=alt.X("before:Q", title=f"Before: {name}"),
            y=alt.Y("after:Q", title=f"After: {name}"),
            color=colour,
            size=alt.condition(select, alt.value(110), alt.value(22), empty=False),
            opacity=alt.condition(select, alt.value(0.8), alt.value(0.15)),
            tooltip=[
                c for c in ("sample_id", "label", "before", "after", "change", "rank") if c in shown.columns
            ],
        )
        .add_params(select)
    )
    lo = float(min(rows["before"].min(), rows["after"].min()))
    hi = float(max(rows["before"].max(), rows["after"].max()))
    diagonal = (
        alt.Chart(pd.DataFrame({"before": [lo], "after": [lo], "before2": [hi], "after2": [hi]}))
        .mark_rule(strokeDash=[5, 4], color="#777777")
        .encode(x="before:Q", y="after:Q", x2="before2:Q", y2="after2:Q")
    )
    labels = (
        alt.Chart()
        .transform_filter(alt.datum.mover == "top mover")
        .mark_text(dx=7, dy=-6, fontSize=10, color=ACCENT, align="left")
        .encode(x="before:Q", y="after:Q", text="sample_id:N")
    )
    scatter = alt.layer(diagonal, dots, labels).properties(
        width=300, height=280, title=f"{short.capitalize()}: before against after"
    )
    lo_c, hi_c = float(rows["change"].min()), float(rows["change"].max())
    if hi_c <= lo_c:  # every sample moved by the same amount
        lo_c, hi_c = lo_c - 0.5, hi_c + 0.5
    edges = [lo_c + (hi_c - lo_c) * i / bins for i in range(bins)] + [hi_c]  # the largest change included
    codes = pd.cut(rows["change"], bins=edges, labels=False, include_lowest=True)
    counts = codes.value_counts().reindex(range(bins), fill_value=0).sort_index()
    hist = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "count": counts.to_numpy()})
    bars = (
        alt.Chart(hist)
        .mark_bar(color=MUTED, stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X(
                "start:Q",
                title=f"Change in {short} (after − before{', ' + unit if unit else ''})",
                bin="binned",
            ),
            x2="end:Q",
            y=alt.Y("count:Q", title="Samples (count)"),
            tooltip=["start", "end", "count"],
        )
    )
    rug = (
        alt.Chart()
        .transform_filter(alt.datum.mover == "top mover")
        .mark_tick(color=ACCENT, thickness=2, size=14)
        .encode(x="change:Q", tooltip=["sample_id", "change"])
    )
    histogram = alt.layer(bars, rug).properties(
        width=300, height=280, title=f"Distribution of the change ({count(len(rows))} samples)"
    )
    chart = alt.hconcat(scatter, histogram, data=shown).properties(
        title=title(
            f"How each sample's {short} moved{what}",
            f"Red: the {top} samples whose margin moved most; dashed: no change.",
            note,
        )
    )
    options = {"metric": metric, "top": top, "bins": bins, "max_points": max_points, "seed": seed}
    return finish(chart, where, options, rows=len(shown), source_rows=len(change))


def _comparison_name(change: pd.DataFrame) -> str:
    first = change.iloc[0]
    if {"split_before", "split_after"} <= set(change.columns) and first["split_before"] != first[
        "split_after"
    ]:
        return f": {first['split_before']} → {first['split_after']}"
    if "method" in change.columns:
        return f": reference → {model_labels(change.iloc[:1]).iloc[0]}"
    return ""
