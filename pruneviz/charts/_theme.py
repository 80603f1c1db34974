"""The one look of every pruneviz chart: fonts, sizes, and colours that mean the same thing everywhere.

Dense models are always the same dark grey; every pruning method has a fixed colour (a method unknown to
pruneviz gets one chosen from its name, so it too keeps its colour from chart to chart). The theme is an
Altair theme named ``"pruneviz"``, registered and enabled when :mod:`pruneviz.charts` is imported
(``alt.theme.enable("default")`` turns it off, ``alt.theme.enable("pruneviz")`` on again). Charts carry
no configuration of their own, so they compose: ``a | b``, ``a & b`` and ``a + b`` work, and a chart of
your own gets the same look. :func:`theme` returns the configuration.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

import altair as alt

FONT = "Helvetica Neue, Helvetica, Arial, sans-serif"
DENSE = "dense"
DENSE_COLOUR = "#3d3d3d"
ACCENT = "#d62728"  # highlighted samples (top movers, selections)
MUTED = "#c7c7c7"

# fixed colours of the methods pruneviz ships (pruneviz.prune.api.METHODS and the channel methods)
METHOD_COLOURS = {
    DENSE: DENSE_COLOUR,
    "global_magnitude": "#4c78a8",
    "magnitude": "#9ecae9",
    "lamp": "#f58518",
    "snip": "#54a24b",
    "random": "#b279a2",
    "erk_magnitude": "#72b7b2",
    "grasp": "#eeca3b",
    "synflow": "#88d27a",
    "taylor": "#d8b5a5",
    "wanda": "#d67195",
    "sparsegpt": "#439894",
    "channel_l1": "#e45756",
    "channel_random": "#ff9d98",
    "channel_taylor": "#9d755d",
}
_SPARE = ("#8c6d31", "#bd9e39", "#637939", "#843c39", "#7b4173", "#5254a3", "#6b6ecf", "#ad494a")


def method_colour(method: str) -> str:
    """The colour of ``method``: fixed for known methods, derived from the name for others."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return _SPARE[zlib.crc32(str(method).encode()) % len(_SPARE)]


def method_order(methods: Iterable[str]) -> list[str]:
    """Dense first, then the known methods in their fixed order, then the others by name."""
    present = list(dict.fromkeys(str(m) for m in methods))
    known = [m for m in METHOD_COLOURS if m in present]
    return known + sorted(m for m in present if m not in METHOD_COLOURS)


def method_scale(methods: Iterable[str]) -> alt.Scale:
    """A colour scale mapping each method present to its stable colour."""
    order = method_order(methods)
    return alt.Scale(domain=order, range=[method_colour(m) for m in order])


def theme() -> dict[str, Any]:
    """The pruneviz chart configuration (the keyword arguments of ``Chart.configure``)."""
    return {
        "font": FONT,
        "background": "white",
        "padding": 8,
        "title": {
            "fontSize": 15,
            "fontWeight": 600,
            "anchor": "start",
            "subtitleFontSize": 11,
            "subtitleColor": "#555555",
            "offset": 10,
        },
        "axis": {
            "labelFontSize": 11,
            "titleFontSize": 12,
            "titleFontWeight": 500,
            "gridColor": "#ececec",
            "domainColor": "#888888",
            "tickColor": "#888888",
            "labelColor": "#333333",
        },
        "legend": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": 500, "symbolSize": 80},
        "header": {"labelFontSize": 12, "titleFontSize": 12},
        "view": {"continuousWidth": 300, "continuousHeight": 220, "stroke": "#dddddd"},
        "range": {"category": [METHOD_COLOURS[m] for m in METHOD_COLOURS if m != DENSE]},
        "line": {"strokeWidth": 2},
        "point": {"size": 40},
    }


THEME_NAME = "pruneviz"


@alt.theme.register(THEME_NAME, enable=True)
def _registered() -> alt.theme.ThemeConfig:
    return {"config": theme()}  # type: ignore[typeddict-item]


def apply_theme(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """Return ``chart`` unchanged: the look comes from the registered ``"pruneviz"`` theme at rendering
    (a configuration baked into the chart would stop it from composing with ``|``, ``&`` and ``+``)."""
    return chart
