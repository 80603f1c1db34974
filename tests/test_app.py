"""The views, the app and the audit report, without a browser: wiring, security and messages."""

from __future__ import annotations

import json

import pandas as pd
import panel as pn
import pytest

from pruneviz.app import build_app, check_serving
from pruneviz.cli import main
from pruneviz.exceptions import ValidationError
from pruneviz.views import TABS, StudyState
from pruneviz.views.panels import Drawn, configuration, csv_bytes
from pruneviz.views.vega import VegaChart, page_text, selection_names
from pruneviz.zoo import Zoo


@pytest.fixture(scope="module")
def state(study_zoo):
    return StudyState(study_zoo, method="lamp", sparsity=0.5)


def test_every_tab_draws_its_figures(state):
    for name, view_type in TABS:
        view = view_type(state)
        for figure in view.figures:
            drawn = view.render(figure)
            if figure.frame == "selected_exemplar":  # nothing picked yet: says how to pick
                assert drawn.message and "click a sample" in drawn.message
                continue
            assert drawn.message is None, f"{name}/{figure.title}: {drawn.message}"
            assert drawn.spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
            pane = view.panes[view.figures.index(figure)]
            # the page gets the specification compiled to Vega, its title and selections kept
            page = json.loads(pane._chart.spec)
            assert page["$schema"].startswith("https://vega.github.io/schema/vega/v")
            assert page["title"]["text"] == drawn.spec["title"]["text"]
            assert page["usermeta"]["pruneviz_selections"] == selection_names(drawn.spec)
            assert pane._slot.visible


def test_exports_carry_the_configuration_that_made_them(state):
    view = TABS[1][1](state)
    figure = view.figures[0]
    conf = configuration(state, figure)
    assert conf["method"] == "lamp" and conf["sparsity"] == 0.5 and conf["parent"] == state.parent
    text = csv_bytes(state.cka(), conf).getvalue()
    assert json.loads(text.splitlines()[0][2:]) == json.loads(json.dumps(conf, default=str))
    back = pd.read_csv(pd.io.common.StringIO(text), comment="#")
    assert list(back.columns[:3]) == ["run_a", "run_b", "method"] and len(back) == len(state.cka())
    pane = view.panes[0]
    view.render(figure)
    assert pane._csv_data().getvalue() == text
    assert "<details><summary>configuration" in pane._html_data().getvalue()


def test_a_choice_redraws_the_figures_on_screen_in_place(study_zoo):
    state = StudyState(study_zoo, method="lamp", sparsity=0.5)
    on_screen, hidden = TABS[1][1](state), TABS[5][1](state, active=False)
    on_screen.__panel__(), hidden.__panel__()
    pane = on_screen.panes[0]
    chart, first = pane._chart, pane._chart.spec
    assert first is not None and all(p.drawn is None and p.stale for p in hidden.panes)
    state.sparsity = 0.9
    # the same chart, a new specification: the page patches one text property instead of rebuilding
    assert pane._chart is chart and chart.spec != first
    assert "90%" in json.dumps(json.loads(chart.spec)["title"], ensure_ascii=False)
    assert all(p.stale for p in hidden.panes)  # an inactive tab only notes the change
    hidden.active = True
    assert not any(p.stale for p in hidden.panes) and hidden.panes[0].drawn.message is None
    state.sparsity = 0.5  # a choice drawn before comes back from memory, with all its data
    assert chart.spec == first
    assert pane.drawn.spec["datasets"] and all(pane.drawn.spec["datasets"].values())


def test_picking_a_sample_links_the_views(study_zoo):
    state = StudyState(study_zoo, method="lamp", sparsity=0.9)
    geometry, exemplars, subgroups = TABS[1][1](state), TABS[2][1](state), TABS[3][1](state)
    for view in (geometry, exemplars, subgroups):
        view.__panel__()
    gallery, picked = exemplars.panes
    assert picked.drawn.message and "click a sample" in picked.drawn.message
    # a click in the gallery reaches Python as the Vega selection "sample"
    top = int(state.exemplars().sort_values("rank")["sample_id"].iloc[0])
    assert "sample" in json.loads(gallery._chart.spec)["usermeta"]["pruneviz_selections"]
    gallery._chart._handle_msg({"selection": "sample", "points": [{"sample_id": top}]})
    assert state.sample_id == top and gallery._chart.selections == {"sample": [{"sample_id": top}]}
    # ... the embedding starts with it selected, its attributions are drawn, its group is outlined
    embedding = geometry.panes[1].drawn.spec
    params = {p["name"]: p for p in embedding["params"]}
    assert params["sample"]["value"] == [{"sample_id": top}]
    assert picked.drawn.message is None and "Top 1 exemplars" in json.dumps(picked.drawn.spec["title"])
    shown = {d["sample_id"] for data in picked.drawn.spec["datasets"].values() for d in data}
    assert shown == {top}
    group = state.selected_group()
    assert group is not None and f"group {group}, the picked sample's" in json.dumps(
        subgroups.panes[0].drawn.spec["title"], ensure_ascii=False
    )
    card = state.selected_sample()
    assert list(card["model"]) == ["dense", "pruned"] and (card["sample_id"] == top).all()
    assert card["group_" + state.group].astype(str).eq(group).all()
    # and a click in the embedding picks a sample for the other views the same way
    other = int(state.exemplars().sort_values("rank")["sample_id"].iloc[1])
    geometry.panes[1]._chart.pick("sample", [{"sample_id": other}])
    assert state.sample_id == other and picked.drawn.frame["sample_id"].tolist() == [other]
    # picking the first sample again in the gallery, still selected there, is a pick too
    gallery._chart._handle_msg({"selection": "sample", "points": [{"sample_id": top}]})
    assert state.sample_id == top


def test_snapshots_are_detached_copies_of_the_choices(study_zoo):
    state = StudyState(study_zoo, method="lamp", sparsity=0.5)
    snap = state.snapshot(sparsity=0.9)
    assert (snap.method, snap.sparsity, state.sparsity) == ("lamp", 0.9, 0.5)
    state.method = "channel_l1"
    assert snap.method == "lamp" and snap.child != state.child
    assert snap.cka()["run_b"].iloc[0] == snap.child


def test_views_convert_to_ipywidgets(state):
    import ipywidgets

    widget = pn.ipywidget(TABS[1][1](state))
    assert isinstance(widget, ipywidgets.DOMWidget)


def test_problems_show_in_the_page_not_as_tracebacks(tmp_path):
    page = build_app(tmp_path / "nowhere")
    alerts = [o for o in page.main.objects if isinstance(o, pn.pane.Alert)]
    assert alerts and "does not exist" in alerts[0].object
    page = build_app(Zoo.create(tmp_path / "empty"))
    assert "no runs yet" in page.main.objects[0].object


def test_serving_beyond_this_machine_needs_a_password_or_insecure(tmp_path, monkeypatch, capsys, study_zoo):
    monkeypatch.delenv("PRUNEVIZ_PASSWORD", raising=False)
    assert main(["serve", "--zoo", str(study_zoo.path), "--address", "0.0.0.0"]) == 2
    assert "'address' parameter of serve" in capsys.readouterr().err
    check_serving("127.0.0.1", None, False)
    with pytest.raises(
        ValidationError, match="'address' parameter of serve must be 127.0.0.1 unless a password"
    ):
        check_serving("0.0.0.0", None, False)
    check_serving("0.0.0.0", "secret", False)
    check_serving("0.0.0.0", None, True)
    missing = tmp_path / "nope.txt"
    assert main(["serve", "--zoo", str(tmp_path), "--address", "0.0.0.0"]) == 2
    assert "not a pruneviz zoo" in capsys.readouterr().err
    monkeypatch.delenv("PRUNEVIZ_PASSWORD", raising=False)
    from pruneviz.app import auth_password

    with pytest.raises(ValidationError, match="'password_file' parameter of serve"):
        auth_password(password_file=missing)
    missing.write_text("s3cret\n")
    assert auth_password(password_file=missing) == "s3cret"
    monkeypatch.setenv("PRUNEVIZ_PASSWORD", "envpass")
    assert auth_password() == "envpass"


def test_the_audit_report_is_one_offline_page(study_zoo, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert (
        main(
            [
                "audit",
                "--zoo",
                str(study_zoo.path),
                "--out",
                str(out),
                "--method",
                "lamp",
                "--sparsity",
                "0.9",
            ]
        )
        == 0
    )
    page = out.read_text()
    assert "pruneviz audit" in page and "Disparity" in page and "exemplars" in page
    assert 'src="http' not in page and page.count("vegaEmbed(") >= 4


def test_figure_memory_is_bounded_and_draws_each_figure_once(study_zoo):
    import concurrent.futures
    import threading

    from pruneviz.views.panels import FigureMemory, _key, neighbours

    state = StudyState(study_zoo, method="lamp", sparsity=0.5)
    figure = TABS[1][1].figures[0]
    memory = FigureMemory(size=2)
    calls = []
    gate = threading.Event()

    def slow_draw(key, snap, fig):
        calls.append(key)
        gate.wait(5)
        return memory.put(key, Drawn(message=f"drawn {key[-1]}"))

    memory._draw = slow_draw  # a draw that waits, so that a second request finds it under way
    key = _key(state, figure)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = memory.submit(key, state, figure, pool)
        second = memory.submit(key, state, figure, pool)
        gate.set()
        assert first is second and first.result().message.startswith("drawn")
    assert len(calls) == 1
    for i in range(3):
        memory.put(("k", i), Drawn(message=str(i)))
    assert memory.get(("k", 0)) is None and memory.get(("k", 2)).message == "2"
    # the next choices: the other sparsity first, then the other method
    near = neighbours(state, figure)
    assert near == [{"sparsity": 0.9}, {"method": "channel_l1"}]
    assert _key(state, figure, near[0]) == _key(state.snapshot(sparsity=0.9), figure) != key
    assert neighbours(state, figure, {"sparsity": 0.9, "method": "channel_l1"}) == [
        {"sparsity": 0.5},
        {"method": "lamp"},
    ]


def test_page_text_is_compiled_vega_with_its_selections_or_else_the_vega_lite(monkeypatch):
    import sys

    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.4.1.json",
        "datasets": {"d": [{"x": 1.0, "y": float("nan")}, {"x": 2.0, "y": 3.0}]},
        "data": {"name": "d"},
        "mark": "point",
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
        },
        "params": [{"name": "sample", "select": {"type": "point", "fields": ["x"]}}],
        "width": 300,
    }
    page = json.loads(page_text(spec))  # NaN, which JSON cannot carry, arrives as a missing value
    assert page["$schema"].startswith("https://vega.github.io/schema/vega/")
    assert page["usermeta"]["pruneviz_selections"] == ["sample"]
    assert {s["name"] for s in page["signals"]} >= {"sample", "width"}  # the page's width, as a signal
    values = next(d["values"] for d in page["data"] if d.get("values"))
    assert values == [{"x": 1.0, "y": None}, {"x": 2.0, "y": 3.0}]
    monkeypatch.setitem(sys.modules, "vl_convert", None)  # not installed: the page compiles it
    plain = json.loads(page_text(spec))
    assert plain["width"] == "container" and plain["params"] == spec["params"]
    assert plain["datasets"]["d"][0]["y"] is None
    with pytest.raises(ValidationError, match=r"'spec' parameter of page_text must be a Vega-Lite .*Got str"):
        page_text("{}")


def test_a_chart_reports_every_pick_and_ignores_malformed_messages():
    chart = VegaChart()
    seen = []
    chart.on_pick(lambda name, points: seen.append((name, points)))
    for junk in (None, "sample", {"points": []}, {"selection": 3}):
        chart._handle_msg(junk)
    assert seen == [] and chart.selections == {}
    for _ in range(2):  # the same pick twice is two picks
        chart._handle_msg({"selection": "sample", "points": [{"sample_id": 4}, "junk"]})
    assert seen == [("sample", [{"sample_id": 4}])] * 2 and chart.selections == {"sample": [{"sample_id": 4}]}


def test_the_private_bokeh_route_the_app_replaces_is_still_there():
    """The app's websocket handler (``TCP_NODELAY``) replaces Bokeh's entry for ``/ws`` in
    ``bokeh.server.urls.per_app_patterns``, a private table: this fails loudly if an upgrade moves it,
    instead of the app silently losing 40 ms per redraw."""
    from bokeh.server.urls import per_app_patterns
    from bokeh.server.views.ws import WSHandler

    from pruneviz.app import _send_at_once

    before = list(per_app_patterns)
    try:
        routes = {pattern: handler for pattern, handler, *_ in per_app_patterns}
        assert r"/ws" in routes and issubclass(routes[r"/ws"], WSHandler)
        _send_at_once()
        _send_at_once()  # idempotent
        handler = {pattern: h for pattern, h, *_ in per_app_patterns}[r"/ws"]
        assert handler.sends_at_once and issubclass(handler, WSHandler)
        assert not getattr(handler.__mro__[1], "sends_at_once", False)  # one wrapper, not two
    finally:
        per_app_patterns[:] = before
