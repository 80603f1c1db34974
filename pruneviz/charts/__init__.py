"""Altair charts of the analyses' tidy frames: pure functions ``DataFrame -> chart``, one theme.

Each function takes the frame an analysis returns (named in its docstring), checks it, aggregates or
samples it down to at most 5,000 drawn rows (saying so on the chart), and returns a titled, themed
Altair chart. Views that show the same samples share the ``"sample"`` selection on ``sample_id``.
This package imports pandas and altair only (never torch); ``import pruneviz`` does not import it.

>>> from pruneviz import Zoo
>>> from pruneviz.charts import tradeoff_chart, save_chart
>>> chart = tradeoff_chart(Zoo("build/demo-zoo").runs())  # doctest: +SKIP
>>> save_chart(chart, "tradeoff.html")  # doctest: +SKIP
"""

from pruneviz._optional import require

require("altair", "pruneviz.charts")

from pruneviz.charts._base import MAX_ROWS, SAMPLE_SELECTION, sample_selection  # noqa: E402
from pruneviz.charts._theme import method_colour, theme  # noqa: E402
from pruneviz.charts.exemplars import exemplar_gallery, exemplar_list  # noqa: E402
from pruneviz.charts.export import chart_data, chart_spec, save_chart  # noqa: E402
from pruneviz.charts.geometry import (  # noqa: E402
    cka_chart,
    embedding_chart,
    logit_change_chart,
    logit_geometry_chart,
)
from pruneviz.charts.overview import (  # noqa: E402
    layer_sparsity_chart,
    metric_by_sparsity_chart,
    speedup_chart,
    tradeoff_chart,
)
from pruneviz.charts.robustness import attack_chart, corruption_chart, reliability_chart  # noqa: E402
from pruneviz.charts.sharpness import (  # noqa: E402
    hessian_density_chart,
    hessian_eigenvalue_chart,
    interpolation_chart,
    landscape_contour_chart,
    landscape_line_chart,
)
from pruneviz.charts.spectrum import spectrum_chart  # noqa: E402
from pruneviz.charts.subgroups import fairness_gap_chart, subgroup_chart  # noqa: E402

__all__ = [
    "MAX_ROWS",
    "SAMPLE_SELECTION",
    "attack_chart",
    "chart_data",
    "chart_spec",
    "cka_chart",
    "corruption_chart",
    "embedding_chart",
    "exemplar_gallery",
    "exemplar_list",
    "fairness_gap_chart",
    "hessian_density_chart",
    "hessian_eigenvalue_chart",
    "interpolation_chart",
    "landscape_contour_chart",
    "landscape_line_chart",
    "layer_sparsity_chart",
    "logit_change_chart",
    "logit_geometry_chart",
    "method_colour",
    "metric_by_sparsity_chart",
    "reliability_chart",
    "sample_selection",
    "save_chart",
    "spectrum_chart",
    "speedup_chart",
    "subgroup_chart",
    "theme",
    "tradeoff_chart",
]
