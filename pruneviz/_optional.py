"""Optional dependencies, imported on first use with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from pruneviz.exceptions import MissingDependencyError

# module name -> (pip extra of pruneviz, distribution name)
_EXTRAS = {
    "mnist1d": ("mnist1d", "mnist1d"),
    "triton": ("kernels", "triton"),
    "captum": ("attribution", "captum"),
    "umap": ("umap", "umap-learn"),
    "panel": ("app", "panel"),
    "altair": ("app", "altair"),
    "dask": ("distributed", "dask[distributed]"),
    "distributed": ("distributed", "dask[distributed]"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, dist = _EXTRAS.get(module.split(".")[0], (None, module))
        how = f"pip install 'pruneviz[{extra}]'" if extra else f"pip install {dist}"
        raise MissingDependencyError(
            f"{feature} needs the optional package {dist!r}, which is not installed. Fix: {how}."
        ) from exc
