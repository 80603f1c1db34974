"""Sweeps: spec validation, planning, the in-process, local-process and Dask executors, resume, retry,
locks, and a driver or a Dask worker killed with SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from pruneviz.cli import main
from pruneviz.exceptions import ValidationError, ZooError
from pruneviz.sweeps import demo_spec_path, load_spec, parse_spec, plan_sweep, run_sweep, sweep_failures
from pruneviz.sweeps import runner as sweep_runner
from pruneviz.sweeps.tasks import compute_task
from pruneviz.train import TrainConfig
from pruneviz.zoo import Zoo, build_dense_population, prune_population

TINY = textwrap.dedent(
    """\
    # a tiny sweep: 2 dense MLPs on 300 digits, each pruned by LAMP at one sparsity
    [data]
    datasets = ["digits"]
    subset = 300

    [dense]
    architectures = ["mlp"]
    seeds = 2
    epochs = 1

    [prune]
    methods = ["lamp"]
    sparsities = [0.5]

    [prune.finetune]
    epochs = 1
    """
)

# columns of zoo.runs() that depend on when and how fast a run was computed, not on what it is
VOLATILE = ["created_at", "train_s", "prune_and_finetune_s", "latency_b1_s"]


def stable(zoo: Zoo) -> pd.DataFrame:
    runs = zoo.runs()
    return runs.drop(columns=[c for c in VOLATILE if c in runs]).sort_values("run").reset_index(drop=True)


@pytest.fixture(scope="module")
def tiny_spec():
    return parse_spec(TINY, source="tiny.toml")


@pytest.fixture(scope="module")
def inprocess_zoo(tmp_path_factory, tiny_spec):
    path = tmp_path_factory.mktemp("sweep") / "zoo"
    table = run_sweep(tiny_spec, path, executor="inprocess", progress=False)
    assert (table.status == "stored").all()
    return Zoo(path)


# -- the spec ---------------------------------------------------------------------------------------
def test_demo_spec_is_the_demo_zoo():
    from pruneviz.zoo.build import DEMO_ARCH, DEMO_METHODS, DEMO_SEEDS, DEMO_SPARSITIES, DEMO_TRAIN
    from pruneviz.zoo.populations import DEFAULT_FINETUNE

    spec = load_spec(demo_spec_path())
    assert spec.datasets == ("digits",) and spec.architectures == (DEMO_ARCH,)
    assert spec.seeds == tuple(range(DEMO_SEEDS)) and spec.train == DEMO_TRAIN
    assert spec.methods == DEMO_METHODS and spec.sparsities == DEMO_SPARSITIES
    assert spec.finetune == DEFAULT_FINETUNE and spec.structures == ("unstructured",)
    assert (spec.split_seed, spec.val_fraction, spec.test_fraction) == (0, 0.1, 0.2)
    assert spec.subset is None and spec.calibration_size == 512 and spec.prune_seed == 0


def test_spec_defaults_and_seed_list():
    spec = parse_spec(
        '[data]\ndatasets = ["digits"]\n[dense]\narchitectures = ["mlp", "cnn"]\nseeds = [3, 7]'
    )
    assert spec.seeds == (3, 7) and spec.methods == () and spec.train == TrainConfig()
    assert spec.analyses == () and spec.finetune is None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # an unknown key, with its line and a suggestion
        (
            TINY.replace("methods = ", "method = "),
            r"'prune\.method' parameter of sweep spec x\.toml \(line 12\).*unknown key 'method'.*did you mean 'methods'",
        ),
        # a wrong type, with line and field
        (
            TINY.replace("sparsities = [0.5]", 'sparsities = "0.5"'),
            r"'prune\.sparsities' parameter of sweep spec x\.toml \(line 13\) must be a non-empty list of numbers in \[0, 1\)\. Got '0\.5'",
        ),
        (TINY.replace("seeds = 2", "seeds = 0"), r"'dense\.seeds'.*\(line 8\).*count >= 1"),
        (TINY.replace("subset = 300", "subset = 2.5"), r"'data\.subset'.*\(line 4\).*integer >= 1"),
        # the same key name in two tables: the line of the one that is wrong
        (
            TINY.replace("[prune.finetune]\nepochs = 1", "[prune.finetune]\nepochs = -1"),
            r"'prune\.finetune\.epochs'.*\(line 16\)",
        ),
        (
            TINY.replace("[prune.finetune]\nepochs = 1", "[prune.finetune]\nepoch = 1"),
            r"'prune\.finetune\.epoch'.*\(line 16\).*did you mean 'epochs'",
        ),
        (
            TINY + "\n[analysis]\nsteps = []\n",
            r"'analysis'.*\(line 18\).*unknown key.*did you mean 'analyses'",
        ),
        (TINY.replace('"lamp"', '"lamb"'), r"'prune\.methods'.*\(line 12\).*Got 'lamb'.*did you mean 'lamp'"),
        (TINY.replace('"mlp"', '"mpl"'), r"'dense\.architectures'.*\(line 7\).*did you mean 'mlp'"),
        (TINY.replace("[0.5]", "[0.5, 1.0]"), r"'prune\.sparsities'.*\(line 13\).*\[0, 1\)"),
        (TINY.replace("[0.5]", "[0.5, 0.5]"), r"'prune\.sparsities'.*without repeats"),
        (
            TINY.replace('methods = ["lamp"]', 'methods = ["lamp"]\nstructures = ["3:2"]'),
            r"'prune\.structures'.*\(line 13\).*Got '3:2'",
        ),
        (
            TINY.replace('methods = ["lamp"]', 'methods = ["lamp"]\nschedules = ["lottery"]'),
            r"'prune\.schedules'.*Got 'lottery'",
        ),
        (
            TINY.replace("[dense]", "[dense]\noptimizer = 'rmsprop'"),
            r"'dense\.optimizer'.*\(line 7\).*\['adam', 'sgd'\]",
        ),
        (
            TINY.replace("seeds = 2\n", ""),
            r"'dense\.seeds'.*Got nothing \(the key is missing\).*add `seeds = ",
        ),
        (TINY.replace("sparsities = [0.5]\n", ""), r"'prune' parameter.*\(line 11\).*sparsities list"),
        (
            TINY + '\n[analyses]\nsteps = ["spectra"]\n',
            r"'analyses\.steps'.*\(line 19\).*did you mean 'spectrum'",
        ),
        # not TOML at all: the parser's position is kept
        (TINY.replace("seeds = 2", "seeds = = 2"), r"sweep spec x\.toml is not valid TOML: .*line 8"),
    ],
)
def test_bad_specs_name_the_field_and_line(text, match):
    with pytest.raises(ValidationError, match=match):
        parse_spec(text, source="x.toml")


def test_load_spec_of_a_missing_file(tmp_path):
    with pytest.raises(
        ValidationError, match=r"'spec' parameter of load_spec must be the path of a readable"
    ):
        load_spec(tmp_path / "nope.toml")


# -- the plan ---------------------------------------------------------------------------------------
def test_plan_orders_parents_first_and_dedupes_channel_runs():
    spec = parse_spec(
        TINY.replace('["lamp"]', '["lamp", "channel_l1"]').replace(
            "sparsities", 'structures = ["unstructured", "2:4"]\nsparsities'
        )
    )
    tasks = plan_sweep(spec, {"digits": ("digits-k", (1, 8, 8), 10)})
    kinds = [t.kind for t in tasks]
    assert kinds == ["dense"] * 2 + ["pruned"] * 6  # 2 parents x (lamp x 2 structures + channel once)
    ids = [t.run for t in tasks]
    assert len(set(ids)) == len(ids)
    assert {t.structure for t in tasks if t.method == "channel_l1"} == {"channel"}
    assert all(t.parent in ids[:2] for t in tasks[2:])


@pytest.mark.reference
def test_sweep_fills_the_zoo_exactly_like_the_population_builders(tmp_path, digits, inprocess_zoo, tiny_spec):
    """The reference: the zoo functions the sweep replaces, with the same settings (and, like every
    sweep task, one torch thread: the thread count changes the last bits of a float sum)."""
    import torch

    ref = Zoo.create(tmp_path / "ref")
    config = TrainConfig(epochs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_dense_population(
            ref, digits.take(np.arange(300)), arch="mlp", seeds=2, config=config, progress=False
        )
        prune_population(
            ref, methods=["lamp"], sparsities=[0.5], finetune=TrainConfig(epochs=1, lr=1e-3), progress=False
        )
    finally:
        torch.set_num_threads(threads)
    mine, theirs = stable(inprocess_zoo), stable(ref)
    assert mine["run"].tolist() == theirs["run"].tolist()
    pd.testing.assert_frame_equal(mine, theirs)
    for rid in theirs["run"]:
        a, b = inprocess_zoo.outputs(rid), ref.outputs(rid)
        pd.testing.assert_frame_equal(a, b)


# -- resume, retry, lock ----------------------------------------------------------------------------
def test_rerun_skips_every_finished_run(tmp_path, tiny_spec, inprocess_zoo, monkeypatch):
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(inprocess_zoo.path, path)
    monkeypatch.setattr(sweep_runner, "compute_task", lambda *a, **k: pytest.fail("recomputed a stored run"))
    table = run_sweep(tiny_spec, path, executor="inprocess", progress=False)
    assert (table.status == "skipped").all() and (table.attempts == 0).all()


def _flaky(fail_run: str, times: int):
    """A compute_task that raises for the run ``fail_run`` the first ``times`` times it is computed."""
    real = compute_task
    seen: dict[str, int] = {}

    def compute(task, *args, **kwargs):
        if task.run == fail_run:
            seen[task.run] = seen.get(task.run, 0) + 1
            if seen[task.run] <= times:
                raise RuntimeError(f"boom {seen[task.run]}")
        return real(task, *args, **kwargs)

    return compute, seen


def test_failed_tasks_are_retried_then_recorded_without_stopping_the_rest(
    tmp_path, tiny_spec, inprocess_zoo, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="pruneviz")  # the sweep's progress lines
    path = tmp_path / "zoo"
    parent = sorted(r for r in stable(inprocess_zoo).run if "~" not in r)[0]
    # fails once: the retry stores it
    compute, seen = _flaky(parent, times=1)
    monkeypatch.setattr(sweep_runner, "compute_task", compute)
    table = run_sweep(parse_spec(TINY.replace("seeds = 2", "seeds = [0]")), path, executor="inprocess")
    assert seen == {parent: 2}
    assert table.set_index("run").loc[parent, "attempts"] == 2 and (table.status == "stored").all()
    assert "sweep: 2 done, 0 running, 0 failed, 0 remaining" in caplog.text

    # fails every time: recorded with its error after 1 + retries attempts, its child with it, the rest stored
    path = tmp_path / "zoo2"
    compute, seen = _flaky(parent, times=99)
    monkeypatch.setattr(sweep_runner, "compute_task", compute)
    table = run_sweep(tiny_spec, path, executor="inprocess", retries=1, progress=False).set_index("run")
    assert seen[parent] == 2 and table.loc[parent, "attempts"] == 2
    failed = table[table.status == "failed"]
    assert len(failed) == 2 and failed.loc[parent, "error"] == "RuntimeError: boom 2"
    assert "its parent" in failed.drop(parent).error.iloc[0]
    assert (table.drop(failed.index).status == "stored").all()
    assert set(sweep_failures(path).run) == set(failed.index)
    assert set(Zoo(path).run_ids()) == set(table.drop(failed.index).index)

    # a later sweep that succeeds stores them and clears the record
    monkeypatch.setattr(sweep_runner, "compute_task", compute_task)
    again = run_sweep(tiny_spec, path, executor="inprocess", progress=False).set_index("run")
    assert set(again[again.status == "stored"].index) == set(failed.index)
    assert sweep_failures(path).empty and len(Zoo(path).run_ids()) == 4


def test_a_zoo_locked_by_another_writer_is_refused_at_once(tmp_path, tiny_spec):
    path = tmp_path / "zoo"
    Zoo.create(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom pathlib import Path\nfrom pruneviz._lock import exclusive\n"
            f"with exclusive(Path({str(path / '.sweep.lock')!r}), role='sweep'):\n"
            "    print('ready', flush=True)\n    time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        start = time.perf_counter()
        with pytest.raises(ZooError, match=rf"is locked by another writer \(sweep pid {holder.pid} on "):
            run_sweep(tiny_spec, path, executor="inprocess", progress=False)
        assert time.perf_counter() - start < 5
        assert Zoo(path).run_ids() == []
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"executor": "threads"}, r"'executor' parameter of run_sweep must be one of \['dask', 'inprocess'"),
        ({"executor": "dask"}, r"'scheduler' parameter of run_sweep must be the address of a Dask scheduler"),
        ({"retries": -1}, r"'retries' parameter of run_sweep must be an integer >= 0"),
        ({"workers": 0}, r"'workers' parameter of run_sweep must be a positive integer"),
    ],
)
def test_bad_sweep_arguments(tmp_path, tiny_spec, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        run_sweep(tiny_spec, tmp_path / "zoo", **kwargs)
    assert not (tmp_path / "zoo").exists()


def test_bad_model_options_fail_before_any_task(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_runner, "compute_task", lambda *a, **k: pytest.fail("a task was run"))
    spec = parse_spec(TINY + "\n[dense.options.mlp]\nwidth = 3\n")
    with pytest.raises(ValidationError, match=r"keyword options of the 'mlp' architecture\. Got \['width'\]"):
        run_sweep(spec, tmp_path / "zoo", executor="inprocess", progress=False)


def test_spec_must_be_a_spec(tmp_path):
    with pytest.raises(ValidationError, match=r"'spec' parameter of run_sweep must be a SweepSpec"):
        run_sweep(TINY, tmp_path / "zoo")


# -- the command ------------------------------------------------------------------------------------
def test_cli_sweep_runs_and_reports(tmp_path, inprocess_zoo, capsys):
    import shutil

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    shutil.copytree(inprocess_zoo.path, tmp_path / "zoo")
    assert main(["sweep", str(spec), "--zoo", str(tmp_path / "zoo"), "--executor", "inprocess"]) == 0
    out = capsys.readouterr().out
    assert "4 task(s) of tiny.toml" in out and "0 stored, 4 already there, 0 failed" in out
    spec.write_text(TINY.replace("epochs = 1\n\n[prune]", "epochs = 1\nepoch = 2\n\n[prune]"))
    assert main(["sweep", str(spec), "--zoo", str(tmp_path / "zoo")]) == 2
    assert "'dense.epoch' parameter of sweep spec tiny.toml (line 10)" in capsys.readouterr().err


def test_analyses_of_the_spec_are_cached_after_the_runs(tmp_path, inprocess_zoo, monkeypatch):
    import shutil
    import sqlite3

    path = tmp_path / "zoo"
    shutil.copytree(inprocess_zoo.path, path)
    spec = parse_spec(TINY + '\n[analyses]\nsteps = ["spectrum"]\n')
    assert spec.analyses == ("spectrum",) and spec.quick_analyses
    run_sweep(spec, path, executor="inprocess", progress=False)
    with sqlite3.connect(path / "zoo.sqlite") as con:
        cached = con.execute("SELECT analysis, COUNT(*) FROM cache GROUP BY analysis").fetchall()
    assert cached == [("spectrum", 4)]  # one per run


def test_demo_command_runs_the_shipped_spec(tmp_path, inprocess_zoo, monkeypatch, capsys):
    import shutil

    import pruneviz.sweeps

    seen = []
    spec = tmp_path / "demo.toml"
    spec.write_text(TINY)

    def fake_path():
        seen.append(True)
        return spec

    monkeypatch.setattr(pruneviz.sweeps, "demo_spec_path", fake_path)
    monkeypatch.setattr(pruneviz.sweeps, "demo_fairness_spec_path", fake_path)
    monkeypatch.setattr(sweep_runner, "compute_task", lambda *a, **k: pytest.fail("recomputed a stored run"))
    shutil.copytree(inprocess_zoo.path, tmp_path / "demo")
    assert main(["demo", "--zoo", str(tmp_path / "demo"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert seen and all(rid in out for rid in inprocess_zoo.runs(kind="dense").run)
    assert "lamp" in out and "Demo zoo at" in out


# -- local processes --------------------------------------------------------------------------------
def assert_same_zoo(zoo: Zoo, other: Zoo) -> None:
    """Same runs, same records and metrics, same per-sample outputs and bit-identical weights."""
    pd.testing.assert_frame_equal(stable(zoo), stable(other))
    for rid in zoo.run_ids():
        pd.testing.assert_frame_equal(zoo.outputs(rid), other.outputs(rid))
        a, b = zoo.load_model(rid).state_dict(), other.load_model(rid).state_dict()
        assert a.keys() == b.keys() and all(bool(torch.equal(a[k], b[k])) for k in a)


@pytest.fixture(scope="module")
def processes_zoo(tmp_path_factory, tiny_spec):
    path = tmp_path_factory.mktemp("sweep") / "zoo"
    table = run_sweep(tiny_spec, path, executor="processes", workers=2, progress=False)
    assert (table.status == "stored").all()
    return Zoo(path)


def test_local_processes_give_the_same_zoo_as_in_process(processes_zoo, inprocess_zoo):
    assert len(processes_zoo.run_ids()) == 4
    assert_same_zoo(processes_zoo, inprocess_zoo)


# -- a Dask cluster ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    before = dict(os.environ)  # the cluster sets thread limits (OMP_NUM_THREADS, ...) in this process
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        os.environ.clear()
        os.environ.update(before)


def test_a_dask_cluster_gives_the_same_zoo_as_local_processes(
    tmp_path, tiny_spec, dask_client, processes_zoo
):
    table = run_sweep(tiny_spec, tmp_path / "zoo", client=dask_client, progress=False)
    assert (table.status == "stored").all() and (table.attempts == 1).all()
    assert_same_zoo(Zoo(tmp_path / "zoo"), processes_zoo)
    assert dask_client.status == "running"  # a client passed in stays open


def test_cli_sweep_on_a_scheduler_address(tmp_path, dask_client, capsys):
    spec = tmp_path / "one.toml"
    spec.write_text(TINY.replace("seeds = 2", "seeds = [5]"))
    address = dask_client.scheduler.address
    argv = ["sweep", str(spec), "--zoo", str(tmp_path / "zoo"), "--scheduler", address, "--quiet"]
    assert main(argv) == 0
    assert "2 task(s) of one.toml" in capsys.readouterr().out
    zoo = Zoo(tmp_path / "zoo")
    assert len(zoo.run_ids()) == 2 and zoo.verify().empty


def test_a_dask_worker_killed_mid_task_loses_and_duplicates_nothing(tmp_path, dask_client):
    import threading

    # two dense CNNs of a few seconds each, so that a worker can be killed while it trains one
    spec = parse_spec(
        '[data]\ndatasets = ["digits"]\nsubset = 600\n[dense]\narchitectures = ["cnn"]\nseeds = 2\nepochs = 25'
    )
    path = tmp_path / "zoo"
    out: dict[str, object] = {}

    def sweep():
        try:
            out["table"] = run_sweep(spec, path, client=dask_client, progress=False)
        except BaseException as exc:  # reported by the assertion below
            out["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        busy = [w for w, keys in dask_client.processing().items() if any("pruneviz-" in str(k) for k in keys)]
        if busy:
            time.sleep(0.5)  # well inside the task
            victim = busy[0]
        else:
            time.sleep(0.05)
    assert victim is not None, "no task was seen running"
    pid = dask_client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive() and "error" not in out, out.get("error")
    table = out["table"]
    assert (table.status == "stored").all()
    zoo = Zoo(path)
    ids = zoo.run_ids()
    assert sorted(ids) == sorted(table.run) and len(ids) == len(set(ids)) == 2
    assert zoo.verify().empty


def test_an_unreachable_scheduler_times_out_and_writes_nothing(tmp_path, tiny_spec, capsys):
    pytest.importorskip("distributed")
    import socket

    from pruneviz.sweeps import SchedulerUnreachableError

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.perf_counter()
    with pytest.raises(
        SchedulerUnreachableError,
        match=rf"No Dask scheduler answered at '{address}' within 1 s.*Nothing was written",
    ):
        run_sweep(tiny_spec, tmp_path / "zoo", scheduler=address, timeout=1)
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "zoo").exists()
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    argv = ["sweep", str(spec), "--zoo", str(tmp_path / "zoo"), "--scheduler", address, "--timeout", "1"]
    assert main(argv) == 2
    assert "No Dask scheduler answered" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


# -- a driver killed with SIGKILL -------------------------------------------------------------------
def test_a_sweep_killed_with_sigkill_resumes_with_every_run_once(tmp_path, tiny_spec):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    path = tmp_path / "zoo"
    cmd = [sys.executable, "-m", "pruneviz.cli", "sweep", str(spec), "--zoo", str(path)]
    proc = subprocess.Popen([*cmd, "--executor", "inprocess", "--quiet"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (path / "zoo.sqlite").is_file() and Zoo(path).run_ids():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    stored_before = Zoo(path).run_ids()
    assert 1 <= len(stored_before) < 4
    table = run_sweep(tiny_spec, path, executor="inprocess", progress=False)
    assert set(table[table.status == "skipped"].run) == set(stored_before)
    zoo = Zoo(path)
    ids = zoo.run_ids()
    assert sorted(ids) == sorted(table.run) and len(ids) == len(set(ids)) == 4
    assert zoo.verify().empty
    assert not list((path / "runs").glob(".tmp-*"))


# -- the analyses on the executor -------------------------------------------------------------------
# two dense MLPs, each pruned by LAMP at two sparsities: two comparisons, four (parent, child) pairs
TWO = TINY.replace("sparsities = [0.5]", "sparsities = [0.5, 0.8]")
ANALYSES = ["calibration", "exemplars", "geometry", "spectrum"]
WITH_ANALYSES = TWO + f"\n[analyses]\nsteps = {ANALYSES!r}\n".replace("'", '"')


def cache_entries(path) -> dict[str, tuple[str, str, str]]:
    """The zoo's cache index: key -> (analysis, runs, params)."""
    import sqlite3

    con = sqlite3.connect(path / "zoo.sqlite")
    try:
        rows = con.execute("SELECT key, analysis, runs, params FROM cache").fetchall()
    finally:
        con.close()
    return {key: tuple(rest) for key, *rest in rows}


def assert_same_entries(path, other) -> None:
    mine, theirs = cache_entries(path), cache_entries(other)
    assert mine and mine == theirs
    for key in mine:
        pd.testing.assert_frame_equal(
            pd.read_parquet(path / "cache" / f"{key}.parquet"),
            pd.read_parquet(other / "cache" / f"{key}.parquet"),
        )


def snapshot(path) -> dict[str, tuple[int, int]]:
    """Every file of a zoo folder with its size and modification time (the sweep's lock file aside)."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".sweep.lock")
    }


def copy_zoo(zoo: Zoo, path) -> Zoo:
    import shutil

    shutil.copytree(zoo.path, path)
    return Zoo(path)


@pytest.fixture(scope="module")
def two_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "two"
    table = run_sweep(parse_spec(TWO), path, executor="inprocess", progress=False)
    assert (table.status == "stored").all() and len(table) == 6
    return Zoo(path)


@pytest.fixture(scope="module")
def analysed_in_driver(tmp_path_factory, two_zoo):
    """The reference: analyse_zoo run here on the same zoo, with one torch thread like every worker."""
    from pruneviz.study.plan import StudySettings, analyse_zoo

    zoo = copy_zoo(two_zoo, tmp_path_factory.mktemp("sweep") / "driver")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = analyse_zoo(zoo, steps=ANALYSES, settings=StudySettings.quick(), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert list(report.step) == ANALYSES and (report["items"] > 0).all()
    return zoo.path


def _results(monkeypatch) -> list:
    """Record what every analysis item returns to the driver."""
    from pruneviz.study import plan as study

    seen = []
    real = study.analyse_item

    def analyse_item(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(study, "analyse_item", analyse_item)
    return seen


def test_sweep_analyses_in_process_equal_the_driver_side_study_and_a_rerun_writes_nothing(
    tmp_path, two_zoo, analysed_in_driver, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="pruneviz")  # the sweep's progress lines
    zoo = copy_zoo(two_zoo, tmp_path / "zoo")
    seen = _results(monkeypatch)
    table = run_sweep(parse_spec(WITH_ANALYSES), zoo.path, executor="inprocess")
    assert (table.status == "skipped").all()
    assert_same_entries(zoo.path, analysed_in_driver)
    assert "analyses: geometry: 6 done, 0 running, 0 failed, 0 remaining" in caplog.text
    assert {r.step for r in seen} == set(ANALYSES) and all(not r.writes.empty for r in seen)
    # every item ran in a read-only zoo: the writes came back to the driver, which stored them
    assert sum(len(r.writes.entries) for r in seen) >= len(cache_entries(zoo.path))

    # a rerun finds everything stored: items come back with nothing to write, no file changes
    before, seen[:] = snapshot(zoo.path), []
    run_sweep(parse_spec(WITH_ANALYSES), zoo.path, executor="inprocess", progress=False)
    assert len(seen) == 6 + 2 + 6 + 6 and all(r.writes.empty for r in seen)
    assert snapshot(zoo.path) == before


def test_sweep_analyses_on_a_dask_cluster_equal_the_driver_side_study(
    tmp_path, two_zoo, analysed_in_driver, dask_client
):
    zoo = copy_zoo(two_zoo, tmp_path / "zoo")
    table = run_sweep(parse_spec(WITH_ANALYSES), zoo.path, client=dask_client, progress=False)
    assert (table.status == "skipped").all() and sweep_failures(zoo.path).empty
    assert_same_entries(zoo.path, analysed_in_driver)


def test_workers_that_cannot_read_the_zoo_leave_its_analyses_to_the_driver(
    tmp_path, two_zoo, analysed_in_driver, dask_client, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="pruneviz")  # the sweep's progress lines
    from pruneviz.sweeps import runner

    zoo = copy_zoo(two_zoo, tmp_path / "zoo")
    assert runner._workers_see(zoo, runner.DaskExecutor(dask_client))  # loopback workers share this disk
    monkeypatch.setattr(runner, "_workers_see", lambda zoo, ex: False)  # as on a cluster without it
    run_sweep(parse_spec(WITH_ANALYSES), zoo.path, client=dask_client)
    err = caplog.text
    assert "workers cannot read the zoo" in err and "its analyses run here, in this process" in err
    assert sweep_failures(zoo.path).empty
    assert_same_entries(zoo.path, analysed_in_driver)


def test_a_failing_analysis_item_is_retried_then_recorded_while_the_others_complete(
    tmp_path, two_zoo, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="pruneviz")  # the sweep's progress lines
    from pruneviz.study import plan as study

    zoo = copy_zoo(two_zoo, tmp_path / "zoo")
    victim = zoo.run_ids()[-1]
    real, calls = study.analyse_item, []

    def flaky(path, item, **kwargs):
        if item.id == victim:
            calls.append(item.id)
            if len(calls) <= fails:
                raise RuntimeError(f"boom {len(calls)}")
        return real(path, item, **kwargs)

    monkeypatch.setattr(study, "analyse_item", flaky)
    spec = parse_spec(TWO + '\n[analyses]\nsteps = ["spectrum"]\n')
    fails = 99
    run_sweep(spec, zoo.path, executor="inprocess", retries=1)
    assert "analyses: spectrum: 5 done, 0 running, 1 failed, 0 remaining" in caplog.text
    failures = sweep_failures(zoo.path).set_index("run")
    name = f"analysis:spectrum:{victim}"
    assert list(failures.index) == [name] and failures.loc[name, "attempts"] == 2
    assert failures.loc[name, "error"] == "RuntimeError: boom 2"
    stored = {json.loads(runs)[0] for analysis, runs, _ in cache_entries(zoo.path).values()}
    assert stored == set(zoo.run_ids()) - {victim}

    # fails once: the retry stores it and the record is cleared
    calls[:], fails = [], 1
    run_sweep(spec, zoo.path, executor="inprocess", progress=False)
    assert len(calls) == 2 and sweep_failures(zoo.path).empty
    assert len(cache_entries(zoo.path)) == len(zoo.run_ids())


def test_capture_writes_nothing_and_returns_the_writes_which_apply_once(tmp_path, two_zoo, digits):
    from pruneviz.analysis import AttackSettings
    from pruneviz.study.plan import apply_writes
    from pruneviz.study.runs import run_attacks, run_calibration, run_spectrum

    attack = [AttackSettings("fgsm", eps=0.1)]
    zoo = copy_zoo(two_zoo, tmp_path / "zoo")
    run = zoo.run_ids()[0]
    before, entries = snapshot(zoo.path), cache_entries(zoo.path)
    with zoo.capture() as writes:
        run_spectrum(zoo, run)
        run_attacks(zoo, runs=[run], attacks=attack)
        # a later read in the block sees the captured outputs; calibration then covers the attack split
        assert attack[0].split in set(zoo.splits_of(run).split)
        calibration = run_calibration(zoo, runs=[run])
        assert attack[0].split in set(calibration.split)
        pd.testing.assert_frame_equal(run_spectrum(zoo, run), writes.entries[0].frame)  # read back
        with pytest.raises(ZooError, match=r"is open for capture \(read-only\).*Fix: write outside"):
            zoo.add_dataset(digits.take(np.arange(50)))  # a write that cannot be captured
    assert snapshot(zoo.path) == before and cache_entries(zoo.path) == entries
    assert attack[0].split not in set(zoo.splits_of(run).split)
    assert [e.analysis for e in writes.entries] == ["spectrum", "calibration"]
    assert list(writes.outputs) == [run] and set(writes.outputs[run][0].split) == {attack[0].split}

    # the driver stores them exactly as a direct computation would; a second application writes nothing
    assert apply_writes(zoo, writes) == 3
    after = snapshot(zoo.path)
    assert apply_writes(zoo, writes) == 0 and snapshot(zoo.path) == after
    direct = copy_zoo(two_zoo, tmp_path / "direct")
    run_spectrum(direct, run)
    run_attacks(direct, runs=[run], attacks=attack)
    run_calibration(direct, runs=[run])
    assert_same_entries(zoo.path, direct.path)
    pd.testing.assert_frame_equal(zoo.outputs(run), direct.outputs(run))


def test_exemplar_items_read_one_split_of_their_own_comparison_only(two_zoo, monkeypatch):
    from pruneviz.study import populations
    from pruneviz.study.plan import StudySettings, analyse_item, study_items

    reads = []
    real = populations._run_outputs

    def spy(zoo, run, split, subset, where):
        reads.append((run, split, subset))
        return real(zoo, run, split, subset, where)

    monkeypatch.setattr(populations, "_run_outputs", spy)
    items = study_items(two_zoo, "exemplars", settings=StudySettings.quick())
    assert len(items) == 2 and {len(i.runs) for i in items} == {2}  # one per comparison (sparsity)
    for item in items:
        reads.clear()
        result = analyse_item(two_zoo.path, item)
        assert [e.analysis for e in result.writes.entries] == ["exemplars", "exemplar_summary"]
        assert {r for r, _, _ in reads} == {*item.dense, *item.runs}  # not the other comparison's runs
        assert {(s, u) for _, s, u in reads} == {("clean", "test")}


def test_an_analysis_item_needs_to_see_the_zoo(tmp_path, two_zoo):
    from pruneviz.study.plan import StudySettings, analyse_item, study_items

    item = study_items(two_zoo, "spectrum", settings=StudySettings.quick())[0]
    missing = tmp_path / "elsewhere" / "zoo"
    with pytest.raises(
        ZooError,
        match=rf"The zoo '{missing}' cannot be read on .*Fix: make the zoo folder visible at the same path on "
        rf"every worker \(a shared filesystem\), or run the analyses with `pruneviz zoo analyse {missing}`",
    ):
        analyse_item(missing, item)
    with pytest.raises(ValidationError, match=r"'item' parameter of analyse_item must be a StudyItem"):
        analyse_item(two_zoo.path, "spectrum")
    with pytest.raises(ValidationError, match=r"'step' parameter of study_items.*did you mean 'spectrum'"):
        study_items(two_zoo, "spectra")


# -- local workers: pinned threads, the shared-object cache, a killed worker ------------------------
def _run_now(ex, fn, *args):
    """Submit one call to ``ex`` and wait for its outcome."""
    handle = ex.submit(f"t-{time.monotonic_ns()}", fn, *args)
    ex.wait([handle])
    return ex.outcome(handle)


@pytest.fixture
def one_worker():
    from pruneviz.sweeps.executors import LocalProcessExecutor

    ex = LocalProcessExecutor(1)
    try:
        yield ex
    finally:
        ex.close()


def test_local_workers_are_pinned_to_one_thread(one_worker):
    from threadpoolctl import threadpool_info

    assert _run_now(one_worker, torch.get_num_threads) == (True, 1)
    ok, pools = _run_now(one_worker, threadpool_info)
    assert ok and pools and all(p["num_threads"] == 1 for p in pools)


def test_a_shared_object_is_read_once_per_worker_and_reread_when_its_contents_change(one_worker):
    from pruneviz.sweeps import _worker

    first = one_worker.share(np.arange(10))
    assert one_worker.share(np.arange(10)) == first  # the same contents: one file, one reference
    assert _run_now(one_worker, np.sum, first) == (True, 45)
    before = _run_now(one_worker, _worker.cache_info)[1]["reads"]
    for _ in range(3):  # cached: the file is not read again, even once it is gone
        assert _run_now(one_worker, np.sum, first) == (True, 45)
    os.remove(first.path)
    assert _run_now(one_worker, np.sum, first) == (True, 45)
    assert _run_now(one_worker, _worker.cache_info)[1]["reads"] == before
    # new contents are shared under a new digest: the worker reads them, never the stale object
    second = one_worker.share(np.arange(10) * 2)
    assert second.digest != first.digest
    assert _run_now(one_worker, np.sum, second) == (True, 90)
    info = _run_now(one_worker, _worker.cache_info)[1]
    assert info["reads"] == before + 1 and info["digests"][-1] == second.digest
    assert _run_now(one_worker, np.sum, first) == (True, 45)  # both kept


def test_a_shared_file_changed_on_disk_is_refused(one_worker):
    from pruneviz.sweeps._worker import SharedFileChangedError

    ref = one_worker.share({"x": np.arange(5)})
    with open(ref.path, "r+b") as f:  # corrupt one byte before any worker read it
        f.seek(ref.size // 2)
        byte = f.read(1)
        f.seek(ref.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    ok, error = _run_now(one_worker, len, ref)
    assert not ok and isinstance(error, SharedFileChangedError)
    assert "changed after it was shared" in str(error) and "Fix:" in str(error)


def test_the_shared_folder_is_removed_on_close():
    from pruneviz.sweeps.executors import LocalProcessExecutor

    ex = LocalProcessExecutor(1)
    ref = ex.share([1, 2, 3])
    assert _run_now(ex, sum, ref) == (True, 6)
    ex.close()
    assert not os.path.exists(os.path.dirname(ref.path))


def test_while_the_workers_start_queued_tasks_are_computed_here_and_the_rest_go_to_them(monkeypatch):
    """Starting the pool (a fork server importing torch) blocks nothing: tasks submitted meanwhile are
    queued; waiting for them computes the oldest here while the workers start; once they are up, the
    queue goes to them."""
    import threading

    from pruneviz.sweeps.executors import LocalProcessExecutor

    release = threading.Event()
    original = LocalProcessExecutor._start_pool

    def held(self):
        release.wait(60)
        original(self)

    monkeypatch.setattr(LocalProcessExecutor, "_start_pool", held)
    ex = LocalProcessExecutor(1)
    try:
        ex.start()
        ref = ex.share([4, 5, 6])
        started = time.perf_counter()
        first, second = ex.submit("first", os.getpid), ex.submit("second", sum, ref)
        third = ex.submit("third", sum, ref)
        assert time.perf_counter() - started < 5 and not ex.ready  # nothing waited for the held pool
        assert ex.wait([third, second, first]) == [first]  # the oldest, computed here at once
        assert ex.outcome(first) == (True, os.getpid())
        assert ex.wait([second, third]) == [second] and ex.outcome(second) == (True, 15)  # the object itself
        release.set()
        deadline = time.monotonic() + 60
        while not ex.ready and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ex.ready
        assert ex.wait([third]) == [third] and ex.outcome(third) == (True, 15)  # read from the file
        ok, pid = _run_now(ex, os.getpid)
        assert ok and pid != os.getpid()  # the worker's
    finally:
        release.set()
        ex.close()


def test_the_sweep_shares_the_dataset_once_with_local_workers(tmp_path, tiny_spec, monkeypatch):
    from pruneviz.sweeps.executors import LocalProcessExecutor

    shared = []
    original = LocalProcessExecutor.share

    def counting(self, obj):
        shared.append(type(obj).__name__)
        return original(self, obj)

    monkeypatch.setattr(LocalProcessExecutor, "share", counting)
    table = run_sweep(tiny_spec, tmp_path / "zoo", executor="processes", workers=2, progress=False)
    assert (table.status == "stored").all() and shared == ["DataSplits"]


def test_a_local_worker_killed_mid_task_is_replaced_and_its_task_retried(tmp_path):
    import threading

    import psutil

    spec = parse_spec(
        '[data]\ndatasets = ["digits"]\nsubset = 600\n[dense]\narchitectures = ["cnn"]\nseeds = 2\nepochs = 80'
    )
    path = tmp_path / "zoo"
    out: dict[str, object] = {}

    def sweep():
        try:
            out["table"] = run_sweep(spec, path, executor="processes", workers=2, progress=False)
        except BaseException as exc:  # reported by the assertion below
            out["error"] = exc

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    thread = threading.Thread(target=sweep)
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        for p in psutil.Process().children(recursive=True):
            try:  # a new worker (forked by the fork server, or spawned) well inside its training
                parent = " ".join(p.parent().cmdline())
                worker = "forkserver" in parent or "spawn_main" in " ".join(p.cmdline())
                if p.pid not in before and worker and p.cpu_times().user > 0.3:
                    victim = p
                    break
            except (psutil.Error, AttributeError):
                continue
        time.sleep(0.05)
    assert victim is not None, "no worker was seen computing"
    victim.kill()
    thread.join(120)
    assert not thread.is_alive() and "error" not in out, out.get("error")
    table = out["table"]
    assert (table.status == "stored").all() and (table.attempts >= 1).all() and (table.attempts > 1).any()
    zoo = Zoo(path)
    assert sorted(zoo.run_ids()) == sorted(table.run) and zoo.verify().empty
