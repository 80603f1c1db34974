"""Analyses that read models and zoos and return tidy frames."""

from pruneviz.analysis.curvature import (
    HessianOperator,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    lanczos,
)
from pruneviz.analysis.landscape import centred_grid, interpolation, landscape_1d, landscape_2d
from pruneviz.analysis.perturb import gaussian_direction, loss_and_accuracy, perturbed
from pruneviz.analysis.runs import run_curvature, run_landscape, run_sharpness, run_spectrum
from pruneviz.analysis.sharpness import (
    average_sharpness,
    pac_bayes_sigma,
    sam_sharpness,
    worst_case_adaptive_sharpness,
)
from pruneviz.analysis.spectrum import (
    PowerLawFit,
    condition_number,
    conv_operator_singular_values,
    conv_spectral_norm,
    effective_rank,
    esd,
    layer_spectra,
    lipschitz_upper_bound,
    marchenko_pastur_edges,
    power_law_fit,
    pq_index,
    randomized_spectrum_table,
    spectrum_change,
    spectrum_table,
    stable_rank,
)

__all__ = [
    "HessianOperator",
    "PowerLawFit",
    "average_sharpness",
    "centred_grid",
    "condition_number",
    "conv_operator_singular_values",
    "conv_spectral_norm",
    "effective_rank",
    "esd",
    "gaussian_direction",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "interpolation",
    "lanczos",
    "landscape_1d",
    "landscape_2d",
    "layer_spectra",
    "lipschitz_upper_bound",
    "loss_and_accuracy",
    "marchenko_pastur_edges",
    "pac_bayes_sigma",
    "perturbed",
    "power_law_fit",
    "pq_index",
    "randomized_spectrum_table",
    "run_curvature",
    "run_landscape",
    "run_sharpness",
    "run_spectrum",
    "sam_sharpness",
    "spectrum_change",
    "spectrum_table",
    "stable_rank",
    "worst_case_adaptive_sharpness",
]
