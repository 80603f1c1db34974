"""The audit report: one standalone page (scripts inline, opens without a server or network; printable
to PDF) on who pays for compression, built from a Jinja2 template (``views/templates/audit.html.j2``).

The page leads with a summary table (one row per pruning decision: method × target sparsity), then one
section per decision — what was pruned, the overall cost, plain-language findings generated from the
numbers, and per-group tables with intervals and permutation p-values for every metric the study
computed — then the figures of the decision in focus (subgroup impact, exemplars, corruptions, attacks and
every registered analysis that asks to be reported; where one does not apply to the data, a sentence says
why), the exemplars as rows for tabular and text data, and the settings and seeds that produced it all.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pruneviz._io import write_atomic
from pruneviz._validation import fail
from pruneviz._version import __version__
from pruneviz._vocabulary import METRIC_LABELS
from pruneviz.exceptions import DataError, MissingDependencyError, NotApplicableError
from pruneviz.views.state import StudyState, sample_texts
from pruneviz.zoo.store import Zoo

#: statistics of a metric per group, in the order the tables show them
_PER_GROUP = ("dense", "pruned", "delta", "psi")


def audit_tables(state: StudyState) -> dict[str, pd.DataFrame]:
    """The report's tables: disparity Ψ per method × sparsity, exemplar counts (the study's cached
    results, with the zoo's study settings)."""
    impact = state.frame("subgroups")
    disparity = impact[(impact["group"] == "(all)") & (impact["statistic"] == "disparity")]
    disparity = disparity[
        ["method", "structure", "sparsity_target", "value", "ci_low", "ci_high", "p_value"]
    ].rename(columns={"value": "disparity Ψ"})
    summary = state.frame("exemplar_summary")
    counts = (
        summary[(summary["attribute"] == "(all)") & summary["metric"].isin(["n_exemplars", "exemplar_rate"])]
        .pivot_table(index=["method", "structure", "sparsity_target"], columns="metric", values="value")
        .reset_index()
    )
    return {"disparity": disparity.reset_index(drop=True), "exemplars": counts}


def registered_sections(state: StudyState) -> list[tuple[str, Any]]:
    """(title, chart or the sentence saying why it does not apply) of every registered analysis whose
    :class:`~pruneviz.study.Show` asks to be in the report, drawn for the pruned run in focus."""
    from pruneviz.study import analyses

    def section(entry: Any) -> tuple[str, Any]:
        return entry.show.title, _or_note(lambda: entry.show.chart(state.frame(entry.name)))

    return [section(a) for a in analyses() if a.show is not None and a.show.report]


def _metric_of(frame: pd.DataFrame, metric: str | None) -> str | None:
    return metric if metric in set(frame["metric"].astype(str)) else None


def _or_gaps(draw: Callable[[], Any]) -> Any:
    """The gap chart, or a sentence when the study computed no between-group gaps."""
    try:
        return draw()
    except NotApplicableError as exc:
        return str(exc)
    except DataError:
        return "The study computed no between-group gaps (add e.g. equalized_odds_difference to its metrics)."


def _or_note(draw: Callable[[], Any]) -> Any:
    """The chart ``draw()`` makes, or the sentence saying why the analysis does not apply here."""
    try:
        return draw()
    except NotApplicableError as exc:
        return str(exc)


# -- numbers into words ------------------------------------------------------------------------------
def _pct(v: float) -> str:
    return "undefined" if v is None or not np.isfinite(v) else f"{100 * v:.1f} %"


def _pts(v: float) -> str:
    """A difference of rates in percentage points, signed."""
    return "undefined" if v is None or not np.isfinite(v) else f"{100 * v:+.1f} pts"


def _num(v: float) -> str:
    return "undefined" if v is None or not np.isfinite(v) else f"{v:.3g}"


def _interval(row: Mapping[str, Any], fmt: Callable[[float], str] = _pts) -> str:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return fmt(row["value"])
    return f"{fmt(row['value'])} ({fmt(lo)} to {fmt(hi)})"


def _p(v: Any) -> str:
    return "" if v is None or pd.isna(v) else f"{float(v):.3g}"


def _decision_title(method: str, structure: str, sparsity: float, schedules: list[str]) -> str:
    how = ", ".join([structure, *(s.replace("_", "-") for s in schedules if s != "one_shot")])
    return f"{method} ({how}) at sparsity {sparsity:g}"


_RATE_LABELS = METRIC_LABELS
_FRACTIONS = set(_RATE_LABELS)
_GAPS = {
    "demographic_parity_difference": (
        "selection-rate gap (demographic parity difference)",
        ("selection_rate",),
    ),
    "demographic_parity_ratio": ("selection-rate ratio (demographic parity ratio)", ("selection_rate",)),
    "equalized_odds_difference": ("equalized-odds gap (the larger of the TPR and FPR gaps)", ("tpr", "fpr")),
    "equalized_odds_ratio": ("equalized-odds ratio (the smaller of the TPR and FPR ratios)", ("tpr", "fpr")),
    "equal_opportunity_difference": ("TPR gap (equal opportunity difference)", ("tpr",)),
}


def _label(metric: str, klass: str) -> str:
    name = _RATE_LABELS.get(metric, metric.replace("_", " "))
    if klass == "macro":
        return f"{name} (macro mean over classes)"
    return f"{name} (class {klass})" if klass else name


def _parts(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (metric, class) pairs of a subgroup frame with per-group rows, in frame order."""
    rows = frame[frame["group"] != "(all)"]
    klass = (
        rows["class"].fillna("").astype(str) if "class" in rows.columns else pd.Series("", index=rows.index)
    )
    return list(dict.fromkeys(zip(rows["metric"].astype(str), klass, strict=True)))


def _part(frame: pd.DataFrame, metric: str, klass: str) -> pd.DataFrame:
    keep = frame["metric"] == metric
    if "class" in frame.columns:
        keep &= frame["class"].fillna("").astype(str) == klass
    return frame[keep]


def _metric_table(frame: pd.DataFrame, metric: str, klass: str, attribute: str) -> dict[str, Any]:
    """One metric's per-group table: n, dense, pruned, Δ and ψ with intervals, p-values, and why a value
    is undefined."""
    part = _part(frame, metric, klass)
    value_fmt = _pct if metric in _FRACTIONS else _num
    diff_fmt = _pts if metric in _FRACTIONS else _num
    rows = []
    for group, g in part[part["group"] != "(all)"].groupby("group", sort=True, observed=True):
        stats = {r["statistic"]: r for r in g.to_dict("records")}
        if not stats:
            continue
        any_row = next(iter(stats.values()))
        psi = stats.get("psi", {})
        notes = sorted({str(r.get("note") or "") for r in stats.values()} - {""})
        remark = "small group" if any_row.get("small") else ""
        rows.append(
            {
                "small": bool(any_row.get("small")),
                "cells": [
                    str(group),
                    int(any_row["n"]) if pd.notna(any_row.get("n")) else "",
                    _interval(stats["dense"], value_fmt) if "dense" in stats else "",
                    _interval(stats["pruned"], value_fmt) if "pruned" in stats else "",
                    _interval(stats["delta"], diff_fmt) if "delta" in stats else "",
                    _interval(psi, diff_fmt) if psi else "",
                    _p(psi.get("p_adjusted")),
                    "; ".join([x for x in (remark, *notes) if x]),
                ],
            }
        )
    return {
        "caption": f"{_label(metric, klass)} by {attribute} (95 % bootstrap intervals; "
        "Δ = dense − pruned, ψ = Δ − overall Δ, p: permutation test, Holm-adjusted)",
        "columns": [attribute, "n", "dense", "pruned", "Δ", "ψ", "p (adj.)", ""],
        "rows": rows,
    }


def _gap_table(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The between-group gaps of one decision: dense, pruned and the change, with intervals and p."""
    gaps = frame[frame["metric"].isin(list(_GAPS)) & (frame["group"] == "(all)")]
    if gaps.empty:
        return None
    rows = []
    for (metric, klass), g in gaps.groupby(["metric", gaps["class"].fillna("").astype(str)], sort=False):
        stats = {r["statistic"]: r for r in g.to_dict("records")}
        rows.append(
            {
                "small": False,
                "cells": [
                    _GAPS[metric][0] + (f", class {klass}" if klass not in ("", "1") else ""),
                    _interval(stats["dense"], _num),
                    _p(stats["dense"].get("p_value")),
                    _interval(stats["pruned"], _num),
                    _p(stats["pruned"].get("p_value")),
                    _interval(stats["delta"], _num),
                ],
            }
        )
    return {
        "caption": "Between-group gaps over the groups that are not small (fairlearn's definitions; 95 % "
        "bootstrap intervals; p: permutation test against groups unrelated to the outputs; change = dense − "
        "pruned, above 0 when pruning narrowed the gap)",
        "columns": ["gap", "dense", "p", "pruned", "p", "change"],
        "rows": rows,
    }


def _extremes(frame: pd.DataFrame, metric: str, klass: str, statistic: str) -> tuple[str, str, float] | None:
    """The groups (not small) with the highest and lowest value of a rate, and the gap between them."""
    part = _part(frame, metric, klass)
    rows = part[(part["group"] != "(all)") & (part["statistic"] == statistic) & ~part["small"].astype(bool)]
    rows = rows[rows["value"].notna()]
    if len(rows) < 2:
        return None
    hi, lo = rows.loc[rows["value"].idxmax()], rows.loc[rows["value"].idxmin()]
    return str(hi["group"]), str(lo["group"]), float(hi["value"] - lo["value"])


def _gap_findings(frame: pd.DataFrame, attribute: str) -> list[str]:
    """Sentences on the between-group gaps: which groups, dense → pruned, with the interval and p."""
    out = []
    gaps = frame[frame["metric"].isin(list(_GAPS)) & (frame["group"] == "(all)")]
    for (metric, klass), g in gaps.groupby(["metric", gaps["class"].fillna("").astype(str)], sort=False):
        stats = {r["statistic"]: r for r in g.to_dict("records")}
        if not {"dense", "pruned"} <= set(stats):
            continue
        name, rates = _GAPS[metric]
        d, p = stats["dense"], stats["pruned"]
        which = []
        for rate in rates:
            hi_lo = _extremes(frame, rate, klass if klass != "macro" else "macro", "pruned")
            dense_gap = _extremes(frame, rate, klass, "dense")
            if hi_lo is not None and dense_gap is not None and klass != "macro":
                which.append(
                    f"{_RATE_LABELS[rate]} gap between {attribute} = {hi_lo[0]} and {hi_lo[1]}: "
                    f"{dense_gap[2]:.2f} → {hi_lo[2]:.2f}"
                )
        verdict = (
            "beyond what groups unrelated to the outputs show"
            if pd.notna(p.get("p_value")) and float(p["p_value"]) <= 0.05
            else "within what groups unrelated to the outputs show"
        )
        cls = f" for class {klass}" if klass not in ("", "1") else ""
        out.append(
            f"The {name}{cls} across {attribute}: {_num(d['value'])} dense → {_num(p['value'])} pruned "
            f"(95 % CI of the pruned gap {_num(p['ci_low'])} to {_num(p['ci_high'])}; "
            f"p = {_p(p.get('p_value'))}, {verdict})" + (f"; {'; '.join(which)}." if which else ".")
        )
    return out


def _findings(frame: pd.DataFrame, metric: str, klass: str, attribute: str) -> list[str]:
    """Plain-language sentences from one decision's numbers for one metric."""
    part = _part(frame, metric, klass)
    name = _label(metric, klass)
    fraction = metric in _FRACTIONS
    value_fmt, diff_fmt = (_pct, _pts) if fraction else (_num, _num)
    out = []
    overall = {r["statistic"]: r for r in part[part["group"] == "(all)"].to_dict("records")}
    if "dense" in overall and "pruned" in overall:
        d, p = overall["dense"]["value"], overall["pruned"]["value"]
        out.append(
            f"Overall {name}: {value_fmt(d)} dense → {value_fmt(p)} pruned (a change of {diff_fmt(p - d)})."
        )
    groups = part[(part["group"] != "(all)") & (part["statistic"] == "psi")]
    big = groups[~groups["small"].astype(bool)]
    if not big.empty and big["value"].notna().any():
        worst = big.loc[big["value"].idxmax()].to_dict()
        delta = part[(part["group"] == worst["group"]) & (part["statistic"] == "delta")]
        lost = _interval(delta.iloc[0].to_dict(), diff_fmt) if not delta.empty else diff_fmt(np.nan)
        verdict = (
            "unlikely to be noise (permutation test)"
            if bool(worst.get("significant") is True)
            else "within what random groups of this size show (permutation test)"
        )
        out.append(
            f"{attribute} = {worst['group']} loses most {name}: Δ (dense − pruned) = {lost}, "
            f"{diff_fmt(worst['value'])} beyond the overall loss; {verdict}, "
            f"adjusted p = {_p(worst.get('p_adjusted'))}."
        )
    undefined = groups[groups["value"].isna()]
    for row in undefined.to_dict("records"):
        out.append(f"{attribute} = {row['group']}: {row.get('note') or name + ' is undefined'}.")
    disparity = part[(part["group"] == "(all)") & (part["statistic"] == "disparity")]
    if not disparity.empty:
        row = disparity.iloc[0].to_dict()
        out.append(
            f"Disparity Ψ in {name} Δ across {attribute} groups (largest minus smallest loss, small groups "
            f"left out): {_interval(row, diff_fmt)}, p = {_p(row.get('p_value'))}."
        )
    small = sorted({str(g) for g in part.loc[part["small"].astype(bool), "group"]} - {"(all)"})
    if small:
        out.append(
            f"Too few test samples to judge {', '.join(small)} (flagged, left out of Ψ and the gaps): read "
            "their rows with care."
        )
    return out


def _intersections(state: StudyState) -> list[dict[str, Any]]:
    """Per-cell tables of the intersections the study audited, for the decision in focus."""
    out = []
    for group in state.param.group.objects:
        if group == state.group or " × " not in str(group) or group in state.data().groups.columns:
            continue
        frame = state.snapshot(group=group).frame("subgroups")
        focus = frame[
            (frame["method"] == state.method)
            & np.isclose(frame["sparsity_target"].astype(float), float(state.sparsity))
        ]
        tables = [
            _metric_table(focus, m, k, str(group))
            for m, k in _parts(focus)
            if m in ("accuracy", "tpr", "fpr", "selection_rate") and k in ("", "1", "macro")
        ]
        out.append({"attribute": str(group), "tables": tables, "findings": _gap_findings(focus, str(group))})
    return out


@functools.lru_cache(maxsize=1)
def _vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed scripts Altair inlines, so the page draws offline."""
    import altair as alt

    doc = alt.Chart(pd.DataFrame({"x": [0]})).mark_point().encode(x="x").to_html(inline=True)
    head = doc[: doc.rindex("</head>")]  # the bundle itself mentions "</head>" in strings
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", head, flags=re.S)
    return "\n".join(scripts).replace("</script", "<\\/script")


def _spec(chart: Any) -> str:
    from pruneviz.charts.export import chart_spec

    return json.dumps(chart_spec(chart)).replace("</", "<\\/")


def audit_context(state: StudyState) -> dict[str, Any]:
    """Everything the audit template shows, as plain values (tested without a browser)."""
    from pruneviz import charts as C
    from pruneviz.views import DRAWN, _gallery

    state._check()
    zoo = state.zoo
    data = state.data()
    impact = state.frame("subgroups")
    summary = state.frame("exemplar_summary")
    attribute = str(state.group)
    runs = state.runs
    decisions = []
    from pruneviz.study.populations import settings_digest

    records = {r: zoo.run(r) for r in runs.loc[runs["kind"] != "dense", "run"]}
    digests = {r: settings_digest(rec.schedule) for r, rec in records.items()}
    keys = ["method", "structure", "sparsity_target", "settings"]
    for (method, structure, sparsity, digest), frame in impact.groupby(keys, sort=True):
        parts = _parts(frame)
        metrics = [m for m, _ in parts]
        main_metric = "accuracy" if "accuracy" in metrics else metrics[0]
        overall = {
            r["statistic"]: r
            for r in frame[(frame["group"] == "(all)") & (frame["metric"] == main_metric)].to_dict("records")
        }
        disparity = overall.get("disparity", {})
        ex = summary[
            (summary["method"] == method)
            & np.isclose(summary["sparsity_target"].astype(float), float(sparsity))
            & (summary["settings"] == digest)
            & (summary["attribute"] == "(all)")
            & (summary["metric"] == "n_exemplars")
        ]
        children = runs[runs["run"].map(digests) == digest]
        children = children[
            (children["method"] == method) & np.isclose(children["sparsity_target"], sparsity)
        ]
        schedules = sorted({str(records[r].schedule.get("schedule", "one_shot")) for r in children["run"]})
        achieved = children["sparsity"].mean() if not children.empty else np.nan
        d = overall.get("dense", {}).get("value", np.nan)
        p = overall.get("pruned", {}).get("value", np.nan)
        decisions.append(
            {
                "title": _decision_title(method, structure, float(sparsity), schedules),
                "what": (
                    f"{len(children)} pruned {'model' if len(children) == 1 else 'models'} by {method} "
                    f"({structure}, {', '.join(schedules)}), target sparsity {float(sparsity):g}, achieved "
                    f"{_num(achieved)}; each compared with its dense parent on the test split."
                ),
                "dense": _pct(d),
                "pruned": _pct(p),
                "change": _pts(p - d),
                "disparity": _interval(disparity) if disparity else "",
                "disparity_p": _p(disparity.get("p_value")) if disparity else "",
                "exemplars": int(ex["value"].sum()) if not ex.empty else "",
                "findings": [
                    *(s for m, k in parts for s in _findings(frame, m, k, attribute)),
                    *_gap_findings(frame, attribute),
                ],
                "tables": [_metric_table(frame, m, k, attribute) for m, k in parts],
                "gaps": _gap_table(frame),
            }
        )
    small = sorted({str(g) for g in impact.loc[impact["small"].astype(bool), "group"]} - {"(all)"})
    caveats = (
        f"Small groups (fewer test samples than the study's threshold): {', '.join(small)}. Their rows are "
        "shown in grey and left out of Ψ."
        if small
        else ""
    )
    scores = state.exemplars()
    impact_focus = state.subgroups()
    figures: list[tuple[str, Any]] = [
        ("Subgroup impact", C.subgroup_chart(impact_focus, metric=_metric_of(impact_focus, state.metric))),
        ("Between-group gaps", _or_gaps(lambda: C.fairness_gap_chart(state.subgroup_gaps()))),
        ("Exemplars", _or_note(lambda: _gallery(scores, state))),
        ("Corruptions", _or_note(lambda: C.corruption_chart(state.corruptions()))),
        ("Attacks", _or_note(lambda: C.attack_chart(state.attacks()))),
        *registered_sections(state),
    ]
    exemplar_rows = []
    if data.info.modality not in DRAWN and not scores.empty:
        top = scores.sort_values("rank").head(10)
        index = pd.Index(data.sample_id).get_indexer(top["sample_id"])
        names = list(data.info.class_names)
        texts = sample_texts(data, index)
        for r, text in zip(top.to_dict("records"), texts, strict=True):
            exemplar_rows.append(
                {
                    "rank": int(r["rank"]),
                    "sample_id": int(r["sample_id"]),
                    "label": names[int(r["label"])],
                    "dense": names[int(r["dense_modal"])],
                    "pruned": names[int(r["pruned_modal"])],
                    "text": text,
                }
            )
    dense = runs[runs["kind"] == "dense"]
    conf = {
        "zoo": str(zoo.path),
        "pruneviz": __version__,
        **{k: getattr(state, k) for k in ("dataset", "parent", "method", "sparsity", "group")},
        "study_settings": json.loads(state.settings.to_json()),
        "dense_runs": {r: int(s) for r, s in zip(dense["run"], dense["seed"], strict=True)},
    }
    return {
        "zoo_name": zoo.path.name,
        "runs": len(runs),
        "dataset": str(state.dataset),
        "modality": data.info.modality,
        "n_dense": len(dense),
        "attribute": attribute,
        "attribute_kind": "the class label" if attribute == "class" else "",
        "method": str(state.method),
        "sparsity": state.sparsity,
        "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "version": __version__,
        "decisions": decisions,
        "caveats": caveats,
        "figures": [
            {
                "title": t,
                "note": f if isinstance(f, str) else None,
                "spec": None if isinstance(f, str) else _spec(f),
            }
            for t, f in figures
        ],
        "exemplar_rows": exemplar_rows,
        "intersections": _intersections(state),
        "seeds": ", ".join(f"{r} (seed {s})" for r, s in conf["dense_runs"].items()),
        "study_mode": state.settings.mode,
        "configuration": json.dumps(conf, indent=2, default=str),
    }


def render_audit(state: StudyState) -> str:
    """The audit page of ``state`` as HTML text."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("pruneviz.views", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("audit.html.j2").render(**audit_context(state), vega_bundle=_vega_bundle())


def write_audit_report(
    zoo: Zoo | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    metrics: Sequence[Any] | None = None,
    **choices: Any,
) -> Path:
    """Write the audit report of ``zoo`` to ``out`` atomically and return its path: HTML, or a PDF when
    ``out`` ends in ``.pdf`` (printed by headless Chromium, see :func:`print_pdf`).

    ``choices`` set the :class:`StudyState` (e.g. ``group="sex"``, ``method="lamp"``, ``sparsity=0.9``):
    the tables cover every method and sparsity, the figures the pruned run in focus. ``metrics``
    replaces the study's subgroup metrics (names of :func:`~pruneviz.analysis.disparate_impact`, or
    functions ``metric(y_true, y_pred, y_prob) -> float`` of your own), computed and cached as needed.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    state = StudyState(zoo, audit_metrics=metrics, **choices)
    page = render_audit(state)
    path = Path(out)
    if path.suffix.lower() == ".pdf":
        with tempfile.TemporaryDirectory(prefix="pruneviz-audit-") as tmp:
            html_path = Path(tmp) / "audit.html"
            html_path.write_text(page, encoding="utf-8")
            return print_pdf(html_path, path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return path


def chromium_binary() -> str | None:
    """Debian's ``chromium`` (or Chrome) on the PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html: str | os.PathLike[str], out: str | os.PathLike[str], *, timeout: float = 120.0) -> Path:
    """Print the page ``html`` to the PDF ``out`` with headless Chromium (its figures drawn first);
    atomic. Needs a ``chromium`` binary (Debian: ``apt-get install chromium``)."""
    binary = chromium_binary()
    if binary is None:
        raise MissingDependencyError(
            "Printing the audit report to PDF needs Chromium. Fix: install it (Debian: "
            "`apt-get install chromium`), or write the report as .html and print it from a browser."
        )
    source = Path(html).resolve()
    path = Path(out)

    def run(tmp: Path) -> None:
        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-pdf-header-footer",
            "--virtual-time-budget=20000",
            "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={tmp}",
            source.as_uri(),
        ]
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0 or not Path(tmp).exists() or Path(tmp).stat().st_size == 0:
            fail(
                "out",
                "print_pdf",
                "a PDF printed by Chromium",
                str(path),
                got=f"exit code {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}",
                fix="write the report as .html and print it from a browser.",
            )

    write_atomic(path, run)
    return path
