"""Sweep throughput on the demo spec: in-process, local processes and a 2-worker Dask LocalCluster.

Targets (issue 8): report runs per minute of each executor on the demo spec (the same runs each time,
into a fresh zoo) and the scheduling overhead per task (a task that does nothing, submitted through
each executor). ``--quick`` runs a cut-down demo spec (two seeds, two methods, two sparsities, short
training on 600 samples) so that all three finish in about a minute on 2 cores.
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

from pruneviz.sweeps import demo_spec_path, load_spec, run_sweep
from pruneviz.sweeps.executors import DaskExecutor, Executor, InProcessExecutor, LocalProcessExecutor
from pruneviz.train import TrainConfig

WORKERS = 2


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
            }
        )
    label = "cut-down demo spec (--quick)" if args.quick else "demo spec"
    print(f"## Sweep throughput, {label}, {runs} runs, {os.cpu_count()} cores\n")
    print(markdown(rows))
    print(
        f"\nprocesses: {WORKERS} spawned workers (start-up included); dask: LocalCluster started beforehand "
        f"in {cluster_start:.1f} s (not included). Overhead: a no-op task, submitted {n} at a time; "
        "first task: the start-up before the first no-op result (spawning the processes)."
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
