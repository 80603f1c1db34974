"""The pruneviz web app: the views of one zoo in tabs, served by Panel.

``pruneviz serve --zoo DIR`` serves it on 127.0.0.1. Another address needs basic authentication (a
password from ``PRUNEVIZ_PASSWORD`` or a file) or an explicit ``insecure=True``; the app reads only the
zoo's own files, never runs uploaded code and never unpickles anything.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any, cast

from pruneviz._validation import check_int, fail
from pruneviz.exceptions import PrunevizError
from pruneviz.zoo.store import Zoo

LOCAL = ("127.0.0.1", "localhost", "::1")
CONTROLS = ("dataset", "parent", "methods", "sparsities", "method", "sparsity", "group", "metric", "split")


def build_app(zoo: Zoo | str | os.PathLike[str], *, title: str = "pruneviz") -> Any:
    """The app for one zoo as a Panel template (sidebar of choices, one tab per analysis).

    A zoo that cannot be shown (missing, empty, without pruned runs) gives a page that says why."""
    import panel as pn

    from pruneviz.views import TABS
    from pruneviz.views.state import StudyState

    pn.extension("vega", sizing_mode="stretch_width", notifications=False)
    # the Bootstrap template loads only resources Panel bundles: the app works offline and fetches
    # nothing from outside this machine (the Fast templates pull a web font from Google)
    # no busy indicator: each figure shows its own while it is computed, and updating the template's
    # on every change cost more than redrawing a remembered figure
    # typed loosely: Panel declares the template's areas optional and has no attribute for the state
    template: Any = pn.template.BootstrapTemplate(title=title, sidebar_width=300, busy_indicator=None)
    try:
        # a page request never writes: what is not cached is computed into this object's memory
        zoo = Zoo(zoo.path if isinstance(zoo, Zoo) else zoo, read_only=True)
        state = StudyState(zoo)
    except PrunevizError as exc:
        template.main.append(pn.pane.Alert(str(exc), alert_type="danger"))
        return template
    if state.problem:
        template.main.append(pn.pane.Alert(state.problem, alert_type="warning"))
        return template
    widgets = pn.Param(
        state.param,
        parameters=list(CONTROLS),
        widgets={
            "methods": pn.widgets.CheckBoxGroup,
            "sparsities": pn.widgets.CheckBoxGroup,
        },
        show_name=False,
        sizing_mode="stretch_width",
    )
    template.sidebar.append(pn.pane.Markdown(f"**Zoo** `{zoo.path.name}` — {len(state.runs)} runs"))
    template.sidebar.append(widgets)
    template.sidebar.append(pn.panel(pn.bind(picked_sample, state.param.sample_id, state=state)))
    views = [view(state, active=(i == 0)) for i, (_, view) in enumerate(TABS)]
    tabs = pn.Tabs(
        *[(name, v) for (name, _), v in zip(TABS, views, strict=True)],
        dynamic=True,
        sizing_mode="stretch_width",
    )

    def switch(event: Any) -> None:  # only the tab on screen redraws when a choice changes
        for i, v in enumerate(views):
            v.active = i == event.new

    tabs.param.watch(switch, "active")
    for widget in [*widgets.layout.objects, tabs]:
        _prompt(widget)
    template.main.append(tabs)
    template.state = state  # for tests and notebooks: the choices behind the page
    return template


def _prompt(widget: Any) -> None:
    """Handle a choice made in the page at once. Panel holds every change from the page for 50 ms in
    case more follow (typing, dragging); a choice in a select, a checkbox or a tab is made in one go,
    and those 50 ms were a quarter of the time a cached figure took to follow it."""
    if hasattr(widget, "_priority_changes"):
        widget._priority_changes = ["value", "active"]


def picked_sample(sample_id: int | None, *, state: Any) -> Any:
    """The sidebar card of the sample picked in a linked view: its label, groups and predictions."""
    import panel as pn

    if sample_id is None:
        return pn.pane.Markdown("**Picked sample**: none. Click a sample in a chart to pick it.")
    try:
        rows = state.selected_sample()
    except PrunevizError as exc:
        return pn.pane.Alert(str(exc), alert_type="warning")
    first = rows.iloc[0]
    groups = ", ".join(f"{c[6:]} = {first[c]}" for c in rows.columns if c.startswith("group_"))
    lines = [
        f"**Picked sample #{sample_id}** · label {first['label']}",
        f"groups: {groups}" if groups else "",
    ]
    for r in rows.itertuples():
        verdict = "right" if getattr(r, "correct", r.prediction == r.label) else "wrong"
        lines.append(f"- {r.model}: predicts {r.prediction} ({verdict})")
    return pn.pane.Markdown("\n\n".join(filter(None, lines[:2])) + "\n\n" + "\n".join(lines[2:]))


def auth_password(*, password_file: str | os.PathLike[str] | None = None) -> str | None:
    """The basic-auth password: from ``password_file`` or the ``PRUNEVIZ_PASSWORD`` variable."""
    if password_file is not None:
        path = Path(password_file)
        if not path.is_file():
            fail("password_file", "serve", "a readable file holding the password", str(path))
        text = path.read_text().strip()
        if not text:
            fail("password_file", "serve", "a file holding a non-empty password", str(path))
        return text
    return os.environ.get("PRUNEVIZ_PASSWORD") or None


def check_serving(address: str, password: str | None, insecure: bool) -> None:
    """Serving beyond this machine needs a password or an explicit ``insecure``."""
    if address not in LOCAL and password is None and not insecure:
        fail(
            "address",
            "serve",
            "127.0.0.1 unless a password is set",
            address,
            "set PRUNEVIZ_PASSWORD (or pass --password-file) to require basic authentication, or pass "
            "--insecure to serve without it on a trusted network.",
        )


def _send_at_once() -> None:
    """Send the page's websocket frames as soon as they are written (``TCP_NODELAY``).

    Each Bokeh message is several small frames. Without this, Nagle's algorithm holds every frame after
    the first until the browser acknowledges it, and browsers delay acknowledgements (40 ms on Linux):
    every figure a change redrew came 40 ms late. Replaces Panel's websocket handler in the route
    table that servers made from now on use. The table is Bokeh's private ``per_app_patterns``: a test
    (``tests/test_app.py``) pins it, so an upgrade that moves it fails loudly."""
    from bokeh.server.urls import per_app_patterns

    for i, (pattern, handler, *rest) in enumerate(per_app_patterns):
        if pattern == r"/ws" and not getattr(handler, "sends_at_once", False):

            class Handler(handler):  # type: ignore[misc, valid-type]
                sends_at_once = True

                def open(self, *args: Any, **kwargs: Any) -> Any:
                    self.set_nodelay(True)
                    return super().open(*args, **kwargs)

            per_app_patterns[i] = cast(Any, (pattern, Handler, *rest))


def serve(
    zoo: str | os.PathLike[str],
    *,
    address: str = "127.0.0.1",
    port: int = 5006,
    password_file: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    show: bool = False,
    threaded: bool = False,
) -> Any:
    """Serve the app of ``zoo`` (blocking unless ``threaded``). See the module docstring for security."""
    import panel as pn

    port = check_int(port, "port", "serve", minimum=0, maximum=65535)
    password = auth_password(password_file=password_file)
    check_serving(address, password, insecure)
    import threading

    import pruneviz.views  # noqa: F401  (load the plotting stack now, not during the first visit)
    from pruneviz.views.vega import warm_up

    threading.Thread(target=warm_up, name="pruneviz-warm-up", daemon=True).start()
    # figures are drawn on worker threads; let the thread serving the pages take the interpreter back
    # within a millisecond (Python's default is 5 ms, paid at every switch while a figure is drawn)
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

    _send_at_once()
    kwargs: dict[str, Any] = {}
    if password is not None:
        kwargs["basic_auth"] = password
        kwargs["cookie_secret"] = secrets.token_hex(32)
    return pn.serve(
        {"/": lambda: build_app(zoo)},
        address=address,
        port=port,
        show=show,
        threaded=threaded,
        title="pruneviz",
        websocket_origin=[f"{address}:{port}", f"localhost:{port}"] if port else None,
        **kwargs,
    )
