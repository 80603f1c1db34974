"""The exemplar gallery: the samples pruning changed most, as small images with their attributions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import pandas as pd

from pruneviz._validation import check_int, data_fail, fail
from pruneviz.charts._base import (
    MAX_ROWS,
    check_frame,
    check_max_points,
    count,
    finish,
    one_comparison,
    sample_selection,
    title,
)

__all__ = ["exemplar_gallery", "exemplar_list"]

INPUT = "input"


def exemplar_gallery(
    pixels: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    attributions: pd.DataFrame | None = None,
    top: int = 12,
    columns: int = 6,
    class_names: Sequence[str] | None = None,
    selected: int | None = None,
    max_points: int = MAX_ROWS,
) -> alt.FacetChart:
    """A grid of the top exemplars (Hooker et al. 2020: the samples on which pruning changes the
    models' answers most) as small images, each captioned with its id, label and the dense and pruned
    populations' modal predictions; with ``attributions``, each sample is a row with its image and one
    attribution map per method beside it.

    Parameters
    ----------
    pixels : DataFrame
        The images of the samples to show, tidy: ``sample_id``, ``row``, ``col``, ``value`` (and
        ``channel`` for colour images, shown as the mean over channels). Built from a dataset's
        ``x[i]`` (shape ``(C, H, W)``) one row per pixel; charts do no tensor work. The gallery shows
        the samples of ``pixels`` that ``scores`` ranks highest.
    scores : DataFrame
        :func:`~pruneviz.analysis.run_exemplars` / :func:`~pruneviz.analysis.exemplar_scores` of one
        comparison (``sample_id``, ``label``, ``dense_modal``, ``pruned_modal``, ``rank``).
    attributions : DataFrame, optional
        :func:`~pruneviz.analysis.attribution_maps` frames (``sample_id``, ``attribution``, ``row``,
        ``col``, ``value``; ``channel`` is summed over), concatenated; an optional ``model`` column
        (e.g. ``"dense"``, ``"pruned"``) puts the maps of two models side by side. Each map is scaled
        by its largest absolute value, so colours run from −1 to 1.
    top : int
        How many samples to show, best ranked first.
    columns : int
        Samples per row when there are no attributions.
    class_names : sequence of str, optional
        Names of the classes, for the captions.
    selected : int, optional
        The sample picked in a linked view: drawn in full, the others dimmed. Clicking an image picks
        its sample (the ``"sample"`` selection on ``sample_id``, as in the embedding chart).
    max_points : int
        At most this many cells; larger images are shown averaged over blocks of ``k × k`` pixels (the
        subtitle says so).
    """
    where = "exemplar_gallery"
    check_frame(pixels, "pixels", where, "a pixel frame of the dataset", ["sample_id", "row", "col", "value"])
    top, selected = _check_scores(scores, top, selected, where)
    columns = check_int(columns, "columns", where, minimum=1)
    max_points = check_max_points(max_points, where)
    unknown = sorted(set(pixels["sample_id"]) - set(scores["sample_id"]))
    if unknown:
        data_fail(
            "pixels",
            where,
            "images of samples that scores covers",
            f"sample ids {unknown[:8]} not in scores",
            "build pixels for samples of the same subset the scores were computed on.",
        )
    chosen = (
        scores[scores["sample_id"].isin(set(pixels["sample_id"]))]
        .sort_values("rank", kind="stable")
        .head(top)
    )
    ids = list(chosen["sample_id"])

    name = _namer(class_names, where)
    captions = {
        r["sample_id"]: f"#{r['sample_id']} (rank {r['rank']})|label {name(r['label'])}|"
        f"dense {name(r['dense_modal'])} → pruned {name(r['pruned_modal'])}"
        for r in chosen.to_dict("records")
    }
    image = _grid(pixels[pixels["sample_id"].isin(ids)], "mean").assign(panel=INPUT)
    panels = [image]
    if attributions is not None:
        check_frame(
            attributions,
            "attributions",
            where,
            "attribution_maps",
            ["sample_id", "attribution", "row", "col", "value"],
        )
        maps = attributions[attributions["sample_id"].isin(ids)].copy()
        maps["panel"] = maps["attribution"].astype(str)
        if "model" in maps.columns:
            maps["panel"] = maps["panel"] + " · " + maps["model"].astype(str)
        for panel, part in maps.groupby("panel", sort=False):
            grid = _grid(part, "sum")
            scale = grid.groupby("sample_id")["value"].transform(lambda v: v.abs().max())
            grid["value"] = grid["value"] / scale.where(scale > 0, 1.0)
            panels.append(grid.assign(panel=panel))
    cells = pd.concat(panels, ignore_index=True)
    block = _block_size(cells, max_points)
    note = None
    if block > 1:
        total = len(cells)
        cells = (
            cells.assign(row=cells["row"] // block, col=cells["col"] // block)
            .groupby(["panel", "sample_id", "row", "col"], sort=False)["value"]
            .mean()
            .reset_index()
        )
        shown = f"{count(len(cells))} of {count(total)} cells shown"
        note = f"Images averaged over {block}×{block} pixel blocks ({shown})."
    cells["caption"] = cells["sample_id"].map(captions)
    order = [captions[i] for i in ids]
    panel_order = [INPUT, *[p for p in dict.fromkeys(cells["panel"]) if p != INPUT]]
    side = int(cells["col"].max()) + 1
    height = int(cells["row"].max()) + 1
    size = max(72, min(110, 6 * max(side, height)))
    x = alt.X("col:O", axis=None)
    y = alt.Y("row:O", axis=None)
    select = sample_selection(selected if selected in ids else None)
    img = (
        alt.Chart()
        .transform_filter(alt.datum.panel == INPUT)
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color("value:Q", scale=alt.Scale(scheme="greys"), legend=None),
            opacity=alt.condition(select, alt.value(1.0), alt.value(0.3)),
            tooltip=["sample_id", "row", "col", "value"],
        )
        .add_params(select)
        .properties(width=size, height=size * height // side)
    )
    lines = alt.Header(labelExpr="split(datum.value, '|')", labelFontSize=10, labelLimit=0)
    notes = [
        "Caption: sample (rank 1 = changed most), true label, modal predictions of the populations. "
        "Click an image to pick the sample in the other views.",
        note,
    ]
    if attributions is None:
        chart = img.facet(
            facet=alt.Facet("caption:N", sort=order, title=None, header=lines), columns=columns, data=cells
        )
    else:
        notes.insert(1, "Attributions: red towards the true class, blue against; each map scaled to [−1, 1].")
        att = (
            alt.Chart()
            .transform_filter(alt.datum.panel != INPUT)
            .mark_rect()
            .encode(
                x=x,
                y=y,
                color=alt.Color(
                    "value:Q", legend=None, scale=alt.Scale(scheme="redblue", domain=[-1, 1], reverse=True)
                ),
                tooltip=["sample_id", "panel", "row", "col", "value"],
            )
        )
        # the image and the maps need two colour scales: independent per layer (and so per cell), with
        # fixed domains for the maps, and no legends (the subtitle explains the colours)
        layer = alt.layer(img, att).resolve_scale(color="independent")
        chart = layer.facet(
            row=alt.Row(
                "caption:N",
                sort=order,
                title=None,
                header=alt.Header(
                    labelExpr="split(datum.value, '|')",
                    labelAngle=0,
                    labelAlign="left",
                    labelFontSize=10,
                    labelLimit=0,
                ),
            ),
            column=alt.Column("panel:N", sort=panel_order, title=None),
            data=cells,
        )
    chart = chart.properties(title=title(f"Top {len(ids)} exemplars", *notes))
    options = {"top": top, "columns": columns, "max_points": max_points, "block": block, "selected": selected}
    return finish(chart, where, options, rows=len(cells), source_rows=len(pixels))


def _check_scores(scores: pd.DataFrame, top: int, selected: int | None, where: str) -> tuple[int, int | None]:
    """Check the exemplar scores of one comparison and the ``top`` / ``selected`` options."""
    check_frame(
        scores,
        "scores",
        where,
        "run_exemplars",
        ["sample_id", "label", "dense_modal", "pruned_modal", "rank"],
    )
    one_comparison(
        scores, "scores", where, ("dataset", "arch", "method", "structure", "sparsity_target", "settings")
    )
    top = check_int(top, "top", where, minimum=1)
    return top, (None if selected is None else check_int(selected, "selected", where))


def _grid(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """One value per (sample, row, col): channels averaged (images) or summed (attributions)."""
    out = frame.groupby(["sample_id", "row", "col"], sort=False)["value"].agg(how).reset_index()
    return out.astype({"row": int, "col": int, "value": float})


def _block_size(cells: pd.DataFrame, max_points: int) -> int:
    """The smallest block edge ``k`` such that the images pooled in ``k × k`` blocks fit ``max_points``."""
    per = cells.groupby(["panel", "sample_id"])[["row", "col"]].max() + 1
    sizes = list(zip(per["row"], per["col"], strict=True))
    largest = max(max(h, w) for h, w in sizes)
    for k in range(1, int(largest) + 1):
        if sum(math.ceil(h / k) * math.ceil(w / k) for h, w in sizes) <= max_points:
            return k
    return int(largest)


def _namer(class_names: Sequence[str] | None, where: str):
    if class_names is None:
        return lambda c: str(c)
    if isinstance(class_names, str):
        fail(
            "class_names", where, "a list of class names", class_names, "pass e.g. dataset.info.class_names."
        )
    names = [str(n) for n in class_names]

    def name(c: object) -> str:
        try:
            return names[int(c)]  # type: ignore[call-overload]
        except (IndexError, ValueError, TypeError):
            return str(c)

    return name


def exemplar_list(
    samples: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    top: int = 12,
    class_names: Sequence[str] | None = None,
    selected: int | None = None,
) -> alt.Chart:
    """The top exemplars of text or tabular data as a list: each sample's rank, id, label and the dense
    and pruned populations' modal predictions, beside the sample itself as text (the tokens of a
    sequence, or a table row's most distinctive ``feature=value`` pairs).

    Parameters
    ----------
    samples : DataFrame
        ``sample_id`` and ``text`` (how the sample reads), one row per sample; built by the views from
        the dataset (charts do no tensor work).
    scores, top, class_names, selected : as for :func:`exemplar_gallery`. Clicking a line picks its
        sample (the ``"sample"`` selection on ``sample_id``).
    """
    where = "exemplar_list"
    check_frame(samples, "samples", where, "the samples as text", ["sample_id", "text"])
    top, selected = _check_scores(scores, top, selected, where)
    unknown = sorted(set(samples["sample_id"]) - set(scores["sample_id"]))
    if unknown:
        data_fail(
            "samples",
            where,
            "samples that scores covers",
            f"sample ids {unknown[:8]} not in scores",
            "take the samples of the same subset the scores were computed on.",
        )
    name = _namer(class_names, where)
    chosen = (
        scores[scores["sample_id"].isin(set(samples["sample_id"]))]
        .sort_values("rank", kind="stable")
        .head(top)
        .merge(samples[["sample_id", "text"]], on="sample_id", how="left")
    )
    lines = pd.DataFrame(
        {
            "sample_id": chosen["sample_id"].astype(int),
            "line": range(len(chosen)),
            "who": [
                f"#{r['sample_id']} (rank {r['rank']}) · label {name(r['label'])} · "
                f"dense {name(r['dense_modal'])} → pruned {name(r['pruned_modal'])}"
                for r in chosen.to_dict("records")
            ],
            "text": [_clip(str(t)) for t in chosen["text"]],
        }
    )
    select = sample_selection(selected if selected in set(lines["sample_id"]) else None)
    base = alt.Chart(lines).encode(
        y=alt.Y("line:O", axis=None),
        opacity=alt.condition(select, alt.value(1.0), alt.value(0.35)),
        tooltip=["sample_id", "who", "text"],
    )
    who = (
        base.mark_text(align="left", fontWeight="bold", fontSize=11)
        .encode(x=alt.value(0), text="who:N")
        .add_params(select)
    )
    text = base.mark_text(align="left", fontSize=11).encode(x=alt.value(360), text="text:N")
    chart = (
        alt.layer(who, text)
        .properties(width=900, height=max(40, 22 * len(lines)))
        .properties(
            title=title(
                f"Top {len(lines)} exemplars",
                "Each line: sample (rank 1 = changed most), true label, modal predictions of the "
                "populations, then the sample itself. Click a line to pick the sample in the other views.",
            )
        )
    )
    return finish(chart, where, {"top": top, "selected": selected}, rows=len(lines), source_rows=len(samples))


def _clip(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
