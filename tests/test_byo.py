"""Your own model and data, end to end, for each modality: import → prune population (with IMP) → every
analysis → every tab's figures from a read-only zoo → the audit report."""

from __future__ import annotations

import pytest

from pruneviz.cli import main
from pruneviz.views import TABS, StudyState
from pruneviz.views.panels import draw
from pruneviz.zoo import Zoo

pytestmark = pytest.mark.slow

#: what each modality's study must say instead of drawing (and nothing else may fail to draw)
NOT_APPLICABLE = {"text": {"Corruptions", "Attacks"}, "tabular": {"Corruptions"}, "image": set()}


def _check_study(zoo: Zoo, modality: str, tmp_path) -> None:
    runs = zoo.runs()
    assert set(runs.kind) == {"dense", "pruned"} and (runs.kind == "dense").sum() == 2
    imp = runs[runs.run.str.contains("~magnitude") & (runs.sparsity_target == 0.8)]
    assert len(imp) == 4, "one-shot and IMP magnitude runs at 0.8 for both parents"
    assert (
        runs[runs.kind == "pruned"].sparsity - runs[runs.kind == "pruned"].sparsity_target
    ).abs().max() < 0.01
    reader = Zoo(zoo.path, read_only=True)
    state = StudyState(reader, method="lamp", sparsity=0.8)
    said = {}
    for _tab, view in TABS:
        for figure in view.figures:
            drawn = draw(state, figure)
            if drawn.message is not None and figure.frame != "selected_exemplar":
                said[figure.title] = drawn.message
    assert set(said) == NOT_APPLICABLE[modality], said
    for title, message in said.items():
        assert f"does not apply to {modality} data" in message, (title, message)
    assert reader.counts["computed"] == 0 and reader.counts["hits"] > 0, (
        "the views read what the study cached"
    )
    out = tmp_path / "audit.html"
    assert (
        main(["audit", "--zoo", str(zoo.path), "--out", str(out), "--method", "lamp", "--sparsity", "0.8"])
        == 0
    )
    text = out.read_text()
    assert "pruneviz audit" in text and "vegaEmbed" in text
    for title in said:
        assert f"{title} does not apply to {modality} data" in text


def test_text_study_end_to_end(byo_zoo, tmp_path):
    text_zoo = byo_zoo("text")
    data = text_zoo.dataset(text_zoo.runs().dataset.iloc[0])
    assert data.info.modality == "text" and data.x["input_ids"].dtype.is_floating_point is False
    _check_study(text_zoo, "text", tmp_path)


def test_tabular_study_end_to_end(byo_zoo, tmp_path):
    zoo = byo_zoo("tabular")
    data = zoo.dataset(zoo.runs().dataset.iloc[0])
    assert data.info.modality == "tabular"
    assert {"sex", "region"} <= set(data.groups.columns)
    assert any("=" in f for f in data.info.feature_names), "categorical columns one-hot encoded"
    attacks = zoo.outputs(zoo.runs().run.iloc[0]).split.unique()
    assert any(s.endswith("-featurerange") for s in attacks), "tabular attacks kept within feature ranges"
    _check_study(zoo, "tabular", tmp_path)


def test_image_study_end_to_end(byo_zoo, tmp_path):
    zoo = byo_zoo("image")
    data = zoo.dataset(zoo.runs().dataset.iloc[0])
    assert data.info.modality == "image" and data.info.input_shape == (3, 32, 32)
    assert "camera" in data.groups.columns, "groups from the metadata the user gave"
    _check_study(zoo, "image", tmp_path)


def test_the_tabular_audit_states_each_decisions_numbers_in_words(byo_zoo):
    import numpy as np

    from pruneviz.study.populations import settings_digest
    from pruneviz.views.report import audit_context, render_audit

    zoo = Zoo(byo_zoo("tabular").path, read_only=True)
    state = StudyState(zoo, method="lamp", sparsity=0.8)
    assert state.group == "sex", "the default group is the first declared sensitive column"
    ctx = audit_context(state)
    frame = state.frame("subgroups")
    assert len(ctx["decisions"]) == frame.groupby(["method", "sparsity_target", "settings"]).ngroups == 5
    assert sum("imp" in d["title"] for d in ctx["decisions"]) == 1, "IMP is a decision of its own"
    for decision in ctx["decisions"]:
        method, _, rest = decision["title"].partition(" (")
        sparsity = float(rest.rsplit(" ", 1)[1])
        part = frame[(frame.method == method) & np.isclose(frame.sparsity_target, sparsity)]
        imp = "imp" in decision["title"]
        settings = sorted(part.settings.unique())
        if len(settings) > 1:  # one-shot and IMP magnitude at 0.8: tell them apart by their runs' schedules
            digests = {
                d: zoo.run(r).schedule.get("schedule", "one_shot")
                for r in zoo.runs(kind="pruned").run
                for d in [settings_digest(zoo.run(r).schedule)]
            }
            part = part[part.settings.map(digests).eq("imp" if imp else "one_shot")]
        overall = part[(part.group == "(all)") & (part.metric == "accuracy")].set_index("statistic").value
        assert decision["dense"] == f"{100 * overall['dense']:.1f} %"
        assert decision["pruned"] == f"{100 * overall['pruned']:.1f} %"
        psi = part[
            (part.metric == "accuracy")
            & (part.statistic == "psi")
            & (part.group != "(all)")
            & ~part.small.astype(bool)
        ]
        if not psi.empty:
            worst = psi.loc[psi.value.idxmax(), "group"]
            assert any(s.startswith(f"sex = {worst} loses most accuracy") for s in decision["findings"])
        rows = decision["tables"][0]["rows"]
        assert sorted(r["cells"][0] for r in rows) == sorted(set(part.group) - {"(all)"})
    page = render_audit(state)
    # the decisions, then the intersections (sex × region), the figures and the settings
    assert page.count("<section") == len(ctx["decisions"]) + 3 and "Settings and seeds" in page
    assert [x["attribute"] for x in ctx["intersections"]] == ["sex × region"]
    assert "Corruptions does not apply to tabular data" in page
