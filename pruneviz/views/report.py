"""The audit report: one standalone HTML page (scripts inline, opens without a server or network) on
who pays for compression — compression-identified exemplars, subgroup impact with intervals and its
permutation null, and robustness to corruptions and attacks — for every method and sparsity of a zoo.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from pruneviz._io import write_atomic
from pruneviz._version import __version__
from pruneviz.exceptions import NotApplicableError
from pruneviz.views.state import StudyState
from pruneviz.zoo.store import Zoo


def _table(frame: pd.DataFrame, caption: str) -> str:
    body = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0, classes="t")
    return f"<h3>{html.escape(caption)}</h3>{body}"


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
    """(title, chart) of every registered analysis whose :class:`~pruneviz.study.Show` asks to be in
    the report, drawn for the pruned run in focus."""
    from pruneviz.study import analyses

    return [
        (a.show.title, _or_note(lambda a=a: a.show.chart(state.frame(a.name))))
        for a in analyses()
        if a.show is not None and a.show.report
    ]


def _or_note(draw: Any) -> Any:
    """The chart ``draw()`` makes, or the sentence saying why the analysis does not apply here."""
    try:
        return draw()
    except NotApplicableError as exc:
        return str(exc)


def write_audit_report(
    zoo: Zoo | str | os.PathLike[str], out: str | os.PathLike[str], **choices: Any
) -> Path:
    """Write the audit report of ``zoo`` to ``out`` (HTML) atomically and return its path.

    ``choices`` set the :class:`StudyState` (e.g. ``group="ink"``, ``method="lamp"``, ``sparsity=0.9``):
    the tables cover every method and sparsity, the figures the pruned run in focus.
    """
    from pruneviz import charts as C
    from pruneviz.views import _gallery

    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    state = StudyState(zoo, **choices)
    state._check()
    tables = audit_tables(state)
    scores = state.exemplars()
    figures: list[Any] = [
        C.subgroup_chart(state.subgroups()),
        _or_note(lambda: _gallery(scores, state)),
        _or_note(lambda: C.corruption_chart(state.corruptions())),
        _or_note(lambda: C.attack_chart(state.attacks())),
    ]
    sections = registered_sections(state)
    figures += [chart for _, chart in sections]
    conf = {
        "zoo": str(zoo.path),
        "pruneviz": __version__,
        "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **{k: getattr(state, k) for k in ("dataset", "parent", "method", "sparsity", "group")},
    }
    head = (
        f"<h1>pruneviz audit: {html.escape(zoo.path.name)}</h1>"
        f"<p>{len(state.runs)} runs of {html.escape(str(state.dataset))}. Figures: dense parent "
        f"{html.escape(str(state.parent))} against {html.escape(str(state.method))} at sparsity "
        f"{state.sparsity}; subgroup attribute {html.escape(str(state.group))}.</p>"
        + _table(
            tables["disparity"],
            f"Disparity Ψ across '{state.group}' groups (bootstrap interval, permutation p)",
        )
        + _table(tables["exemplars"], "Compression-identified exemplars (modal definition)")
    )
    doc = figures[0].to_html(inline=True)  # carries the Vega libraries inline: opens offline
    titles = {4 + i: title for i, (title, _) in enumerate(sections)}  # after the four figures above
    extra = "".join(
        (f"<h3>{html.escape(titles[i])}</h3>" if i in titles else "")
        + (
            f'<p class="na">{html.escape(fig)}</p>'
            if isinstance(fig, str)
            else f'<div id="fig{i}"></div><script>vegaEmbed("#fig{i}", {json.dumps(fig.to_dict())})'
            f".catch(console.error);</script>"
        )
        for i, fig in enumerate(figures[1:], start=1)
    )
    style = (
        "<style>body{font-family:sans-serif;margin:2em} table.t td,table.t th{padding:2px 8px} "
        "p.na{color:#555;font-style:italic}</style>"
    )
    settings = html.escape(json.dumps(conf, indent=2, default=str))
    foot = f"<details><summary>configuration</summary><pre>{settings}</pre></details>"
    # the page's own <body> follows its </head>; the inline libraries mention "<body>" in strings too
    start = doc.index("<body>", doc.rindex("</head>")) + len("<body>")
    end = doc.rindex("</body>")
    doc = doc[:start] + style + head + doc[start:end] + extra + foot + doc[end:]
    path = Path(out)
    write_atomic(path, lambda tmp: Path(tmp).write_text(doc, encoding="utf-8"))
    return path
