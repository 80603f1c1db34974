"""Saving a chart: a standalone HTML page, a PNG or SVG image, its Vega-Lite spec, or the data behind it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from pruneviz._validation import check_positive_float, fail

__all__ = ["chart_data", "save_chart"]

FORMATS = ("csv", "html", "json", "png", "svg")


def chart_data(chart: Any) -> pd.DataFrame:
    """The rows a pruneviz chart draws (after any aggregation or down-sampling), as a DataFrame: what
    to export as CSV beside the figure.

    >>> import pandas as pd
    >>> from pruneviz.charts import reliability_chart
    >>> bins = pd.DataFrame({"bin": [0, 1], "count": [3, 5], "confidence": [0.3, 0.8],
    ...                      "accuracy": [0.2, 0.9]})
    >>> chart_data(reliability_chart(bins))[["bin", "count"]].values.tolist()
    [[0, 3], [1, 5]]
    """
    data = getattr(chart, "data", None)
    if not isinstance(chart, alt.TopLevelMixin) or not isinstance(data, pd.DataFrame):
        fail(
            "chart",
            "chart_data",
            "a chart made by a pruneviz.charts function",
            None,
            "pass the chart a pruneviz.charts function returned.",
            got=f"a {type(chart).__name__}",
        )
    return data.copy()


def save_chart(chart: Any, path: str | os.PathLike[str], *, scale: float = 2.0) -> Path:
    """Write ``chart`` to ``path``, the format chosen by the suffix, atomically (a reader never sees a
    half-written file):

    - ``.html``: a standalone page with Vega, Vega-Lite and vega-embed inlined, so it opens offline;
    - ``.png`` (``scale`` × the chart's pixel size) and ``.svg``: rendered with vl-convert;
    - ``.json``: the Vega-Lite spec; ``.csv``: :func:`chart_data`.

    Returns the path written.
    """
    where = "save_chart"
    if not isinstance(chart, alt.TopLevelMixin):
        fail(
            "chart",
            where,
            "an Altair chart",
            None,
            "pass a chart from pruneviz.charts.",
            got=f"a {type(chart).__name__}",
        )
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        fail(
            "path",
            where,
            f"a file name ending in one of {['.' + f for f in FORMATS]}",
            str(path),
            "name the file e.g. 'figure.html' or 'figure.png'.",
        )
    scale = check_positive_float(scale, "scale", where)
    from pruneviz._io import write_atomic  # the atomic writer (pruneviz's core utilities)

    if fmt == "csv":
        data = chart_data(chart)
        write_atomic(target, lambda tmp: data.to_csv(tmp, index=False))
    elif fmt == "html":
        page = chart.to_html(inline=True)
        write_atomic(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    elif fmt == "json":
        text = chart.to_json(indent=2)
        write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    else:
        write_atomic(target, lambda tmp: chart.save(str(tmp), format=fmt, scale_factor=scale))
    return target
