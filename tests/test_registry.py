"""The study registry: one declaration per analysis, read by the plan, the cache, the views and the report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from pruneviz.data.dataset import MODALITIES
from pruneviz.exceptions import ValidationError, ZooError
from pruneviz.study import (
    STEPS,
    Analysis,
    Setting,
    Show,
    StudySettings,
    analyse_zoo,
    analyses,
    analysis,
    register,
    settings_of,
    study_items,
    unregister,
)
from pruneviz.zoo import Zoo

pytest.importorskip("panel")


# -- a test-only analysis: per-layer weight norms of one run -------------------------------------------------
def weight_norms(weights: dict[str, np.ndarray], *, power: int) -> pd.DataFrame:
    """The pure function: the entrywise ``power``-norm of every weight matrix."""
    rows = [
        {"layer": name, "value": float((np.abs(w) ** power).sum() ** (1 / power))}
        for name, w in weights.items()
    ]
    return pd.DataFrame(rows)


def run_weight_norms(zoo: Zoo, run: str, *, power: int = 2) -> pd.DataFrame:
    def compute() -> pd.DataFrame:
        model = zoo.load_model(run)
        weights = {n: p.detach().numpy() for n, p in model.named_parameters() if n.endswith("weight")}
        return weight_norms(weights, power=power).assign(run=run)

    return zoo.cached("toy_norms", [run], {"power": power}, compute)


def toy_chart(frame: pd.DataFrame):
    import altair as alt

    return alt.Chart(frame, title="Toy norms").mark_bar().encode(x="layer:N", y="value:Q", color="run:N")


@pytest.fixture()
def toy():
    entry = register(
        Analysis(
            "toy_norms",
            step="spectrum",
            scope="run",
            function=run_weight_norms,
            settings={"power": Setting(2, 1, "the norm's power")},
            keys=("run", "layer"),
            doc="Entrywise norms of the weights (a test-only analysis).",
            show=Show(tab="Spectrum", title="Toy norms", chart=toy_chart, report=True),
        )
    )
    yield entry
    unregister("toy_norms")  # the registry is global state: leave it as it was


def test_a_registered_analysis_reaches_the_plan_the_cache_the_view_and_the_report(toy, study_zoo, tmp_path):
    before = study_zoo.meta("study_settings")  # the shared zoo's recorded settings are restored below
    try:
        _toy_end_to_end(study_zoo, tmp_path)
    finally:
        study_zoo.set_meta("study_settings", before)


def _toy_end_to_end(study_zoo, tmp_path):
    from pruneviz.views import SpectrumView, StudyState
    from pruneviz.views.report import write_audit_report

    quick = StudySettings.quick()
    items = study_items(study_zoo, "spectrum", settings=quick)
    assert items and all("toy_norms" in item.analyses for item in items)
    analyse_zoo(study_zoo, steps=["spectrum"], settings=quick, progress=False)
    assert settings_of(study_zoo) == quick

    run = study_zoo.run_ids()[0]
    cached = run_weight_norms(Zoo(study_zoo.path, read_only=True), run, power=1)  # the quick value
    model = study_zoo.load_model(run)
    first = next(n for n, p in model.named_parameters() if n.endswith("weight"))
    expected = float(model.get_parameter(first).detach().abs().sum())
    assert cached.set_index("layer").loc[first, "value"] == pytest.approx(expected, rel=1e-6)

    served = Zoo(study_zoo.path, read_only=True)
    view = SpectrumView(StudyState(served))
    figure = next(f for f in view.figures if f.title == "Toy norms")
    drawn = view.render(figure)
    assert drawn.message is None, drawn.message
    assert set(drawn.frame["run"]) == {view.state.parent, view.state.child}
    assert served.counts["computed"] == 0 and served.counts["writes"] == 0

    page = write_audit_report(study_zoo, tmp_path / "audit.html").read_text()
    assert "<h3>Toy norms</h3>" in page


def test_the_registry_refuses_what_it_cannot_plan(toy):
    with pytest.raises(ValidationError, match="'entry' parameter of register.*new name"):
        register(toy)
    with pytest.raises(ValidationError, match="'entry.step' parameter of register"):
        register(dataclasses.replace(toy, name="other", step="nowhere"))
    with pytest.raises(ValidationError, match="'entry.over' parameter of register"):
        register(dataclasses.replace(toy, name="other", over=("group",)))
    with pytest.raises(
        ValidationError, match=r"overrides\['cka'\]. parameter of StudySettings.*did you mean 'samples'"
    ):
        StudySettings.quick(overrides={"cka": {"sample": 3}})
    with pytest.raises(ValidationError, match="'name' parameter of analysis.*did you mean 'cka'"):
        analysis("ckaa")


def test_every_step_has_analyses_and_every_setting_a_quick_value_no_larger():
    assert {a.step for a in analyses()} == set(STEPS)
    for entry in analyses():
        for name, setting in entry.settings.items():
            full, quick = setting.value("full"), setting.value("quick")
            if isinstance(full, int) and not isinstance(full, bool):
                assert quick <= full, f"{entry.name}.{name}"


def test_study_settings_round_trip_through_the_zoo(tmp_path):
    from pruneviz.study import record_settings

    zoo = Zoo.create(tmp_path / "z")
    assert settings_of(zoo) == StudySettings()
    chosen = StudySettings.quick(overrides={"cka": {"samples": 64}})
    record_settings(zoo, chosen)
    assert settings_of(Zoo(zoo.path)) == chosen
    assert chosen.params(analysis("cka")) == {"samples": 64}
    with pytest.raises(ZooError, match="read-only"):
        record_settings(Zoo(zoo.path, read_only=True), StudySettings())
    zoo.set_meta("study_settings", "{not json")
    with pytest.raises(ZooError, match="cannot be read.*pruneviz zoo analyse"):
        settings_of(zoo)


@pytest.mark.slow
def test_every_figure_of_a_study_analysed_by_its_spec_is_read_from_the_cache(tmp_path):
    """The contract between what a study precomputes and what the views show: the demo spec (smaller),
    analysed by its own [analyses], then every figure of every tab for every focus is drawn in a zoo
    opened as the app opens it, and the zoo counts no computation and no write."""
    from pruneviz.sweeps import demo_spec_path, load_spec, run_sweep
    from pruneviz.views import TABS, StudyState
    from pruneviz.views.panels import MEMORY

    spec = load_spec(demo_spec_path())
    assert set(spec.analyses) == set(STEPS), "the demo precomputes every step its app shows"
    small = dataclasses.replace(
        spec,
        seeds=spec.seeds[:2],
        subset=600,
        methods=("lamp", "channel_l1"),
        sparsities=(0.5, 0.9),
        train=dataclasses.replace(spec.train, epochs=2),
        finetune=dataclasses.replace(spec.finetune, epochs=1),
    )
    table = run_sweep(small, tmp_path / "zoo", executor="inprocess", progress=False)
    assert (table["status"] == "stored").all()

    served = Zoo(tmp_path / "zoo", read_only=True)
    state = StudyState(served)
    views = [view(state) for _, view in TABS]
    MEMORY.clear()
    drawn = 0
    for method in state.param.method.objects:
        for sparsity in state.param.sparsity.objects:
            state.param.update(method=method, sparsity=sparsity)
            for view in views:
                for figure in view.figures:
                    result = view.render(figure)
                    empty = figure.empty in (result.message or "")
                    assert result.message is None or empty, f"{figure.title}: {result.message}"
                    drawn += 1
    assert drawn >= 4 * 14
    assert served.counts == {"hits": served.counts["hits"], "computed": 0, "writes": 0}
    assert served.counts["hits"] > 0


def test_an_analysis_says_which_data_it_does_not_apply_to():
    from pruneviz.study import analysis

    corruptions = analysis("corruptions")
    assert corruptions.applies_to("image") and not corruptions.applies_to("text")
    said = corruptions.not_applicable("tabular")
    assert said.startswith("Corruptions does not apply to tabular data (only to image).")
    assert "pixels" in said
    assert all(analysis(n).applies_to(m) for n in ("cka", "spectrum", "subgroups") for m in MODALITIES)
    for name in ("attacks", "attributions", "exemplar_maps"):
        assert not analysis(name).applies_to("text") and analysis(name).limits
