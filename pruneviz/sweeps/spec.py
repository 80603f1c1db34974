"""Sweep specs: a TOML file naming what to train, prune and analyse, validated with line numbers.

A spec has five tables; every key is optional except ``data.datasets``, ``dense.architectures`` and
``dense.seeds``::

    [data]
    datasets = ["digits"]          # names accepted by pruneviz.data.load_dataset
    subset = 600                   # optional: keep the first N samples of each dataset
    split_seed = 0
    val_fraction = 0.1
    test_fraction = 0.2
    [data.options.mnist]           # optional keyword options of one dataset's loader
    root = "/data/mnist"

    [dense]
    architectures = ["cnn"]        # names accepted by pruneviz.models.build_model
    seeds = 3                      # a count (0..N-1) or a list of distinct seeds
    epochs = 30
    batch_size = 64
    lr = 0.003
    [dense.options.mlp]            # optional keyword options of one architecture
    hidden = [64]

    [prune]                        # optional: without it the sweep trains dense runs only
    methods = ["lamp", "channel_l1"]
    structures = ["unstructured"]  # channel methods always remove whole channels
    sparsities = [0.5, 0.9]
    schedules = ["one_shot"]       # also "imp" (rounds, rewind_step) and "gradual" (updates), which
    rounds = 3                     # prune the magnitude methods of the list, unstructured
    [prune.finetune]               # the fine-tuning budget of every pruned run; epochs = 0 for none
    epochs = 5

    [analyses]                     # optional: analyses precomputed (cached in the zoo) after the runs
    steps = ["spectrum"]
    quick = true

TOML itself reports no positions for keys, so the line of a bad key is found by scanning the text.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruneviz._validation import fail
from pruneviz.exceptions import ValidationError
from pruneviz.train import TrainConfig
from pruneviz.zoo.populations import MAGNITUDE_METHODS, SCHEDULES

__all__ = ["SCHEDULES", "SweepSpec", "load_spec", "parse_spec"]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: datasets × architectures × seeds dense runs, each pruned by methods ×
    structures × sparsities × schedules with a fine-tuning budget, then the analyses to precompute."""

    datasets: tuple[str, ...]
    architectures: tuple[str, ...]
    seeds: tuple[int, ...]
    train: TrainConfig
    subset: int | None = None
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    dataset_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    structures: tuple[str, ...] = ("unstructured",)
    sparsities: tuple[float, ...] = ()
    schedules: tuple[str, ...] = ("one_shot",)
    allocation: str | None = None
    exclude: tuple[str, ...] = ()
    calibration_size: int = 512
    prune_seed: int = 0
    finetune: TrainConfig | None = None
    rounds: int = 3
    rewind_step: int = 0
    updates: int = 10
    analyses: tuple[str, ...] = ()
    quick_analyses: bool = True
    name: str = "sweep"


# -- the schema: table -> key -> (kind, required) --------------------------------------------------
_SCHEMA: dict[str, dict[str, str]] = {
    "data": {
        "datasets": "names",
        "subset": "count",
        "split_seed": "int0",
        "val_fraction": "fraction",
        "test_fraction": "fraction",
        "options": "options",
    },
    "dense": {
        "architectures": "names",
        "seeds": "seeds",
        "epochs": "int0",
        "batch_size": "count",
        "lr": "positive",
        "weight_decay": "nonneg",
        "optimizer": "str",
        "options": "options",
    },
    "prune": {
        "methods": "names",
        "structures": "names",
        "sparsities": "fractions",
        "schedules": "names",
        "allocation": "str",
        "exclude": "names_or_empty",
        "calibration_size": "count",
        "seed": "int0",
        "finetune": "table",
        "rounds": "count",
        "rewind_step": "int0",
        "updates": "count",
    },
    "analyses": {"steps": "names_or_empty", "quick": "bool"},
}
_FINETUNE = {"epochs": "int0", "batch_size": "count", "lr": "positive", "weight_decay": "nonneg"}
_FINETUNE_KINDS = {**_FINETUNE, "optimizer": "str"}
_REQUIRED = (("data", "datasets"), ("dense", "architectures"), ("dense", "seeds"))
_EXPECTED = {
    "names": "a non-empty list of strings",
    "names_or_empty": "a list of strings",
    "count": "an integer >= 1",
    "int0": "an integer >= 0",
    "fraction": "a number in [0, 1)",
    "fractions": "a non-empty list of numbers in [0, 1)",
    "positive": "a number > 0",
    "nonneg": "a number >= 0",
    "str": "a string",
    "bool": "true or false",
    "seeds": "a count >= 1 or a non-empty list of distinct integers >= 0",
    "options": "a table of tables (one per name) of keyword options",
    "table": "a table",
}
_EXAMPLE = {
    "names": '["a", "b"]',
    "names_or_empty": '["a"] or []',
    "count": "3",
    "int0": "0",
    "fraction": "0.1",
    "fractions": "[0.5, 0.9]",
    "positive": "0.001",
    "nonneg": "0.0",
    "str": '"name"',
    "bool": "true",
    "seeds": "3 or [0, 1, 2]",
    "options": "{ mlp = { hidden = [64] } }",
    "table": "[prune.finetune] with epochs = 5",
}


class _Locator:
    """Finds the line of a dotted key in TOML text: after its table header if it has one."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, path: tuple[str, ...]) -> int | None:
        # a table header [a.b] or [[a.b]] for the whole path
        header = re.compile(r"^\s*\[\[?\s*" + r"\s*\.\s*".join(map(re.escape, path)) + r"\s*\]\]?\s*(#.*)?$")
        for i, line in enumerate(self.lines, 1):
            if header.match(line):
                return i
        # key = ... inside the parent table's section (dotted keys and inline tables fall back below)
        for cut in range(len(path) - 1, -1, -1):
            table, rest = path[:cut], path[cut:]
            start, end = self._section(table)
            if start is None:
                continue
            key = re.compile(r"^\s*" + r"\s*\.\s*".join(map(re.escape, rest)) + r"\s*=")
            for i in range(start, end):
                if key.match(self.lines[i]):
                    return i + 1
        anywhere = re.compile(r"(^|[\s{,])" + re.escape(path[-1]) + r"\s*=")
        for i, line in enumerate(self.lines, 1):
            if anywhere.search(line):
                return i
        return None

    def _section(self, table: tuple[str, ...]) -> tuple[int | None, int]:
        if not table:
            end = next((i for i, ln in enumerate(self.lines) if ln.lstrip().startswith("[")), len(self.lines))
            return 0, end
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(map(re.escape, table)) + r"\s*\]\s*(#.*)?$")
        for i, line in enumerate(self.lines):
            if header.match(line):
                end = next(
                    (j for j in range(i + 1, len(self.lines)) if self.lines[j].lstrip().startswith("[")),
                    len(self.lines),
                )
                return i + 1, end
        return None, 0


class _Checker:
    def __init__(self, text: str, source: str) -> None:
        self.locator = _Locator(text)
        self.source = source

    def where(self, path: tuple[str, ...]) -> str:
        line = self.locator.line_of(path)
        return f"sweep spec {self.source} (line {line})" if line else f"sweep spec {self.source}"

    def bad(self, path: tuple[str, ...], expected: str, value: Any, fix: str) -> None:
        fail(".".join(path), self.where(path), expected, value, fix)

    def unknown(self, path: tuple[str, ...], allowed: list[str]) -> None:
        import difflib

        close = difflib.get_close_matches(path[-1], allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        parent = ".".join(path[:-1]) or "the top level"
        fail(
            ".".join(path),
            self.where(path),
            f"a known key of {parent} ({allowed})",
            path[-1],
            f"{hint}remove or rename the key.",
            got=f"the unknown key {path[-1]!r}",
        )

    def value(self, path: tuple[str, ...], kind: str, value: Any) -> Any:
        ok = _conforms(kind, value)
        if not ok:
            self.bad(path, _EXPECTED[kind], value, f"write e.g. {path[-1]} = {_EXAMPLE[kind]}.")
        return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _conforms(kind: str, v: Any) -> bool:
    if kind in ("names", "names_or_empty"):
        return (
            isinstance(v, list)
            and all(isinstance(s, str) and s for s in v)
            and (bool(v) or kind == "names_or_empty")
        )
    if kind == "count":
        return _is_int(v) and v >= 1
    if kind == "int0":
        return _is_int(v) and v >= 0
    if kind == "fraction":
        return _is_num(v) and 0 <= v < 1
    if kind == "fractions":
        return isinstance(v, list) and bool(v) and all(_is_num(s) and 0 <= s < 1 for s in v)
    if kind == "positive":
        return _is_num(v) and v > 0 and v != float("inf")
    if kind == "nonneg":
        return _is_num(v) and v >= 0 and v != float("inf")
    if kind == "str":
        return isinstance(v, str) and bool(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "seeds":
        if _is_int(v):
            return v >= 1
        return (
            isinstance(v, list)
            and bool(v)
            and all(_is_int(s) and s >= 0 for s in v)
            and len(set(v)) == len(v)
        )
    if kind == "options":
        return isinstance(v, dict) and all(isinstance(o, dict) for o in v.values())
    if kind == "table":
        return isinstance(v, dict)
    raise AssertionError(kind)  # pragma: no cover - the schema names only the kinds above


def parse_spec(text: str, *, source: str = "<string>") -> SweepSpec:
    """Validate the TOML ``text`` of a sweep spec and return it as a :class:`SweepSpec`.

    Every problem is reported with the dotted name of the field, its line in ``text``, what was
    expected and what was found (:class:`~pruneviz.exceptions.ValidationError`).

    >>> spec = parse_spec('[data]\\ndatasets = ["digits"]\\n[dense]\\narchitectures = ["mlp"]\\nseeds = 2')
    >>> spec.seeds, spec.methods
    ((0, 1), ())
    """
    if not isinstance(text, str):
        fail("text", "parse_spec", "the TOML text of a sweep spec (a str)", type(text).__name__)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(
            f"The sweep spec {source} is not valid TOML: {exc}. Fix: correct the syntax at that position "
            "(strings in double quotes, lists in [ ], one key = value per line)."
        ) from None
    chk = _Checker(text, source)
    for table, value in raw.items():
        if table not in _SCHEMA:
            chk.unknown((table,), sorted(_SCHEMA))
        if not isinstance(value, dict):
            chk.bad((table,), "a table", value, f"write [{table}] on its own line with its keys below it.")
        for key, v in value.items():
            if key not in _SCHEMA[table]:
                chk.unknown((table, key), sorted(_SCHEMA[table]))
            chk.value((table, key), _SCHEMA[table][key], v)
    for table, key in _REQUIRED:
        if key not in raw.get(table, {}):
            fail(
                f"{table}.{key}",
                f"sweep spec {source}",
                _EXPECTED[_SCHEMA[table][key]],
                None,
                f"add `{key} = {_EXAMPLE[_SCHEMA[table][key]]}` under [{table}].",
                got="nothing (the key is missing)",
            )
    data, dense = raw["data"], raw["dense"]
    prune, analyses = raw.get("prune", {}), raw.get("analyses", {})

    from pruneviz.data.sources import dataset_names
    from pruneviz.models.registry import architecture_names

    _choices(chk, ("data", "datasets"), data["datasets"], dataset_names())
    _choices(chk, ("dense", "architectures"), dense["architectures"], architecture_names())
    for name in data.get("options", {}):
        _choices(chk, ("data", "options", name), [name], data["datasets"])
    for name in dense.get("options", {}):
        _choices(chk, ("dense", "options", name), [name], dense["architectures"])
    seeds = dense["seeds"]
    seed_tuple = tuple(range(seeds)) if _is_int(seeds) else tuple(seeds)
    train = _train_config(chk, ("dense",), dense, TrainConfig())

    methods = tuple(prune.get("methods", ()))
    if prune and "methods" not in prune:
        chk.bad(("prune",), "a table with a methods list", sorted(prune), 'add methods = ["lamp"].')
    if prune and "sparsities" not in prune:
        chk.bad(("prune",), "a table with a sparsities list", sorted(prune), "add sparsities = [0.5, 0.9].")
    finetune = None
    if prune:
        from pruneviz.prune.allocation import parse_structure
        from pruneviz.prune.api import population_method_names
        from pruneviz.zoo.populations import DEFAULT_FINETUNE

        _choices(chk, ("prune", "methods"), methods, population_method_names())
        for s in prune.get("structures", ["unstructured"]):
            try:
                parse_structure(s, where="sweep spec")
            except ValidationError:
                chk.bad(
                    ("prune", "structures"),
                    "a list of structures: unstructured, N:M (e.g. 2:4) or block:HxW",
                    s,
                    'write e.g. structures = ["unstructured", "2:4"].',
                )
        _choices(chk, ("prune", "schedules"), prune.get("schedules", ["one_shot"]), SCHEDULES)
        ft_raw = prune.get("finetune")
        if ft_raw is None:
            finetune = DEFAULT_FINETUNE
        else:
            for key, v in ft_raw.items():
                if key not in _FINETUNE_KINDS:
                    chk.unknown(("prune", "finetune", key), sorted(_FINETUNE_KINDS))
                chk.value(("prune", "finetune", key), _FINETUNE_KINDS[key], v)
            if ft_raw.get("epochs", DEFAULT_FINETUNE.epochs) == 0:
                finetune = None
            else:
                finetune = _train_config(chk, ("prune", "finetune"), ft_raw, DEFAULT_FINETUNE)
    later = [sch for sch in prune.get("schedules", ()) if sch != "one_shot"]
    if later and not set(methods) & set(MAGNITUDE_METHODS):
        chk.bad(
            ("prune", "methods"),
            f"at least one of {list(MAGNITUDE_METHODS)} with schedules {later} (they prune by magnitude)",
            list(methods),
            'add "magnitude" or "global_magnitude" to methods.',
        )
    if later and finetune is None:
        chk.bad(
            ("prune", "finetune"),
            f"a training budget with epochs >= 1 for schedules {later} (they prune while training)",
            dict(prune.get("finetune", {})),
            "set epochs = 5 under [prune.finetune].",
        )
    steps = tuple(analyses.get("steps", ()))
    if steps:
        from pruneviz.study import STEPS

        _choices(chk, ("analyses", "steps"), steps, STEPS)
    for table, key in (("data", "datasets"), ("dense", "architectures"), ("prune", "methods")):
        values = {"data": data, "dense": dense, "prune": prune}[table].get(key, [])
        if len(set(values)) != len(values):
            chk.bad((table, key), "a list without repeats", values, "list each name once.")
    sparsities = tuple(float(s) for s in prune.get("sparsities", ()))
    if len(set(sparsities)) != len(sparsities):
        chk.bad(("prune", "sparsities"), "a list without repeats", list(sparsities), "list each once.")
    return SweepSpec(
        datasets=tuple(data["datasets"]),
        architectures=tuple(dense["architectures"]),
        seeds=seed_tuple,
        train=train,
        subset=data.get("subset"),
        split_seed=data.get("split_seed", 0),
        val_fraction=float(data.get("val_fraction", 0.1)),
        test_fraction=float(data.get("test_fraction", 0.2)),
        dataset_options={k: dict(v) for k, v in data.get("options", {}).items()},
        model_options={k: dict(v) for k, v in dense.get("options", {}).items()},
        methods=methods,
        structures=tuple(prune.get("structures", ("unstructured",))),
        sparsities=sparsities,
        schedules=tuple(prune.get("schedules", ("one_shot",))),
        allocation=prune.get("allocation"),
        exclude=tuple(prune.get("exclude", ())),
        calibration_size=prune.get("calibration_size", 512),
        prune_seed=prune.get("seed", 0),
        finetune=finetune,
        rounds=prune.get("rounds", 3),
        rewind_step=prune.get("rewind_step", 0),
        updates=prune.get("updates", 10),
        analyses=steps,
        quick_analyses=analyses.get("quick", True),
        name=Path(source).stem if source != "<string>" else "sweep",
    )


def _choices(chk: _Checker, path: tuple[str, ...], values: Any, allowed: Any) -> None:
    import difflib

    options = sorted(allowed)
    for v in values:
        if v not in options:
            close = difflib.get_close_matches(v, options, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            chk.bad(path, f"names from {options}", v, f"{hint}use one of the names listed.")


def _train_config(
    chk: _Checker, path: tuple[str, ...], table: Mapping[str, Any], base: TrainConfig
) -> TrainConfig:
    fields = {k: table[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer") if k in table}
    if "optimizer" in fields and fields["optimizer"] not in ("adam", "sgd"):
        chk.bad(
            (*path, "optimizer"), "one of ['adam', 'sgd']", fields["optimizer"], 'write optimizer = "adam".'
        )
    merged = {**base.to_json(), **fields}
    if "lr" in fields:
        merged["lr"] = float(merged["lr"])
    if "weight_decay" in fields:
        merged["weight_decay"] = float(merged["weight_decay"])
    return TrainConfig(**merged)


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate the sweep spec at ``path`` (a TOML file); see :func:`parse_spec`.

    >>> from pruneviz.sweeps import demo_spec_path
    >>> load_spec(demo_spec_path()).architectures
    ('cnn',)
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(
            "spec",
            "load_spec",
            "the path of a readable TOML file",
            str(p),
            f"check the path ({type(exc).__name__}: {exc}).",
        )
    return parse_spec(text, source=p.name)
