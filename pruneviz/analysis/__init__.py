"""Analyses that read models and zoos and return tidy frames."""

from pruneviz.analysis.curvature import (
    HessianOperator,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    lanczos,
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
    "condition_number",
    "conv_operator_singular_values",
    "conv_spectral_norm",
    "effective_rank",
    "esd",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "lanczos",
    "layer_spectra",
    "lipschitz_upper_bound",
    "marchenko_pastur_edges",
    "power_law_fit",
    "pq_index",
    "randomized_spectrum_table",
    "spectrum_change",
    "spectrum_table",
    "stable_rank",
]
