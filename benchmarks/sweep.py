"""Sweep throughput on the demo spec: in-process, local processes and a 2-worker Dask LocalCluster.

Targets (issue 8): report runs per minute of each executor on the demo spec (the same runs each time,
into a fresh zoo) and the scheduling overhead per task (a task that does nothing, submitted through
each executor). Then each zoo gets the spec's analyses (calibration, exemplars, subgroups, geometry and
spectrum, quick settings) through the same executor: the seconds they take, and the check that every
executor stored the same cache entries. ``--quick`` runs a cut-down demo spec (two seeds, two methods,
two sparsities, short training on 600 samples) so that all three finish in a few minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

from pruneviz.sweeps import demo_spec_path, load_spec, run_sweep, sweep_failures
from pruneviz.sweeps.executors import DaskExecutor, Executor, InProcessExecutor, LocalProcessExecutor
from pruneviz.train import TrainConfig

WORKERS = 2
ANALYSES = ("calibration", "exemplars", "subgroups", "geometry", "spectrum")


def _nothing(i: int) -> int:
    return i


def overhead_per_task(ex: Executor, n: int) -> tuple[float, float]:
    """Seconds to the first no-op task (start-up), then seconds per no-op task submitted all at once."""
    start = time.perf_counter()
    first = ex.submit(f"warm-{time.monotonic_ns()}", _nothing, -1)
    ex.wait([first])
    warm = time.perf_counter() - start
    start = time.perf_counter()
    pending = [ex.submit(f"noop-{i}-{time.monotonic_ns()}", _nothing, i) for i in range(n)]
    while pending:
        done = ex.wait(pending)
        for d in done:
            assert ex.outcome(d)[0]
        pending = [p for p in pending if p not in done]
    return warm, (time.perf_counter() - start) / n


def _entries(path: Path) -> dict[str, str]:
    """The zoo's cache entries: key -> a digest of the frame's contents."""
    import hashlib
    import sqlite3

    import pandas as pd

    with sqlite3.connect(path / "zoo.sqlite") as con:
        keys = [k for (k,) in con.execute("SELECT key FROM cache")]
    out = {}
    for key in keys:
        frame = pd.read_parquet(path / "cache" / f"{key}.parquet")
        out[key] = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes()).hexdigest()
    return out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import distributed

    spec = load_spec(demo_spec_path())
    if args.quick:
        spec = dataclasses.replace(
            spec,
            seeds=(0, 1),
            subset=600,
            train=TrainConfig(epochs=3, batch_size=64, lr=3e-3),
            methods=("lamp", "channel_l1"),
            sparsities=(0.5, 0.9),
            finetune=TrainConfig(epochs=1, batch_size=64, lr=1e-3),
        )
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.run(lambda: __import__("pruneviz.sweeps.tasks"))  # workers import pruneviz, as a live cluster has
    cluster_start = time.perf_counter() - t0

    figures: dict[str, object] = {"cluster_start_s": cluster_start, "workers": WORKERS}
    rows = []
    runs = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs in (
            ("inprocess", {"executor": "inprocess"}),
            ("processes", {"executor": "processes", "workers": WORKERS}),
            ("dask", {"client": client}),
        ):
            start = time.perf_counter()
            table = run_sweep(spec, Path(tmp) / name, progress=False, **kwargs)
            seconds = time.perf_counter() - start
            if not (table.status == "stored").all():
                raise SystemExit(f"{name}: {int((table.status != 'stored').sum())} task(s) not stored")
            runs = len(table)
            figures[f"{name}_s"] = seconds
            figures[f"{name}_runs_per_min"] = runs / seconds * 60
        # the analyses of the same spec, on the same executors (the runs are stored: only analyses run)
        with_analyses = dataclasses.replace(spec, analyses=ANALYSES, quick_analyses=True)
        for name, kwargs in (
            ("inprocess", {"executor": "inprocess"}),
            ("processes", {"executor": "processes", "workers": WORKERS}),
            ("dask", {"client": client}),
        ):
            start = time.perf_counter()
            run_sweep(with_analyses, Path(tmp) / name, progress=False, **kwargs)
            figures[f"{name}_analyses_s"] = time.perf_counter() - start
            if not sweep_failures(Path(tmp) / name).empty:
                raise SystemExit(f"{name}: analyses failed: {sweep_failures(Path(tmp) / name)}")
        entries = {name: _entries(Path(tmp) / name) for name in ("inprocess", "processes", "dask")}
        figures["analysis_entries"] = len(entries["inprocess"])
        figures["analysis_entries_equal"] = entries["inprocess"] == entries["processes"] == entries["dask"]
        n = 20 if args.quick else 100
        for name, ex in (
            ("inprocess", InProcessExecutor()),
            ("processes", LocalProcessExecutor(WORKERS)),
            ("dask", DaskExecutor(client)),
        ):
            try:
                warm, per_task = overhead_per_task(ex, n)
                figures[f"{name}_first_task_s"] = warm
                figures[f"{name}_overhead_ms"] = per_task * 1e3
            finally:
                ex.close()
    client.close()
    cluster.close()
    figures["runs"] = runs
    base = figures["inprocess_runs_per_min"]
    for name in ("inprocess", "processes", "dask"):
        rows.append(
            {
                "executor": name if name != "dask" else f"dask LocalCluster ({WORKERS} workers)",
                "runs": runs,
                "seconds": figures[f"{name}_s"],
                "runs / min": figures[f"{name}_runs_per_min"],
                "vs in-process": figures[f"{name}_runs_per_min"] / base,
                "overhead / task ms": figures[f"{name}_overhead_ms"],
                "first task s": figures[f"{name}_first_task_s"],
                "analyses s": figures[f"{name}_analyses_s"],
            }
        )
    label = "cut-down demo spec (--quick)" if args.quick else "demo spec"
    print(f"## Sweep throughput, {label}, {runs} runs, {os.cpu_count()} cores\n")
    print(markdown(rows))
    print(
        f"\nprocesses: {WORKERS} spawned workers (start-up included); dask: LocalCluster started beforehand "
        f"in {cluster_start:.1f} s (not included). Overhead: a no-op task, submitted {n} at a time; "
        "first task: the start-up before the first no-op result (spawning the processes). Analyses: "
        f"{', '.join(ANALYSES)} (quick settings) on the stored runs, {figures['analysis_entries']} cache "
        f"entries, the same on every executor: {figures['analysis_entries_equal']}."
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
