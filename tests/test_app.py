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
from pruneviz.views.panels import configuration, csv_bytes
from pruneviz.zoo import Zoo


@pytest.fixture(scope="module")
def state(study_zoo):
    return StudyState(study_zoo, method="lamp", sparsity=0.5)


def test_every_tab_draws_its_figures(state):
    for name, view_type in TABS:
        view = view_type(state)
        for figure in view.figures:
            out = view.render(figure)
            assert isinstance(out, pn.Column), f"{name}/{figure.title}: {getattr(out, 'object', out)}"
            vega = out.objects[0]
            assert isinstance(vega, pn.pane.Vega) and vega.object is not None


def test_exports_carry_the_configuration_that_made_them(state):
    view = TABS[1][1](state)
    figure = view.figures[0]
    conf = configuration(state, figure)
    assert conf["method"] == "lamp" and conf["sparsity"] == 0.5 and conf["parent"] == state.parent
    text = csv_bytes(state.cka(), conf).getvalue()
    assert json.loads(text.splitlines()[0][2:]) == json.loads(json.dumps(conf, default=str))
    back = pd.read_csv(pd.io.common.StringIO(text), comment="#")
    assert list(back.columns[:3]) == ["run_a", "run_b", "method"] and len(back) == len(state.cka())


def test_changing_a_choice_changes_the_figure(state):
    view = TABS[1][1](state)
    figure = view.figures[0]
    first = view.render(figure).objects[0].object.to_dict()
    state.sparsity = 0.9
    second = view.render(figure).objects[0].object.to_dict()
    state.sparsity = 0.5
    assert json.dumps(first, sort_keys=True, default=str) != json.dumps(second, sort_keys=True, default=str)


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
