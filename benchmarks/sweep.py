"""Sweep throughput on the demo spec: in-process, local processes and a 2-worker Dask LocalCluster.

Targets (issues 8 and 19): runs per minute of each executor on the demo spec (the same runs each time,
each into a fresh zoo), 2 local workers at >= 1.85x the in-process throughput, and the scheduling
overhead per task (a task that does nothing, submitted through each executor). Each executor is timed
cold (the first sweep of a fresh Python process, run as a child process: it pays for its imports and,
with local processes, for starting the fork server) and warm (a later sweep of the same session), three
times each, the executors taking turns; the figures are the medians. Then the spec's analyses
(calibration, exemplars, subgroups, geometry and spectrum, quick settings) run on one zoo of each
executor: the seconds they take, and the check that every executor stored the same cache entries.
``--quick`` runs a cut-down demo spec (two seeds, two methods, two sparsities, short training on 600
samples), once each, so that it finishes in a few minutes on 2 cores.

Threads: every executor computes each task with one torch thread and one BLAS thread (that is what makes
their runs identical), so the in-process figure is one core computing and the 2-worker figures two; the
driver keeps the machine's default. The JSON states these settings, and ``task_default_threads_speedup``
says how much faster one task is with the machine's default threads instead (numbers then differ in the
last bits, so no executor does that). The runs are timed without the spec's analyses (the demo spec lists
every step); the analyses are the second, separate figure. Before each timed sweep the script waits (up
to a few minutes) until other processes leave the cores idle, and ``*_other_cores`` records the most
cores other processes kept busy during one (0 on a quiet machine). Stored runs are compared across every
zoo (``runs_equal``).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, write_json

from pruneviz.sweeps import demo_spec_path, load_spec, run_sweep, sweep_failures
from pruneviz.sweeps.executors import DaskExecutor, Executor, InProcessExecutor, LocalProcessExecutor
from pruneviz.train import TrainConfig

WORKERS = 2
#: sweeps timed per executor, cold and warm (the figures are their medians)
REPEATS = 3
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


def _busy_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``; 0 where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and every process below it (workers, the fork server, Dask)."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def other_cores(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn``; return its value, its seconds, and the cores other processes kept busy meanwhile."""
    busy, own = _busy_cpu_s(), _own_cpu_s()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    other = (_busy_cpu_s() - busy) - (_own_cpu_s() - own)
    return value, seconds, max(0.0, other / seconds)


def wait_quiet(limit: float = 0.25, timeout: float = 300.0) -> float:
    """Wait until other processes use under ``limit`` cores (over 2 s), at most ``timeout`` seconds;
    return the last reading."""
    deadline = time.monotonic() + timeout
    while True:
        _, _, other = other_cores(lambda: time.sleep(2.0))
        if other < limit or time.monotonic() > deadline:
            return other


def task_thread_speedup(spec, path: Path, repeats: int) -> float:
    """How much faster tasks compute with the machine's default torch threads than with one: median
    seconds of a dense task and three pruned ones, each way, interleaved, summed."""
    from pruneviz.sweeps.plan import plan_sweep
    from pruneviz.sweeps.tasks import compute_task
    from pruneviz.zoo import Zoo

    zoo = Zoo(path)
    key = zoo.datasets().dataset.iloc[0]
    splits = zoo.splits(key)
    ds = zoo.dataset(key)
    tasks = plan_sweep(spec, {spec.datasets[0]: (key, tuple(ds.info.input_shape), ds.num_classes)})
    dense = tasks[0]
    pruned = [t for t in tasks if t.parent == dense.run][:3]
    weights = (zoo.run_dir(dense.run) / "weights.safetensors").read_bytes()
    record = zoo.run(dense.run)

    def work(threads: int | None) -> None:
        compute_task(dense, splits, threads=threads)
        for t in pruned:
            compute_task(t, splits, parent=record, parent_weights=weights, threads=threads)

    times: dict[str, list[float]] = {"one": [], "default": []}
    for _ in range(repeats):
        for name, threads in (("one", 1), ("default", None)):
            start = time.perf_counter()
            work(threads)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["one"]) / statistics.median(times["default"])


def _runs(path: Path) -> dict[str, str]:
    """The zoo's runs: id -> a digest of its record (less when and how fast it was made), its weights
    and masks (tensor by tensor: a safetensors header orders its metadata freely) and its outputs."""
    import hashlib
    import json

    import pandas as pd
    import torch
    from safetensors.torch import load_file

    out = {}
    for folder in sorted((path / "runs").iterdir()):
        h = hashlib.sha256()
        record = json.loads((folder / "run.json").read_text())
        for volatile in ("created_at", "timing"):
            record.pop(volatile, None)
        h.update(json.dumps(record, sort_keys=True).encode())
        for name in ("weights.safetensors", "masks.safetensors"):
            if (folder / name).is_file():
                tensors = load_file(folder / name)
                for key in sorted(tensors):
                    h.update(
                        key.encode() + tensors[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                    )
        frame = pd.read_parquet(folder / "outputs.parquet")
        h.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
        out[folder.name] = h.hexdigest()
    return out


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


def bench_spec(quick: bool):
    """The demo spec without its analyses (timed apart), or its cut-down version with ``quick``."""
    spec = dataclasses.replace(load_spec(demo_spec_path()), analyses=())  # the demo lists every step
    if quick:
        spec = dataclasses.replace(
            spec,
            seeds=(0, 1),
            subset=600,
            train=TrainConfig(epochs=3, batch_size=64, lr=3e-3),
            methods=("lamp", "channel_l1"),
            sparsities=(0.5, 0.9),
            finetune=TrainConfig(epochs=1, batch_size=64, lr=1e-3),
        )
    return spec


def start_cluster():
    """A 2-worker Dask LocalCluster that has imported pruneviz, its client, and the seconds it took.

    LocalCluster leaves its workers' settings in this process's environment (MALLOC_TRIM_THRESHOLD_=65536,
    OMP_NUM_THREADS=1, ...), where every process started later inherits them: the aggressive malloc
    trimming alone makes local workers ~17 % slower. Its workers keep them (Dask's defaults); this
    process gets its own environment back. Returns ``(cluster, client, seconds, the settings it left)``."""
    import distributed

    environ = dict(os.environ)
    start = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.run(lambda: __import__("pruneviz.sweeps.tasks"))  # workers import pruneviz, as a live cluster has
    seconds = time.perf_counter() - start
    left = {k: v for k, v in os.environ.items() if environ.get(k) != v and k != "PYTHONHASHSEED"}
    os.environ.clear()
    os.environ.update(environ)
    return cluster, client, seconds, left


def executor_kwargs(name: str, client=None) -> dict:
    return {
        "inprocess": {"executor": "inprocess"},
        "processes": {"executor": "processes", "workers": WORKERS},
        "dask": {"client": client},
    }[name]


def timed_sweep(spec, where: Path, **kwargs) -> tuple[int, float, float]:
    """One sweep into the fresh zoo ``where``: (runs, seconds, cores other processes kept busy)."""
    table, seconds, other = other_cores(lambda: run_sweep(spec, where, progress=False, **kwargs))
    if not (table.status == "stored").all():
        raise SystemExit(f"{kwargs}: {int((table.status != 'stored').sum())} task(s) not stored")
    return len(table), seconds, other


def cold_child(name: str, where: Path, quick: bool) -> None:
    """The first sweep of a fresh process on executor ``name`` (a Dask cluster is started first, not
    timed); prints its figures as one JSON line."""
    import json

    client = cluster = None
    if name == "dask":
        cluster, client, _, _ = start_cluster()
    runs, seconds, other = timed_sweep(bench_spec(quick), where, **executor_kwargs(name, client))
    if client is not None:
        client.close()
        cluster.close()
    print(json.dumps({"runs": runs, "seconds": seconds, "other_cores": other}))


def cold_sweep(name: str, where: Path, quick: bool) -> dict:
    """:func:`cold_child` in a fresh Python process; its figures."""
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--cold-child", name, str(where), "1" if quick else "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the cold {name} sweep failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    import torch

    spec = bench_spec(args.quick)
    repeats = 1 if args.quick else REPEATS
    patience = 20.0 if args.quick else 300.0  # seconds to wait for the other processes to go quiet
    names = ("inprocess", "processes", "dask")
    figures: dict[str, object] = {
        "workers": WORKERS,
        "repeats": repeats,
        "inprocess_task_threads": 1,
        "processes_task_threads": LocalProcessExecutor.threads,
        "dask_threads_per_worker": 1,
        "driver_torch_threads": torch.get_num_threads(),
    }
    seconds: dict[str, list[float]] = {}
    others: dict[str, list[float]] = {}
    runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        # cold: the first sweep of a fresh process (the in-process run imports what its first task
        # needs; the local workers' fork server starts and imports), each in a child process of its own,
        # the executors taking turns
        for r in range(repeats):
            for name in names:
                wait_quiet(timeout=patience)
                cold = cold_sweep(name, Path(tmp) / f"cold{r}_{name}", args.quick)
                runs = cold["runs"]
                seconds.setdefault(name, []).append(cold["seconds"])
                others.setdefault(name, []).append(cold["other_cores"])
        # warm: further sweeps of one session (its imports done, the fork server and the cluster
        # running), each into a fresh zoo, the executors taking turns
        cluster, client, cluster_start, dask_environ = start_cluster()
        figures["cluster_start_s"] = cluster_start
        figures["dask_worker_environ"] = " ".join(
            f"{k}={v}" for k, v in sorted(dask_environ.items()) if "_PID" not in k
        )
        for name in names:  # the session's first sweep on each executor, not timed
            run_sweep(
                bench_spec(True), Path(tmp) / f"first_{name}", progress=False, **executor_kwargs(name, client)
            )
        for r in range(repeats):
            for name in names:
                wait_quiet(timeout=patience)
                _, s, other = timed_sweep(
                    spec, Path(tmp) / f"warm{r}_{name}", **executor_kwargs(name, client)
                )
                seconds.setdefault(f"{name}_warm", []).append(s)
                others.setdefault(f"{name}_warm", []).append(other)
        for label, values in seconds.items():
            figures[f"{label}_s"] = statistics.median(values)
            figures[f"{label}_s_each"] = values
            figures[f"{label}_runs_per_min"] = runs / statistics.median(values) * 60
            figures[f"{label}_other_cores"] = max(others[label])
        for suffix in ("", "_warm"):
            base = figures[f"inprocess{suffix}_runs_per_min"]
            for name in ("processes", "dask"):
                figures[f"{name}{suffix}_vs_inprocess{suffix}"] = (
                    figures[f"{name}{suffix}_runs_per_min"] / base
                )
            figures[f"target_processes{suffix}_ge_1_85x"] = (
                figures[f"processes{suffix}_vs_inprocess{suffix}"] >= 1.85
            )
        zoos = sorted(p for p in Path(tmp).iterdir() if p.name.startswith(("cold", "warm")))
        stored = [_runs(folder) for folder in zoos]
        figures["zoos_compared"] = len(stored)
        figures["runs_equal"] = len(stored) == 6 * repeats and all(s == stored[0] for s in stored)
        wait_quiet(timeout=patience)
        speedup, _, other = other_cores(
            lambda: task_thread_speedup(spec, Path(tmp) / "warm0_inprocess", 1 if args.quick else 3)
        )
        figures["task_default_threads_speedup"] = speedup
        figures["task_default_threads_other_cores"] = other
        # the analyses of the same spec, on the same executors (the runs are stored: only analyses run)
        with_analyses = dataclasses.replace(spec, analyses=ANALYSES, quick_analyses=True)
        for name in names:
            wait_quiet(timeout=patience)
            where = Path(tmp) / f"warm0_{name}"
            _, s, other = other_cores(
                lambda name=name, where=where: run_sweep(
                    with_analyses, where, progress=False, **executor_kwargs(name, client)
                )
            )
            figures[f"{name}_analyses_s"] = s
            figures[f"{name}_analyses_other_cores"] = other
            if not sweep_failures(where).empty:
                raise SystemExit(f"{name}: analyses failed: {sweep_failures(where)}")
        entries = {name: _entries(Path(tmp) / f"warm0_{name}") for name in names}
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
    rows = []
    for name in names:
        rows.append(
            {
                "executor": name if name != "dask" else f"dask LocalCluster ({WORKERS} workers)",
                "runs": runs,
                "cold s": figures[f"{name}_s"],
                "cold vs in-process": figures[f"{name}_runs_per_min"] / figures["inprocess_runs_per_min"],
                "warm s": figures[f"{name}_warm_s"],
                "warm runs / min": figures[f"{name}_warm_runs_per_min"],
                "warm vs in-process": figures[f"{name}_warm_runs_per_min"]
                / figures["inprocess_warm_runs_per_min"],
                "overhead / task ms": figures[f"{name}_overhead_ms"],
                "first task s": figures[f"{name}_first_task_s"],
                "analyses s": figures[f"{name}_analyses_s"],
            }
        )
    label = "cut-down demo spec (--quick)" if args.quick else "demo spec"
    print(f"## Sweep throughput, {label}, {runs} runs, {os.cpu_count()} cores, medians of {repeats}\n")
    print(markdown(rows))
    print(
        f"\nEvery task computes with 1 torch thread on every executor (the driver: "
        f"{figures['driver_torch_threads']}); with the machine's default threads one task is "
        f"{figures['task_default_threads_speedup']:.2f}x faster (no executor does that: the numbers would "
        f"differ). Cold: the first sweep of a fresh process (in-process: its first task imports "
        "torch._dynamo; processes: the sweep starts the fork server, which imports pruneviz, torch and "
        "torch._dynamo; dask: a cluster started just before, not timed); warm: a later sweep of one "
        f"session, into a fresh zoo. Each figure is the median of {repeats} sweeps, the executors taking "
        f"turns. processes: {WORKERS} workers forked from the fork server; dask: LocalCluster started in "
        f"{figures['cluster_start_s']:.1f} s (not included). Other processes kept at most "
        f"{figures['inprocess_other_cores']:.2f} / {figures['processes_other_cores']:.2f} / "
        f"{figures['dask_other_cores']:.2f} cores busy during the cold runs. Stored runs identical in "
        f"all {figures['zoos_compared']} zoos: {figures['runs_equal']}. Overhead: a no-op task, submitted "
        f"{n} at a time; first task: the start-up before the first no-op result (a new pool; the fork "
        f"server is already running). Analyses: {', '.join(ANALYSES)} (quick settings) on the stored runs, "
        f"{figures['analysis_entries']} cache entries, the same on every executor: "
        f"{figures['analysis_entries_equal']}."
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cold-child"]:
        cold_child(sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
