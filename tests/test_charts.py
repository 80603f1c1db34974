"""pruneviz.charts: specs, not pixels. Frames come from the real analyses on a tiny zoo (digits, MLPs)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pruneviz.charts as charts
from pruneviz.analysis import (
    attribution_maps,
    disparate_impact,
    hessian_density,
    hessian_eigenvalues,
    interpolation,
    reliability_bins,
    spectrum_table,
)
from pruneviz.analysis.attacks import AttackSettings
from pruneviz.analysis.curvature import HessianOperator
from pruneviz.charts._theme import DENSE_COLOUR, FONT, METHOD_COLOURS
from pruneviz.data import load_digits
from pruneviz.exceptions import DataError, ValidationError
from pruneviz.models import build_model
from pruneviz.study import (
    run_attacks,
    run_cka,
    run_corruptions,
    run_embedding,
    run_exemplars,
    run_landscape,
    run_logit_geometry,
    run_logit_geometry_change,
    run_reliability,
    run_spectrum,
    run_subgroups,
)
from pruneviz.train import TrainConfig, logits_of
from pruneviz.zoo import Zoo, build_dense_population, prune_population

PACKAGE = Path(__file__).resolve().parents[1] / "pruneviz"


# -- a tiny zoo and the analyses' frames -------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    """Two dense MLPs on 200 digits, each pruned by LAMP and at random to 50 % and 90 % (no fine-tuning)."""
    z = Zoo.create(tmp_path_factory.mktemp("charts") / "zoo")
    data = load_digits().take(np.arange(200))
    build_dense_population(
        z, data, arch="mlp", seeds=2, config=TrainConfig(epochs=1, batch_size=64), progress=False
    )
    prune_population(z, methods=["lamp", "random"], sparsities=[0.5, 0.9], finetune=None, progress=False)
    return z


@pytest.fixture(scope="module")
def ids(zoo):
    runs = zoo.runs()
    dense = runs[runs.kind == "dense"].run.iloc[0]
    pruned = runs[(runs.parent == dense) & (runs.method == "lamp") & (runs.sparsity_target == 0.9)].run.iloc[
        0
    ]
    return {"dense": dense, "pruned": pruned, "runs": runs}


@pytest.fixture(scope="module")
def test_split(zoo):
    return zoo.splits(zoo.runs().dataset.iloc[0]).test


def views(spec: dict) -> list[dict]:
    """Every unit view (a dict with a mark) of a Vega-Lite spec, however nested."""
    found = []
    if "mark" in spec:
        found.append(spec)
    for key in ("layer", "hconcat", "vconcat", "concat"):
        for sub in spec.get(key, []):
            found += views(sub)
    if "spec" in spec:
        found += views(spec["spec"])
    return found


def mark_of(view: dict) -> str:
    return view["mark"] if isinstance(view["mark"], str) else view["mark"]["type"]


def fields(spec: dict) -> set[tuple[str, str, str]]:
    """(mark, channel, field) of every encoded field."""
    out = set()
    for v in views(spec):
        for channel, enc in v.get("encoding", {}).items():
            if isinstance(enc, dict) and "field" in enc:
                out.add((mark_of(v), channel, enc["field"]))
    return out


def subtitle(spec: dict) -> str:
    sub = spec["title"].get("subtitle", [])
    return " ".join(sub) if isinstance(sub, list) else sub


def check_common(chart, where: str) -> dict:
    """Every chart: themed, titled, its drawn rows within Altair's limit, its making recorded."""
    spec = chart.to_dict()
    assert spec["config"]["font"] == FONT
    assert spec["title"]["text"]
    assert spec["usermeta"]["pruneviz"]["chart"] == where
    data = charts.chart_data(chart)
    assert 0 < len(data) <= charts.MAX_ROWS
    for channel in ("x", "y"):  # axes are titled in words, unless hidden (the gallery's images)
        encs = [v["encoding"][channel] for v in views(spec) if channel in v.get("encoding", {})]
        # constant positions (``alt.value``) draw no axis
        shown = [e for e in encs if e.get("axis", {}) is not None and "value" not in e]
        assert not shown or any(e.get("title") or e.get("axis", {}).get("title") for e in shown), (
            where,
            channel,
        )
    return spec


# -- layering --------------------------------------------------------------------------------------
def test_charts_load_without_torch():
    # (that `import pruneviz` loads no altair, and so no charts, is tests/test_imports.py's check)
    isolated = (
        "import sys, types, json\n"
        f"pkg = types.ModuleType('pruneviz'); pkg.__path__ = [{str(PACKAGE)!r}]; sys.modules['pruneviz'] = pkg\n"
        "import pruneviz.charts\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )  # the package's own __init__ (which loads torch for the library) is bypassed: charts alone
    out = subprocess.run([sys.executable, "-c", isolated], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert "altair" in loaded and "torch" not in loaded
    assert not {m for m in loaded if m.startswith(("pruneviz.analysis", "pruneviz.zoo", "pruneviz.data"))}


# -- overview --------------------------------------------------------------------------------------
def test_tradeoff_chart(ids):
    runs = ids["runs"]
    chart = charts.tradeoff_chart(runs)
    spec = check_common(chart, "tradeoff_chart")
    assert len(spec["hconcat"]) == 3
    f = fields(spec)
    assert ("circle", "x", "sparsity") in f and ("line", "y", "value") in f and ("area", "y2", "value") in f
    assert ("rule", "y", "value") in f  # the dense reference
    colour = next(v["encoding"]["color"] for v in views(spec) if mark_of(v) == "circle")
    mapping = dict(zip(colour["scale"]["domain"], colour["scale"]["range"], strict=True))
    assert mapping == {
        "dense": DENSE_COLOUR,
        "lamp": METHOD_COLOURS["lamp"],
        "random": METHOD_COLOURS["random"],
    }
    assert spec["params"][0]["name"] == "method_pick" and spec["params"][0]["bind"] == "legend"
    data = charts.chart_data(chart)
    dense = data[(data.method == "dense") & (data.metric == "nonzero_params")]
    assert len(dense) == 2 and (dense.sparsity == 0).all()
    assert sorted(dense.value) == sorted(runs[runs.kind == "dense"].params)  # a dense run keeps all weights
    lat = data[data.metric == "latency_b1_s"].set_index("run").value
    assert lat.to_dict() == pytest.approx((runs.set_index("run").latency_b1_s * 1000).to_dict())  # in ms
    # a method keeps its colour whatever else the frame holds
    only = charts.tradeoff_chart(runs[runs.method == "random"], metrics=["test_accuracy"]).to_dict()
    colour = next(v["encoding"]["color"] for v in views(only) if mark_of(v) == "circle")
    assert colour["scale"]["range"] == [METHOD_COLOURS["random"]]


def test_metric_by_sparsity_chart_and_bad_metric(ids):
    runs = ids["runs"]
    frame = runs.melt(id_vars=["run", "method", "sparsity_target", "seed"], value_vars=["test_accuracy"],
                      var_name="metric", value_name="value")  # fmt: skip
    spec = check_common(charts.metric_by_sparsity_chart(frame), "metric_by_sparsity_chart")
    assert len(spec["hconcat"]) == 1
    with pytest.raises(
        ValidationError, match=r"'metrics' parameter of metric_by_sparsity_chart must be metrics"
    ):
        charts.metric_by_sparsity_chart(frame, metrics=["ece"])


def test_layer_sparsity_chart_averages_seeds(zoo, ids):
    runs = ids["runs"]
    lamp = runs[(runs.method == "lamp") & (runs.sparsity_target == 0.9)].run
    spectrum = pd.concat([run_spectrum(zoo, r) for r in [*lamp, ids["dense"]]], ignore_index=True)
    chart = charts.layer_sparsity_chart(spectrum)
    spec = check_common(chart, "layer_sparsity_chart")
    assert ("bar", "xOffset", "model") in fields(spec) and ("bar", "y", "sparsity") in fields(spec)
    x = next(v["encoding"]["x"] for v in views(spec) if mark_of(v) == "bar")
    assert x["sort"] == list(dict.fromkeys(spectrum.layer))  # model order
    data = charts.chart_data(chart).set_index(["model", "layer"])
    rows = spectrum[(spectrum.metric == "sparsity") & (spectrum.method == "lamp")]
    expected = rows.groupby("layer").value.agg(["mean", "min", "max"])
    for layer, (mean, lo, hi) in expected.iterrows():
        assert data.loc[("lamp 90%", layer), ["sparsity", "lo", "hi"]].tolist() == pytest.approx(
            [mean, lo, hi]
        )
    with pytest.raises(DataError, match=r"'spectrum' parameter of layer_sparsity_chart must be a frame with"):
        charts.layer_sparsity_chart(spectrum[spectrum.metric != "sparsity"])


def test_speedup_chart_sets_promise_against_measurement():
    table = pd.DataFrame(
        {
            "layer": ["fc1", "fc2", "fc1", "fc2"],
            "batch_size": [1, 1, 64, 64],
            "path": ["block_ell", "dense", "torch_csr", "dense"],
            "density": [0.1, 0.0, 0.1, 0.0],
            "theoretical_speedup": [10.0, float("inf"), 10.0, float("inf")],
            "measured_speedup": [4.0, 1.0, 1.5, 1.0],
        }
    )
    chart = charts.speedup_chart(table)
    spec = check_common(chart, "speedup_chart")
    assert ("bar", "y", "speedup") in fields(spec) and ("bar", "xOffset", "kind") in fields(spec)
    data = charts.chart_data(chart).set_index(["batch", "layer", "kind"])
    assert data.loc[("batch 1", "fc1", "measured"), "speedup"] == 4.0
    assert data.loc[("batch 64", "fc1", "promised (1 / density)"), "speedup"] == 10.0
    # an empty layer's infinite promise is drawn at the largest finite one, not lost
    assert data.loc[("batch 1", "fc2", "promised (1 / density)"), "speedup"] == 10.0
    assert data.loc[("batch 1", "fc1", "measured"), "chosen"] == "block-sparse (pruneviz)"
    with pytest.raises(ValidationError, match=r"'speedups' parameter of speedup_chart"):
        charts.speedup_chart(table.drop(columns="path"))


# -- geometry --------------------------------------------------------------------------------------
def test_cka_chart(zoo, ids):
    cka = run_cka(zoo, ids["dense"], ids["pruned"])
    spec = check_common(charts.cka_chart(cka), "cka_chart")
    f = fields(spec)
    assert {("rect", "x", "layer_b"), ("rect", "y", "layer_a"), ("rect", "color", "value")} <= f
    rect = next(v for v in views(spec) if mark_of(v) == "rect")
    assert rect["encoding"]["y"]["sort"] == list(dict.fromkeys(cka.layer_a))
    assert rect["encoding"]["color"]["type"] == "quantitative"
    assert [t["field"] for t in rect["encoding"]["tooltip"]][-1] == "sample_se"
    assert "lamp 90%" in spec["title"]["text"]
    two = pd.concat([cka, cka.assign(run_b="other")])
    with pytest.raises(
        ValidationError, match=r"'cka' parameter of cka_chart must be a frame of one comparison"
    ):
        charts.cka_chart(two)


def test_embedding_chart_links_samples_and_caps_rows(zoo, ids):
    emb = run_embedding(zoo, [ids["dense"], ids["pruned"]])
    spec = check_common(charts.embedding_chart(emb), "embedding_chart")
    assert spec["facet"]["field"] == "model" and spec["facet"]["sort"][0] == "dense"
    params = [p for v in views(spec) for p in v.get("params", [])] + spec.get("params", [])
    assert any(p["name"] == "sample" and p["select"]["fields"] == ["sample_id"] for p in params)
    assert ("circle", "color", "label") in fields(spec)
    # a large frame: 3 models x 2,000 samples
    big = pd.concat(
        [emb.assign(sample_id=emb.sample_id + 10_000 * k) for k in range(2000 // emb.sample_id.nunique() + 1)]
    )
    big = big[big.sample_id.isin(sorted(big.sample_id.unique())[:2000])]
    big = pd.concat([big, big[big.run == ids["pruned"]].assign(run="third", method="random")])
    assert len(big) == 6000
    chart = charts.embedding_chart(big)
    shown = charts.chart_data(chart)
    assert len(shown) <= 5000 and len(shown) == 3 * shown.sample_id.nunique()  # whole samples only
    assert "4,998 of 6,000 points shown" in subtitle(chart.to_dict())
    assert charts.chart_data(charts.embedding_chart(big)).equals(shown)  # deterministic


def test_logit_charts(zoo, ids):
    geometry = pd.concat([run_logit_geometry(zoo, ids["dense"]), run_logit_geometry(zoo, ids["pruned"])])
    spec = check_common(charts.logit_geometry_chart(geometry), "logit_geometry_chart")
    assert {
        ("circle", "x", "angle"),
        ("circle", "y", "feature_norm"),
        ("circle", "color", "outcome"),
    } <= fields(spec)
    with pytest.raises(ValidationError, match=r"'x' parameter of logit_geometry_chart must be a quantity"):
        charts.logit_geometry_chart(geometry, x="angel")

    change = run_logit_geometry_change(zoo, ids["dense"], ids["pruned"])
    chart = charts.logit_change_chart(change, metric="margin", top=5)
    spec = check_common(chart, "logit_change_chart")
    f = fields(spec)
    assert {
        ("circle", "x", "before"),
        ("circle", "y", "after"),
        ("bar", "y", "count"),
        ("tick", "x", "change"),
    } <= f
    data = charts.chart_data(chart)
    assert set(data.loc[data.mover == "top mover", "sample_id"]) == set(
        change[(change.metric == "margin") & (change["rank"] <= 5)].sample_id
    )
    hist = next(v for v in views(spec) if mark_of(v) == "bar")
    counts = spec["datasets"][hist["data"]["name"]]
    assert sum(r["count"] for r in counts) == change.sample_id.nunique()  # the histogram counts every sample
    with pytest.raises(ValidationError, match=r"'metric' parameter of logit_change_chart must be a metric"):
        charts.logit_change_chart(change, metric="loss")
    # a large comparison keeps its top movers when drawn down
    big = pd.concat([change.assign(sample_id=change.sample_id + 100_000 * k) for k in range(100)])
    big["rank"] = big.groupby("metric")["rank"].rank(method="first").astype(int)
    capped = charts.chart_data(charts.logit_change_chart(big, top=7))
    assert len(capped) <= 5000 and (capped.mover == "top mover").sum() == 7


# -- exemplars -------------------------------------------------------------------------------------
def pixel_frame(data, sample_ids) -> pd.DataFrame:
    """Tidy pixels of some samples, built with pandas: one row per (sample, channel, row, col)."""
    pos = [int(np.flatnonzero(data.sample_id == i)[0]) for i in sample_ids]
    x = data.x[pos].numpy()
    _, c, h, w = x.shape
    index = pd.MultiIndex.from_product(
        [list(sample_ids), range(c), range(h), range(w)], names=["sample_id", "channel", "row", "col"]
    )
    return pd.DataFrame({"value": x.ravel()}, index=index).reset_index()


def test_exemplar_gallery(zoo, ids, test_split):
    scores = run_exemplars(zoo)
    scores = scores[(scores.method == "lamp") & (scores.sparsity_target == 0.9)]
    top = list(scores.nsmallest(4, "rank").sample_id)
    pixels = pixel_frame(test_split, top)
    chart = charts.exemplar_gallery(pixels, scores, top=3, class_names=[f"digit {k}" for k in range(10)])
    spec = check_common(chart, "exemplar_gallery")
    assert spec["facet"]["field"] == "caption" and ("rect", "color", "value") in fields(spec)
    data = charts.chart_data(chart)
    assert data.sample_id.nunique() == 3 and len(data) == 3 * 64
    best = scores.nsmallest(1, "rank").iloc[0]
    assert spec["facet"]["sort"][0].startswith(
        f"#{best.sample_id} (rank 1)|label digit {best.label}|dense digit"
    )

    maps = pd.concat(
        [attribution_maps(zoo.load_model(ids[m]), test_split, sample_ids=top, method="saliency").assign(model=m)
         for m in ("dense", "pruned")]
    )  # fmt: skip
    chart = charts.exemplar_gallery(pixels, scores, attributions=maps, top=4)
    spec = check_common(chart, "exemplar_gallery")
    assert spec["facet"]["column"]["sort"] == ["input", "saliency · dense", "saliency · pruned"]
    data = charts.chart_data(chart)
    assert (
        data[data.panel != "input"]
        .groupby(["panel", "sample_id"])
        .value.apply(lambda v: v.abs().max())
        .eq(1)
        .all()
    )

    # 28 x 28 images do not fit 5,000 cells at full size: blocks of 2 x 2 are averaged
    big = pd.concat(
        [pixels.assign(row=pixels.row + 8 * i, col=pixels.col + 8 * j) for i in range(3) for j in range(3)]
    )
    big = pd.concat([big, big.assign(row=big.row + 24, col=big.col + 24)])
    big = big[(big.row < 28) & (big.col < 28)].drop_duplicates(["sample_id", "row", "col"])
    chart = charts.exemplar_gallery(
        big, scores, attributions=maps.assign(row=maps.row * 3, col=maps.col * 3), top=4
    )
    assert len(charts.chart_data(chart)) <= 5000 and "2×2 pixel blocks" in subtitle(chart.to_dict())
    with pytest.raises(DataError, match=r"'pixels' parameter of exemplar_gallery must be images of samples"):
        charts.exemplar_gallery(pixels.assign(sample_id=-1), scores)
    with pytest.raises(
        ValidationError, match=r"'scores' parameter of exemplar_gallery must be a frame of one"
    ):
        charts.exemplar_gallery(pixels, run_exemplars(zoo))


# -- subgroups -------------------------------------------------------------------------------------
def populations(
    effect: float, n: int = 400, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Dense right on 90 % of samples; pruned also wrong on every tenth sample of both groups (ψ = 0) and,
    with ``effect``, on that share of the other samples of group 'b'."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    site = np.where(ids % 2 == 0, "a", "b")
    label = rng.integers(0, 3, n)
    dense_ok = np.ones(n, dtype=bool)
    dense_ok[ids % 20 == 5] = dense_ok[ids % 20 == 6] = False  # as many mistakes in both groups
    even_loss = np.isin(ids % 20, [1, 2])  # one sample in ten of each group
    pruned_ok = dense_ok & ~even_loss & ~((site == "b") & (rng.random(n) < effect))
    frame = pd.DataFrame({"sample_id": ids, "label": label})
    dense = frame.assign(run="d", prediction=np.where(dense_ok, label, (label + 1) % 3))
    pruned = frame.assign(run="p", prediction=np.where(pruned_ok, label, (label + 1) % 3))
    return dense, pruned, pd.DataFrame({"sample_id": ids, "site": site})


def test_disparate_impact_reports_the_permutation_band():
    for effect, inside in ((0.0, True), (0.4, False)):
        di = disparate_impact(
            *populations(effect), group="site", min_group_size=5, bootstrap=200, permutations=400
        )
        tested = di.statistic.isin(["psi", "disparity"])
        assert di.loc[tested, ["null_low", "null_high"]].notna().all().all()
        assert di.loc[~tested, ["null_low", "null_high"]].isna().all().all()
        psi = di[di.statistic == "psi"]
        assert (psi.null_low < 0).all() and (psi.null_high > 0).all()  # the null of ψ_g is centred on 0
        outside = (psi.value < psi.null_low) | (psi.value > psi.null_high)
        assert (~outside).all() if inside else outside.all()
        assert bool(psi.significant.all()) is not inside


def test_subgroup_chart(zoo):
    impact = run_subgroups(zoo, bootstrap=50, permutations=50, min_group_size=5)
    one = impact[(impact.method == "lamp") & (impact.sparsity_target == 0.9)]
    chart = charts.subgroup_chart(one)
    spec = check_common(chart, "subgroup_chart")
    f = fields(spec)
    assert {
        ("bar", "y", "value"),
        ("bar", "y", "null_low"),
        ("bar", "y2", "null_high"),
        ("rule", "y2", "ci_high"),
    } <= f
    assert ("text", "text", "star") in f and ("bar", "color", "finding") in f
    assert "Disparity Ψ" in subtitle(spec)
    data = charts.chart_data(chart)
    psi = one[(one.statistic == "psi") & (one.group != "(all)")]
    assert sorted(data.value) == pytest.approx(sorted(psi.value))
    assert (data.finding == "small group").sum() == psi.small.sum()
    delta = charts.subgroup_chart(impact, statistic="delta").to_dict()
    assert len(delta["facet"]["sort"]) == 4 and ("bar", "y", "null_low") not in fields(delta)
    # a frame cached before the permutation band existed still draws, without the band
    old = charts.subgroup_chart(one.drop(columns=["null_low", "null_high"])).to_dict()
    assert ("bar", "y", "null_low") not in fields(old)
    with pytest.raises(ValidationError, match=r"'statistic' parameter of subgroup_chart must be one of"):
        charts.subgroup_chart(one, statistic="phi")


# -- curvature and landscapes ------------------------------------------------------------------------
def test_hessian_charts(zoo, ids, test_split):
    part = test_split.take(np.arange(32))
    frames = []
    for name in ("dense", "pruned"):
        rec = zoo.run(ids[name])
        op = HessianOperator(zoo.load_model(ids[name]), part, masks=dict(zoo.masks(ids[name])) or None)
        keys = {"run": rec.run, "method": rec.method, "sparsity": rec.sparsity}
        frames.append((hessian_eigenvalues(op, k=2, iterations=4).assign(**keys),
                       hessian_density(op, vectors=1, iterations=6, grid=50)[1].assign(**keys)))  # fmt: skip
    eig = pd.concat([e for e, _ in frames])
    spec = check_common(charts.hessian_eigenvalue_chart(eig), "hessian_eigenvalue_chart")
    assert {("point", "x", "rank"), ("point", "y", "eigenvalue"), ("rule", "y2", "high")} <= fields(spec)
    density = pd.concat([d for _, d in frames])
    spec = check_common(charts.hessian_density_chart(density), "hessian_density_chart")
    line = next(v for v in views(spec) if mark_of(v) == "line")
    assert line["encoding"]["y"]["scale"]["type"] == "log" and line["encoding"]["color"]["field"] == "model"
    colours = dict(zip(line["encoding"]["color"]["scale"]["domain"], line["encoding"]["color"]["scale"]["range"],
                       strict=True))  # fmt: skip
    assert colours == {"dense": DENSE_COLOUR, "lamp 90%": METHOD_COLOURS["lamp"]}
    linear = charts.hessian_density_chart(density, log=False).to_dict()
    assert "type" not in next(v for v in views(linear) if mark_of(v) == "line")["encoding"]["y"].get(
        "scale", {}
    )


def test_landscape_charts(zoo, ids, test_split):
    two = pd.concat([run_landscape(zoo, ids[m], steps=5, samples=32) for m in ("dense", "pruned")])
    chart = charts.landscape_contour_chart(two, levels=6)
    spec = check_common(chart, "landscape_contour_chart")
    assert {("rect", "x", "alpha_lo"), ("rect", "x2", "alpha_hi"), ("rect", "color", "band")} <= fields(spec)
    assert ("point", "x", "alpha") in fields(spec)  # the trained weights
    data = charts.chart_data(chart)
    assert data.band.nunique() <= 6 and data.model.nunique() == 2
    # bands of the loss are log-spaced: a loss from e^0 to e^6 in 6 levels has the edges e^0, e^1, ..., e^6
    spread = two.assign(loss=np.exp(np.linspace(0.0, 6.0, len(two))))
    rect = next(
        v for v in views(charts.landscape_contour_chart(spread, levels=6).to_dict()) if mark_of(v) == "rect"
    )
    edges = [f"{np.exp(k):.3g}" for k in range(7)]
    assert rect["encoding"]["color"]["sort"] == [f"{a}–{b}" for a, b in itertools.pairwise(edges)]
    line = pd.concat([run_landscape(zoo, ids[m], dims=1, steps=5, samples=32) for m in ("dense", "pruned")])
    spec = check_common(charts.landscape_line_chart(line), "landscape_line_chart")
    assert {("line", "x", "alpha"), ("line", "y", "loss"), ("area", "y2", "high")} <= fields(spec)
    path = interpolation(zoo.load_model(ids["dense"]), zoo.load_model(ids["pruned"]), test_split, steps=5)
    spec = check_common(charts.interpolation_chart(path, quantity="accuracy"), "interpolation_chart")
    assert {("line", "x", "t"), ("line", "y", "accuracy"), ("rule", "x", "t")} <= fields(spec)
    with pytest.raises(
        ValidationError, match=r"'landscape' parameter of landscape_contour_chart must be a frame"
    ):
        charts.landscape_contour_chart(line)


def test_spectrum_chart_draws_infinite_condition_numbers(zoo, ids):
    spectrum = pd.concat([run_spectrum(zoo, ids[m]) for m in ("dense", "pruned")])
    spec = check_common(charts.spectrum_chart(spectrum), "spectrum_chart")
    assert len(spec["hconcat"]) == 4 and ("line", "x", "layer") in fields(spec)
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    model.classifier.weight.data.zero_()
    table = spectrum_table(model)
    chart = charts.spectrum_chart(table, metrics=["condition_number", "spectral_norm"])
    data = charts.chart_data(chart)
    inf = data[(data.metric == "condition_number") & data.infinite]
    assert list(inf.layer) == ["classifier"] and np.isfinite(inf.shown).all()
    assert ("point", "y", "shown") in fields(chart.to_dict())
    with pytest.raises(
        ValidationError, match=r"'metrics' parameter of spectrum_chart must be metrics present"
    ):
        charts.spectrum_chart(table, metrics=["alpha_hat_typo"])


# -- robustness and calibration ---------------------------------------------------------------------
def test_corruption_and_attack_charts(zoo, ids):
    runs = [ids["dense"], ids["pruned"]]
    corr = run_corruptions(zoo, runs=runs, corruptions=["fog"], severities=[1, 3])
    chart = charts.corruption_chart(corr)
    spec = check_common(chart, "corruption_chart")
    assert spec["facet"]["field"] == "corruption" and ("line", "x", "severity") in fields(spec)
    data = charts.chart_data(chart)
    assert sorted(data[data.model == "dense"].severity) == [0, 1, 3]  # the clean accuracy starts each line
    acc = corr[(corr.metric == "accuracy") & (corr.run == ids["pruned"]) & (corr.severity == 3)].value.iloc[0]
    assert data[(data.model == "lamp 90%") & (data.severity == 3)].value.iloc[0] == pytest.approx(acc)

    attacks = run_attacks(zoo, runs=runs, attacks=[AttackSettings("fgsm", eps=0.1)])
    chart = charts.attack_chart(attacks)
    spec = check_common(chart, "attack_chart")
    assert ("line", "x", "eps") in fields(spec) and spec["facet"]["sort"] == ["fgsm (linf)"]
    assert sorted(charts.chart_data(chart).eps.unique()) == [0.0, 0.1]
    # the subtitle states the samples per split and the largest standard error they give
    subtitle = " ".join(spec["title"]["subtitle"])
    n, worst = int(attacks.samples.iloc[0]), attacks.se.max()
    assert f"On {n:,} test samples per split" in subtitle and f"up to {100 * worst:.1f} points" in subtitle
    budget = run_attacks(zoo, runs=runs, attacks=[AttackSettings("fgsm", eps=0.1)], samples=24)
    subtitle = " ".join(charts.attack_chart(budget).to_dict()["title"]["subtitle"])
    assert "On 24 test samples per split" in subtitle
    with pytest.raises(ValidationError, match=r"'metric' parameter of corruption_chart must be one of"):
        charts.corruption_chart(corr, metric="acc")


@pytest.mark.reference
def test_reliability_chart_pools_runs_like_their_concatenated_outputs(zoo, ids):
    runs = ids["runs"]
    lamp = list(runs[(runs.method == "lamp") & (runs.sparsity_target == 0.9)].run)
    frame = pd.concat([run_reliability(zoo, r, bins=10) for r in [ids["dense"], *lamp]])
    chart = charts.reliability_chart(frame)
    spec = check_common(chart, "reliability_chart")
    assert {
        ("circle", "x", "confidence"),
        ("circle", "y", "accuracy"),
        ("circle", "size", "count"),
    } <= fields(spec)
    assert ("rule", "x2", "c2") in fields(spec)  # the diagonal
    outs = pd.concat([zoo.outputs(r, subset="test") for r in lamp])
    outs = outs[outs.split == "clean"]
    ref = reliability_bins(logits_of(outs), outs.label.to_numpy(), bins=10)
    ref = ref[ref["count"] > 0]
    data = charts.chart_data(chart)
    mine = data[data.model.str.startswith("lamp 90%")].set_index("bin").loc[ref.bin]
    np.testing.assert_allclose(
        mine[["count", "confidence", "accuracy"]], ref[["count", "confidence", "accuracy"]]
    )
    ece = float((ref["count"] * ref["gap"].abs()).sum() / ref["count"].sum())
    assert f"lamp 90% (ECE {100 * ece:.1f}%)" in set(data.model)
    # the bare table of reliability_bins (no run keys) is one model, without a legend
    bare = charts.reliability_chart(reliability_bins(logits_of(outs), outs.label.to_numpy(), bins=10))
    assert charts.chart_data(bare).model.unique().tolist() == [f"model (ECE {100 * ece:.1f}%)"]
    assert (
        next(v for v in views(bare.to_dict()) if mark_of(v) == "circle")["encoding"]["color"]["legend"]
        is None
    )


# -- input checks and export ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "param", "source"),
    [
        (charts.tradeoff_chart, "runs", "Zoo.runs()"),
        (charts.cka_chart, "cka", "run_cka / cka_grid"),
        (charts.embedding_chart, "embedding", "run_embedding"),
        (charts.subgroup_chart, "impact", "run_subgroups / disparate_impact"),
        (charts.reliability_chart, "reliability", "run_reliability / reliability_bins"),
        (charts.corruption_chart, "corruptions", "run_corruptions"),
        (charts.hessian_eigenvalue_chart, "eigenvalues", "hessian_eigenvalues"),
    ],
)
def test_bad_frames_get_house_style_errors(function, param, source):
    where = function.__name__
    frame = pd.DataFrame({"value": [1.0], "layer": ["a"]})
    expected = rf"The '{param}' parameter of {where} must be a frame from {source}, with the columns"
    with pytest.raises(ValidationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        function(frame)
    with pytest.raises(
        ValidationError, match=rf"'{param}' parameter of {where} must be a DataFrame .* Got a list instead"
    ):
        function([1, 2])


def test_empty_frame_is_a_data_error(zoo, ids):
    cka = run_cka(zoo, ids["dense"], ids["pruned"])
    with pytest.raises(DataError, match=r"'cka' parameter of cka_chart must be a non-empty frame"):
        charts.cka_chart(cka.iloc[:0])


def test_save_chart_html_png_csv(tmp_path, zoo, ids):
    chart = charts.cka_chart(run_cka(zoo, ids["dense"], ids["pruned"]))
    html = charts.save_chart(chart, tmp_path / "cka.html").read_text()
    assert "CKA similarity of layers" in html and '"layer_a"' in html
    assert "<script src=" not in html and "cdn.jsdelivr" not in html  # opens offline
    png = charts.save_chart(chart, tmp_path / "cka.png", scale=1).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(charts.save_chart(chart, tmp_path / "cka.csv"))
    assert csv.equals(charts.chart_data(chart).reset_index(drop=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cka.csv",
        "cka.html",
        "cka.png",
    ]  # no temp files left
    with pytest.raises(
        ValidationError, match=r"'path' parameter of save_chart must be a file name ending in"
    ):
        charts.save_chart(chart, tmp_path / "cka.jpeg")
    with pytest.raises(ValidationError, match=r"'chart' parameter of chart_data must be a chart made by"):
        charts.chart_data("not a chart")


def test_every_method_pruneviz_prunes_with_has_its_own_colour():
    """Charts cannot import the engine (they never import torch): the method table lives in
    pruneviz.prune.api alone, and this test keeps the theme's colours in step with it."""
    from pruneviz.prune.api import population_method_names

    assert set(population_method_names()) | {"dense"} == set(METHOD_COLOURS)
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)


def test_exemplar_list_shows_text_samples_in_rank_order(zoo):
    scores = run_exemplars(zoo)
    scores = scores[(scores.method == "lamp") & (scores.sparsity_target == 0.9)]
    top = scores.nsmallest(3, "rank")
    samples = pd.DataFrame({"sample_id": top.sample_id, "text": [f"tokens of {i}" for i in top.sample_id]})
    chart = charts.exemplar_list(samples, scores, top=2, class_names=[f"digit {k}" for k in range(10)])
    spec = check_common(chart, "exemplar_list")
    data = charts.chart_data(chart)
    assert list(data.sample_id) == list(top.sample_id[:2]), "best ranked first, top=2 kept"
    first = top.iloc[0]
    assert data.who.iloc[0].startswith(
        f"#{first.sample_id} (rank {first['rank']}) · label digit {first.label}"
    )
    assert data.text.iloc[0] == f"tokens of {first.sample_id}"
    assert {v["mark"]["type"] for v in views(spec)} == {"text"}
    long = samples.assign(text="word " * 100)
    assert charts.chart_data(charts.exemplar_list(long, scores)).text.str.len().max() == 140
    with pytest.raises(ValidationError, match="samples"):
        charts.exemplar_list(samples.assign(sample_id=-1), scores)


def test_pruneviz_charts_compose_and_take_their_look_from_a_registered_theme():
    import altair as alt

    from pruneviz.charts import reliability_chart
    from pruneviz.charts._theme import theme

    bins = pd.DataFrame({"bin": [0, 1], "count": [3, 5], "confidence": [0.3, 0.8], "accuracy": [0.2, 0.9]})
    a, b = reliability_chart(bins), reliability_chart(bins.assign(accuracy=[0.1, 0.7]))
    assert alt.theme.active == "pruneviz" and "pruneviz" in alt.theme.names()
    assert (
        "config" not in a.to_dict(validate=False) or a.to_dict()["config"] == theme()
    )  # from the theme only
    for composed, key in ((a | b, "hconcat"), (a & b, "vconcat"), ((a | b) & a, "vconcat")):
        spec = composed.to_dict()  # validates against the Vega-Lite schema
        assert key in spec and spec["config"]["font"] == theme()["font"]
        meta = spec["usermeta"]["pruneviz"]
        assert meta["chart"] == "composition" and {p["chart"] for p in meta["parts"]} == {"reliability_chart"}
        assert all("usermeta" not in part for part in spec[key])
    layered = (a + b).to_dict()
    assert len(layered["layer"]) == 2 and len(layered["usermeta"]["pruneviz"]["parts"]) == 2
    assert a.to_dict()["usermeta"]["pruneviz"]["chart"] == "reliability_chart"  # the parts are untouched
    with alt.theme.enable("default"):  # another theme: the charts follow it
        assert a.to_dict().get("config", {}).get("font") != theme()["font"]


def big_embedding(n: int = 100_000) -> pd.DataFrame:
    """Two models' aligned features of ``n`` samples each (200k points)."""
    rng = np.random.default_rng(0)
    models = [("d", None, 0.0), ("p", "lamp", 0.9)]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "run": run,
                    "sample_id": np.arange(n),
                    "label": rng.integers(0, 10, n),
                    "x": rng.normal(size=n),
                    "y": rng.normal(size=n),
                    "method": method,
                    "sparsity_target": sparsity,
                }
            )
            for run, method, sparsity in models
        ],
        ignore_index=True,
    )


def test_a_chart_of_more_rows_than_altair_inlines_goes_through_vegafusion(tmp_path):
    import json

    import altair as alt

    from pruneviz.charts import chart_spec, embedding_chart, save_chart

    frame = big_embedding()
    chart = embedding_chart(frame, max_points=len(frame))  # every point: no sampling
    with pytest.raises(alt.MaxRowsError):
        chart.to_dict()
    spec = chart_spec(chart)
    assert "/schema/vega/" in spec["$schema"]  # compiled Vega, its transforms evaluated in Python
    rows = {d["name"]: len(d.get("values", [])) for d in spec["data"]}
    assert max(rows.values()) == len(frame)
    assert alt.data_transformers.active == "default"  # the global transformer is back
    # transforms evaluated in Python shrink the data: 200k points binned into at most 40 × 40 cells
    binned = (
        alt.Chart(frame)
        .mark_rect()
        .encode(alt.X("x:Q").bin(maxbins=40), alt.Y("y:Q").bin(maxbins=40), color="count()")
    )
    cells = max(len(d.get("values", [])) for d in chart_spec(binned)["data"])
    assert 0 < cells <= 41 * 41
    small = embedding_chart(frame.head(200))
    assert "vega-lite" in chart_spec(small)["$schema"]
    saved = json.loads(save_chart(chart, tmp_path / "big.json").read_text())
    assert "/schema/vega/" in saved["$schema"]
