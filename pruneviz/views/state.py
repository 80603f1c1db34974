"""What a person looking at a zoo has chosen, and the tidy frames every view draws from it.

:class:`StudyState` holds the choices as ``param`` parameters (dataset, dense parent, methods,
sparsities, the pruned run in focus, the subgroup attribute, the evaluation split, the selected sample)
and computes the frames through the zoo's cached analyses. It imports no Panel, so it is tested without
a browser; the Panel views (:mod:`pruneviz.views`) only draw what it returns.

Every problem a person can meet — an empty zoo, a zoo without pruned runs, a run whose files are gone,
runs of different datasets — is a :class:`~pruneviz.exceptions.PrunevizError` with a readable message,
which the views show in the page instead of a traceback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import param
import torch

from pruneviz.data.inputs import Inputs
from pruneviz.exceptions import NotApplicableError, ZooError
from pruneviz.zoo.store import Zoo, population_table


def _fingerprint(runs: pd.DataFrame) -> str:
    """A short digest of a zoo's runs table: figures drawn from one table are not reused for another."""
    text = runs.to_csv(index=False) if not runs.empty else ""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class StudyState(param.Parameterized):
    """The choices of one look at a zoo. Construct with ``StudyState(zoo)``; options fill themselves.

    >>> import tempfile
    >>> from pruneviz.zoo import Zoo
    >>> state = StudyState(Zoo.create(tempfile.mkdtemp() + "/z"))
    >>> state.problem
    'This zoo has no runs yet. Build some with `pruneviz zoo build` (or `pruneviz demo`).'
    """

    dataset: Any = param.Selector(objects=[], doc="The dataset whose runs are shown.")
    parent: Any = param.Selector(objects=[], doc="The dense run in focus (the parent of the pruned runs).")
    methods = param.ListSelector(default=[], objects=[], doc="Pruning methods shown in comparisons.")
    sparsities = param.ListSelector(default=[], objects=[], doc="Target sparsities shown.")
    method: Any = param.Selector(objects=[], doc="The pruning method of the pruned run in focus.")
    sparsity: Any = param.Selector(objects=[], doc="The target sparsity of the pruned run in focus.")
    group: Any = param.Selector(
        objects=[], doc="The group attribute of the subgroup audit: a column, or an intersection 'a × b'."
    )
    metric: Any = param.Selector(objects=[], doc="The metric the subgroup audit shows per group.")
    split: Any = param.Selector(default="clean", objects=["clean"], doc="The evaluation split.")
    sample_id = param.Integer(default=None, allow_None=True, doc="The selected sample (linked views).")

    def __init__(self, zoo: Zoo, *, audit_metrics: Sequence[Any] | None = None, **params: Any) -> None:
        self.zoo = zoo
        #: the subgroup audit's metrics when not the study's (e.g. with a function of your own)
        self.audit_metrics = list(audit_metrics) if audit_metrics is not None else None
        self._runs = zoo.runs()
        self._datasets: dict[str, Any] = {}
        self._settings: Any = None
        self.fingerprint = _fingerprint(self._runs)
        super().__init__()
        datasets = sorted(self._runs["dataset"].unique()) if not self._runs.empty else []
        self.param.dataset.objects = datasets
        if datasets:
            self.dataset = params.pop("dataset", datasets[0])
        self._refresh_dataset()
        self.param.update(**params)

    # -- options --------------------------------------------------------------------------------
    @param.depends("dataset", watch=True)
    def _refresh_dataset(self) -> None:
        runs = self.runs
        dense = runs.loc[runs["kind"] == "dense", "run"].tolist() if not runs.empty else []
        pruned = runs[runs["kind"] != "dense"] if not runs.empty else runs
        methods = sorted(pruned["method"].dropna().unique()) if not pruned.empty else []
        sparsities = sorted(pruned["sparsity_target"].unique()) if not pruned.empty else []
        self.param.parent.objects = dense
        self.param.methods.objects = methods
        self.param.sparsities.objects = sparsities
        self.param.method.objects = methods
        self.param.sparsity.objects = sparsities
        groups, metrics = [], []
        if self.dataset is not None:
            from pruneviz.analysis.subgroups import SUMMARY_METRICS, attribute_name, metric_name
            from pruneviz.study import analysis
            from pruneviz.study.plan import audited_groups

            entry = analysis("subgroups")
            crossed = self.settings.value(entry, "intersections")
            groups = [attribute_name(g) for g in audited_groups(self.data(), crossed)]
            chosen = (
                self.audit_metrics if self.audit_metrics is not None else self.settings.value(entry, "metric")
            )
            metrics = [metric_name(m) for m in chosen if callable(m) or m not in SUMMARY_METRICS]
        self.param.group.objects = groups
        self.param.metric.objects = metrics
        with param.parameterized.discard_events(self):
            self.parent = dense[0] if dense else None
            self.methods = list(methods)
            self.sparsities = list(sparsities)
            self.method = methods[0] if methods else None
            self.sparsity = sparsities[len(sparsities) // 2] if sparsities else None
            # the first group column the dataset declares (its first sensitive attribute), else the class
            self.group = groups[1] if len(groups) > 1 else (groups[0] if groups else None)
            self.metric = metrics[0] if metrics else None
        splits = ["clean"]
        if self.parent is not None:
            table = self.zoo.splits_of(self.parent)
            splits = sorted(
                set(table.loc[table["subset"] == "test", "split"]), key=lambda s: (s != "clean", s)
            )
        self.param.split.objects = splits
        self.split = "clean"

    CHOICES = (
        "dataset",
        "parent",
        "methods",
        "sparsities",
        "method",
        "sparsity",
        "group",
        "metric",
        "split",
        "sample_id",
    )

    def snapshot(self, **changes: Any) -> StudyState:
        """A detached copy of these choices (with ``changes``), sharing the zoo: frames computed from it
        in the background are not mixed up by choices a person makes meanwhile. Reads nothing."""
        clone = type(self).__new__(type(self))
        clone.zoo = self.zoo
        clone._runs = self._runs
        clone._datasets = self._datasets
        clone._settings = self._settings
        clone.audit_metrics = self.audit_metrics
        clone.fingerprint = self.fingerprint
        param.Parameterized.__init__(clone)
        for name in self.CHOICES:
            objects = getattr(self.param[name], "objects", None)
            if objects is not None:
                clone.param[name].objects = list(objects)
        values = {name: getattr(self, name) for name in self.CHOICES}
        with param.parameterized.discard_events(clone):
            clone.param.update({**values, **changes})
        return clone

    # -- what is shown --------------------------------------------------------------------------
    @property
    def runs(self) -> pd.DataFrame:
        """The runs of the chosen dataset."""
        if self._runs.empty or self.dataset is None:
            return self._runs
        return self._runs[self._runs["dataset"] == self.dataset].reset_index(drop=True)

    def data(self) -> Any:
        """The chosen dataset, read from the zoo once per state (and shared with its snapshots)."""
        if self.dataset not in self._datasets:
            self._datasets[self.dataset] = self.zoo.dataset(self.dataset)
        return self._datasets[self.dataset]

    @property
    def problem(self) -> str | None:
        """Why this zoo cannot be compared yet, in words (``None`` when it can)."""
        if self._runs.empty:
            return "This zoo has no runs yet. Build some with `pruneviz zoo build` (or `pruneviz demo`)."
        if not (self.runs["kind"] == "dense").any():
            return f"The dataset {self.dataset!r} has no dense runs to compare against."
        if (self.runs["kind"] == "dense").all():
            return (
                "This zoo has no pruned runs yet, so there is nothing to compare. Add some with "
                "`pruneviz zoo prune ZOO --methods lamp --sparsities 0.5 0.9`."
            )
        return None

    @property
    def child(self) -> str:
        """The pruned run in focus: the child of ``parent`` with ``method`` at ``sparsity``."""
        self._check()
        runs = self.runs
        match = runs[
            (runs["parent"] == self.parent)
            & (runs["method"] == self.method)
            & np.isclose(runs["sparsity_target"].astype(float), float(self.sparsity or 0))
        ]
        if match.empty:
            raise ZooError(
                f"The dense run {self.parent!r} has no child pruned by {self.method!r} at sparsity "
                f"{self.sparsity}. Pick another method or sparsity."
            )
        return str(match["run"].iloc[0])

    def _check(self) -> None:
        if self.parent is not None and not self._runs.empty and self.parent not in set(self.runs["run"]):
            raise ZooError(
                f"The run {self.parent!r} is not a run of the dataset {self.dataset!r}; the runs compared "
                "must share one dataset. Pick a parent from the list."
            )
        if self.problem:
            raise ZooError(self.problem)

    def selected(self) -> list[str]:
        """The pruned runs of the chosen methods and sparsities."""
        self._check()
        runs = self.runs
        keep = (
            (runs["kind"] != "dense")
            & runs["method"].isin(self.methods)
            & runs["sparsity_target"].isin(self.sparsities)
        )
        return runs.loc[keep, "run"].tolist()

    # -- frames ----------------------------------------------------------------------------------
    def overview(self) -> pd.DataFrame:
        """Test accuracy (mean and spread over seeds) per method × sparsity, dense as sparsity 0."""
        self._check()
        runs = self.runs
        shown = runs[(runs["kind"] == "dense") | runs["run"].isin(self.selected())]
        return population_table(shown)

    def run_table(self) -> pd.DataFrame:
        """One row per shown run: method, sparsity, seed, accuracy, parameters."""
        self._check()
        runs = self.runs
        shown = runs[(runs["kind"] == "dense") | runs["run"].isin(self.selected())]
        cols = [c for c in ("run", "method", "structure", "sparsity_target", "sparsity", "seed",
                            "test_accuracy", "params") if c in shown.columns]  # fmt: skip
        return shown[cols].assign(method=shown["method"].fillna("dense"))

    # -- frames of registered analyses ----------------------------------------------------------
    @property
    def settings(self) -> Any:
        """The study settings the zoo was analysed with: the views ask for exactly those results."""
        if self._settings is None:
            from pruneviz.study import settings_of

            self._settings = settings_of(self.zoo)
        return self._settings

    def frame(self, name: str, **changes: Any) -> pd.DataFrame:
        """The frame of the registered analysis ``name`` for the runs in focus, with the zoo's study
        settings (``changes`` override single settings): what the study precomputed, read from the
        cache. By scope: a run analysis of the dense parent and the pruned run in focus (one frame);
        a pair analysis of the two; a family analysis of the parent and all its children, kept to the
        two; a comparison analysis of every dense run against the chosen methods and sparsities, on the
        chosen split (and group); a runs analysis of the two runs."""
        from pruneviz.study import Target, analysis

        entry = analysis(name)
        self._check()
        modality = self.data().info.modality
        if not entry.applies_to(modality):
            raise NotApplicableError(entry.not_applicable(modality))
        params = {**self.settings.params(entry), **changes}
        if name == "subgroups" and self.audit_metrics is not None and "metric" not in changes:
            params["metric"] = self.audit_metrics
        parent = self.parent
        if entry.scope == "comparison":
            target = Target((), tuple(self._dense_population()), self.split, self.group_columns)
            frame = entry.call(self.zoo, target, params)
            keep = frame["method"].isin(self.methods) & frame["sparsity_target"].isin(self.sparsities)
            return frame[keep].reset_index(drop=True)
        child = self.child
        if entry.scope == "run":
            frames = [entry.call(self.zoo, Target((r,)), params) for r in (parent, child)]
            return pd.concat(frames, ignore_index=True)
        if entry.scope == "pair":
            return entry.call(self.zoo, Target((parent, child)), params)
        if entry.scope == "family":
            from pruneviz.study.plan import family

            frame = entry.call(self.zoo, Target(family(self.runs, parent)), params)
            return frame[frame["run"].isin([parent, child])].reset_index(drop=True)
        return entry.call(self.zoo, Target((parent, child)), params)

    def figure_frame(self, name: str) -> pd.DataFrame:
        """The frame a figure draws: this state's method ``name`` when it has one (frames shaped for a
        view), else the registered analysis ``name`` (:meth:`frame`)."""
        method = getattr(type(self), name, None)
        return method(self) if callable(method) else self.frame(name)

    def layer_sparsity(self) -> pd.DataFrame:
        table = self.frame("spectrum")
        table = table[(table["run"] == self.child) & (table["metric"] == "sparsity")]
        return table.reset_index(drop=True)

    def speedups(self) -> pd.DataFrame:
        """Per layer of the pruned run in focus, at batch sizes 1 and 64: the path
        :func:`pruneviz.kernels.sparsify` would run it with on this machine, and the measured against
        the theoretical speedup (timings measured once per machine and layer shape, then cached)."""
        from pruneviz.study import run_speedups

        return run_speedups(self.zoo, self.child, batch_sizes=(1, 64))

    def cka(self) -> pd.DataFrame:
        return self.frame("cka")

    def embedding(self) -> pd.DataFrame:
        return self.frame("embedding")

    def logit_change(self) -> pd.DataFrame:
        return self.frame("logit_change")

    def _dense_population(self) -> list[str]:
        runs = self.runs
        return runs.loc[runs["kind"] == "dense", "run"].tolist()

    def exemplars(self) -> pd.DataFrame:
        """Exemplar scores of the focus method × sparsity against the dense population."""
        return self._focus(self.frame("exemplars"))

    def exemplar_summary(self) -> pd.DataFrame:
        return self._focus(self.frame("exemplar_summary"))

    def subgroups(self) -> pd.DataFrame:
        """Disparate impact on the chosen group attribute, for the chosen methods and sparsities."""
        return self.frame("subgroups")

    def subgroup_gaps(self) -> pd.DataFrame:
        """The between-group summaries (demographic parity, equalized odds, ...) of :meth:`subgroups`;
        empty when the study computed none."""
        from pruneviz.analysis.subgroups import SUMMARY_METRICS

        table = self.subgroups()
        return table[table["metric"].isin(SUMMARY_METRICS)].reset_index(drop=True)

    def _focus(self, table: pd.DataFrame) -> pd.DataFrame:
        keep = (table["method"] == self.method) & np.isclose(
            table["sparsity_target"].astype(float), float(self.sparsity)
        )
        return table[keep].reset_index(drop=True)

    def curvature(self) -> pd.DataFrame:
        return self.frame("curvature")

    def spectrum(self) -> pd.DataFrame:
        return self.frame("spectrum")

    def landscape(self) -> pd.DataFrame:
        return self.frame("landscape")

    def corruptions(self) -> pd.DataFrame:
        return self.frame("corruptions")

    def attacks(self) -> pd.DataFrame:
        return self.frame("attacks")

    def reliability(self) -> pd.DataFrame:
        from pruneviz.study import run_reliability

        self._check()
        return pd.concat(
            [run_reliability(self.zoo, r, split=self.split) for r in (self.parent, self.child)],
            ignore_index=True,
        )

    def shown_runs(self) -> pd.DataFrame:
        """The zoo's rows (with metrics) of the dense runs and the chosen pruned runs."""
        self._check()
        runs = self.runs
        return runs[(runs["kind"] == "dense") | runs["run"].isin(self.selected())].reset_index(drop=True)

    def selected_sample(self) -> pd.DataFrame:
        """The sample picked in a linked view: one row per model in focus (``model`` dense / pruned,
        ``run``, ``sample_id``, ``label``, ``prediction``, ``confidence``, ``correct``) with the
        sample's group columns; empty when nothing is picked."""
        self._check()
        if self.sample_id is None:
            return pd.DataFrame(columns=["model", "run", "sample_id", "label", "prediction"])
        out = self.zoo.outputs([self.parent, self.child], split=self.split)
        out = out[out["sample_id"] == self.sample_id]
        if out.empty:
            raise ZooError(
                f"The sample #{self.sample_id} has no outputs on the split {self.split!r} of the runs in "
                "focus. Pick a sample from the views of this split."
            )
        out = out.drop_duplicates("run").assign(model=lambda f: f["run"].map({self.parent: "dense"}))
        out["model"] = out["model"].fillna("pruned")
        data = self.data()
        row = data.groups.iloc[int(pd.Index(data.sample_id).get_loc(self.sample_id))]
        cols = ["model", "run", "sample_id", "label", "prediction", "confidence", "correct"]
        frame = out[[c for c in cols if c in out.columns]].reset_index(drop=True)
        for name, value in row.items():
            frame[f"group_{name}"] = value
        return frame

    @property
    def group_columns(self) -> str | tuple[str, ...] | None:
        """The chosen group attribute as the subgroup analysis takes it: a column, or the tuple of
        columns of an intersection."""
        if self.group is None or self.group in self.data().groups.columns:
            return self.group
        return tuple(self.group.split(" × "))

    def selected_group(self) -> str | None:
        """The picked sample's value of the chosen group attribute (``None`` when nothing is picked);
        for an intersection, its cell (``"a × b"``)."""
        if self.sample_id is None or self.group is None:
            return None
        data = self.data()
        where = pd.Index(data.sample_id).get_indexer([self.sample_id])[0]
        if where < 0:
            return None
        columns = self.group_columns
        names = [columns] if isinstance(columns, str) else list(columns or ())
        return " × ".join(str(data.groups[c].iloc[where]) for c in names)

    def selected_exemplar(self) -> pd.DataFrame:
        """The picked sample's exemplar scores in the comparison in focus (empty when nothing is
        picked)."""
        scores = self.exemplars()
        if self.sample_id is None:
            return scores.iloc[:0]
        return scores[scores["sample_id"] == self.sample_id].reset_index(drop=True)

    def exemplar_pixels(self, sample_ids: list[int]) -> pd.DataFrame:
        """The chosen samples' inputs as a tidy pixel frame (``sample_id``, ``channel``, ``row``,
        ``col``, ``value``) for galleries; sequences and tabular rows become one-row images."""
        data = self.data()
        index = pd.Index(data.sample_id).get_indexer(sample_ids)
        x = data.x[index].numpy()
        x = x.reshape(len(x), 1, 1, -1) if x.ndim == 2 else (x[:, :, None, :] if x.ndim == 3 else x)
        n, c, h, w = x.shape
        grid = np.indices((n, c, h, w)).reshape(4, -1)
        return pd.DataFrame(
            {
                "sample_id": np.asarray(sample_ids)[grid[0]],
                "channel": grid[1],
                "row": grid[2],
                "col": grid[3],
                "value": x.reshape(-1),
            }
        )

    def exemplar_texts(self, sample_ids: list[int], *, features: int = 6) -> pd.DataFrame:
        """The chosen samples as text (``sample_id``, ``text``) for lists of text and tabular data: a
        sequence's tokens (through the dataset's vocabulary, padding left out), or a table row's
        ``features`` values furthest from zero (standardised features: the most unusual), as
        ``name=value`` pairs."""
        data = self.data()
        index = pd.Index(data.sample_id).get_indexer(sample_ids)
        return pd.DataFrame(
            {"sample_id": list(sample_ids), "text": sample_texts(data, index, features=features)}
        )

    def exemplar_attributions(
        self, sample_ids: list[int], method: str = "integrated_gradients"
    ) -> pd.DataFrame:
        """Attribution maps of the chosen samples by the dense parent and the pruned run in focus,
        with a ``model`` column (``dense``, ``pruned``): read from the study's cached maps of the
        comparison's top exemplars when they cover the samples, computed otherwise."""
        from pruneviz.analysis.attribution import attribution_maps
        from pruneviz.study import analysis

        if (
            method == "integrated_gradients"
            and self.data().info.modality in analysis("exemplar_maps").modalities
        ):
            maps = self.frame("exemplar_maps", split=self.split)
            if not maps.empty and set(sample_ids) <= set(maps["sample_id"]):
                return maps[maps["sample_id"].isin(sample_ids)].drop(columns="rank").reset_index(drop=True)
        data = self.data()
        part = data.take(pd.Index(data.sample_id).get_indexer(sample_ids))
        frames = []
        for label, run in (("dense", self.parent), ("pruned", self.child)):
            maps = attribution_maps(self.zoo.load_model(run), part, sample_ids=sample_ids, method=method)
            frames.append(maps.assign(model=label))
        return pd.concat(frames, ignore_index=True)


def sample_texts(data: Any, index: np.ndarray, *, features: int = 6) -> list[str]:
    """How the samples at positions ``index`` of ``data`` read as text (see
    :meth:`StudyState.exemplar_texts`)."""
    info = data.info
    if info.modality == "text":
        x = data.x[torch.as_tensor(index)]
        rows = x[x.primary] if isinstance(x, Inputs) else x
        mask = x.token_mask() if isinstance(x, Inputs) else None
        keep = mask if mask is not None else torch.ones_like(rows, dtype=torch.bool)
        vocab = info.vocabulary
        out = []
        for r, k in zip(rows.tolist(), keep.tolist(), strict=True):
            real = [t for t, real in zip(r, k, strict=True) if real]
            out.append(" ".join(vocab[t] if vocab and 0 <= t < len(vocab) else str(t) for t in real))
        return out
    flat = data.x[torch.as_tensor(index)].reshape(len(index), -1).numpy()
    names = list(info.feature_names) if info.feature_names else [f"x{j}" for j in range(flat.shape[1])]
    out = []
    for row in flat:
        top = np.argsort(-np.abs(row), kind="stable")[:features]
        out.append(", ".join(f"{names[j]}={row[j]:.3g}" for j in top))
    return out
