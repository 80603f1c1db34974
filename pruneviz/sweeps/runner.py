"""The sweep driver: plans the tasks, hands them to an executor, and alone writes the results.

Every result is stored as it arrives (atomically, under the zoo's writer lock), so a driver killed at
any moment loses at most the results still in flight; a rerun finds the stored runs and computes only
the rest. A dense parent is stored before its pruned children are submitted. A task that fails is
retried a bounded number of times, then recorded in ``ZOO/sweep-failures.json`` with its error (and its
children with it) while the rest go on; the record is cleared when a later sweep stores the run.

Once every run is stored, the spec's analyses go to the same executor, step by step in
:data:`~pruneviz.study.STEPS` order: each step's items (:func:`~pruneviz.study.plan.study_items`)
are computed by workers that read the zoo without writing to it, and the driver stores what each returns
as it arrives, then plans the next step. A failed item is retried like a task, then recorded as
``analysis:<step>:<item id>``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._io import write_json_atomic
from pruneviz._log import progress as progress_line
from pruneviz._validation import check_choice, check_int, fail
from pruneviz.exceptions import ZooError
from pruneviz.sweeps.executors import DaskExecutor, Executor, InProcessExecutor, LocalProcessExecutor
from pruneviz.sweeps.plan import Task, plan_sweep
from pruneviz.sweeps.spec import SweepSpec
from pruneviz.sweeps.tasks import TaskResult, compute_task
from pruneviz.zoo.store import Zoo, digest

EXECUTORS = ("inprocess", "processes", "dask")
LOCK_FILE = ".sweep.lock"
FAILURES_FILE = "sweep-failures.json"
STATUS_COLUMNS = [
    "run",
    "kind",
    "parent",
    "method",
    "structure",
    "sparsity_target",
    "seed",
    "status",
    "attempts",
    "error",
]

__all__ = ["EXECUTORS", "run_sweep", "sweep_failures"]


def run_sweep(
    spec: SweepSpec,
    zoo: str | os.PathLike[str],
    *,
    executor: str = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    retries: int = 2,
    timeout: float = 10.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the sweep ``spec`` into the zoo folder ``zoo`` (created if new), resuming a previous run.

    ``executor`` is ``"inprocess"`` (one task at a time here, for debugging), ``"processes"`` (``workers``
    local processes, default: the cores) or ``"dask"`` (a Dask cluster: pass a ``distributed.Client``
    as ``client`` or the scheduler's ``scheduler="tcp://host:port"``, reached within ``timeout``
    seconds). Every task runs with one torch thread, so all executors give identical runs.

    Returns one row per task: ``run``, ``kind``, ``parent``, ``method``, ``structure``, ``sparsity``,
    ``seed``, ``status`` (``stored``: computed now, ``skipped``: already in the zoo, ``failed``),
    ``attempts`` and ``error``. Progress (done / running / failed / remaining) goes to stderr.

    >>> import tempfile
    >>> from pruneviz.sweeps import parse_spec
    >>> spec = parse_spec('[data]\\ndatasets = ["digits"]\\nsubset = 300\\n'
    ...                   '[dense]\\narchitectures = ["mlp"]\\nseeds = 1\\nepochs = 1')
    >>> run_sweep(spec, tempfile.mkdtemp() + "/z", executor="inprocess", progress=False).status.tolist()
    ['stored']
    """
    where = "run_sweep"
    if not isinstance(spec, SweepSpec):
        fail(
            "spec",
            where,
            "a SweepSpec",
            type(spec).__name__,
            "load one with pruneviz.sweeps.load_spec(path).",
        )
    if scheduler is not None or client is not None:
        executor = "dask"
    check_choice(executor, "executor", where, EXECUTORS)
    retries = check_int(retries, "retries", where, minimum=0)
    if workers is not None:
        workers = check_int(workers, "workers", where, minimum=1)
    if executor == "dask" and scheduler is None and client is None:
        fail(
            "scheduler",
            where,
            "the address of a Dask scheduler (or a client) with executor='dask'",
            None,
            "pass scheduler='tcp://host:8786' or client=distributed.Client(...).",
        )
    path = Path(zoo)
    # connect before anything is written: an unreachable scheduler leaves no trace
    ex: Executor
    if executor == "dask":
        ex = DaskExecutor(client, address=scheduler, timeout=timeout)
    elif executor == "processes":
        ex = LocalProcessExecutor(workers)
    else:
        ex = InProcessExecutor()
    try:
        ex.start()  # local workers start while the data loads below
        store = Zoo.create(path, exist_ok=True)
        with _sweep_lock(store.path):
            table = _drive(spec, store, ex, retries=retries, progress=progress)
    except BaseException:  # an error or Ctrl-C: stop the work in flight rather than wait for it
        ex.close(cancel=True)
        raise
    ex.close()
    return table


@contextlib.contextmanager
def _sweep_lock(path: Path) -> Iterator[None]:
    """Hold the zoo's sweep lock for the whole sweep; fail at once, naming the holder, if it is taken."""
    from pruneviz._lock import LockTaken, exclusive

    try:
        with exclusive(path / LOCK_FILE, wait=False, role="sweep"):
            yield
    except LockTaken as taken:
        raise ZooError(
            f"The zoo {str(path)!r} is locked by another writer ({taken.holder}). Fix: wait for that sweep "
            "to finish (or stop it); a rerun afterwards resumes where it stopped."
        ) from None


def sweep_failures(zoo: str | os.PathLike[str]) -> pd.DataFrame:
    """The tasks of past sweeps on ``zoo`` that failed for good: ``run`` (a run id, or
    ``analysis:<step>:<item id>`` for an item of the analyses), ``attempts``, ``error``, ``at`` (UTC
    time). A task leaves this table when a later sweep stores its run or its analysis item.

    >>> import tempfile
    >>> sweep_failures(tempfile.mkdtemp()).columns.tolist()
    ['run', 'attempts', 'error', 'at']
    """
    data = _read_failures(Path(zoo))
    rows = [{"run": k, **v} for k, v in data.items()]
    return pd.DataFrame(rows, columns=["run", "attempts", "error", "at"])


def _read_failures(path: Path) -> dict[str, Any]:
    file = path / FAILURES_FILE
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return {}


def _load_splits(spec: SweepSpec, zoo: Zoo) -> dict[str, tuple[str, tuple[int, ...], int, Any]]:
    from pruneviz.data import load_dataset

    out = {}
    for name in spec.datasets:
        ds = load_dataset(name, **dict(spec.dataset_options.get(name, {})))
        if spec.subset is not None and spec.subset < len(ds):
            ds = ds.take(np.arange(spec.subset))
        key = zoo.add_dataset(
            ds, split_seed=spec.split_seed, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction
        )
        out[name] = (key, tuple(ds.info.input_shape), ds.num_classes, zoo.splits(key))
    return out


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.last = ""

    def show(self, done: int, running: int, failed: int) -> None:
        if not self.enabled:
            return
        remaining = self.total - done - running - failed
        line = f"sweep: {done} done, {running} running, {failed} failed, {remaining} remaining"
        if line != self.last:
            progress_line(line)
            self.last = line


def _drive(spec: SweepSpec, zoo: Zoo, ex: Executor, *, retries: int, progress: bool) -> pd.DataFrame:
    data = _load_splits(spec, zoo)
    tasks = plan_sweep(spec, {k: v[:3] for k, v in data.items()})
    splits_of = {v[0]: v[3] for v in data.values()}
    _check_models(tasks)
    shared: dict[str, Any] = {}
    status: dict[str, dict[str, Any]] = {t.run: {"status": None, "attempts": 0, "error": None} for t in tasks}
    by_run = {t.run: t for t in tasks}
    children: dict[str, list[str]] = {}
    for t in tasks:
        if t.parent is not None:
            children.setdefault(t.parent, []).append(t.run)
    for t in tasks:
        if zoo.has_run(t.run):
            status[t.run]["status"] = "skipped"
    failures = _read_failures(zoo.path)
    bar = _Progress(len(tasks), progress)

    def counts() -> tuple[int, int]:
        done = sum(s["status"] in ("stored", "skipped") for s in status.values())
        failed = sum(s["status"] == "failed" for s in status.values())
        return done, failed

    in_flight: dict[Any, str] = {}

    def submit(t: Task) -> None:
        if t.dataset not in shared:
            shared[t.dataset] = ex.share(splits_of[t.dataset])
        status[t.run]["attempts"] += 1
        status[t.run]["status"] = "running"
        kwargs: dict[str, Any] = {}
        if t.kind == "pruned":
            assert t.parent is not None  # a pruned task names its parent
            kwargs["parent"] = zoo.run(t.parent)
            kwargs["parent_weights"] = (zoo.run_dir(t.parent) / "weights.safetensors").read_bytes()
        key = f"pruneviz-{t.run}-try{status[t.run]['attempts']}"
        in_flight[ex.submit(key, compute_task, t, shared[t.dataset], **kwargs)] = t.run

    def ready(t: Task) -> bool:
        return status[t.run]["status"] is None and (t.parent is None or zoo.has_run(t.parent))

    def give_up(run: str, error: str) -> None:
        status[run]["status"] = "failed"
        status[run]["error"] = error
        failures[run] = {
            "attempts": status[run]["attempts"],
            "error": error,
            "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        for child in children.get(run, []):
            if status[child]["status"] is None:
                give_up(child, f"not run: its parent {run!r} failed")

    dirty = False
    for t in tasks:
        if ready(t):
            submit(t)
    bar.show(*_show_counts(counts(), len(in_flight)))
    while in_flight:
        for handle in ex.wait(list(in_flight)):
            run = in_flight.pop(handle)
            ok, value = ex.outcome(handle)
            if ok:
                _store(zoo, value)
                status[run]["status"] = "stored"
                if failures.pop(run, None) is not None:
                    dirty = True
                for child in children.get(run, []):
                    if ready(by_run[child]):
                        submit(by_run[child])
            elif status[run]["attempts"] <= retries:
                status[run]["status"] = None
                submit(by_run[run])
            else:
                give_up(run, f"{type(value).__name__}: {value}")
                dirty = True
            if dirty:
                _write_failures(zoo, failures)
                dirty = False
            bar.show(*_show_counts(counts(), len(in_flight)))
    for t in tasks:  # a parent stored by an earlier sweep whose children never became ready
        if status[t.run]["status"] is None:
            give_up(t.run, "not run: its parent is not in the zoo")
            _write_failures(zoo, failures)
    done, failed = counts()
    bar.show(done, 0, failed)
    if spec.analyses and failed and progress:
        progress_line(f"sweep: analyses not run, {failed} task(s) failed; rerun the sweep")
    if spec.analyses and not failed:
        _analyse(spec, zoo, ex, failures, retries=retries, progress=progress)
    rows = []
    for t in tasks:
        s = status[t.run]
        rows.append(
            {
                "run": t.run,
                "kind": t.kind,
                "parent": t.parent,
                "method": t.method,
                "structure": t.structure,
                "sparsity_target": t.sparsity,
                "seed": t.seed,
                "status": s["status"],
                "attempts": s["attempts"],
                "error": s["error"],
            }
        )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _analyse(
    spec: SweepSpec, zoo: Zoo, ex: Executor, failures: dict[str, Any], *, retries: int, progress: bool
) -> None:
    """Compute the spec's analyses on the executor, step after step; store each item's writes here.

    Workers read the zoo at its absolute path and write nothing (see :func:`analyse_item`); an item
    whose results are all stored already returns no writes, so a rerun stores nothing."""
    from pruneviz.study import plan as study

    settings = study.StudySettings.quick() if spec.quick_analyses else study.StudySettings()
    study.record_settings(zoo, settings)  # the zoo's views ask for exactly these results
    if ex.name == "dask" and not _workers_see(zoo, ex):
        if progress:
            progress_line(
                f"sweep: the cluster's workers cannot read the zoo at {str(zoo.path.resolve())!r} (no "
                "shared filesystem), so its analyses run here, in this process. To run them on the "
                "cluster, put the zoo on a filesystem the workers share, at the same path."
            )
        ex = InProcessExecutor()
    token = uuid.uuid4().hex[:8]  # keys of this sweep's submissions, distinct from any earlier sweep's
    for step in [s for s in study.STEPS if s in spec.analyses]:
        items = study.study_items(zoo, step, settings=settings)
        _analyse_step(zoo, ex, step, items, failures, token=token, retries=retries, progress=progress)


def _sees_zoo(path: str) -> bool:
    """Whether the zoo's index can be read where this runs (a worker's view of a shared filesystem)."""
    from pruneviz.zoo.store import INDEX_FILE

    return (Path(path) / INDEX_FILE).is_file()


def _workers_see(zoo: Zoo, ex: Executor) -> bool:
    """Whether a worker of ``ex`` can read ``zoo``: one small task finds out."""
    handle = ex.submit(f"pruneviz-sees-zoo-{uuid.uuid4().hex[:8]}", _sees_zoo, str(zoo.path.resolve()))
    ex.wait([handle])
    ok, value = ex.outcome(handle)
    return bool(ok and value)


def _analyse_step(
    zoo: Zoo,
    ex: Executor,
    step: str,
    items: list[Any],
    failures: dict[str, Any],
    *,
    token: str,
    retries: int,
    progress: bool,
) -> None:
    """Submit every item of one step, store each result as it arrives, retry or record failures."""
    from pruneviz.study import plan as study

    path = str(zoo.path.resolve())
    by_id = {item.id: item for item in items}
    attempts = dict.fromkeys(by_id, 0)
    in_flight: dict[Any, str] = {}
    count = {"done": 0, "failed": 0}

    def submit(ident: str) -> None:
        attempts[ident] += 1
        key = f"pruneviz-{step}-{digest(ident, 12)}-{token}-try{attempts[ident]}"
        in_flight[ex.submit(key, study.analyse_item, path, by_id[ident])] = ident

    def show() -> None:
        if progress and by_id:
            done, failed, running = count["done"], count["failed"], len(in_flight)
            progress_line(
                f"analyses: {step}: {done} done, {running} running, {failed} failed, "
                f"{len(by_id) - done - failed - running} remaining"
            )

    for ident in by_id:
        submit(ident)
    show()
    while in_flight:
        for handle in ex.wait(list(in_flight)):
            ident = in_flight.pop(handle)
            ok, value = ex.outcome(handle)
            name = f"analysis:{step}:{ident}"
            dirty = False
            if ok:
                study.apply_writes(zoo, value.writes)
                count["done"] += 1
                dirty = failures.pop(name, None) is not None
            elif attempts[ident] <= retries:
                submit(ident)
            else:
                count["failed"] += 1
                failures[name] = {
                    "attempts": attempts[ident],
                    "error": f"{type(value).__name__}: {value}",
                    "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
                dirty = True
            if dirty:
                _write_failures(zoo, failures)
            show()


def _check_models(tasks: list[Task]) -> None:
    """Build each architecture once here, so that bad model options fail now with a clear error rather
    than in every worker."""
    from pruneviz.models.registry import build_from_spec

    for spec in {json.dumps(t.model_spec.to_json(), sort_keys=True): t.model_spec for t in tasks}.values():
        build_from_spec(spec, seed=0)


def _show_counts(c: tuple[int, int], running: int) -> tuple[int, int, int]:
    done, failed = c
    return done, running, failed


def _store(zoo: Zoo, result: TaskResult) -> None:
    """Store a computed run (the only write of a sweep); a run already there is left as it is."""
    import torch

    from pruneviz.prune.masks import Masks
    from pruneviz.zoo.store import rebuild_model

    record = result.record
    if zoo.has_run(record.run):  # computed twice (a worker lost after finishing): keep the first
        return
    model = rebuild_model(record, result.state_dict())
    masks = result.mask_tensors()
    with torch.no_grad():
        zoo.add_run(record, model, result.outputs, masks=Masks.from_tensors(masks) if masks else None)


def _write_failures(zoo: Zoo, failures: dict[str, Any]) -> None:
    with zoo._writing():
        write_json_atomic(zoo.path / FAILURES_FILE, failures)
