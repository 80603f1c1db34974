"""A Vega-Lite chart in the page, sent as JSON text and drawn by vega-embed.

Panel's own Vega pane turns every inline dataset of a specification into a Bokeh ``ColumnDataSource``
(row by row in Python, then back into rows in the browser), keeps the data sources of every
specification it was ever given, and waits 20 ms before drawing. For a figure redrawn on every change
of choice that was most of the time a change took. :class:`VegaChart` instead takes the specification
as one JSON text, made once when the figure is drawn (off the event loop, remembered with it), so a
change sends one string and the browser parses it natively and draws at once. The text is the
specification compiled to Vega (with vl-convert, when it is installed), so the page does not compile
Vega-Lite either: that was a fifth of the browser's work on every change. Point selections the
specification declares come back to Python in :attr:`VegaChart.selections`.

The page needs Vega, Vega-Lite and vega-embed loaded: ``pn.extension("vega")`` (the app does this; in
JupyterLab ``pn.extension("vega", inline=True)`` loads them from this machine instead of a CDN).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

import panel as pn
import param
from panel.custom import JSComponent

from pruneviz._validation import fail
from pruneviz.charts.export import is_vega

__all__ = ["CANVAS_ROWS", "VegaChart", "page_text", "selection_names", "warm_up"]

log = logging.getLogger(__name__)

#: charts with more data rows than this are drawn on a canvas when the renderer is "auto"
CANVAS_ROWS = 300


def selection_names(spec: dict[str, Any]) -> list[str]:
    """The names of the selections a Vega-Lite specification declares at its top level."""
    return sorted(p["name"] for p in spec.get("params", []) if isinstance(p, dict) and "select" in p)


def page_text(spec: dict[str, Any], *, stretch: bool = True, compile: bool = True) -> str:
    """The JSON text a :class:`VegaChart` draws: the Vega-Lite ``spec`` with a fixed top-level width
    replaced by the width of the page's container when ``stretch`` (as Panel's Vega pane does for a
    stretching pane), compiled to Vega when ``compile`` and vl-convert is installed (the names of its
    point selections kept in ``usermeta.pruneviz_selections``); else the Vega-Lite itself.

    >>> page_text({"mark": "point", "width": 200}, compile=False)
    '{"mark":"point","width":"container"}'
    """
    if not isinstance(spec, dict):
        fail(
            "spec",
            "page_text",
            "a Vega-Lite specification as a dict",
            None,
            got=type(spec).__name__,
            fix="pass chart.to_dict() of an Altair chart.",
        )
    already_vega = is_vega(spec)  # a large chart, compiled by VegaFusion
    if stretch and not already_vega and isinstance(spec.get("width"), int | float):
        spec = {**spec, "width": "container"}
    vega = _compiled(spec) if compile and not already_vega else None
    if vega is not None:
        vega["usermeta"] = {**vega.get("usermeta", {}), "pruneviz_selections": selection_names(spec)}
        spec = vega
    try:
        return json.dumps(spec, allow_nan=False, default=_plain, separators=(",", ":"))
    except ValueError:  # NaN or infinity, which JSON cannot carry: drawn as missing values
        return json.dumps(_finite(spec), allow_nan=False, default=_plain, separators=(",", ":"))


def _compiled(spec: dict[str, Any]) -> dict[str, Any] | None:
    """``spec`` compiled to Vega by vl-convert, or ``None`` (not installed, or it failed: the page
    then compiles the Vega-Lite itself)."""
    try:
        import vl_convert
    except ImportError:
        return None
    try:
        version = _version(spec.get("$schema", ""), vl_convert.get_vegalite_versions())
        plain = json.loads(json.dumps(_finite(spec), default=_plain))
        return vl_convert.vegalite_to_vega(plain, vl_version=version)
    except Exception:  # a specification the bundled compiler cannot take is still drawn, in the page
        log.debug("vl-convert could not compile a specification; the page compiles it", exc_info=True)
        return None


def _version(schema: str, known: list[str]) -> str | None:
    """The newest Vega-Lite version vl-convert bundles of the schema's major version and at most its
    minor version; ``None`` (vl-convert's default) if there is none.

    >>> _version("https://vega.github.io/schema/vega-lite/v6.2.0.json", ["5.8", "6.1", "6.4"])
    '6.1'
    """
    found = re.search(r"/v(\d+)\.(\d+)", schema)
    if not found:
        return None
    major, minor = int(found[1]), int(found[2])
    usable = [v for v in known if int(v.split(".")[0]) == major and int(v.split(".")[1]) <= minor]
    return max(usable, key=lambda v: tuple(map(int, v.split(".")))) if usable else None


def warm_up() -> None:
    """Start vl-convert's compiler now (its first compilation takes about half a second)."""
    _compiled({"mark": "point"})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class VegaChart(JSComponent):
    """One Vega-Lite chart, drawn from its specification's JSON text (see :func:`page_text`).

    Setting :attr:`spec` redraws the chart in place. A click on a point selection declared by the
    specification sets :attr:`selections` to ``{name: [point, ...]}``, each point a dict of the
    selection's fields (``[]`` once cleared), and calls the callbacks given to :meth:`on_pick` with
    the name and the points, every time (picking again what was picked before is a pick too).

    In the page the chart's element (``.vega-embed``) carries ``data-drawn``: how many
    specifications it has drawn so far."""

    spec = param.String(default=None, allow_None=True, doc="The Vega-Lite specification as JSON text.")
    renderer: Any = param.Selector(
        default="auto",
        objects=["auto", "svg", "canvas"],
        doc="How Vega draws the chart: 'auto' draws a chart of more than "
        f"{CANVAS_ROWS} data rows on a canvas (thousands of SVG elements are slow to lay out and style in "
        "the page), a smaller one as SVG (its text stays in the page, readable and selectable).",
    )
    selections = param.Dict(default={}, doc="The points picked in each selection of the chart.")
    canvas_rows = param.Integer(default=CANVAS_ROWS, bounds=(0, None), doc="See ``renderer``.")

    _esm = """
function points(value) {
  // a point selection's signal: {vlPoint: {or: [...]}} (no fields) or {field: [v, ...], ...}
  if (value == null) return [];
  if (value.vlPoint && value.vlPoint.or) return value.vlPoint.or.map((p) => ({...p}));
  const fields = Object.keys(value).filter((k) => Array.isArray(value[k]));
  if (!fields.length) return [];
  return value[fields[0]].map((_, i) => Object.fromEntries(fields.map((f) => [f, value[f][i]])));
}

let listenersMissing = false;

export function render({ model, el }) {
  const container = document.createElement("div");
  container.style.width = "100%";
  let view = null;
  let drawn = null;
  let count = 0;

  // A chart of width "container" takes its width from a Vega signal updated on the window's resize
  // events only. The component is resized by the layout without one, so the view's own window resize
  // handlers are called here: a resize event sent to the window would reach every chart and Bokeh's
  // whole layout. Vega's public API has no call that does this (View.resize only lays out again with the
  // current width; View.addEventListener takes scenegraph events), so, as Panel's own Vega pane does,
  // this reads the list of DOM listeners Vega keeps, view._eventListeners ({type, sources, handler}),
  // private to Vega. tests/test_browser.py checks that a chart follows its container's width, and an
  // error in the console (which the browser tests refuse) says so if a Vega version drops the list.
  function resize() {
    if (view === null) return;
    if (!Array.isArray(view._eventListeners)) {
      if (!listenersMissing) {  // said once a page
        listenersMissing = true;
        console.error("pruneviz: this Vega version has no view._eventListeners; charts do not follow "
          + "the width of their container (see pruneviz/views/vega.py)");
      }
      return;
    }
    for (const listener of view._eventListeners) {
      if (listener.type === "resize") listener.handler(new Event("resize"));
    }
  }

  async function draw() {
    const text = model.spec;
    if (text === drawn) return;
    drawn = text;
    if (!text) {
      if (view !== null) view.finalize();
      view = null;
      container.replaceChildren();
      return;
    }
    if (!window.vegaEmbed) {
      container.textContent = "Vega is not loaded in this page: run pn.extension('vega') first.";
      return;
    }
    const spec = JSON.parse(text);
    let renderer = model.renderer;
    if (renderer === "auto") {
      // inline rows: Vega-Lite's datasets, or a compiled Vega specification's data values
      const inline = Array.isArray(spec.data) ? spec.data.map((d) => d.values || []) : [];
      const tables = [...Object.values(spec.datasets || {}), ...inline];
      const rows = tables.reduce((n, d) => n + (d.length || 0), 0);
      renderer = rows > model.canvas_rows ? "canvas" : "svg";
    }
    let result;
    try {
      result = await window.vegaEmbed(container, spec, {actions: false, renderer});
    } catch (error) {  // say so in place of the chart (the console has the details)
      console.warn("pruneviz: a chart could not be drawn", error);
      if (view !== null) view.finalize();
      view = null;
      container.textContent = `This chart could not be drawn: ${error.message || error}`;
      return;
    }
    if (view !== null) view.finalize();
    view = result.view;
    const names = (spec.usermeta || {}).pruneviz_selections
      || (spec.params || []).filter((p) => p.select).map((p) => p.name);
    for (const selection of names) {
      view.addSignalListener(selection, (name, value) => {
        model.send_msg({selection: name, points: points(value)});
      });
    }
    resize();
    // how many specifications this chart has drawn: a hook for tests and the app benchmark
    container.dataset.drawn = String(++count);
  }

  // one draw at a time in the page, in the order the specifications came, each followed by a pause
  // in which the browser can show it: interleaved, several charts would all appear only when the
  // last is done
  const pause = () => new Promise((resolve) => setTimeout(resolve, 0));
  const redraw = () => {
    window.__prunevizDraws = (window.__prunevizDraws || Promise.resolve()).then(draw, draw).then(pause);
  };
  model.on("spec", redraw);
  model.on("renderer", () => { drawn = null; redraw(); });
  model.on("after_layout", resize);
  model.on("resize", resize);
  model.on("remove", () => { if (view !== null) view.finalize(); view = null; });
  redraw();
  return container;
}
"""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pick_callbacks: list[Callable[[str, list[dict[str, Any]]], None]] = []

    def on_pick(self, callback: Callable[[str, list[dict[str, Any]]], None]) -> None:
        """Call ``callback(selection_name, points)`` on every pick in the page."""
        self._pick_callbacks.append(callback)

    def pick(self, selection: str, points: list[dict[str, Any]]) -> None:
        """Record a pick (what a click in the page does): update :attr:`selections`, call back."""
        self.selections = {**self.selections, selection: list(points)}
        for callback in self._pick_callbacks:
            callback(selection, list(points))

    def _handle_msg(self, msg: Any) -> None:
        if isinstance(msg, dict) and isinstance(msg.get("selection"), str):
            points = msg.get("points")
            self.pick(msg["selection"], [p for p in points if isinstance(p, dict)] if points else [])

    def _get_model(self, doc: Any, root: Any = None, parent: Any = None, comm: Any = None) -> Any:
        # the Vega scripts come with Panel's vega extension: loaded as Panel's Vega pane loads them
        from pyviz_comms import JupyterComm

        pn.util.lazy_load("panel.models.vega", "VegaPlot", isinstance(comm, JupyterComm), root)
        return super()._get_model(doc, root, parent, comm)
