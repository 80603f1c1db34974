"""Curvature and loss-landscape charts: Hessian eigenvalues and density, 2-D contours, 1-D lines."""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import altair as alt
import pandas as pd

from pruneviz._validation import check_choice, check_int, fail
from pruneviz.charts._base import (
    axis_title,
    check_frame,
    finish,
    label_order,
    model_colour,
    title,
    with_models,
)

FLOOR = 1e-6  # lowest density drawn on the log scale, relative to the peak

__all__ = [
    "hessian_density_chart",
    "hessian_eigenvalue_chart",
    "interpolation_chart",
    "landscape_contour_chart",
    "landscape_line_chart",
]


def _models(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], alt.Color]:
    """``frame`` with a ``model`` column (one per run, named by method and sparsity) and its colour."""
    out = with_models(frame)
    order = label_order(out)
    return out, order, model_colour(out, order)


def hessian_eigenvalue_chart(eigenvalues: pd.DataFrame) -> alt.LayerChart:
    """The top Hessian eigenvalues by rank, each with its Lanczos error bound (± ``residual``), one
    colour per model when frames of several runs are concatenated.

    Takes :func:`~pruneviz.analysis.hessian_eigenvalues` (``rank``, ``eigenvalue``, ``residual``), with
    run keys (``run``, ``method``, ``sparsity``) added when comparing models.
    """
    where = "hessian_eigenvalue_chart"
    check_frame(eigenvalues, "eigenvalues", where, "hessian_eigenvalues", ["rank", "eigenvalue", "residual"])
    frame, order, colour = _models(eigenvalues)
    frame["low"] = frame["eigenvalue"] - frame["residual"]
    frame["high"] = frame["eigenvalue"] + frame["residual"]
    data = frame[["model", "rank", "eigenvalue", "residual", "low", "high"]].reset_index(drop=True)
    x = alt.X("rank:O", title="Rank (1 = largest eigenvalue)", axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("model:N", sort=order)
    points = (
        alt.Chart()
        .mark_point(filled=True, size=60)
        .encode(
            x=x,
            xOffset=offset,
            y=alt.Y("eigenvalue:Q", title="Hessian eigenvalue (curvature of the loss, nats per unit²)"),
            color=colour,
            tooltip=[
                "model",
                "rank",
                alt.Tooltip("eigenvalue:Q", format=".4g"),
                alt.Tooltip("residual:Q", format=".2g"),
            ],
        )
    )
    bounds = alt.Chart().mark_rule().encode(x=x, xOffset=offset, y="low:Q", y2="high:Q", color=colour)
    chart = alt.layer(bounds, points, data=data).properties(
        width=max(240, 40 * data["rank"].nunique()),
        height=220,
        title=title("Top eigenvalues of the loss Hessian", "Lines: Lanczos error bound (± residual)."),
    )
    return finish(chart, where, {}, rows=len(data), source_rows=len(eigenvalues))


def hessian_density_chart(density: pd.DataFrame, *, log: bool = True) -> alt.Chart:
    """The spectral density of the Hessian (stochastic Lanczos quadrature, Ghorbani et al. 2019), one
    line per model; ``log=True`` puts the density on a log scale, where the few large outlier
    eigenvalues that pruning moves stay visible next to the bulk near zero.

    Takes the ``density`` frame of :func:`~pruneviz.analysis.hessian_density` (``eigenvalue``,
    ``density``), with run keys added when comparing models.
    """
    where = "hessian_density_chart"
    check_frame(density, "density", where, "hessian_density (its second frame)", ["eigenvalue", "density"])
    if not isinstance(log, bool):
        fail("log", where, "True or False", log)
    frame, _, colour = _models(density)
    data = frame[["model", "eigenvalue", "density"]]
    floor = FLOOR * float(data["density"].max())
    if log:  # the Gaussian tails reach 1e-300; below a millionth of the peak they only stretch the axis
        data = data.assign(density=data["density"].clip(lower=floor))
    data = data.reset_index(drop=True)
    y_scale = alt.Scale(type="log", domainMin=floor) if log else alt.Scale()
    chart = (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=alt.X("eigenvalue:Q", title="Hessian eigenvalue (nats per unit²)"),
            y=alt.Y("density:Q", title="Spectral density (per unit eigenvalue)", scale=y_scale),
            color=colour,
            tooltip=[
                "model",
                alt.Tooltip("eigenvalue:Q", format=".4g"),
                alt.Tooltip("density:Q", format=".3g"),
            ],
        )
        .properties(
            width=380,
            height=240,
            title=title(
                "Spectral density of the loss Hessian",
                "Log scale; densities below 10⁻⁶ of the peak drawn at that floor." if log else None,
            ),
        )
    )
    return finish(chart, where, {"log": log}, rows=len(data), source_rows=len(density))


def landscape_contour_chart(
    landscape: pd.DataFrame, *, quantity: str = "loss", levels: int = 10
) -> alt.FacetChart:
    """The loss (or accuracy) on a 2-D slice of weight space around each model (Li et al. 2018), as
    filled contour bands: ``levels`` bands, log-spaced for the loss, shared by all panels so that
    dense and pruned landscapes compare; a cross marks the trained weights (α = β = 0).

    Takes :func:`~pruneviz.analysis.landscape_2d` / :func:`~pruneviz.analysis.run_landscape` with
    ``dims=2`` (``alpha``, ``beta`` and the quantity); frames of several runs may be concatenated.
    """
    where = "landscape_contour_chart"
    quantity = check_choice(quantity, "quantity", where, ("loss", "accuracy"))
    levels = check_int(levels, "levels", where, minimum=2)
    check_frame(
        landscape, "landscape", where, "landscape_2d / run_landscape(dims=2)", ["alpha", "beta", quantity]
    )
    frame, order, _ = _models(landscape)
    values = pd.to_numeric(frame[quantity], errors="coerce")
    lo, hi = float(values.min()), float(values.max())
    if quantity == "loss" and lo > 0 and hi > lo:
        edges = [
            math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / levels) for i in range(levels + 1)
        ]
    else:
        edges = [lo + (hi - lo) * i / levels for i in range(levels + 1)] if hi > lo else [lo - 0.5, hi + 0.5]
    edges[0], edges[-1] = (
        edges[0] - 1e-12 * max(1.0, abs(edges[0])),
        edges[-1] + 1e-12 * max(1.0, abs(edges[-1])),
    )
    fmt = (lambda v: f"{100 * v:.0f}%") if quantity == "accuracy" else (lambda v: f"{v:.3g}")
    names = [f"{fmt(edges[i])}–{fmt(edges[i + 1])}" for i in range(len(edges) - 1)]
    frame["band"] = pd.cut(values, bins=edges, labels=names, include_lowest=True).astype(str)
    step_a = _step(frame["alpha"])
    step_b = _step(frame["beta"])
    frame["alpha_lo"], frame["alpha_hi"] = frame["alpha"] - step_a / 2, frame["alpha"] + step_a / 2
    frame["beta_lo"], frame["beta_hi"] = frame["beta"] - step_b / 2, frame["beta"] + step_b / 2
    data = frame[["model", "alpha", "beta", quantity, "band", "alpha_lo", "alpha_hi", "beta_lo", "beta_hi"]]
    scheme = "viridis" if quantity == "loss" else "magma"
    cells = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=alt.X("alpha_lo:Q", title="Step along direction 1, α (filter-normalised units)"),
            x2="alpha_hi:Q",
            y=alt.Y("beta_lo:Q", title="Step along direction 2, β (filter-normalised units)"),
            y2="beta_hi:Q",
            color=alt.Color(
                "band:O", sort=names, title=axis_title(quantity), scale=alt.Scale(scheme=cast(Any, scheme))
            ),
            tooltip=["model", "alpha", "beta", alt.Tooltip(f"{quantity}:Q", format=".4g")],
        )
    )
    centre = (
        alt.Chart(pd.DataFrame({"alpha": [0.0], "beta": [0.0]}))
        .mark_point(shape="cross", size=120, color="white", strokeWidth=2, filled=True)
        .encode(x="alpha:Q", y="beta:Q")
    )
    chart = (
        alt.layer(cells, centre)
        .properties(width=240, height=240)
        .facet(
            facet=alt.Facet("model:N", sort=order, title=None),
            columns=min(3, len(order)),
            data=data.reset_index(drop=True),
        )
        .properties(
            title=title(
                f"{quantity.capitalize()} landscape around each model",
                f"Contour bands ({'log-spaced' if quantity == 'loss' else 'even'}); "
                "cross: the trained weights.",
            )
        )
    )
    return finish(
        chart, where, {"quantity": quantity, "levels": levels}, rows=len(data), source_rows=len(landscape)
    )


def _step(values: pd.Series) -> float:
    grid = sorted(set(values.astype(float)))
    return min(b - a for a, b in itertools.pairwise(grid)) if len(grid) > 1 else 1.0


def landscape_line_chart(
    landscape: pd.DataFrame, *, quantity: str = "loss"
) -> alt.LayerChart | alt.FacetChart:
    """The loss (or accuracy) along one random filter-normalised direction through each model's
    weights (Li et al. 2018), with a ± one standard error band; α = 0 is the trained model.

    Takes :func:`~pruneviz.analysis.landscape_1d` / :func:`~pruneviz.analysis.run_landscape` with
    ``dims=1`` (``alpha``, the quantity and its ``_se``); frames of several runs may be concatenated.
    """
    where = "landscape_line_chart"
    quantity = check_choice(quantity, "quantity", where, ("loss", "accuracy"))
    check_frame(landscape, "landscape", where, "landscape_1d / run_landscape(dims=1)", ["alpha", quantity])
    x = alt.X("alpha:Q", title="Step along a random direction, α (filter-normalised units)")
    chart = _line(landscape, "alpha", x, quantity, f"{quantity.capitalize()} along a random direction")
    return finish(chart, where, {"quantity": quantity}, rows=len(landscape), source_rows=len(landscape))


def interpolation_chart(
    path: pd.DataFrame, *, quantity: str = "loss", start: str = "dense", end: str = "pruned"
) -> alt.LayerChart:
    """The loss (or accuracy) on the straight line between two models' weights (Goodfellow et al. 2015),
    e.g. from the dense model (t = 0) to its pruned version (t = 1), with a ± one standard error band; a
    bump between the ends is a barrier the two solutions do not share.

    Takes :func:`~pruneviz.analysis.interpolation` (``t``, the quantity and its ``_se``); ``start`` and
    ``end`` name the two ends on the chart.
    """
    where = "interpolation_chart"
    quantity = check_choice(quantity, "quantity", where, ("loss", "accuracy"))
    check_frame(path, "path", where, "interpolation", ["t", quantity])
    x = alt.X("t:Q", title=f"Interpolation t (0 = {start}, 1 = {end})")
    chart = _line(path, "t", x, quantity, f"{quantity.capitalize()} on the line from {start} to {end}")
    ends = (
        alt.Chart(pd.DataFrame({"t": [0.0, 1.0], "end": [start, end]}))
        .mark_rule(strokeDash=[3, 3], color="#777777")
        .encode(x="t:Q", tooltip=["end"])
    )
    chart = alt.layer(*chart.layer, ends, data=chart.data).properties(
        width=chart.width, height=chart.height, title=chart.title
    )
    return finish(
        chart,
        where,
        {"quantity": quantity, "start": start, "end": end},
        rows=len(path),
        source_rows=len(path),
    )


def _line(
    frame: pd.DataFrame, xcol: str, x: alt.X, quantity: str, heading: str
) -> alt.LayerChart | alt.FacetChart:
    models, _, colour = _models(frame)
    se = f"{quantity}_se"
    cols = ["model", xcol, quantity] + ([se] if se in models.columns else [])
    data = models[cols].reset_index(drop=True)
    fmt = "%" if quantity == "accuracy" else "~g"
    y = alt.Y(f"{quantity}:Q", title=axis_title(quantity), axis=alt.Axis(format=fmt))
    layers: list[Any] = []
    if se in data.columns:
        data["low"], data["high"] = data[quantity] - data[se], data[quantity] + data[se]
        # the band fills in the model's colour on a scale of its own, so that only the lines make the legend
        band = alt.Fill("model:N", legend=None, scale=cast(Any, colour).to_dict()["scale"])
        layers.append(alt.Chart().mark_area(opacity=0.2).encode(x=x, y="low:Q", y2="high:Q", fill=band))
    layers.append(
        alt.Chart()
        .mark_line(point=True)
        .encode(x=x, y=y, color=colour, tooltip=["model", xcol, alt.Tooltip(f"{quantity}:Q", format=".4g")])
    )
    note = "Band: ± one standard error over samples." if se in data.columns else None
    return alt.layer(*layers, data=data).properties(width=380, height=240, title=title(heading, note))
