"""Pure analyses: models, data and per-sample outputs in, tidy frames out (no zoo; see :mod:`pruneviz.study`).

The names here are what a user calls; helpers stay in their modules
(e.g. ``pruneviz.analysis.geometry.centred_gram``).
"""

from pruneviz.analysis.activations import activations, layer_names
from pruneviz.analysis.attacks import (
    FEATURE_RANGE,
    AttackSettings,
    attack,
    feature_range,
    fgsm,
    pgd,
    robust_accuracy,
)
from pruneviz.analysis.attribution import (
    attribute,
    attribution_agreement,
    attribution_maps,
    compare_attributions,
)
from pruneviz.analysis.calibration import (
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from pruneviz.analysis.corruptions import (
    corrupt,
    corruption_names,
    corruption_table,
    mean_corruption_error,
)
from pruneviz.analysis.curvature import (
    GroupedHessian,
    HessianOperator,
    curvature_summary,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
)
from pruneviz.analysis.exemplars import (
    exemplar_flags,
    exemplar_scores,
    exemplar_summary,
)
from pruneviz.analysis.geometry import (
    aligned_pca,
    aligned_umap,
    cka,
    cka_grid,
    logit_geometry,
    logit_geometry_change,
    mutual_knn_overlap,
)
from pruneviz.analysis.landscape import interpolation, landscape_1d, landscape_2d
from pruneviz.analysis.sharpness import (
    average_sharpness,
    pac_bayes_sigma,
    sam_sharpness,
    worst_case_adaptive_sharpness,
)
from pruneviz.analysis.spectrum import (
    condition_number,
    conv_operator_singular_values,
    conv_spectral_norm,
    effective_rank,
    full_condition_number,
    lipschitz_upper_bound,
    power_law_fit,
    pq_index,
    randomized_spectrum_table,
    spectrum_change,
    spectrum_table,
    stable_rank,
)
from pruneviz.analysis.subgroups import disparate_impact, group_metrics, sample_groups

__all__ = [
    "FEATURE_RANGE",
    "AttackSettings",
    "GroupedHessian",
    "HessianOperator",
    "activations",
    "aligned_pca",
    "aligned_umap",
    "attack",
    "attribute",
    "attribution_agreement",
    "attribution_maps",
    "average_sharpness",
    "brier_score",
    "calibration_metrics",
    "cka",
    "cka_grid",
    "compare_attributions",
    "condition_number",
    "conv_operator_singular_values",
    "conv_spectral_norm",
    "corrupt",
    "corruption_names",
    "corruption_table",
    "curvature_summary",
    "disparate_impact",
    "effective_rank",
    "exemplar_flags",
    "exemplar_scores",
    "exemplar_summary",
    "expected_calibration_error",
    "feature_range",
    "fgsm",
    "full_condition_number",
    "group_metrics",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "interpolation",
    "landscape_1d",
    "landscape_2d",
    "layer_names",
    "lipschitz_upper_bound",
    "logit_geometry",
    "logit_geometry_change",
    "mean_corruption_error",
    "mutual_knn_overlap",
    "negative_log_likelihood",
    "pac_bayes_sigma",
    "pgd",
    "power_law_fit",
    "pq_index",
    "randomized_spectrum_table",
    "reliability_bins",
    "robust_accuracy",
    "sam_sharpness",
    "sample_groups",
    "spectrum_change",
    "spectrum_table",
    "stable_rank",
    "worst_case_adaptive_sharpness",
]
