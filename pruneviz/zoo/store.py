"""The zoo: a directory that is the single source of truth for a study.

Layout::

    ZOO/
      zoo.sqlite                      index of datasets, runs and cached analyses (schema-versioned)
      datasets/<dataset>/             tensors.safetensors (x or x.<name>..., y, sample_id), samples.parquet,
                                      info.json
      runs/<run>/                     weights.safetensors (+ masks.safetensors), outputs.parquet, run.json
      cache/<key>.parquet             cached analysis results

The index records the sha256 of every file of a run and of a dataset when it is written (table
``files``; a zoo written before that has no rows there, which means "not recorded", not damage), so that
:meth:`Zoo.verify` can tell a changed or truncated file from an intact one.

A run becomes visible only when its row is committed to the index, and its folder is complete before
that: files are written into a temporary folder, flushed, and renamed into place. A build killed at any
point leaves either no trace of a run or a folder without a row, which the next write of that run
replaces; so a resumed build ends with every run present once. Nothing here unpickles anything.

A zoo opened for capture (:meth:`Zoo.capture`) is read-only: analyses computed in it record the cache
entries and outputs they would write (:class:`ZooWrites`) instead of writing them, so that workers of a
sweep can compute while one process, applying what they return (:meth:`Zoo.store_entry`,
:meth:`Zoo.add_outputs`), stays the only writer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pruneviz._io import fsync_dir, load_tensors, save_tensors, write_atomic, write_json_atomic
from pruneviz._validation import check_choice, check_columns, check_fraction, check_int, fail
from pruneviz._version import __version__
from pruneviz.data.dataset import Dataset, DatasetInfo, DataSplits
from pruneviz.data.inputs import Inputs
from pruneviz.exceptions import PrunevizError, ZooError, ZooSchemaError
from pruneviz.models.registry import ModelSpec, arch_label, build_from_spec, is_factory_reference
from pruneviz.prune.channels import apply_channel_plan
from pruneviz.prune.masks import Masks

#: 1: the first layout. 2: a dataset's inputs may be named tensors (``x.<name>`` in its tensors file,
#: their order in the file's ``inputs`` metadata: text) and a run's ``arch`` may be a factory reference.
#: A version-1 zoo opens as it is and is marked version 2 when something of version 2 is written to it,
#: so an older pruneviz refuses it with an upgrade hint instead of failing on what it does not know.
SCHEMA_VERSION = 2
#: the prefix of a named input tensor in a dataset's tensors file (schema version 2)
INPUT_PREFIX = "x."
INDEX_FILE = "zoo.sqlite"
RUN_KINDS = ("dense", "pruned")
#: what a run id, a dataset key or a dataset name must look like to name a folder of the zoo: a plain
#: name (letters, digits, spaces inside and ``. _ ~ -``, not starting with a dot), never a path
PLAIN_NAME = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~ -]{0,198}[A-Za-z0-9._~-]|[A-Za-z0-9_~-]")


def check_plain_name(name: object, what: str, where: str, *, stored: bool = False) -> str:
    """``name`` must be a :data:`PLAIN_NAME` (a run id, a dataset key): it becomes a folder of the zoo,
    so a path (``../x``, ``/etc``), a separator or a NUL is refused. ``stored`` words the error for a
    name read from a zoo's index (a zoo made or changed elsewhere), which is then refused as a whole."""
    if isinstance(name, str) and PLAIN_NAME.fullmatch(name):
        return name
    if stored:
        raise ZooError(
            f"This zoo's index holds a {what} {name!r} that is not a plain name (letters, digits, '.', "
            "'_', '~', '-'): it would point outside the zoo's folder, so the zoo is refused. Fix: open "
            "only zoos from people you trust; `pruneviz zoo verify` lists such rows."
        )
    fail(
        what,
        where,
        "a plain name: letters, digits, '.', '_', '~' or '-', not starting with '.', at most 200 characters",
        name,
        "use a name without path separators, such as 'my-data'.",
    )


_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE datasets (
    dataset TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    split_seed INTEGER NOT NULL,
    val_fraction REAL NOT NULL,
    test_fraction REAL NOT NULL,
    n_samples INTEGER NOT NULL,
    info TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE runs (
    run TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('dense', 'pruned')),
    parent TEXT REFERENCES runs(run),
    dataset TEXT NOT NULL REFERENCES datasets(dataset),
    arch TEXT NOT NULL,
    model_spec TEXT NOT NULL,
    seed INTEGER NOT NULL,
    method TEXT,
    structure TEXT,
    target_sparsity REAL NOT NULL,
    sparsity REAL NOT NULL,
    schedule TEXT NOT NULL,
    train_config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    timing TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX runs_parent ON runs(parent);
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    analysis TEXT NOT NULL,
    runs TEXT NOT NULL,
    params TEXT NOT NULL,
    version TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


#: the table of content hashes; added to older zoos (of any schema version) by the first write that
#: records a hash, which an older pruneviz ignores, so the schema version stays as it is
_FILES_TABLE = """
CREATE TABLE IF NOT EXISTS files (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (kind, name, file)
)
"""
#: the deepest nesting of brackets that JSON read from a zoo's index may have (deeper is refused before
#: parsing, which would otherwise exhaust Python's recursion limit)
MAX_JSON_DEPTH = 100
#: the most parameters a model rebuilt from a spec in a zoo may have (2e9: 8 GB of float32 weights);
#: a spec over it is refused before anything is allocated
MAX_MODEL_PARAMETERS = 2_000_000_000
#: how far the fraction of weights a run's masks prune may lie from the sparsity its index row records
SPARSITY_TOLERANCE = 0.05
_TABLES = ("meta", "datasets", "runs", "cache")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _verify_hint(path: Path | str) -> str:
    return f"run `pruneviz zoo verify {path}` to list everything that is damaged"


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of the JSON ``text`` nest (strings ignored), without parsing."""
    raw = np.frombuffer(_JSON_STRING.sub("", text).encode(), dtype=np.uint8)
    step = (raw == ord("[")).astype(np.int64) + (raw == ord("{")) - (raw == ord("]")) - (raw == ord("}"))
    return int(np.cumsum(step).max()) if len(step) else 0


def load_index_json(text: object, what: str, where: str, expected: type | None = dict) -> Any:
    """Parse JSON ``text`` read from a zoo (``what`` names it, e.g. "the metrics of run 'x'", ``where``
    the file it came from): nesting deeper than :data:`MAX_JSON_DEPTH`, invalid JSON and a value that is
    not of the ``expected`` type are refused with a :class:`ZooError` naming it and the fix."""
    zoo = Path(where).parent
    fix = f"Fix: {_verify_hint(zoo)}, then rebuild what it names or restore the zoo from a copy."
    if not isinstance(text, str):
        raise ZooError(f"{what.capitalize()} in {where!r} is not JSON text (got {_short(text)}). {fix}")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ZooError(
            f"{what.capitalize()} in {where!r} nests {depth} levels deep; pruneviz reads at most "
            f"{MAX_JSON_DEPTH} levels, so it is refused unread. {fix}"
        )
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ZooError(f"{what.capitalize()} in {where!r} is not valid JSON ({exc}). {fix}") from None
    if expected is not None and not isinstance(obj, expected):
        want = _JSON_NAMES.get(expected, expected.__name__)
        got = _JSON_NAMES.get(type(obj), f"a {type(obj).__name__}")
        raise ZooError(f"{what.capitalize()} in {where!r} must be {want} of JSON. Got {got} instead. {fix}")
    return obj


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content (read in blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def estimate_parameters(spec: ModelSpec) -> int | None:
    """The number of parameters and buffers of the model ``spec`` builds, counted on torch's ``meta``
    device (nothing is allocated); ``None`` when it cannot be built there (some factories)."""
    try:
        with torch.device("meta"):
            model = build_from_spec(spec, seed=0)
    except PrunevizError:
        raise
    except Exception:
        return None
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def digest(obj: Any, n: int = 8) -> str:
    """A short stable hash of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class RunRecord:
    """What the zoo knows about one trained (dense) or pruned model.

    ``sparsity`` is the achieved fraction of prunable weights that are zero; ``target_sparsity`` what
    was asked for. ``metrics`` (accuracies, losses, parameter counts), ``timing`` (seconds),
    ``schedule`` and ``train_config`` are JSON-serialisable mappings.
    """

    run: str
    kind: str
    dataset: str
    model_spec: ModelSpec
    seed: int
    parent: str | None = None
    method: str | None = None
    structure: str | None = None
    target_sparsity: float = 0.0
    sparsity: float = 0.0
    schedule: Mapping[str, Any] = field(default_factory=dict)
    train_config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    timing: Mapping[str, Any] = field(default_factory=dict)
    version: str = __version__
    created_at: str = field(default_factory=_now)

    @property
    def arch(self) -> str:
        return self.model_spec.arch

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["model_spec"] = self.model_spec.to_json()
        return d

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, source: str = INDEX_FILE) -> RunRecord:
        """The record of an index row; ``source`` (the index file) is named when the row is damaged."""
        rid = row.get("run")

        def load(column: str) -> Any:
            return load_index_json(row.get(column), f"the {column} of run {rid!r}", source)

        try:
            spec = load("model_spec")
            return cls(
                run=row["run"],
                kind=row["kind"],
                dataset=row["dataset"],
                model_spec=ModelSpec.from_json(spec),
                seed=int(row["seed"]),
                parent=row["parent"],
                method=row["method"],
                structure=row["structure"],
                target_sparsity=float(row["target_sparsity"]),
                sparsity=float(row["sparsity"]),
                schedule=load("schedule"),
                train_config=load("train_config"),
                metrics=load("metrics"),
                timing=load("timing"),
                version=row["version"],
                created_at=row["created_at"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ZooError(
                f"The row of run {rid!r} in {source!r} is malformed (a field is missing or of the wrong "
                f"type: {exc}). Fix: {_verify_hint(Path(source).parent)}, then rebuild that run or restore "
                "the zoo from a copy."
            ) from None


def cache_key(
    analysis: str, runs: Sequence[str], params: Mapping[str, Any], version: str = __version__
) -> str:
    """The key of a cached analysis: a hash of the analysis, its runs (in order), its JSON-serialisable
    parameters and the pruneviz version that computed it."""
    try:
        key_obj = {"analysis": analysis, "runs": list(runs), "params": dict(params), "v": version}
        return hashlib.sha256(json.dumps(key_obj, sort_keys=True).encode()).hexdigest()[:24]
    except TypeError as exc:
        raise fail(
            "params", "Zoo.cached", "JSON-serialisable values", params, "pass plain numbers and strings."
        ) from exc


@dataclass(frozen=True, eq=False)
class CacheEntry:
    """One cached analysis result as :meth:`Zoo.cached` stores it: what it is (``analysis``, ``runs``,
    ``params``, the pruneviz ``version`` that computed it) and its ``frame``."""

    analysis: str
    runs: tuple[str, ...]
    params: Mapping[str, Any]
    frame: pd.DataFrame
    version: str = __version__

    @property
    def key(self) -> str:
        return cache_key(self.analysis, self.runs, self.params, self.version)


@dataclass
class ZooWrites:
    """What analyses computed in a capturing zoo would have written: new cache ``entries`` (in the order
    they were computed) and new per-sample ``outputs`` by run (frames of new evaluation splits)."""

    entries: list[CacheEntry] = field(default_factory=list)
    outputs: dict[str, list[pd.DataFrame]] = field(default_factory=dict)

    def entry(self, key: str) -> CacheEntry | None:
        return next((e for e in self.entries if e.key == key), None)

    def outputs_of(self, run: str) -> pd.DataFrame | None:
        frames = self.outputs.get(run)
        return pd.concat(frames, ignore_index=True) if frames else None

    @property
    def empty(self) -> bool:
        return not self.entries and not any(self.outputs.values())


def rebuild_model(record: RunRecord, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """The one way a stored run's model is made: its architecture from ``record.model_spec``, its channel
    plan (if channel-pruned) replayed, then ``state`` loaded strictly; in eval mode. A spec that would
    build more than :data:`MAX_MODEL_PARAMETERS` parameters is refused before anything is allocated."""
    size = estimate_parameters(record.model_spec)
    if size is not None and size > MAX_MODEL_PARAMETERS:
        raise ZooError(
            f"The model spec of run {record.run!r} ({_short(record.model_spec.to_json(), 160)}) would build "
            f"a model of {size:,} parameters, more than the {MAX_MODEL_PARAMETERS:,} pruneviz rebuilds from "
            f"a zoo, so it is refused before allocating it. Fix: `pruneviz zoo verify` lists such runs; "
            f"open only zoos from people you trust, or rebuild that run."
        )
    model = build_from_spec(record.model_spec, seed=0)
    plan = record.schedule.get("channel_plan")
    if plan:
        apply_channel_plan(model, plan, input_shape=record.model_spec.input_shape)
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as exc:
        raise ZooError(
            f"The weights of run {record.run!r} do not fit its architecture {record.arch!r} ({exc}). "
            "Fix: rebuild that run."
        ) from exc
    return model.eval()


def dense_run_id(dataset: str, spec: ModelSpec, seed: int, train_config: Mapping[str, Any]) -> str:
    """The deterministic id of a dense run: readable prefix plus a hash of everything that defines it
    (a factory reference is named by its callable, ``mypkg.nets:WideNet`` → ``WideNet-s0-…``)."""
    tag = digest({"dataset": dataset, "spec": spec.to_json(), "seed": seed, "train": dict(train_config)})
    return f"{arch_label(spec.arch)}-s{seed}-{tag}"


def _check_path(path: Any, where: str) -> None:
    """A zoo's folder must be given as a path (a ``str`` or ``os.PathLike``)."""
    if not isinstance(path, str | os.PathLike) or (isinstance(path, str) and not path):
        fail(
            "path",
            where,
            "a folder path (str or os.PathLike)",
            path,
            "pass the zoo's folder, e.g. Zoo('zoo'), or create one with Zoo.create('zoo').",
        )


class Zoo:
    """A study's store of datasets, runs with per-sample outputs, and cached analyses.

    Open an existing zoo with ``Zoo(path)`` (or :meth:`Zoo.open`), make one with :meth:`Zoo.create`.

    >>> import tempfile
    >>> zoo = Zoo.create(tempfile.mkdtemp() + "/study")
    >>> zoo.runs().empty
    True
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        _check_path(path, "Zoo")
        self.path = Path(path)
        self.read_only = bool(read_only)
        self._captured: ZooWrites | None = None  # set while capturing (see capture())
        #: what this object did: ``hits`` (cached results read), ``computed`` (results computed on a
        #: miss), ``writes`` (cache entries, outputs and records written, or recorded while capturing)
        self.counts: dict[str, int] = {"hits": 0, "computed": 0, "writes": 0}
        index = self.path / INDEX_FILE
        if not self.path.exists():
            raise ZooError(
                f"The zoo {str(self.path)!r} does not exist. Fix: build one with "
                f"`pruneviz zoo build --out {self.path}` or create it with Zoo.create(path)."
            )
        if not self.path.is_dir() or not index.is_file():
            raise ZooError(
                f"{str(self.path)!r} is not a pruneviz zoo (no {INDEX_FILE} inside). Fix: point at the "
                "folder a zoo build wrote, or create a new zoo with Zoo.create(path)."
            )
        with self._connect() as con:
            rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
            self._check_tables(con)
        text = rows.get("schema_version", "0") or "0"
        try:
            version = int(text)
        except (TypeError, ValueError):
            raise ZooError(
                f"The index {str(index)!r} of the zoo has the schema version {_short(text)}, which is not an "
                "integer. Fix: restore the zoo from a copy, or rebuild it into a new folder."
            ) from None
        if version > SCHEMA_VERSION:
            raise ZooSchemaError(
                f"The zoo {str(self.path)!r} has schema version {version}, written by pruneviz "
                f"{rows.get('pruneviz_version', '?')}; this pruneviz ({__version__}) reads schema versions "
                f"up to {SCHEMA_VERSION}. Fix: upgrade pruneviz (pip install -U pruneviz)."
            )
        if version < 1:
            raise ZooError(f"The index of {str(self.path)!r} has no schema version. Fix: rebuild the zoo.")
        self.schema_version = version
        if self.read_only:  # everything computed is kept in memory, nothing is written (see capture())
            self._captured = ZooWrites()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, exist_ok: bool = True) -> Zoo:
        """Create an empty zoo at ``path`` (a new or empty folder); ``exist_ok`` opens an existing one."""
        _check_path(path, "Zoo.create")
        p = Path(path)
        if (p / INDEX_FILE).is_file():
            if not exist_ok:
                fail(
                    "path", "Zoo.create", "a folder without a zoo", str(p), "pass exist_ok=True to reuse it."
                )
            return cls(p)
        leftovers = list(p.glob(f".{INDEX_FILE}.*.tmp")) if p.is_dir() else []
        if p.exists() and (not p.is_dir() or any(x not in leftovers for x in p.iterdir())):
            fail(
                "path",
                "Zoo.create",
                "a new or empty folder",
                str(p),
                "choose a new folder for the zoo; pruneviz will not write into a non-empty one.",
                error=ZooError,
            )
        p.mkdir(parents=True, exist_ok=True)
        for stale in leftovers:  # a create that was killed before its index was in place
            stale.unlink(missing_ok=True)
        tmp_index = p / f".{INDEX_FILE}.{uuid.uuid4().hex}.tmp"
        con = sqlite3.connect(tmp_index)
        try:
            con.executescript(_SCHEMA + _FILES_TABLE + ";")
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("pruneviz_version", __version__),
                    ("created_at", _now()),
                ],
            )
            con.commit()
        finally:
            con.close()
        os.replace(tmp_index, p / INDEX_FILE)
        fsync_dir(p)
        for sub in ("datasets", "runs", "cache"):
            (p / sub).mkdir(exist_ok=True)
        return cls(p)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> Zoo:
        """Open an existing zoo (errors if it is missing, not a zoo, or of a newer schema).

        ``read_only=True`` opens it as a served app does: the index is opened read-only, and what an
        analysis computes on a cache miss (or an evaluation adds) is kept in this object's memory, as
        in :meth:`capture`, and never written; ``counts`` says how many results were computed."""
        return cls(path, read_only=read_only)

    def __repr__(self) -> str:
        return f"Zoo({str(self.path)!r}, runs={len(self.run_ids())})"

    # -- study metadata -------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """The value the zoo's ``meta`` table holds for ``key`` (``None`` when absent)."""
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (str(key),)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set ``key`` of the zoo's ``meta`` table (e.g. the settings a study used) to ``value``, or
        remove it (``None``), under the writer lock; the zoo's own keys (schema, version) are not set.
        A capturing zoo (a sweep's worker) leaves this to the process that writes."""
        where = "Zoo.set_meta"
        if not isinstance(key, str) or key in ("schema_version", "pruneviz_version", "created_at"):
            fail("key", where, "a key of your own (not schema_version, pruneviz_version, created_at)", key)
        if value is not None and not isinstance(value, str):
            fail("value", where, "a string (e.g. JSON text) or None", type(value).__name__)
        if self._captured is not None and not self.read_only:
            return
        with self._writing(), self._connect() as con:
            if value is None:
                con.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        self.counts["writes"] += 1

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the index; SQLite's errors (a corrupt file, a missing table) become one
        :class:`ZooError` naming the index and the fix."""
        index = self.path / INDEX_FILE
        try:
            if self._captured is not None:  # capturing: the index is opened read-only
                con = sqlite3.connect(f"{index.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
            else:
                con = sqlite3.connect(index, timeout=60)
        except sqlite3.Error as exc:
            raise self._index_error(exc) from None
        con.row_factory = sqlite3.Row
        try:
            with con:  # commits on success, rolls back on error
                yield con
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise self._index_error(exc) from None
        finally:
            con.close()

    def _index_error(self, exc: BaseException) -> ZooError:
        index = self.path / INDEX_FILE
        return ZooError(
            f"The index {str(index)!r} of the zoo is corrupt or not a pruneviz index, or another process "
            f"holds it ({exc}). Fix: restore the zoo from a copy, or rebuild it into a new folder; if "
            "another process is writing it, wait and retry."
        )

    def _check_tables(self, con: sqlite3.Connection) -> None:
        """Every table of the index has the columns this pruneviz reads (else one clear error)."""
        for table, expected in _expected_columns().items():
            have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in expected if c not in have]
            if missing:
                what = (
                    f"has no table {table!r}" if not have else f"lacks the column(s) {missing} of {table!r}"
                )
                raise ZooError(
                    f"The index {str(self.path / INDEX_FILE)!r} of the zoo {what}: it was damaged or "
                    "written by another program. Fix: restore the zoo from a copy, or rebuild it into a new "
                    "folder."
                )

    def _file_hashes(self) -> dict[tuple[str, str], dict[str, str]]:
        """The recorded sha256 of files by (kind, name): empty for a zoo written before hashes were."""
        with self._connect() as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='files'").fetchone():
                return {}
            out: dict[tuple[str, str], dict[str, str]] = {}
            for r in con.execute("SELECT kind, name, file, sha256 FROM files"):
                out.setdefault((r[0], r[1]), {})[r[2]] = r[3]
        return out

    @staticmethod
    def _record_files(
        con: sqlite3.Connection, kind: str, name: str, folder: Path, files: Sequence[str]
    ) -> None:
        """Record the sha256 of ``files`` (in ``folder``) of the ``kind`` ``name`` in the index."""
        con.execute(_FILES_TABLE)
        con.executemany(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            [
                (kind, name, f, file_sha256(folder / f), (folder / f).stat().st_size)
                for f in files
                if (folder / f).is_file()
            ],
        )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the zoo's writer lock (an exclusive ``flock`` on ``.write.lock``) for one write.

        Writers take turns, so inside the lock no other write is under way and every temporary run
        folder found is a leftover of a killed writer: it is removed. Readers never take the lock.
        """
        import fcntl

        if self.read_only:
            raise ZooError(
                f"The zoo {str(self.path)!r} is open read-only (as the app opens it): nothing can be "
                "written to it. Fix: open it with Zoo(path) to write, e.g. `pruneviz zoo analyse`."
            )
        if self._captured is not None:
            raise ZooError(
                f"The zoo {str(self.path)!r} is open for capture (read-only): nothing can be written to it. "
                "Fix: write outside the `with zoo.capture()` block, or apply the captured writes with "
                "Zoo.store_entry and Zoo.add_outputs in the process that writes the zoo."
            )
        with open(self.path / ".write.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                runs_dir = self.path / "runs"
                for tmp in runs_dir.glob(".tmp-*") if runs_dir.is_dir() else []:
                    shutil.rmtree(tmp, ignore_errors=True)
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _require_schema(self, version: int) -> None:
        """Mark the zoo as of schema ``version`` (at least) before writing something only that version
        has; call under the writer lock."""
        if self.schema_version < version:
            with self._connect() as con:
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(int(version)),))
            self.schema_version = version

    # -- folders --------------------------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        """The folder of ``run`` inside the zoo: its id must be a plain name, so the folder cannot lie
        outside the zoo (also for an id read from an index made elsewhere)."""
        check_plain_name(run, "run id", "Zoo.run_dir", stored=True)
        return self.path / "runs" / run

    def dataset_dir(self, key: str) -> Path:
        """The folder of the dataset ``key`` inside the zoo (a plain name, as :meth:`run_dir`)."""
        check_plain_name(key, "dataset key", "Zoo.dataset_dir", stored=True)
        return self.path / "datasets" / key

    # -- datasets -------------------------------------------------------------------------------
    def add_dataset(
        self,
        dataset: Dataset,
        *,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
    ) -> str:
        """Store ``dataset`` with its train/val/test assignment; return its key. Idempotent."""
        where = "Zoo.add_dataset"
        if not isinstance(dataset, Dataset):
            fail("dataset", where, "a pruneviz Dataset", type(dataset).__name__)
        split_seed = check_int(split_seed, "split_seed", where, minimum=0)
        check_fraction(val_fraction, "val_fraction", where)
        check_fraction(test_fraction, "test_fraction", where)
        check_plain_name(dataset.info.name, "dataset.name", where)
        fingerprint = dataset.fingerprint()
        key = f"{dataset.info.name}-{digest([fingerprint, split_seed, val_fraction, test_fraction])}"
        with self._connect() as con:
            if con.execute("SELECT 1 FROM datasets WHERE dataset = ?", (key,)).fetchone():
                return key
        splits = dataset.split(seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction)
        subset = pd.Series("train", index=pd.Index(dataset.sample_id), dtype=object)
        subset[splits.val.sample_id] = "val"
        subset[splits.test.sample_id] = "test"
        with self._writing():
            with self._connect() as con:
                if con.execute("SELECT 1 FROM datasets WHERE dataset = ?", (key,)).fetchone():
                    return key
            folder = self.dataset_dir(key)
            fresh = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            try:
                if isinstance(dataset.x, Inputs):  # named tensors (text), each with its own dtype
                    self._require_schema(2)
                    inputs = {f"{INPUT_PREFIX}{k}": t for k, t in dataset.x.items()}
                    names = {"inputs": json.dumps(list(dataset.x.keys()))}
                else:
                    inputs, names = {"x": dataset.x}, {}
                save_tensors(
                    folder / "tensors.safetensors",
                    {**inputs, "y": dataset.y, "sample_id": torch.from_numpy(dataset.sample_id)},
                    names,
                )
                samples = dataset.groups.astype(str).copy()
                samples.insert(0, "subset", subset.to_numpy().astype(str))
                samples.insert(0, "sample_id", dataset.sample_id)
                write_atomic(folder / "samples.parquet", lambda tmp: samples.to_parquet(tmp, index=False))
                info = dataset.info.to_json()
                write_json_atomic(folder / "info.json", info)
                with self._connect() as con:
                    con.execute(
                        "INSERT OR IGNORE INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            key,
                            dataset.info.name,
                            fingerprint,
                            split_seed,
                            float(val_fraction),
                            float(test_fraction),
                            len(dataset),
                            json.dumps(info),
                            _now(),
                        ),
                    )
                    self._record_files(con, "dataset", key, folder, _DATASET_FILES)
            except BaseException:  # a failed write leaves nothing behind: no folder without its index row
                if fresh:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
        return key

    def datasets(self) -> pd.DataFrame:
        """One row per stored dataset."""
        with self._connect() as con:
            df = pd.read_sql_query(
                "SELECT dataset, name, n_samples, split_seed, val_fraction, test_fraction, fingerprint, "
                "created_at FROM datasets ORDER BY rowid",
                con,
            )
        return df

    def dataset(self, key: str) -> Dataset:
        """Load a stored dataset; its ``subset`` holds the stored train/val/test assignment."""
        with self._connect() as con:
            row = con.execute("SELECT info FROM datasets WHERE dataset = ?", (key,)).fetchone()
        if row is None:
            fail(
                "key", "Zoo.dataset", f"a dataset key in this zoo {self.datasets()['dataset'].tolist()}", key
            )
        folder = self.dataset_dir(key)
        fix = f"Fix: {_verify_hint(self.path)}; restore the zoo from a copy, or add the dataset to a new zoo."
        if not folder.is_dir():
            raise ZooError(f"The folder {str(folder)!r} of dataset {key!r} is gone. {fix}")
        index = str(self.path / INDEX_FILE)
        info_json = load_index_json(row["info"], f"the info of dataset {key!r}", index)
        try:
            info = DatasetInfo.from_json(info_json)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ZooError(f"The info of dataset {key!r} in {index!r} is malformed ({exc}). {fix}") from None
        tensors, metadata = load_tensors(folder / "tensors.safetensors")
        path = folder / "samples.parquet"
        try:
            samples = pd.read_parquet(path)
        except Exception as exc:
            raise ZooError(
                f"The samples file {str(path)!r} of dataset {key!r} cannot be read ({exc}). {fix}"
            ) from None
        missing = [c for c in ("sample_id", "subset") if c not in samples.columns]
        missing += [t for t in ("y", "sample_id") if t not in tensors]
        if missing:
            raise ZooError(f"The stored dataset {key!r} lacks {missing}. {fix}")
        extra = [c for c in samples.columns if c not in ("sample_id", "subset", "class")]
        ds = Dataset(
            _stored_inputs(key, tensors, metadata),
            tensors["y"],
            sample_id=tensors["sample_id"].numpy(),
            groups=samples[extra],
            class_names=info.class_names,
            name=info.name,
            modality=info.modality,
            feature_names=info.feature_names,
            subset=samples["subset"].to_numpy().astype(str),
            source=info.source,
            vocabulary=info.vocabulary,
        )
        return ds

    def splits(self, key: str) -> DataSplits:
        """The stored train / val / test parts of a dataset, exactly as the runs used them."""
        ds = self.dataset(key)
        return DataSplits(*(ds.take(np.flatnonzero(ds.subset == s)) for s in ("train", "val", "test")))

    # -- runs -------------------------------------------------------------------------------------
    def has_run(self, run: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM runs WHERE run = ?", (run,)).fetchone() is not None

    def run_ids(self) -> list[str]:
        with self._connect() as con:
            ids = [r[0] for r in con.execute("SELECT run FROM runs ORDER BY run")]
        for rid in ids:
            check_plain_name(rid, "run id", "Zoo.run_ids", stored=True)
        return ids

    def add_run(
        self,
        record: RunRecord,
        model: nn.Module,
        outputs: pd.DataFrame,
        *,
        masks: Masks | None = None,
    ) -> None:
        """Store a run atomically: weights, optional masks, per-sample outputs, then its index row.

        Raises if the run id is already present (runs are immutable), if the dataset or parent is
        unknown, or if the weights contain NaN/inf.
        """
        where = "Zoo.add_run"
        if not isinstance(record, RunRecord):
            fail("record", where, "a RunRecord", type(record).__name__)
        if record.kind not in RUN_KINDS:
            fail("record.kind", where, f"one of {list(RUN_KINDS)}", record.kind)
        check_plain_name(record.run, "record.run", where)
        if self.has_run(record.run):
            fail("record.run", where, "an id not yet in the zoo (runs are immutable)", record.run)
        with self._connect() as con:
            if not con.execute("SELECT 1 FROM datasets WHERE dataset = ?", (record.dataset,)).fetchone():
                fail("record.dataset", where, "a dataset key added with add_dataset", record.dataset)
        if record.parent is not None and not self.has_run(record.parent):
            fail("record.parent", where, "the id of a run already in the zoo", record.parent)
        state = model.state_dict()
        bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            fail(
                "model",
                where,
                "finite weights (no NaN or inf)",
                None,
                got=f"non-finite values in {bad[:3]}",
                fix="the run diverged; lower the learning rate and train again.",
            )
        if not {"sample_id", "split", "subset", "prediction"} <= set(outputs.columns):
            fail("outputs", where, "a frame from pruneviz.train.evaluate", list(outputs.columns)[:8])

        with self._writing():
            if self.has_run(record.run):  # another writer stored it meanwhile
                fail("record.run", where, "an id not yet in the zoo (runs are immutable)", record.run)
            if is_factory_reference(record.arch):
                self._require_schema(2)
            self._write_run(record, state, outputs, masks)

    def add_model(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        factory: str,
        options: Mapping[str, Any] | None = None,
        seed: int = 0,
        train_config: Any = None,
        evaluate: bool = True,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
    ) -> str:
        """Store your own trained dense ``model`` of ``dataset`` as a dense run, rebuilt later through
        the factory reference ``factory`` (``"package.module:callable"``) called with ``options``;
        return the run's id. See :func:`pruneviz.zoo.imports.add_model`, which this calls."""
        from pruneviz.zoo.imports import add_model

        return add_model(
            self,
            model,
            dataset,
            factory=factory,
            options=options,
            seed=seed,
            train_config=train_config,
            evaluate=evaluate,
            split_seed=split_seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
        )

    def _write_run(
        self, record: RunRecord, state: Mapping[str, torch.Tensor], outputs: pd.DataFrame, masks: Masks | None
    ) -> None:
        runs_dir = self.path / "runs"
        final = self.run_dir(record.run)
        tmp = runs_dir / f".tmp-{record.run}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            meta = {"run": record.run, "model_spec": json.dumps(record.model_spec.to_json())}
            save_tensors(tmp / "weights.safetensors", state, meta)
            if masks:
                save_tensors(tmp / "masks.safetensors", masks.to_tensors(), meta)
            write_atomic(tmp / "outputs.parquet", lambda p: _write_outputs(p, outputs))
            write_json_atomic(tmp / "run.json", record.to_json())
            fsync_dir(tmp)
            if final.exists():  # left by a writer killed after the rename and before the commit
                shutil.rmtree(final)
            os.replace(tmp, final)
            fsync_dir(runs_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._insert_run(record)

    def _insert_run(self, record: RunRecord) -> None:
        """Commit the run's index row together with the hashes of its (complete) folder's files."""
        with self._connect() as con:
            self._record_files(con, "run", record.run, self.run_dir(record.run), _RUN_FILES)
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run,
                    record.kind,
                    record.parent,
                    record.dataset,
                    record.arch,
                    json.dumps(record.model_spec.to_json()),
                    record.seed,
                    record.method,
                    record.structure,
                    float(record.target_sparsity),
                    float(record.sparsity),
                    json.dumps(dict(record.schedule), sort_keys=True),
                    json.dumps(dict(record.train_config), sort_keys=True),
                    json.dumps(dict(record.metrics), sort_keys=True),
                    json.dumps(dict(record.timing), sort_keys=True),
                    record.version,
                    record.created_at,
                ),
            )

    def run(self, run: str) -> RunRecord:
        """The record of one run."""
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE run = ?", (run,)).fetchone()
        if row is None:
            fail("run", "Zoo.run", "the id of a run in this zoo (see zoo.runs())", run, error=_ZooKeyError)
        for what, name in (
            ("run id", row["run"]),
            ("parent", row["parent"]),
            ("dataset key", row["dataset"]),
        ):
            if name is not None:
                check_plain_name(name, what, "Zoo.run", stored=True)
        return RunRecord.from_row(dict(row), source=str(self.path / INDEX_FILE))

    def runs(self, **where: Any) -> pd.DataFrame:
        """One row per run in the shared vocabulary, metrics flattened into columns, in the order of
        their ids: a dense parent comes before its pruned children (their ids start with its id), and
        the order does not depend on the order in which a sweep stored them (cache keys list runs).

        Keyword filters match columns exactly, e.g. ``zoo.runs(kind="dense", arch="cnn")``.
        """
        with self._connect() as con:
            df = pd.read_sql_query("SELECT * FROM runs ORDER BY run", con)
        for column, what in (("run", "run id"), ("parent", "parent"), ("dataset", "dataset key")):
            for name in df[column].dropna():
                check_plain_name(name, what, "Zoo.runs", stored=True)
        df = df.rename(columns={"target_sparsity": "sparsity_target"})  # the frames' vocabulary
        allowed = set(df.columns)
        for key, value in where.items():
            if key not in allowed:
                fail(key, "Zoo.runs", f"a column to filter on ({sorted(allowed)})", key)
            numeric = pd.api.types.is_numeric_dtype(df[key])
            if numeric != isinstance(value, int | float | np.number) or isinstance(value, bool):
                kind = "a number" if numeric else "a string"
                fail(
                    key,
                    "Zoo.runs",
                    f"{kind}, as the column holds",
                    value,
                    f"pass e.g. {key}={df[key].iloc[0]!r}." if len(df) else None,
                )
            df = df[df[key] == value]
        index = str(self.path / INDEX_FILE)
        metrics = pd.DataFrame(
            [
                load_index_json(m, f"the metrics of run {r!r}", index)
                for r, m in zip(df["run"], df["metrics"], strict=True)
            ],
            index=df.index,
        )
        timing = pd.DataFrame(
            [
                {f"{k}_s": v for k, v in load_index_json(t, f"the timing of run {r!r}", index).items()}
                for r, t in zip(df["run"], df["timing"], strict=True)
            ],
            index=df.index,
        )
        base = df.drop(columns=["model_spec", "schedule", "train_config", "metrics", "timing"])
        return pd.concat([base, metrics, timing], axis=1).reset_index(drop=True)

    def load_model(self, run: str) -> nn.Module:
        """Rebuild the run's architecture and load its weights (safetensors; never unpickled).

        A channel-pruned run is rebuilt by replaying its channel plan on the dense architecture.
        """
        record = self.run(run)
        tensors, _ = load_tensors(self.run_dir(run) / "weights.safetensors")
        return rebuild_model(record, tensors)

    def masks(self, run: str) -> Masks:
        """The run's pruning masks (empty for dense and channel-pruned runs)."""
        self.run(run)
        path = self.run_dir(run) / "masks.safetensors"
        return Masks.from_tensors(load_tensors(path)[0] if path.is_file() else {})

    def outputs(
        self,
        runs: str | Sequence[str] | None = None,
        *,
        split: str | None = None,
        subset: str | None = None,
    ) -> pd.DataFrame:
        """Per-sample outputs of the given runs (default all), with a leading ``run`` column.

        ``split`` and ``subset`` keep one evaluation split and one part of the data; a value that none of
        the runs has is an error listing the ones they have (not an empty frame)."""
        where = "Zoo.outputs"
        if subset is not None:
            check_choice(subset, "subset", where, ("train", "val", "test"))
        if split is not None and not isinstance(split, str):
            fail("split", where, "a split label such as 'clean' or 'fog@3'", split)
        ids = self.run_ids() if runs is None else ([runs] if isinstance(runs, str) else list(runs))
        frames, seen = [], set()
        for rid in ids:
            self.run(rid)
            df = self._read_outputs(rid, self.run_dir(rid) / "outputs.parquet")
            seen.update(df["split"].unique())
            if split is not None:
                df = df[df["split"] == split]
            if subset is not None:
                df = df[df["subset"] == subset]
            df.insert(0, "run", rid)
            frames.append(df)
        if split is not None and frames and split not in seen:
            have = sorted(map(str, seen))
            fail(
                "split",
                where,
                f"a split these runs were evaluated on ({have[:12]}{'...' if len(have) > 12 else ''})",
                split,
                "evaluate it first (e.g. pruneviz.study.run_corruptions), or pick one listed.",
            )
        if not frames:
            return pd.DataFrame(columns=["run", "sample_id", "subset", "split"])
        return pd.concat(frames, ignore_index=True)

    def splits_of(self, run: str) -> pd.DataFrame:
        """The evaluation splits a run has outputs for: one row per (split, subset) with its sample count."""
        self.run(run)
        path = self.run_dir(run) / "outputs.parquet"
        frame = self._read_outputs(run, path, columns=["split", "subset"])
        return frame.groupby(["split", "subset"], sort=True).size().rename("samples").reset_index()

    def _read_outputs(self, run: str, path: Path, columns: list[str] | None = None) -> pd.DataFrame:
        """The stored outputs of ``run`` (only ``columns`` if given), followed by those captured for it."""
        try:
            frame = pd.read_parquet(path, columns=columns)
        except Exception as exc:
            raise ZooError(
                f"The outputs of run {run!r} ({str(path)!r}) cannot be read ({exc}). Fix: "
                f"{_verify_hint(self.path)}, then rebuild the run or restore the zoo from a copy."
            ) from None
        extra = self._captured.outputs_of(run) if self._captured is not None else None
        if extra is not None:
            frame = pd.concat([frame, extra[list(frame.columns)]], ignore_index=True)
        return frame

    def _output_columns(self, run: str, path: Path) -> list[str]:
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise ZooError(
                f"The outputs of run {run!r} ({str(path)!r}) cannot be read ({exc}). Fix: "
                f"{_verify_hint(self.path)}, then rebuild the run or restore the zoo from a copy."
            ) from None

    def add_outputs(self, run: str, outputs: pd.DataFrame) -> None:
        """Add per-sample outputs on new evaluation splits (a corruption, an attack) to a stored run.

        Weights and existing outputs stay as they are: a (split, subset) the run already has is refused,
        and so is a frame that repeats a sample within a split, so every stored number keeps the meaning
        it had. The run's outputs file is replaced atomically, under the writer lock; in a capturing zoo
        (:meth:`capture`) the frame is recorded instead, and later reads of the run's outputs include it.
        """
        where = "Zoo.add_outputs"
        self.run(run)
        required = ["sample_id", "split", "subset", "prediction"]
        if not isinstance(outputs, pd.DataFrame):
            fail("outputs", where, "a frame from pruneviz.train.evaluate", type(outputs).__name__)
        check_columns(required, outputs.columns, "outputs", where)
        if outputs.empty:
            return
        repeated = outputs.duplicated(["split", "subset", "sample_id"])
        if repeated.any():
            first = outputs.loc[repeated.idxmax()]
            fail(
                "outputs",
                where,
                "one row per sample in each split",
                None,
                got=f"{int(repeated.sum())} repeated row(s), e.g. sample {first['sample_id']} "
                f"of split {first['split']!r}",
                fix="evaluate each split once (drop duplicate settings from the list).",
            )
        path = self.run_dir(run) / "outputs.parquet"
        if self._captured is not None:
            current = self._read_outputs(run, path, columns=["split", "subset"])
            _check_new_outputs(run, current, self._output_columns(run, path), outputs, where)
            self._captured.outputs.setdefault(run, []).append(outputs.copy())
            self.counts["writes"] += 1
            return
        with self._writing():
            current = self._read_outputs(run, path)
            _check_new_outputs(run, current, list(current.columns), outputs, where)
            merged = pd.concat([current, outputs], ignore_index=True)
            write_atomic(path, lambda tmp: _write_outputs(tmp, merged))
            with self._connect() as con:
                self._record_files(con, "run", run, path.parent, ["outputs.parquet"])
        self.counts["writes"] += 1

    def verify(self) -> pd.DataFrame:
        """Check every dataset, run and cache entry of the zoo; one row per problem, empty when intact.

        Columns: ``kind`` (``dataset``, ``run``, ``cache``), ``name``, ``path``, ``problem`` and ``fix``.
        Reported: a folder or file that is gone, a file that cannot be read (truncated, garbage), a file
        whose sha256 differs from the one recorded when it was written (a zoo written before hashes were
        recorded is checked for everything else), an index row that is malformed, a model spec that
        cannot be rebuilt or is too large, and masks that are not binary, disagree with the weights (a
        pruned weight that is not zero) or prune a fraction far (more than :data:`SPARSITY_TOLERANCE`)
        from the run's recorded sparsity.
        """
        problems: list[dict[str, str]] = []
        hashes = self._file_hashes()
        rebuild = "restore the zoo from a copy, or rebuild the run into a new zoo"

        def report(kind: str, name: str, path: Path | str, problem: str, fix: str) -> None:
            problems.append(
                {"kind": kind, "name": str(name), "path": str(path), "problem": problem, "fix": fix}
            )

        def check_file(kind: str, name: str, path: Path, required: bool, fix: str) -> bool:
            recorded = hashes.get((kind, name), {}).get(path.name)
            if not path.is_file():
                if required or recorded is not None:
                    report(kind, name, path, "the file is missing", fix)
                return False
            if recorded is not None and file_sha256(path) != recorded:
                problem = (
                    f"the file's content differs from the sha256 recorded when it was written "
                    f"({recorded[:12]}...): it was changed, truncated or damaged"
                )
                report(kind, name, path, problem, fix)
                return False
            try:
                if path.suffix == ".safetensors":
                    load_tensors(path)
                elif path.suffix == ".parquet":
                    pd.read_parquet(path)
                else:
                    load_index_json(path.read_text(), "the file", str(path))
            except PrunevizError as exc:
                report(kind, name, path, f"the file cannot be read: {exc}", fix)
                return False
            except Exception as exc:  # pyarrow, UnicodeDecodeError: the reason, not the type
                report(
                    kind,
                    name,
                    path,
                    f"the file is truncated or not a valid {path.suffix[1:]} file ({exc})",
                    fix,
                )
                return False
            return True

        with self._connect() as con:
            dataset_keys = [r[0] for r in con.execute("SELECT dataset FROM datasets ORDER BY rowid")]
            run_keys = [r[0] for r in con.execute("SELECT run FROM runs ORDER BY run")]
            cache_keys = [r[0] for r in con.execute("SELECT key FROM cache ORDER BY key")]
        index = self.path / INDEX_FILE
        for key in dataset_keys:
            fix = "restore the zoo from a copy, or add the dataset to a new zoo and rebuild its runs"
            try:
                folder = self.dataset_dir(key)
            except ZooError as exc:
                report("dataset", key, index, str(exc), "open only zoos from people you trust")
                continue
            if not folder.is_dir():
                report("dataset", key, folder, "the dataset's folder is gone", fix)
                continue
            ok = [check_file("dataset", key, folder / f, True, fix) for f in _DATASET_FILES]
            if all(ok):
                try:
                    self.dataset(key)
                except PrunevizError as exc:
                    report("dataset", key, folder, str(exc), fix)
        for rid in run_keys:
            try:
                record = self.run(rid)
                folder = self.run_dir(rid)
            except PrunevizError as exc:
                report("run", rid, index, str(exc), rebuild)
                continue
            if not folder.is_dir():
                report("run", rid, folder, "the run's folder is gone", rebuild)
                continue
            weights_ok = check_file("run", rid, folder / "weights.safetensors", True, rebuild)
            masks_ok = check_file("run", rid, folder / "masks.safetensors", False, rebuild)
            check_file("run", rid, folder / "outputs.parquet", True, rebuild)
            check_file("run", rid, folder / "run.json", False, rebuild)
            if not weights_ok:
                continue
            try:
                self.load_model(rid)
            except PrunevizError as exc:
                report("run", rid, folder / "weights.safetensors", str(exc), rebuild)
                continue
            if masks_ok and (folder / "masks.safetensors").is_file():
                for problem in _mask_problems(record, folder):
                    report("run", rid, folder / "masks.safetensors", problem, rebuild)
        for key in cache_keys:
            path = self.path / "cache" / f"{key}.parquet"
            fix = f"`pruneviz zoo repair {self.path} --drop-cache` removes the cache; analyses recompute it"
            if not path.is_file():
                report("cache", key, path, "the cached result's file is missing", fix)
                continue
            try:
                pd.read_parquet(path)
            except Exception as exc:
                report(
                    "cache", key, path, f"the cached result is truncated or not a Parquet file ({exc})", fix
                )
        return pd.DataFrame(problems, columns=["kind", "name", "path", "problem", "fix"])

    def drop_cache(self) -> int:
        """Remove every cached analysis result (index rows and files; analyses recompute them on the next
        call), under the writer lock; return how many entries were removed."""
        with self._writing():
            with self._connect() as con:
                keys = [r[0] for r in con.execute("SELECT key FROM cache")]
                con.execute("DELETE FROM cache")
            folder = self.path / "cache"
            files = list(folder.glob("*.parquet")) + list(folder.glob(".*.tmp")) if folder.is_dir() else []
            for f in files:
                f.unlink(missing_ok=True)
        return max(len(keys), len([f for f in files if f.suffix == ".parquet"]))

    # -- cached analyses ------------------------------------------------------------------------
    def cached(
        self,
        analysis: str,
        runs: Sequence[str],
        params: Mapping[str, Any],
        compute: Callable[[], pd.DataFrame],
    ) -> pd.DataFrame:
        """Return the cached result of ``analysis`` over ``runs`` with ``params``, computing it once.

        ``params`` must be JSON-serialisable; the key covers the analysis, the runs (in order), the
        parameters and the pruneviz version (:func:`cache_key`). A new result is stored with
        :meth:`store_entry`; in a capturing zoo (:meth:`capture`) it is recorded instead, and a later call
        for the same key in the block returns it.
        """
        key = cache_key(analysis, runs, params)
        if self._captured is not None:
            captured = self._captured.entry(key)
            if captured is not None:
                self.counts["hits"] += 1
                return captured.frame.copy()
        path = self.path / "cache" / f"{key}.parquet"
        with self._connect() as con:
            hit = con.execute("SELECT 1 FROM cache WHERE key = ?", (key,)).fetchone()
        if hit and path.is_file():
            try:
                frame = pd.read_parquet(path)
            except Exception as exc:  # truncated or garbage: drop it and compute again
                warnings.warn(
                    f"The cached result {str(path)!r} of {analysis!r} cannot be read ({exc}); it is dropped "
                    f"and computed again. `pruneviz zoo verify {self.path}` lists other damage.",
                    stacklevel=2,
                )
                if self._captured is None:
                    self._drop_entry(key, path)
            else:
                self.counts["hits"] += 1
                return frame
        self.counts["computed"] += 1
        result = compute()
        if not isinstance(result, pd.DataFrame):
            fail("compute", "Zoo.cached", "a function returning a DataFrame", type(result).__name__)
        if self._captured is not None:
            self._captured.entries.append(CacheEntry(analysis, tuple(runs), dict(params), result.copy()))
            self.counts["writes"] += 1
        else:
            self.store_entry(CacheEntry(analysis, tuple(runs), dict(params), result))
        return result

    def store_entry(self, entry: CacheEntry) -> bool:
        """Store a cache entry exactly as :meth:`cached` stores a result it computed: under its key, the
        frame as an atomically written Parquet file, then its index row, all under the writer lock.

        Returns ``False`` and writes nothing when the key is already stored (so a result computed twice,
        e.g. by a lost worker and its retry, is stored once), ``True`` when it was written.
        """
        where = "Zoo.store_entry"
        if not isinstance(entry, CacheEntry):
            fail("entry", where, "a CacheEntry", type(entry).__name__, "pass one from ZooWrites.entries.")
        if not isinstance(entry.frame, pd.DataFrame):
            fail("entry.frame", where, "a DataFrame", type(entry.frame).__name__)
        key = entry.key
        path = self.path / "cache" / f"{key}.parquet"
        with self._writing():
            with self._connect() as con:
                hit = con.execute("SELECT 1 FROM cache WHERE key = ?", (key,)).fetchone()
            if hit and path.is_file() and _readable_parquet(path):
                return False
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, lambda tmp: entry.frame.to_parquet(tmp, index=False))
            self.counts["writes"] += 1
            with self._connect() as con:
                con.execute(
                    "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        entry.analysis,
                        json.dumps(list(entry.runs)),
                        json.dumps(dict(entry.params), sort_keys=True),
                        entry.version,
                        _now(),
                    ),
                )
        return True

    def _drop_entry(self, key: str, path: Path) -> None:
        """Remove one (damaged) cache entry: its row and its file."""
        with self._writing():
            with self._connect() as con:
                con.execute("DELETE FROM cache WHERE key = ?", (key,))
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def capture(self) -> Iterator[ZooWrites]:
        """Within the block the zoo is read-only and records what would be written: :meth:`cached`
        returns a stored or already captured result, else computes it and records it as a
        :class:`CacheEntry`; :meth:`add_outputs` records the frame, and later reads of that run's
        outputs (:meth:`outputs`, :meth:`splits_of`) include it. Anything else that writes (a run, a
        dataset) raises. The index is opened read-only, so nothing in the folder changes.

        >>> import tempfile
        >>> zoo = Zoo.create(tempfile.mkdtemp() + "/z")
        >>> with zoo.capture() as writes:
        ...     _ = zoo.cached("demo", [], {"n": 1}, lambda: pd.DataFrame({"value": [1.0]}))
        >>> [e.analysis for e in writes.entries], zoo.store_entry(writes.entries[0])
        (['demo'], True)
        """
        if self._captured is not None:
            raise ZooError(
                f"The zoo {str(self.path)!r} is already capturing (or open read-only). Fix: do not nest "
                "capture(), and capture in a zoo opened with Zoo(path)."
            )
        self._captured = ZooWrites()
        try:
            yield self._captured
        finally:
            self._captured = None

    # -- summary ----------------------------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """A compact table of the runs: id, kind, parent, arch, dataset, seed, method, sparsity, metrics."""
        df = self.runs()
        if df.empty:
            return df
        cols = [
            c
            for c in (
                "run", "kind", "parent", "dataset", "arch", "seed", "method", "structure", "sparsity",
                "params", "val_accuracy", "test_accuracy", "train_s",
            )
            if c in df.columns
        ]  # fmt: skip
        return df[cols]


_RUN_FILES = ("weights.safetensors", "masks.safetensors", "outputs.parquet", "run.json")
_DATASET_FILES = ("tensors.safetensors", "samples.parquet", "info.json")


def _expected_columns() -> dict[str, list[str]]:
    """The columns of each table of the index, as :data:`_SCHEMA` creates them."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(_SCHEMA + _FILES_TABLE + ";")
        return {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in _TABLES}
    finally:
        con.close()


def _readable_parquet(path: Path) -> bool:
    try:
        pd.read_parquet(path)
    except Exception:
        return False
    return True


def _mask_problems(record: RunRecord, folder: Path) -> list[str]:
    """What is wrong with a run's masks against its weights and its recorded sparsity."""
    weights, _ = load_tensors(folder / "weights.safetensors")
    masks, _ = load_tensors(folder / "masks.safetensors")
    problems, pruned, total = [], 0, 0
    for key, mask in masks.items():
        binary = (mask == 0) | (mask == 1)
        if not bool(binary.all()):
            odd = mask[~binary].flatten()[:3].tolist()
            problems.append(f"the mask of {key!r} is not binary: it holds values such as {odd}")
            continue
        weight = weights.get(key)
        if weight is None or tuple(weight.shape) != tuple(mask.shape):
            got = "no such weight" if weight is None else f"a weight of shape {tuple(weight.shape)}"
            problems.append(f"the mask of {key!r} (shape {tuple(mask.shape)}) has {got}")
            continue
        cut = mask == 0
        alive = int((cut & (weight != 0)).sum())
        if alive:
            problems.append(
                f"{alive} weight(s) of {key!r} are nonzero where the mask prunes them (the weights and the "
                "masks disagree)"
            )
        pruned += int(cut.sum())
        total += mask.numel()
    if total and not problems and record.kind == "pruned" and not record.schedule.get("channel_plan"):
        density = 1.0 - pruned / total
        if abs((1.0 - density) - record.sparsity) > SPARSITY_TOLERANCE:
            problems.append(
                f"the masks keep {density:.1%} of their weights (sparsity {1 - density:.3f}), far from the "
                f"sparsity {record.sparsity:.3f} the index records (tolerance {SPARSITY_TOLERANCE})"
            )
    return problems


def _stored_inputs(
    key: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> torch.Tensor | Inputs:
    """A stored dataset's inputs: the tensor ``x`` (schema 1), or the named tensors ``x.<name>`` in the
    order the file's ``inputs`` metadata gives (schema 2)."""
    if "x" in tensors:
        return tensors["x"]
    try:
        names = json.loads(metadata.get("inputs", "null"))
        return Inputs({n: tensors[f"{INPUT_PREFIX}{n}"] for n in names})
    except (TypeError, KeyError, ValueError) as exc:
        raise ZooError(
            f"The stored inputs of dataset {key!r} are incomplete (tensors {sorted(tensors)[:6]}, "
            f"inputs {metadata.get('inputs')!r}). Fix: restore the zoo from a copy, or add the dataset "
            "to a new zoo."
        ) from exc


def _check_new_outputs(
    run: str, current: pd.DataFrame, columns: list[str], outputs: pd.DataFrame, where: str
) -> None:
    """New outputs of ``run`` must be on splits it has no outputs for, with the stored ``columns``."""
    pairs = ["split", "subset"]  # the distinct pairs first: a run's outputs hold thousands of rows per pair
    have = set(current[pairs].drop_duplicates().itertuples(index=False, name=None))
    new = set(outputs[pairs].drop_duplicates().itertuples(index=False, name=None))
    clash = sorted(have & new)
    if clash:
        fail(
            "outputs",
            where,
            f"splits the run {run!r} has no outputs for yet",
            None,
            got=f"outputs for {clash[:3]} already stored",
            fix="stored outputs are immutable; evaluate under a new split name.",
        )
    if list(outputs.columns) != columns:
        fail(
            "outputs",
            where,
            f"the same columns as the stored outputs ({columns[:6]}...)",
            None,
            got=f"columns {list(outputs.columns)[:6]}...",
            fix="evaluate with pruneviz.train.evaluate on the run's dataset.",
        )


def _write_outputs(path: Path, outputs: pd.DataFrame) -> None:
    """Write per-sample outputs with one Parquet row group per (split, subset), so that a reader
    filtering on a split skips the others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(outputs, preserve_index=False)
    groups = outputs.groupby(["split", "subset"], sort=False, dropna=False).indices  # positions, ascending
    with pq.ParquetWriter(path, table.schema) as writer:
        for index in groups.values():
            contiguous = len(index) and index[-1] - index[0] + 1 == len(index)
            writer.write_table(table.slice(int(index[0]), len(index)) if contiguous else table.take(index))


def population_table(runs: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Mean and standard deviation of ``metric`` over seeds for every method × structure × sparsity,
    one row per group (dense runs are the ``method="dense"`` row at sparsity 0), tidy."""
    if runs.empty:
        return pd.DataFrame(columns=["method", "structure", "sparsity_target", "runs", "mean", "std"])
    df = runs.assign(
        method=runs["method"].fillna("dense"),
        structure=runs["structure"].fillna(""),
        sparsity_target=runs["sparsity_target"],
    )
    grouped = df.groupby(["method", "structure", "sparsity_target"], sort=True)[metric]
    out = grouped.agg(runs="count", mean="mean", std="std").reset_index()
    order = {"dense": 0}
    out = out.sort_values(
        ["method", "sparsity_target"], key=lambda c: c.map(order).fillna(1) if c.name == "method" else c
    )
    return out.assign(metric=metric).reset_index(drop=True)


class _ZooKeyError(ZooError, KeyError):
    """A run or dataset key that is not in the zoo."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
