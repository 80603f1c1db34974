"""Overview charts: what pruning costs and buys, per method and sparsity, and where the zeros are."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from pruneviz._validation import data_fail, fail
from pruneviz.charts._base import (
    axis_title,
    check_frame,
    finish,
    format_for,
    label_order,
    method_of,
    model_labels,
    sparsity_column,
    title,
)
from pruneviz.charts._theme import DENSE, method_scale

__all__ = ["layer_sparsity_chart", "metric_by_sparsity_chart", "speedup_chart", "tradeoff_chart"]

SPARSITY_AXIS = alt.Axis(format="%", title="Target sparsity (% of weights removed)")


def tradeoff_chart(
    runs: pd.DataFrame, *, metrics: Sequence[str] = ("test_accuracy", "nonzero_params", "latency_b1_s")
) -> alt.HConcatChart:
    """Accuracy, size and latency against sparsity, one panel per metric, one colour per method.

    Takes the frame of :meth:`pruneviz.Zoo.runs` (one row per run: ``method``, ``sparsity_target``,
    ``seed`` and the metric columns). Each run is a dot; a line joins each method's mean over seeds and
    a shaded band spans its seeds (min to max). Dense runs (no method) are the dots at sparsity 0 and a
    dashed line across the panel: the reference every method is compared with. Latency is shown in
    milliseconds; a dense run's non-zero parameters are its parameters. Click a method in the legend to
    pick it out.

    >>> from pruneviz import Zoo
    >>> chart = tradeoff_chart(Zoo("build/demo-zoo").runs())  # doctest: +SKIP
    """
    where = "tradeoff_chart"
    if isinstance(metrics, str) or not len(metrics):
        fail("metrics", where, "a list of metric columns", metrics, "pass e.g. metrics=['test_accuracy'].")
    check_frame(runs, "runs", where, "Zoo.runs()", ["method", "sparsity_target", "seed", *metrics])
    frame = runs.copy()
    frame["method"] = method_of(frame)
    if "nonzero_params" in frame.columns and "params" in frame.columns:
        dense = frame["method"] == DENSE
        frame.loc[dense, "nonzero_params"] = frame.loc[dense, "nonzero_params"].fillna(
            frame.loc[dense, "params"]
        )
    if "effective_macs" in frame.columns and {"dense_macs", "parent", "run"} <= set(frame.columns):
        parent_macs = frame.dropna(subset=["dense_macs"]).groupby("parent")["dense_macs"].first()
        dense = frame["method"] == DENSE
        frame.loc[dense, "effective_macs"] = frame.loc[dense, "effective_macs"].fillna(
            frame.loc[dense, "run"].map(parent_macs)
        )
    frame["sparsity"] = frame["sparsity_target"].fillna(0.0)
    keys = [c for c in ("run", "method", "sparsity", "seed") if c in frame.columns]
    long = frame.melt(id_vars=keys, value_vars=list(metrics), var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long.loc[long["metric"] == "latency_b1_s", "value"] *= 1000.0
    long = long.dropna(subset=["value"]).reset_index(drop=True)
    chart = _by_sparsity(long, list(metrics), "What pruning costs: accuracy, size and latency by sparsity")
    return finish(chart, where, {"metrics": list(metrics)}, rows=len(long), source_rows=len(runs))


def metric_by_sparsity_chart(
    frame: pd.DataFrame, *, metrics: Sequence[str] | None = None
) -> alt.HConcatChart:
    """Any per-run metric against sparsity, one panel per metric, like :func:`tradeoff_chart`.

    Takes a tidy run-keyed frame with ``method``, ``sparsity_target`` (or ``sparsity``), ``metric`` and
    ``value`` — e.g. :func:`~pruneviz.analysis.run_curvature` (``eigenvalue_1``, ``trace``) or
    :func:`~pruneviz.analysis.run_calibration` of one split (``ece``, ``nll``, ...) for several runs,
    concatenated. ``metrics`` defaults to all metrics in the frame.
    """
    where = "metric_by_sparsity_chart"
    check_frame(frame, "frame", where, "a run analysis (e.g. run_curvature)", ["method", "metric", "value"])
    col = sparsity_column(frame)
    check_frame(frame, "frame", where, "a run analysis (e.g. run_curvature)", [col])
    for key in ("split", "subset"):
        if key in frame.columns and frame[key].nunique() > 1:
            fail(
                "frame",
                where,
                f"a frame of one {key}",
                None,
                got=f"{key}s {sorted(frame[key].unique())}",
                fix=f"filter it, e.g. frame[frame[{key!r}] == {frame[key].iloc[0]!r}].",
            )
    present = list(dict.fromkeys(frame["metric"].astype(str)))
    chosen = present if metrics is None else list(metrics)
    if isinstance(metrics, str) or not chosen:
        fail("metrics", where, "a list of metrics in the frame", metrics, f"pass e.g. metrics={present[:2]}.")
    unknown = [m for m in chosen if m not in present]
    if unknown:
        fail("metrics", where, f"metrics present in the frame ({present})", unknown, "pick from the list.")
    keys = [c for c in ("run", "seed") if c in frame.columns]
    errors = [c for c in ("sample_se",) if c in frame.columns]  # shown in the tooltip when there
    long = frame[frame["metric"].astype(str).isin(chosen)][[*keys, "metric", "value", *errors]].copy()
    long["method"] = method_of(frame)
    long["sparsity"] = frame[col].fillna(0.0)
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"]).reset_index(drop=True)
    chart = _by_sparsity(long, chosen, "Metrics by sparsity")
    return finish(chart, where, {"metrics": chosen}, rows=len(long), source_rows=len(frame))


def _by_sparsity(long: pd.DataFrame, metrics: list[str], heading: str) -> alt.HConcatChart:
    methods = list(long["method"].unique())
    colour = alt.Color("method:N", scale=method_scale(methods), title="Method")
    pick = alt.selection_point(name="method_pick", fields=["method"], bind="legend")
    faded = alt.condition(pick, alt.value(1.0), alt.value(0.12))
    x = alt.X("sparsity:Q", axis=SPARSITY_AXIS, scale=alt.Scale(domain=[0, 1]))
    tooltip = [c for c in ("run", "method", "sparsity", "seed", "value", "sample_se") if c in long.columns]
    panels = []
    for i, metric in enumerate(metrics):
        fmt = format_for(metric)
        base = alt.Chart().transform_filter(alt.datum.metric == metric)
        pruned = base.transform_filter(alt.datum.method != DENSE)
        y_axis = alt.Axis(format=fmt, title=axis_title(metric))
        band = pruned.mark_area(opacity=0.18).encode(
            x=x, y=alt.Y("min(value):Q", axis=y_axis), y2="max(value):Q", color=colour, opacity=faded
        )
        line = pruned.mark_line().encode(x=x, y="mean(value):Q", color=colour, opacity=faded)
        dots = base.mark_circle(size=30).encode(
            x=x,
            y=alt.Y("value:Q", axis=y_axis),
            color=colour,
            opacity=alt.condition(pick, alt.value(0.55), alt.value(0.08)),
            tooltip=tooltip,
        )
        reference = (
            base.transform_filter(alt.datum.method == DENSE)
            .mark_rule(strokeDash=[5, 4], strokeWidth=1.5)
            .encode(y="mean(value):Q", color=colour)
        )
        panel = alt.layer(band, line, dots, reference)
        if i == 0:  # one legend, one selection; the other panels read it
            panel = panel.add_params(pick)
        panels.append(panel.properties(width=260, height=220, title=axis_title(metric).split(" (")[0]))
    notes = ["Dots: runs (seeds); line: mean over seeds; band: min–max over seeds; dashed: dense mean."]
    return alt.hconcat(*panels, data=long, title=title(heading, *notes))


def layer_sparsity_chart(spectrum: pd.DataFrame) -> alt.LayerChart:
    """The sparsity of every layer, in model order, one bar per model.

    Takes the ``metric == "sparsity"`` rows of :func:`~pruneviz.analysis.spectrum_table` /
    :func:`~pruneviz.analysis.run_spectrum` (``layer``, ``metric``, ``value``; run frames of several
    runs may be concatenated). Models are named by method and target sparsity; seeds of one model are
    averaged, with a line from the lowest to the highest seed.
    """
    where = "layer_sparsity_chart"
    source = "run_spectrum / spectrum_table"
    check_frame(spectrum, "spectrum", where, source, ["layer", "metric", "value"])
    rows = spectrum[spectrum["metric"] == "sparsity"].copy()
    if rows.empty:
        data_fail(
            "spectrum", where, "a frame with metric == 'sparsity' rows", "none", f"pass {source}'s frame."
        )
    layers = list(dict.fromkeys(rows["layer"].astype(str)))
    rows["layer"] = rows["layer"].astype(str)
    rows["model"] = model_labels(rows)
    rows["method"] = method_of(rows)
    order = label_order(rows)
    table = (
        rows.groupby(["model", "method", "layer"], sort=False)["value"]
        .agg(sparsity="mean", lo="min", hi="max", runs="size")
        .reset_index()
    )
    x = alt.X("layer:N", sort=layers, title="Layer (in model order)", axis=alt.Axis(labelAngle=-40))
    y = alt.Y(
        "sparsity:Q", title=axis_title("sparsity"), axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])
    )
    offset = alt.XOffset("model:N", sort=order)
    colour = alt.Color("method:N", scale=method_scale(table["method"]), title="Method")
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=x,
            y=y,
            xOffset=offset,
            color=colour,
            tooltip=["model", "layer", alt.Tooltip("sparsity:Q", format=".1%"), "runs"],
        )
    )
    spread = alt.Chart().mark_rule(color="black").encode(x=x, xOffset=offset, y="lo:Q", y2="hi:Q")
    chart = alt.layer(bars, spread, data=table).properties(
        width=max(240, 26 * len(layers) * max(1, len(order)) // 2),
        height=220,
        title=title("Sparsity of each layer", "Bars: mean over seeds; black line: min–max over seeds."),
    )
    return finish(chart, where, {}, rows=len(table), source_rows=len(spectrum))


PATH_NAMES = {
    "dense": "dense",
    "dense_t": "dense, transposed",
    "shrunk": "shrunk dense",
    "torch_csr": "torch CSR",
    "torch_bsr": "torch BSR",
    "block_ell": "block-sparse (pruneviz)",
    "triton_bsr": "Triton BSR",
    "triton_nm": "Triton 2:4",
    "triton_bitmap": "Triton bitmap",
    "semi_structured": "torch 2:4 (cuSPARSELt)",
}


def speedup_chart(speedups: pd.DataFrame) -> alt.FacetChart:
    """Per layer, the speedup the zeros promise (``1 / density`` of the MACs) against the one measured
    with the path the dispatcher chose, one panel per batch size. A measured bar of 1 means dense was
    kept: no sparse path beat it on this machine.

    Takes :func:`~pruneviz.kernels.speedup_table` (``layer``, ``batch_size``, ``path``, ``density``,
    ``theoretical_speedup``, ``measured_speedup``).
    """
    where = "speedup_chart"
    source = "pruneviz.kernels.speedup_table"
    columns = ["layer", "batch_size", "path", "density", "theoretical_speedup", "measured_speedup"]
    check_frame(speedups, "speedups", where, source, columns)
    rows = speedups.copy()
    rows["layer"] = rows["layer"].astype(str)
    rows["batch"] = "batch " + rows["batch_size"].astype(int).astype(str)
    rows["chosen"] = rows["path"].map(PATH_NAMES).fillna(rows["path"].astype(str))
    layers = list(dict.fromkeys(rows["layer"]))
    long = rows.melt(
        id_vars=["layer", "batch", "batch_size", "chosen", "density"],
        value_vars=["theoretical_speedup", "measured_speedup"],
        var_name="kind",
        value_name="speedup",
    )
    long["kind"] = long["kind"].map(
        {"theoretical_speedup": "promised (1 / density)", "measured_speedup": "measured"}
    )
    # a layer with no weights left promises an infinite speedup: drawn at the largest finite one
    finite = long["speedup"].replace([float("inf")], float("nan"))
    long["speedup"] = finite.fillna(finite.max() if finite.notna().any() else 1.0)
    kinds = ["promised (1 / density)", "measured"]
    x = alt.X("layer:N", sort=layers, title="Layer (in model order)", axis=alt.Axis(labelAngle=-40))
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=x,
            xOffset=alt.XOffset("kind:N", sort=kinds),
            y=alt.Y("speedup:Q", title="Speedup over dense (×)", scale=alt.Scale(type="log")),
            color=alt.Color("kind:N", sort=kinds, title=None, scale=alt.Scale(range=["#bbbbbb", "#4c78a8"])),
            tooltip=[
                "layer",
                "batch_size",
                "kind",
                alt.Tooltip("speedup:Q", format=".2f"),
                alt.Tooltip("density:Q", format=".1%"),
                alt.Tooltip("chosen:N", title="path"),
            ],
        )
    )
    one = alt.Chart().mark_rule(strokeDash=[4, 3], color="#555555").encode(y=alt.datum(1))
    text = (
        alt.Chart()
        .transform_filter(alt.datum.kind == "measured")
        .mark_text(angle=270, align="left", dx=4, fontSize=9)
        .encode(x=x, y="speedup:Q", text="chosen:N")
    )
    panel = alt.layer(bars, one, text).properties(width=max(220, 30 * len(layers)), height=220)
    batches = list(dict.fromkeys(rows.sort_values("batch_size")["batch"]))
    chart = panel.facet(
        facet=alt.Facet("batch:N", sort=batches, title=None), columns=min(3, len(batches)), data=long
    ).properties(
        title=title(
            "Does the sparsity buy speed? Promised against measured, layer by layer",
            "Grey: 1 / density of the weights; blue: measured with the path the dispatcher chose "
            "(named above the bar; a pruned model is never run slower than dense).",
        )
    )
    return finish(chart, where, {}, rows=len(long), source_rows=len(speedups))
