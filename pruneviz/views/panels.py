"""Panel viewers, one per analysis tab, drawing :class:`~pruneviz.views.state.StudyState`'s frames with
:mod:`pruneviz.charts`.

Each viewer is a ``pn.viewable.Viewer``: it renders inline in JupyterLab (``display(view)``), inside the
app, and in ipywidgets layouts through ``pn.ipywidget(view)``. Figures are recomputed when the choices
they depend on change; the frames come from the zoo's cache (instant when ``pruneviz zoo analyse`` ran)
and are otherwise computed once with a loading indicator. Every figure has CSV and HTML downloads that
carry the configuration that made it. A problem shows as a readable message in place of the figure.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import panel as pn
import param

from pruneviz._version import __version__
from pruneviz.exceptions import PrunevizError
from pruneviz.views.state import StudyState


@dataclass(frozen=True)
class Figure:
    """One figure of a tab: a title, the state method giving its frame, the chart drawing it, and the
    choices it depends on."""

    title: str
    frame: str
    chart: Callable[[pd.DataFrame, StudyState], Any]
    depends: tuple[str, ...]


def configuration(state: StudyState, figure: Figure) -> dict[str, Any]:
    """The choices and runs that produced a figure, recorded beside every export."""
    conf: dict[str, Any] = {"figure": figure.title, "pruneviz": __version__, "zoo": str(state.zoo.path)}
    for name in figure.depends:
        value = getattr(state, name)
        conf[name] = (
            [v.item() if hasattr(v, "item") else v for v in value]
            if isinstance(value, list)
            else (value.item() if hasattr(value, "item") else value)
        )
    return conf


def csv_bytes(frame: pd.DataFrame, conf: dict[str, Any]) -> io.StringIO:
    """The frame as CSV, preceded by ``# `` lines holding the configuration (``pd.read_csv(comment="#")``
    reads it back)."""
    out = io.StringIO()
    out.write("# " + json.dumps(conf, sort_keys=True, default=str) + "\n")
    frame.to_csv(out, index=False)
    out.seek(0)
    return out


def html_bytes(chart: Any, conf: dict[str, Any]) -> io.StringIO:
    """A standalone HTML page of the chart (scripts inline, opens offline) with its configuration."""
    html = chart.to_html(inline=True)
    note = (
        "<details><summary>configuration</summary><pre>"
        + json.dumps(conf, indent=2, sort_keys=True, default=str)
        + "</pre></details>"
    )
    html = html.replace("</body>", note + "</body>", 1)
    return io.StringIO(html)


def message(text: str) -> pn.pane.Alert:
    """A readable problem in place of a figure."""
    return pn.pane.Alert(text, alert_type="warning", sizing_mode="stretch_width")


class AnalysisView(pn.viewable.Viewer):
    """A tab of figures over one :class:`StudyState`. Subclasses list their :class:`Figure` s."""

    state = param.ClassSelector(class_=StudyState, doc="The choices and the zoo shown.")
    figures: tuple[Figure, ...] = ()
    heading = ""
    intro = ""

    def __init__(self, state: StudyState, **params: Any) -> None:
        super().__init__(state=state, **params)

    def render(self, figure: Figure) -> pn.viewable.Viewable:
        """One figure with its downloads, or the message saying why it cannot be drawn."""
        try:
            frame = getattr(self.state, figure.frame)()
            if frame.empty:
                return message(f"{figure.title}: nothing to show for this choice.")
            chart = figure.chart(frame, self.state)
        except PrunevizError as exc:
            return message(str(exc))
        conf = configuration(self.state, figure)
        slug = figure.frame.replace("_", "-")
        csv = pn.widgets.FileDownload(
            callback=lambda: csv_bytes(frame, conf), filename=f"{slug}.csv", label="CSV"
        )
        html = pn.widgets.FileDownload(
            callback=lambda: html_bytes(chart, conf),
            filename=f"{slug}.html",
            label="HTML",
            button_type="light",
        )
        return pn.Column(
            pn.pane.Vega(chart, sizing_mode="stretch_width", name=figure.title),
            pn.Row(csv, html),
            sizing_mode="stretch_width",
        )

    def _bound(self, figure: Figure) -> pn.viewable.Viewable:
        deps = [self.state.param[name] for name in figure.depends]
        # lazy: computed only when shown (inactive tabs cost nothing until opened, and a change of
        # choice recomputes only the figures on screen)
        return pn.param.ParamFunction(
            pn.bind(lambda *_: self.render(figure), *deps), lazy=True, loading_indicator=True
        )

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = []
        if self.heading:
            parts.append(pn.pane.Markdown(f"### {self.heading}\n{self.intro}", sizing_mode="stretch_width"))
        parts += [self._bound(f) for f in self.figures]
        return pn.Column(*parts, sizing_mode="stretch_width")
