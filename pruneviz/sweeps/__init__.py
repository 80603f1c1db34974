"""Sweeps: a TOML spec of datasets × architectures × seeds × pruning settings, run into a zoo.

The tasks run in this process, in local processes, or on a Dask distributed cluster; the workers
compute and return results and this process alone writes them, so the zoo stays consistent, a rerun
resumes, and a failed task is retried and then recorded without stopping the rest. The spec's analyses
then run on the same executor, item by item, the workers reading the zoo and this process storing what
they return. ``pruneviz sweep SPEC --zoo DIR`` is the command; the demo zoo is the sweep of
:func:`demo_spec_path`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pruneviz.sweeps.demo import build_demo_zoo
from pruneviz.sweeps.executors import SchedulerUnreachableError
from pruneviz.sweeps.plan import Task, plan_sweep
from pruneviz.sweeps.runner import EXECUTORS, run_sweep, sweep_failures
from pruneviz.sweeps.spec import SweepSpec, load_spec, parse_spec

__all__ = [
    "EXECUTORS",
    "SchedulerUnreachableError",
    "SweepSpec",
    "Task",
    "build_demo_zoo",
    "demo_fairness_spec_path",
    "demo_spec_path",
    "demo_spec_paths",
    "load_spec",
    "parse_spec",
    "plan_sweep",
    "run_sweep",
    "sweep_failures",
]


def demo_spec_path() -> Path:
    """The path of the shipped spec of the demo zoo (``pruneviz/sweeps/demo.toml``).

    >>> demo_spec_path().name
    'demo.toml'
    """
    return Path(str(resources.files("pruneviz.sweeps") / "demo.toml"))


def demo_fairness_spec_path() -> Path:
    """The path of the shipped spec of the demo zoo's fairness half (``demo_fairness.toml``: German
    Credit, an MLP, four methods at four sparsities, every analysis precomputed).

    >>> demo_fairness_spec_path().name
    'demo_fairness.toml'
    """
    return Path(str(resources.files("pruneviz.sweeps") / "demo_fairness.toml"))


def demo_spec_paths() -> tuple[Path, ...]:
    """The specs ``pruneviz demo`` sweeps into one zoo, in order: digits, then the fairness half."""
    return (demo_spec_path(), demo_fairness_spec_path())
