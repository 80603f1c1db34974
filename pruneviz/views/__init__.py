"""Panel views of a zoo: one viewer per analysis, usable inline in JupyterLab and inside the app.

>>> from pruneviz.views import GeometryView, StudyState      # doctest: +SKIP
>>> GeometryView(StudyState(zoo))                             # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pruneviz import charts as C
from pruneviz.views.panels import AnalysisView, Figure
from pruneviz.views.state import StudyState

FOCUS = ("parent", "method", "sparsity")


class OverviewView(AnalysisView):
    tab = "Overview"
    heading = "Accuracy, size and latency against sparsity"
    intro = (
        "Each point is a method at a target sparsity (mean over seeds, bars: spread); dense is the reference."
    )
    figures = (
        Figure("Trade-off", "shown_runs", lambda f, s: C.tradeoff_chart(f), ("methods", "sparsities")),
        Figure("Per-layer sparsity", "layer_sparsity", lambda f, s: C.layer_sparsity_chart(f), FOCUS),
        Figure("Kernel speedup", "speedups", lambda f, s: C.speedup_chart(f), FOCUS),
    )


class GeometryView(AnalysisView):
    tab = "Geometry"
    heading = "Feature geometry: dense parent against the pruned run in focus"
    figures = (
        Figure("CKA", "cka", lambda f, s: C.cka_chart(f), FOCUS),
        Figure(
            "Aligned embedding",
            "embedding",
            lambda f, s: C.embedding_chart(f, selected=s.sample_id),
            (*FOCUS, "sample_id"),
        ),
        Figure("Logit geometry", "logit_change", lambda f, s: C.logit_change_chart(f), FOCUS),
    )


#: modalities whose samples are drawn as images (a sequence as a one-row image); the others as text
DRAWN = ("image", "sequence")


def _listed(ids: list[int], scores: pd.DataFrame, state: StudyState, selected: int | None = None) -> Any:
    return C.exemplar_list(
        state.exemplar_texts(ids),
        scores,
        top=len(ids),
        class_names=list(state.data().info.class_names),
        selected=selected,
    )


def _gallery(scores: pd.DataFrame, state: StudyState) -> Any:
    top = scores.sort_values("rank").head(8)["sample_id"].tolist()
    if state.data().info.modality not in DRAWN:
        return _listed(top, scores, state)
    return C.exemplar_gallery(
        state.exemplar_pixels(top),
        scores,
        attributions=state.exemplar_attributions(top),
        top=len(top),
        class_names=list(state.data().info.class_names),
    )


def _picked(scores: pd.DataFrame, state: StudyState) -> Any:
    ids = scores["sample_id"].tolist()
    if state.data().info.modality not in DRAWN:
        return _listed(ids, scores, state, selected=state.sample_id)
    return C.exemplar_gallery(
        state.exemplar_pixels(ids),
        scores,
        attributions=state.exemplar_attributions(ids),
        top=1,
        class_names=list(state.data().info.class_names),
        selected=state.sample_id,
    )


class ExemplarsView(AnalysisView):
    tab = "Exemplars"
    heading = "Compression-identified exemplars"
    intro = (
        "The samples on which pruning changes the population's answers most, with their attributions. "
        "Click one to pick it: the embedding and the subgroup audit show where it is."
    )
    figures = (
        # the click that picks a sample highlights it in the gallery already: no redraw (and no new
        # attributions) per click
        Figure("Exemplar gallery", "exemplars", _gallery, (*FOCUS, "split")),
        Figure(
            "Picked sample",
            "selected_exemplar",
            _picked,
            (*FOCUS, "split", "sample_id"),
            empty="click a sample in the gallery or the embedding to see it here with its attributions.",
        ),
    )


def _shown_group(frame: pd.DataFrame, state: StudyState) -> str | None:
    group = state.selected_group()
    return group if group is not None and group in set(frame["group"].astype(str)) else None


def _shown_metric(frame: pd.DataFrame, state: StudyState) -> str | None:
    return state.metric if state.metric in set(frame["metric"].astype(str)) else None


class SubgroupsView(AnalysisView):
    tab = "Subgroups"
    heading = "Who pays for compression"
    intro = (
        "Excess loss ψ of the chosen metric per group (a column, or an intersection of two) with bootstrap "
        "intervals; the band is what random groups produce. Below: the demographic-parity and "
        "equalized-odds gaps between groups, dense against pruned."
    )
    figures = (
        Figure(
            "Subgroup impact",
            "subgroups",
            lambda f, s: C.subgroup_chart(f, metric=_shown_metric(f, s), highlight=_shown_group(f, s)),
            ("group", "metric", "methods", "sparsities", "split", "sample_id"),
        ),
        Figure(
            "Between-group gaps",
            "subgroup_gaps",
            lambda f, s: C.fairness_gap_chart(f),
            ("group", "methods", "sparsities", "split"),
            empty="the study computed no between-group gaps (add e.g. equalized_odds_difference to the "
            "subgroups metrics of its settings).",
        ),
    )


class SharpnessView(AnalysisView):
    tab = "Sharpness"
    heading = "Curvature and the loss landscape"
    figures = (
        Figure("Hessian", "curvature", lambda f, s: C.metric_by_sparsity_chart(f), FOCUS),
        Figure("Landscape", "landscape", lambda f, s: C.landscape_line_chart(f), FOCUS),
    )


class SpectrumView(AnalysisView):
    tab = "Spectrum"
    heading = "Weight spectra and condition numbers"
    figures = (Figure("Spectra", "spectrum", lambda f, s: C.spectrum_chart(f), FOCUS),)


class RobustnessView(AnalysisView):
    tab = "Robustness"
    heading = "Robustness: corruptions, attacks and calibration"
    figures = (
        Figure("Corruptions", "corruptions", lambda f, s: C.corruption_chart(f), FOCUS),
        Figure("Attacks", "attacks", lambda f, s: C.attack_chart(f), FOCUS),
        Figure("Reliability", "reliability", lambda f, s: C.reliability_chart(f), (*FOCUS, "split")),
    )


TABS: tuple[tuple[str, type[AnalysisView]], ...] = tuple(
    (view.tab, view)
    for view in (
        OverviewView,
        GeometryView,
        ExemplarsView,
        SubgroupsView,
        SharpnessView,
        SpectrumView,
        RobustnessView,
    )
)

__all__ = [
    "TABS",
    "AnalysisView",
    "ExemplarsView",
    "Figure",
    "GeometryView",
    "OverviewView",
    "RobustnessView",
    "SharpnessView",
    "SpectrumView",
    "StudyState",
    "SubgroupsView",
]
