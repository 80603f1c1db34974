"""The shared vocabulary of every tidy frame pruneviz returns: one name for one meaning.

- ``sparsity`` is the *achieved* fraction of prunable weights that are zero (per run or per layer);
  ``sparsity_target`` the fraction a pruning call was asked to remove. A comparison of populations (whose
  runs differ slightly in achieved sparsity) is keyed by ``sparsity_target``.
- A pair of runs is ``run_a`` (the reference: the dense parent) and ``run_b`` (the run compared with it).
- A number is ``value``; its uncertainty is ``se`` (a standard error), ``ci_low`` / ``ci_high`` (a
  confidence interval) or, for an eigenvalue, ``residual`` (the Lanczos residual norm, an error bound);
  the band a permutation null produces is ``null_low`` / ``null_high``.

Charts and views rely on these names; CHANGELOG.md lists every rename.
"""

from __future__ import annotations

#: the keys of a frame about one run, in front of its own columns
RUN_KEYS = ("run", "parent", "method", "structure", "sparsity", "sparsity_target", "seed")
#: the keys of a frame about a pair of runs (``run_a`` the reference), the second run's in front
PAIR_KEYS = ("run_a", "run_b", "method", "structure", "sparsity", "sparsity_target", "seed")
#: the keys of a frame about a comparison of a pruned population with a dense one
COMPARISON_KEYS = (
    "dataset",
    "arch",
    "method",
    "structure",
    "sparsity_target",
    "settings",
    "dense_runs",
    "pruned_runs",
)
#: uncertainty columns
SE, CI_LOW, CI_HIGH, RESIDUAL = "se", "ci_low", "ci_high", "residual"

__all__ = ["CI_HIGH", "CI_LOW", "COMPARISON_KEYS", "PAIR_KEYS", "RESIDUAL", "RUN_KEYS", "SE"]
#: how the per-group metrics of a subgroup audit are named in charts and reports (all fractions of samples)
METRIC_LABELS = {
    "accuracy": "accuracy",
    "error_rate": "error rate",
    "selection_rate": "selection rate",
    "tpr": "TPR",
    "fpr": "FPR",
    "fnr": "FNR",
    "tnr": "TNR",
    "precision": "precision",
    "balanced_accuracy": "balanced accuracy",
}
