"""The study registry: every zoo-bound analysis declared once.

An :class:`Analysis` says what a study precomputes and a view shows: its ``scope`` (what it is computed
over: one run, a dense parent and a pruned child, a parent's family, a comparison of populations, or a
batch of runs), its ``settings`` with a full and a quick value each, the key columns of its frame, the
zoo-bound function that computes it (and caches it in the zoo), the study ``step`` it belongs to, the
modalities it applies to, and where it is shown (a :class:`Show`: the tab, the title, the chart; and
whether the audit report carries it).

The plan (:func:`~pruneviz.study.plan.study_items`), the sweeps, ``pruneviz zoo analyse``, the views
(:meth:`~pruneviz.views.state.StudyState.frame`) and the report all read this one registry, with the
same :class:`StudySettings`, so that a view asks for exactly what the study precomputed.

Adding an analysis end to end: write its pure function in :mod:`pruneviz.analysis`, a zoo-bound function
that caches it (``zoo.cached``), a chart in :mod:`pruneviz.charts`, and :func:`register` it here with a
:class:`Show`. The plan, the sweeps, the CLI, the views and the report pick it up.

>>> sorted(a.name for a in analyses(step="geometry"))
['cka', 'embedding', 'knn_overlap', 'logit_change']
>>> StudySettings.quick().params(analysis("cka"))
{'samples': 128}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pruneviz._validation import check_choice, fail
from pruneviz.data.dataset import MODALITIES

#: the order in which a study runs its steps: robustness splits first (later steps read them as
#: evaluation splits), then the population analyses, the geometry of pairs and families, the per-run ones
STEPS = (
    "corruptions",
    "attacks",
    "calibration",
    "exemplars",
    "subgroups",
    "geometry",
    "attributions",
    "spectrum",
    "sharpness",
    "curvature",
    "landscape",
)
#: what an analysis is computed over (see :class:`Target`)
SCOPES = ("run", "pair", "family", "comparison", "runs")
#: the plan dimensions of a comparison analysis: the evaluation splits and the dataset's group columns
DIMENSIONS = ("split", "group")
MODES = ("full", "quick")

_SAME = object()


@dataclass(frozen=True)
class Setting:
    """One setting of an analysis: its ``full`` value (the default), its ``quick`` value (small studies,
    tests, the demo; the full value when not given), and what it means. A ``plan`` setting is read by
    the plan (which items to make, e.g. the evaluation splits) and not passed to the function."""

    full: Any
    quick: Any = _SAME
    doc: str = ""
    plan: bool = False

    def value(self, mode: str) -> Any:
        return self.full if mode == "full" or self.quick is _SAME else self.quick


@dataclass(frozen=True)
class Show:
    """Where an analysis is shown: the view ``tab`` (as the app names it), the figure's ``title``, the
    ``chart`` drawing its frame (a pure ``DataFrame -> alt.Chart`` from :mod:`pruneviz.charts`), the
    choices the figure depends on (default: the focus of the scope), and whether the audit ``report``
    carries it."""

    tab: str
    title: str
    chart: Callable[[pd.DataFrame], Any]
    depends: tuple[str, ...] = ()
    report: bool = False


@dataclass(frozen=True)
class Target:
    """What one computation of an analysis covers, by scope: ``runs`` (one run; a dense parent and its
    child; a parent and all its children; the pruned runs of a comparison; a batch of runs), the
    ``dense`` population of a comparison, the evaluation ``split`` and the ``group`` column (or a tuple
    of columns, their intersection) of a comparison, and ``extra`` keywords a planner adds (e.g. the
    corruptions of a batch)."""

    runs: tuple[str, ...]
    dense: tuple[str, ...] = ()
    split: str | None = None
    group: str | tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)


Planner = Callable[[Any, pd.DataFrame, str, "StudySettings"], list[Target]]


@dataclass(frozen=True)
class Analysis:
    """One zoo-bound analysis, declared once (see the module docstring).

    ``function`` is called by scope: ``run`` → ``function(zoo, run, **params)``; ``pair`` →
    ``function(zoo, parent, child, **params)``; ``family`` → ``function(zoo, [parent, *children],
    **params)``; ``comparison`` → ``function(zoo, dense=[...], pruned=[...], split=..., **params)`` (and
    ``group=...`` when ``over`` has ``"group"``); ``runs`` → ``function(zoo, runs=[...], **params)``.
    ``params`` are the non-plan :class:`Setting` values of the study's mode. A ``planner`` replaces the
    default plan of the scope (one target per run, pair, family or comparison × split × group)."""

    name: str
    step: str
    scope: str
    function: Callable[..., pd.DataFrame]
    settings: Mapping[str, Setting] = field(default_factory=dict, hash=False)
    keys: tuple[str, ...] = ()
    doc: str = ""
    modalities: tuple[str, ...] = MODALITIES
    over: tuple[str, ...] = ()
    planner: Planner | None = None
    show: Show | None = None
    #: why the analysis is limited to ``modalities`` (shown in place of its figures elsewhere)
    limits: str = ""

    def applies_to(self, modality: str) -> bool:
        """Whether the analysis is defined for data of ``modality``."""
        return modality in self.modalities

    def not_applicable(self, modality: str) -> str:
        """The sentence said in place of the analysis for data of ``modality`` it does not apply to."""
        kinds = ", ".join(self.modalities)
        why = f" {self.limits}" if self.limits else ""
        title = self.name.replace("_", " ").capitalize()
        return f"{title} does not apply to {modality} data (only to {kinds}).{why}"

    def call(self, zoo: Any, target: Target, params: Mapping[str, Any]) -> pd.DataFrame:
        """Compute (or read from the zoo's cache) this analysis over ``target`` with ``params``."""
        kw = {**params, **target.extra}
        if self.scope == "run":
            (run,) = target.runs
            return self.function(zoo, run, **kw)
        if self.scope == "pair":
            parent, child = target.runs
            return self.function(zoo, parent, child, **kw)
        if self.scope == "family":
            return self.function(zoo, list(target.runs), **kw)
        if self.scope == "comparison":
            if "group" in self.over:
                kw["group"] = target.group
            dense, pruned = list(target.dense), list(target.runs) or None  # no runs: every comparison
            return self.function(zoo, dense=dense, pruned=pruned, split=target.split, **kw)
        return self.function(zoo, runs=list(target.runs), **kw)


_REGISTRY: dict[str, Analysis] = {}


def register(entry: Analysis, *, replace: bool = False) -> Analysis:
    """Add ``entry`` to the registry (``replace=True`` to redeclare a name); returns it.

    >>> register(analysis("cka"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pruneviz.exceptions.ValidationError: The 'entry' parameter of register must be ...
    """
    where = "register"
    if not isinstance(entry, Analysis):
        fail("entry", where, "an Analysis", type(entry).__name__)
    if not entry.name or not entry.name.replace("_", "").isalnum():
        fail("entry.name", where, "a plain name (letters, digits, underscores)", entry.name)
    if entry.name in _REGISTRY and not replace:
        fail(
            "entry",
            where,
            "an analysis with a new name",
            entry.name,
            "pick another name, or pass replace=True to redeclare it.",
        )
    check_choice(entry.step, "entry.step", where, STEPS)
    check_choice(entry.scope, "entry.scope", where, SCOPES)
    for dim in entry.over:
        check_choice(dim, "entry.over", where, DIMENSIONS)
    if entry.over and entry.scope != "comparison":
        fail("entry.over", where, "empty unless the scope is 'comparison'", entry.over)
    for modality in entry.modalities:
        check_choice(modality, "entry.modalities", where, MODALITIES)
    if not callable(entry.function):
        fail("entry.function", where, "a callable", type(entry.function).__name__)
    for key, setting in entry.settings.items():
        if not isinstance(setting, Setting):
            fail(f"entry.settings[{key!r}]", where, "a Setting(full, quick)", type(setting).__name__)
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> Analysis:
    """Remove the analysis ``name`` from the registry and return it (for tests of a temporary one)."""
    check_choice(name, "name", "unregister", _REGISTRY)
    return _REGISTRY.pop(name)


def analysis(name: str) -> Analysis:
    """The registered analysis called ``name``."""
    return _REGISTRY[check_choice(name, "name", "analysis", _REGISTRY)]


def analyses(*, step: str | None = None, tab: str | None = None) -> list[Analysis]:
    """The registered analyses (of one ``step``, or shown on one ``tab``), in step order."""
    found = [
        a
        for a in _REGISTRY.values()
        if (step is None or a.step == step) and (tab is None or (a.show is not None and a.show.tab == tab))
    ]
    return sorted(found, key=lambda a: STEPS.index(a.step))


@dataclass(frozen=True)
class StudySettings:
    """How much work a study does: the ``mode`` (``"full"`` or ``"quick"``) picks each setting's value;
    ``overrides`` change single settings, by analysis (``{"cka": {"samples": 256}}``).

    The zoo records the settings it was analysed with, and the views read them back, so a view asks for
    exactly the frames the study stored.

    >>> s = StudySettings.quick(overrides={"subgroups": {"bootstrap": 500}})
    >>> s.params(analysis("subgroups"))["bootstrap"], StudySettings.from_json(s.to_json()) == s
    (500, True)
    """

    mode: str = "full"
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", "StudySettings", MODES)
        if not isinstance(self.overrides, Mapping):
            fail("overrides", "StudySettings", "a mapping of analysis name to settings", self.overrides)
        for name, values in self.overrides.items():
            entry = analysis(name)
            if not isinstance(values, Mapping):
                fail(f"overrides[{name!r}]", "StudySettings", "a mapping of setting name to value", values)
            for key in values:
                check_choice(key, f"overrides[{name!r}]", "StudySettings", entry.settings)

    @classmethod
    def full(cls, *, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> StudySettings:
        return cls("full", dict(overrides or {}))

    @classmethod
    def quick(cls, *, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> StudySettings:
        return cls("quick", dict(overrides or {}))

    def value(self, entry: Analysis, name: str) -> Any:
        """The value of one setting of ``entry`` in these settings."""
        given = self.overrides.get(entry.name, {})
        return given[name] if name in given else entry.settings[name].value(self.mode)

    def params(self, entry: Analysis) -> dict[str, Any]:
        """The keyword arguments ``entry``'s function gets: every non-plan setting's value."""
        return {k: _plain(self.value(entry, k)) for k, s in entry.settings.items() if not s.plan}

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "overrides": self.overrides}, sort_keys=True, default=list)

    @classmethod
    def from_json(cls, text: str) -> StudySettings:
        raw = json.loads(text)
        return cls(raw["mode"], raw.get("overrides", {}))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StudySettings) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())


def _plain(value: Any) -> Any:
    """Settings are keyword arguments and parts of cache keys: tuples become lists, as JSON has them."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
