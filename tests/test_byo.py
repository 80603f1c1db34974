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
