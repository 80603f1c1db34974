"""The embedded default zoo, built in this process: the digits study, then its fairness half."""

from __future__ import annotations

import os

from pruneviz.data.sources import load_digits
from pruneviz.sweeps.runner import run_sweep
from pruneviz.sweeps.spec import load_spec
from pruneviz.zoo import Zoo, build_dense_population, prune_population
from pruneviz.zoo.build import DEMO_ARCH, DEMO_METHODS, DEMO_SEEDS, DEMO_SPARSITIES, DEMO_TRAIN


def build_demo_zoo(path: str | os.PathLike[str], *, progress: bool = True) -> Zoo:
    """Build (or resume) the embedded default zoo at ``path``: digits, CNN, 3 dense seeds, and for each
    the methods ``DEMO_METHODS`` at ``DEMO_SPARSITIES``, briefly fine-tuned; then its fairness half, the
    sweep of ``demo_fairness.toml`` (German Credit, analyses included)."""
    from pruneviz.sweeps import demo_fairness_spec_path

    zoo = Zoo.create(path, exist_ok=True)
    build_dense_population(
        zoo, load_digits(), arch=DEMO_ARCH, seeds=DEMO_SEEDS, config=DEMO_TRAIN, progress=progress
    )
    prune_population(zoo, methods=DEMO_METHODS, sparsities=DEMO_SPARSITIES, progress=progress)
    run_sweep(load_spec(demo_fairness_spec_path()), zoo.path, executor="inprocess", progress=progress)
    return zoo
