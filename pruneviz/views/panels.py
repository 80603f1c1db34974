"""Panel viewers, one per analysis tab, drawing :class:`~pruneviz.views.state.StudyState`'s frames with
:mod:`pruneviz.charts`.

Each viewer is a ``pn.viewable.Viewer``: it renders inline in JupyterLab (``display(view)``), inside the
app, and in ipywidgets layouts through ``pn.ipywidget(view)``. A figure is drawn in place: when a choice
it depends on changes, only its chart specification is sent again (the page keeps its widgets), only
the figures of the tab on screen are recomputed, and a figure drawn once for a choice is remembered, so
returning to a choice is instant. In a served app the frames are computed off the event loop, on a
snapshot of the choices, with a loading indicator; the page shows first and the figures follow. Every
figure has CSV and HTML downloads that carry the configuration that made it. A problem shows as a
readable message in place of the figure.

Selections link the views: picking a sample in the exemplar gallery or the embedding sets
``StudyState.sample_id``, which the other figures that depend on it (the embedding, the picked sample's
attributions, its group in the subgroup audit) redraw with.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.io.document import hold

from pruneviz._version import __version__
from pruneviz.charts import SAMPLE_SELECTION
from pruneviz.charts.export import chart_html, chart_spec
from pruneviz.exceptions import PrunevizError
from pruneviz.views.state import StudyState
from pruneviz.views.vega import VegaChart, page_text

log = logging.getLogger(__name__)

#: figures remembered by default (each holds its frame, chart and specification)
REMEMBERED = 256


@dataclass(frozen=True)
class Figure:
    """One figure of a tab: a title, the state method giving its frame, the chart drawing it, the
    choices it depends on, and what to say when its frame is empty."""

    title: str
    frame: str
    chart: Callable[[pd.DataFrame, StudyState], Any]
    depends: tuple[str, ...]
    empty: str = "nothing to show for this choice."


@dataclass(frozen=True)
class Drawn:
    """A figure drawn for one set of choices: its frame, chart, Vega-Lite specification (as a dict and
    as the JSON text the page draws) and configuration; or the message saying why it cannot be drawn."""

    frame: pd.DataFrame | None = None
    chart: Any = None
    spec: dict[str, Any] | None = None
    conf: dict[str, Any] | None = None
    message: str | None = None
    text: str | None = None


def configuration(state: StudyState, figure: Figure) -> dict[str, Any]:
    """The choices and runs that produced a figure, recorded beside every export."""
    conf: dict[str, Any] = {"figure": figure.title, "pruneviz": __version__, "zoo": str(state.zoo.path)}
    for name in figure.depends:
        conf[name] = _plain(getattr(state, name))
    return conf


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


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
    html = chart_html(chart)
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


def draw(state: StudyState, figure: Figure) -> Drawn:
    """Compute one figure for the state's choices: never raises for a problem a person can meet."""
    try:
        frame = state.figure_frame(figure.frame)
        if frame.empty:
            return Drawn(message=f"{figure.title}: {figure.empty}")
        chart = figure.chart(frame, state)
        # charts are validated against the Vega-Lite schema by the test suite; in the page the
        # validation would cost more than everything else together
        spec = chart_spec(chart, validate=False)  # Vega from VegaFusion for a chart of many rows
        text = page_text(spec)
    except PrunevizError as exc:
        return Drawn(message=str(exc))
    except Exception as exc:  # a bug must not take the page down: say what failed, log the traceback
        log.exception("pruneviz could not draw %s", figure.title)
        return Drawn(message=f"{figure.title} could not be drawn: {type(exc).__name__}: {exc}")
    return Drawn(frame, chart, spec, configuration(state, figure), text=text)


class FigureMemory:
    """The figures drawn in this process, shared by every session of the app: a bounded
    least-recently-used store keyed by the zoo, its runs and the choices a figure depends on, plus the
    draws under way (a second request for one waits for it instead of drawing it again).

    Runs and cached analyses never change once written, so a figure drawn for a set of choices stays
    right; a zoo that gains runs gets new keys (the runs are part of them)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Drawn] = OrderedDict()
        self._pending: dict[tuple, concurrent.futures.Future] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Drawn | None:
        with self._lock:
            drawn = self._items.get(key)
            if drawn is not None:
                self._items.move_to_end(key)
            return drawn

    def put(self, key: tuple, drawn: Drawn) -> Drawn:
        with self._lock:
            self._items[key] = drawn
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return drawn

    def submit(
        self, key: tuple, state: StudyState, figure: Figure, executor: Any
    ) -> concurrent.futures.Future:
        """The draw of ``key`` under way, started on ``executor`` if there is none."""
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = executor.submit(self._draw, key, state, figure)
                self._pending[key] = future
            return future

    def _draw(self, key: tuple, state: StudyState, figure: Figure) -> Drawn:
        try:
            found = self.get(key)
            return found if found is not None else self.put(key, draw(state, figure))
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: whether served views draw the neighbouring choices in the background
PREFETCH = True
#: drawn figures, shared by the sessions of this process
MEMORY = FigureMemory(size=256)
# foreground draws (what a person asked for) and background draws (choices they may make next) run
# on separate threads, so a queue of guesses never delays an answer
_NOW = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="pruneviz-draw")
_LATER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pruneviz-prefetch")


def _key(state: StudyState, figure: Figure, choices: dict[str, Any] | None = None) -> tuple:
    """The memory's key of ``figure`` for the state's choices, or for ``choices`` where given."""
    given = choices or {}
    values = tuple(repr(_plain(given[n] if n in given else getattr(state, n))) for n in figure.depends)
    # the study settings choose which cached results a frame reads: a zoo analysed anew with other
    # settings draws anew
    settings = state.settings.to_json()
    return (str(state.zoo.path), state.fingerprint, settings, figure.title, figure.frame, *values)


def neighbours(
    state: StudyState, figure: Figure, choices: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The changes a person is likely to make next to the state's choices (or to ``choices``) for
    ``figure``: another sparsity (nearest first), then another method."""
    now = choices if choices is not None else {"sparsity": state.sparsity, "method": state.method}
    sparsity, method = now.get("sparsity"), now.get("method")
    out: list[dict[str, Any]] = []
    if "sparsity" in figure.depends and sparsity is not None:
        others = [v for v in state.param.sparsity.objects if v != sparsity]
        out += [{"sparsity": v} for v in sorted(others, key=lambda v: abs(float(v) - float(sparsity)))]
    if "method" in figure.depends:
        out += [{"method": m} for m in state.param.method.objects if m != method]
    return out


def _in_server() -> bool:
    doc = pn.state.curdoc
    return bool(doc is not None and doc.session_context is not None)


class FigurePane(pn.viewable.Viewer):
    """One figure of a view, drawn in place (see the module docstring)."""

    def __init__(self, view: AnalysisView, figure: Figure) -> None:
        super().__init__()
        self.view, self.figure = view, figure
        self.stale = True
        self._generation = 0
        self._drawn: Drawn | None = None
        self._chart = VegaChart(sizing_mode="stretch_width", name=figure.title)
        self._chart.on_pick(self._picked)
        self._slot = pn.Column(self._chart, sizing_mode="stretch_width", visible=False)
        self._message = pn.pane.Alert("", alert_type="warning", sizing_mode="stretch_width", visible=False)
        slug = figure.frame.replace("_", "-")
        self._csv = pn.widgets.FileDownload(
            callback=self._csv_data, filename=f"{slug}.csv", label="CSV", visible=False
        )
        self._html = pn.widgets.FileDownload(
            callback=self._html_data,
            filename=f"{slug}.html",
            label="HTML",
            color="light",
            visible=False,
        )
        self._layout = pn.Column(
            self._message,
            self._slot,
            pn.Row(self._csv, self._html),
            sizing_mode="stretch_width",
            min_height=80,
        )

    # -- downloads ----------------------------------------------------------------------------------
    def _csv_data(self) -> io.StringIO:
        drawn = self._drawn
        if not drawn or drawn.frame is None:
            return io.StringIO()
        return csv_bytes(drawn.frame, drawn.conf or {})

    def _html_data(self) -> io.StringIO:
        drawn = self._drawn
        if not drawn or drawn.chart is None:
            return io.StringIO()
        return html_bytes(drawn.chart, drawn.conf or {})

    # -- drawing ------------------------------------------------------------------------------------
    @property
    def drawn(self) -> Drawn | None:
        """What is shown now (``None`` before the first draw)."""
        return self._drawn

    def changed(self) -> None:
        """A choice this figure depends on changed: redraw it if its view is on screen."""
        self.stale = True
        if self.view.active:
            self.refresh()

    def refresh(self) -> None:
        """Show the figure for the current choices: at once when remembered; otherwise computed (off
        the event loop in a served app, here and now elsewhere)."""
        self.stale = False
        self._generation += 1
        state = self.view.state
        key = _key(state, self.figure)
        drawn = MEMORY.get(key)
        if drawn is not None:
            self._show(drawn)
            self._prefetch()
            return
        if _in_server():
            self._layout.loading = True
            future = MEMORY.submit(key, state.snapshot(), self.figure, _NOW)
            param.parameterized.async_executor(functools.partial(self._draw_later, self._generation, future))
        else:
            self._show(MEMORY.put(key, draw(state, self.figure)))

    async def _draw_later(self, generation: int, future: concurrent.futures.Future) -> None:
        try:
            drawn = await asyncio.wrap_future(future)
            if generation == self._generation:  # a later choice supersedes this one
                self._show(drawn)
                self._prefetch()
        finally:
            if generation == self._generation:
                self._layout.loading = False

    def _prefetch(self) -> None:
        """In a served app, draw the neighbouring choices in the background (one thread, behind any
        figure a person asked for), so that the next change is answered from memory."""
        if PREFETCH and _in_server():
            state = self.view.state
            choices = {name: getattr(state, name) for name in state.CHOICES}  # as they are now
            _LATER.submit(self._guess, self._generation, choices)

    def _guess(self, generation: int, choices: dict[str, Any]) -> None:
        state = self.view.state
        for change in neighbours(state, self.figure, choices):
            if generation != self._generation or not self.view.active:
                return  # the person has moved on: these guesses are out of date
            guess = {**choices, **change}
            key = _key(state, self.figure, guess)
            if MEMORY.get(key) is None:  # a snapshot only for a figure to draw: checking costs little
                MEMORY.submit(key, state.snapshot(**guess), self.figure, _NOW).result()

    def _show(self, drawn: Drawn) -> None:
        self._drawn = drawn
        ok = drawn.message is None
        if ok:
            self._chart.param.update(selections={}, spec=drawn.text)
        self._slot.visible = ok
        self._message.param.update(object=drawn.message or "", visible=not ok)
        self._csv.visible = self._html.visible = ok

    def _picked(self, selection: str, picked: list[dict[str, Any]]) -> None:
        """A click on a sample in this figure picks it for every view (``StudyState.sample_id``)."""
        if selection != SAMPLE_SELECTION:
            return
        ids: list[Any] = [
            p.get("sample_id") for p in picked if isinstance(p, dict) and p.get("sample_id") is not None
        ]
        if ids:
            self.view.state.sample_id = int(ids[-1])

    def __panel__(self) -> pn.viewable.Viewable:
        if self.stale and self.view.active:
            if _in_server() and not pn.state.loaded:
                # the page is sent first; the figure follows once it has loaded
                self._layout.loading = True
                pn.state.onload(self._refresh_if_stale)
            else:
                self.refresh()
        return self._layout

    def _refresh_if_stale(self) -> None:
        if self.stale and self.view.active:
            self.refresh()


class AnalysisView(pn.viewable.Viewer):
    """A tab of figures over one :class:`StudyState`. Subclasses list their :class:`Figure` s.

    ``active`` says whether the view is on screen: an inactive view only notes that its figures are
    out of date and redraws them when it becomes active again (the app sets it from its tabs)."""

    state: Any = param.ClassSelector(class_=StudyState, doc="The choices and the zoo shown.")
    active = param.Boolean(default=True, doc="Whether the view is on screen (redraws when it is).")
    figures: tuple[Figure, ...] = ()
    heading = ""
    intro = ""

    #: the tab's name in the app; registered analyses shown on it (:class:`~pruneviz.study.Show`) add
    #: their figures after the view's own
    tab = ""

    def __init__(self, state: StudyState, **params: Any) -> None:
        super().__init__(state=state, **params)
        self.figures = (*type(self).figures, *registered_figures(self.tab))
        self.panes = [FigurePane(self, f) for f in self.figures]
        depends = sorted({name for f in self.figures for name in f.depends})
        if depends:
            state.param.watch(self._changed, depends)

    def _changed(self, *events: param.parameterized.Event) -> None:
        # every figure a change redraws goes to the page in one message: the browser starts drawing
        # them together instead of one message (and one frame) after another
        names = {event.name for event in events}
        with hold():
            for pane in self.panes:
                if names.intersection(pane.figure.depends):
                    pane.changed()

    @param.depends("active", watch=True)
    def _activated(self) -> None:
        if self.active:
            for pane in self.panes:
                if pane.stale:
                    pane.refresh()

    def render(self, figure: Figure) -> Drawn:
        """Draw one of this view's figures for the current choices (remembered like the page's)."""
        pane = self.panes[self.figures.index(figure)]
        pane.stale = False
        key = _key(self.state, figure)
        drawn = MEMORY.get(key) or MEMORY.put(key, draw(self.state, figure))
        pane._show(drawn)
        return drawn

    def __panel__(self) -> pn.viewable.Viewable:
        parts: list[Any] = []
        if self.heading:
            parts.append(pn.pane.Markdown(f"### {self.heading}\n{self.intro}", sizing_mode="stretch_width"))
        parts += self.panes
        return pn.Column(*parts, sizing_mode="stretch_width")


#: the choices a registered analysis' figure depends on, by scope
SCOPE_DEPENDS = {
    "run": ("parent", "method", "sparsity"),
    "pair": ("parent", "method", "sparsity"),
    "family": ("parent", "method", "sparsity"),
    "runs": ("parent", "method", "sparsity"),
    "comparison": ("methods", "sparsities", "split"),
}


def registered_figures(tab: str) -> tuple[Figure, ...]:
    """The figures of the registered analyses shown on ``tab`` that no view draws itself."""
    from pruneviz.study import analyses

    figures = []
    for entry in analyses(tab=tab) if tab else []:
        show = entry.show
        assert show is not None  # analyses(tab=...) lists shown analyses only
        depends = show.depends or (*SCOPE_DEPENDS[entry.scope], *(["group"] if "group" in entry.over else []))
        figures.append(Figure(show.title, entry.name, _chart_of(show.chart), tuple(depends)))
    return tuple(figures)


def _chart_of(chart: Callable[[pd.DataFrame], Any]) -> Callable[[pd.DataFrame, StudyState], Any]:
    return lambda frame, state: chart(frame)
