"""Saving a chart: a standalone HTML page, a PNG or SVG image, its Vega-Lite spec, or the data behind it;
and the specification of a chart whatever its size (:func:`chart_spec`).

A chart with more rows than Altair inlines (``MAX_ROWS``; an embedding of every sample, say) is not
sampled down behind your back: :func:`chart_spec` hands it to VegaFusion, which evaluates its data
transforms in Python (binning and aggregation shrink the data before it reaches the page) and returns
the compiled Vega. The app, the audit report and :func:`save_chart` draw large charts that way.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, cast

import altair as alt
import pandas as pd

from pruneviz._validation import check_positive_float, fail
from pruneviz.exceptions import MissingDependencyError

__all__ = ["chart_data", "chart_spec", "save_chart"]

# Altair's data transformer is one global setting: a conversion through VegaFusion switches it for a
# moment, so every conversion made here takes turns (figures are drawn on several threads in the app)
_TRANSFORMER = threading.RLock()


def chart_spec(chart: Any, *, validate: bool = True) -> dict[str, Any]:
    """The specification that draws ``chart``: its Vega-Lite (``chart.to_dict()``), or, for a chart with
    more data rows than Altair inlines, the Vega VegaFusion compiles with the data transforms evaluated
    (needs the ``vegafusion`` package, in the lock and the ``app`` extra). A page tells them apart by
    ``$schema``; vega-embed draws both.

    >>> import pandas as pd
    >>> from pruneviz.charts import reliability_chart
    >>> bins = pd.DataFrame({"bin": [0], "count": [3], "confidence": [0.3], "accuracy": [0.2]})
    >>> "vega-lite" in chart_spec(reliability_chart(bins))["$schema"]
    True
    """
    if not isinstance(chart, alt.TopLevelMixin):
        fail(
            "chart",
            "chart_spec",
            "an Altair chart",
            None,
            "pass a chart from pruneviz.charts.",
            got=type(chart).__name__,
        )
    with _TRANSFORMER:
        try:
            return chart.to_dict(validate=validate)
        except alt.MaxRowsError:
            pass
        try:
            import vegafusion  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                "This chart has more data rows than Altair inlines, and drawing it needs VegaFusion. "
                "Fix: pip install vegafusion (it is in pruneviz's lock), or pass max_points to draw a sample."
            ) from None
        before = alt.data_transformers.active
        alt.data_transformers.enable("vegafusion")
        try:
            return chart.to_dict(format="vega", validate=validate)
        finally:
            alt.data_transformers.enable(before)


def is_vega(spec: dict[str, Any]) -> bool:
    """Whether ``spec`` is compiled Vega (from :func:`chart_spec` on a large chart), not Vega-Lite."""
    return "/schema/vega/" in str(spec.get("$schema", ""))


def chart_html(chart: Any, *, embed_options: dict[str, Any] | None = None) -> str:
    """A standalone page drawing ``chart`` with Vega, Vega-Lite and vega-embed inlined (opens offline);
    a large chart goes through VegaFusion (:func:`chart_spec`) and is drawn on a canvas."""
    spec = chart_spec(chart)
    if not is_vega(spec):
        return chart.to_html(inline=True, embed_options=embed_options)
    from altair.utils.html import spec_to_html

    return spec_to_html(
        spec,
        mode="vega",
        vega_version=alt.VEGA_VERSION,
        vegaembed_version=alt.VEGAEMBED_VERSION,
        vegalite_version=alt.VEGALITE_VERSION,
        embed_options={"renderer": "canvas", **(embed_options or {})},
        template="inline",
    )


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
    - ``.json``: the Vega-Lite spec (compiled Vega for a large chart, see :func:`chart_spec`);
      ``.csv``: :func:`chart_data`.

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
        page = chart_html(chart)
        write_atomic(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    elif fmt == "json":
        text = json.dumps(chart_spec(chart), indent=2)
        write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    else:
        write_atomic(target, lambda tmp: chart.save(str(tmp), format=cast(Any, fmt), scale_factor=scale))
    return target
