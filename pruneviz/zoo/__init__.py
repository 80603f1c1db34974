"""The zoo: a directory holding a study's datasets, runs, per-sample outputs and cached analyses."""

from pruneviz.zoo.build import build_dense_population
from pruneviz.zoo.imports import add_model, import_weights
from pruneviz.zoo.populations import population_method_names, prune_population, pruned_run_id
from pruneviz.zoo.store import SCHEMA_VERSION, RunRecord, Zoo, dense_run_id

__all__ = [
    "SCHEMA_VERSION",
    "RunRecord",
    "Zoo",
    "add_model",
    "build_dense_population",
    "dense_run_id",
    "import_weights",
    "population_method_names",
    "prune_population",
    "pruned_run_id",
]
