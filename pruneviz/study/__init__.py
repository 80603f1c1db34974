"""Studies of a zoo: the zoo-bound analyses, declared once in a registry that the plan, the sweeps,
``pruneviz zoo analyse``, the views and the audit report all read.

- :mod:`pruneviz.study.registry` — :class:`Analysis` declarations (scope, full and quick settings, key
  columns, the function, where it is shown) and :class:`StudySettings`.
- :mod:`pruneviz.study.declarations` — pruneviz's own declarations.
- :mod:`pruneviz.study.plan` — :func:`analyse_zoo`, split into items a sweep can hand to workers.
- :mod:`pruneviz.study.runs`, ``exemplars``, ``subgroups``, ``attribution``, ``populations`` — the
  ``run_*`` functions: an analysis of :mod:`pruneviz.analysis` on runs of a zoo, cached in it.

>>> from pruneviz.study import analysis
>>> analysis("curvature").scope
'run'
"""

from pruneviz.study import declarations as _declarations  # noqa: F401  (registers pruneviz's own analyses)
from pruneviz.study.attribution import run_attributions, run_exemplar_maps
from pruneviz.study.exemplars import run_exemplar_summary, run_exemplars
from pruneviz.study.plan import (
    StudyItem,
    analyse_item,
    analyse_zoo,
    apply_writes,
    record_settings,
    settings_of,
    study_items,
)
from pruneviz.study.populations import Comparison, comparisons
from pruneviz.study.registry import (
    STEPS,
    Analysis,
    Setting,
    Show,
    StudySettings,
    Target,
    analyses,
    analysis,
    register,
    unregister,
)
from pruneviz.study.runs import (
    budget_subset,
    corruption_split,
    parse_split,
    run_attacks,
    run_calibration,
    run_cka,
    run_corruption_errors,
    run_corruptions,
    run_curvature,
    run_embedding,
    run_knn_overlap,
    run_landscape,
    run_logit_geometry,
    run_logit_geometry_change,
    run_reliability,
    run_sharpness,
    run_spectrum,
    run_speedups,
    split_samples,
)
from pruneviz.study.subgroups import run_subgroups

__all__ = [
    "STEPS",
    "Analysis",
    "Comparison",
    "Setting",
    "Show",
    "StudyItem",
    "StudySettings",
    "Target",
    "analyse_item",
    "analyse_zoo",
    "analyses",
    "analysis",
    "apply_writes",
    "budget_subset",
    "comparisons",
    "corruption_split",
    "parse_split",
    "record_settings",
    "register",
    "run_attacks",
    "run_attributions",
    "run_calibration",
    "run_cka",
    "run_corruption_errors",
    "run_corruptions",
    "run_curvature",
    "run_embedding",
    "run_exemplar_maps",
    "run_exemplar_summary",
    "run_exemplars",
    "run_knn_overlap",
    "run_landscape",
    "run_logit_geometry",
    "run_logit_geometry_change",
    "run_reliability",
    "run_sharpness",
    "run_spectrum",
    "run_speedups",
    "run_subgroups",
    "settings_of",
    "split_samples",
    "study_items",
    "unregister",
]
