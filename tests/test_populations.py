from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import FAST
from pruneviz.cli import main
from pruneviz.exceptions import ValidationError
from pruneviz.prune import count_macs, prunable_layers
from pruneviz.train import TrainConfig, evaluate
from pruneviz.zoo import Zoo, build_dense_population, prune_population
from pruneviz.zoo.store import population_table

TUNE = TrainConfig(epochs=1, batch_size=64, lr=1e-3)


@pytest.fixture(scope="module")
def pruned_zoo(tmp_path_factory, digits):
    zoo = Zoo.create(tmp_path_factory.mktemp("pop") / "z")
    part = digits.take(np.arange(700))
    build_dense_population(zoo, part, arch="cnn", seeds=1, config=FAST, progress=False)
    prune_population(
        zoo, methods=["lamp", "channel_l1"], sparsities=[0.5, 0.9], finetune=TUNE, progress=False
    )
    return zoo


def test_population_runs_are_linked_exact_and_reloadable(pruned_zoo):
    dense = pruned_zoo.runs(kind="dense")
    pruned = pruned_zoo.runs(kind="pruned")
    assert len(pruned) == 4 and set(pruned.parent) == set(dense.run)
    lamp = pruned[pruned.method == "lamp"]
    total = sum(m.weight.numel() for m in prunable_layers(pruned_zoo.load_model(dense.run[0])).values())
    for _, row in lamp.iterrows():
        masks = pruned_zoo.masks(row.run)
        assert sum(int((~m).sum()) for m in masks.values()) == round(row.sparsity_target * total)
        model = pruned_zoo.load_model(row.run)
        for name, m in prunable_layers(model).items():
            assert bool((m.weight[~masks[name]] == 0).all())
    split = pruned_zoo.splits(dense.dataset[0])
    for rid in pruned.run:  # channel runs are rebuilt from their plan; all reproduce their stored outputs
        fresh = evaluate(pruned_zoo.load_model(rid), split.test, subset="test")
        stored = pruned_zoo.outputs(rid, subset="test").drop(columns="run").reset_index(drop=True)
        pd.testing.assert_frame_equal(fresh, stored)
    channel = pruned[pruned.method == "channel_l1"].sort_values("sparsity_target")
    assert (channel.params < dense.params[0]).all() and channel.params.is_monotonic_decreasing
    dense_macs = count_macs(pruned_zoo.load_model(dense.run[0]), (1, 8, 8)).dense_macs.iloc[-1]
    assert (channel.dense_macs < 0.5 * dense_macs).all() and (lamp.dense_macs == dense_macs).all()


def test_population_resumes_and_validates(pruned_zoo, monkeypatch):
    import pruneviz.zoo.populations as populations

    monkeypatch.setattr(populations, "one_shot", lambda *a, **k: pytest.fail("re-pruned a stored run"))
    again = prune_population(
        pruned_zoo, methods=["lamp", "channel_l1"], sparsities=[0.5, 0.9], finetune=TUNE, progress=False
    )
    assert len(again) == 4
    with pytest.raises(
        ValidationError, match=r"'methods' parameter of prune_population must be one of.*Got 'lamb'"
    ):
        prune_population(pruned_zoo, methods=["lamb"], sparsities=[0.5])
    with pytest.raises(ValidationError, match=r"'sparsities' parameter.*Got 1.2"):
        prune_population(pruned_zoo, methods=["lamp"], sparsities=[1.2])
    with pytest.raises(ValidationError, match=r"'parents' parameter"):
        prune_population(pruned_zoo, methods=["lamp"], sparsities=[0.5], parents=["nope"])


def test_population_table_aggregates_over_seeds(pruned_zoo):
    table = population_table(pruned_zoo.runs())
    assert table.method.iloc[0] == "dense"
    row = table[(table.method == "lamp") & (table.sparsity_target == 0.9)]
    runs = pruned_zoo.runs(method="lamp")
    assert float(row["mean"].iloc[0]) == pytest.approx(runs[runs.sparsity_target == 0.9].test_accuracy.mean())


def test_zoo_prune_from_the_shell(tmp_path, digits, capsys):
    zoo = Zoo.create(tmp_path / "z")
    build_dense_population(zoo, digits.take(np.arange(300)), arch="mlp", seeds=1, config=FAST, progress=False)
    code = main(["zoo", "prune", str(zoo.path), "--methods", "wanda", "--sparsities", "0.5", "--structure", "2:4",
                 "--finetune-epochs", "0", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run = zoo.runs(kind="pruned")
    assert run.structure.tolist() == ["2:4"] and run.method.tolist() == ["wanda"]
    masks = zoo.masks(run.run[0])
    for m in masks.values():
        groups = m.reshape(m.shape[0], -1, 4)
        assert bool((groups.sum(-1) == 2).all())
    assert (
        main(
            ["zoo", "prune", str(zoo.path), "--methods", "wanda", "--sparsities", "0.9", "--structure", "2:4"]
        )
        == 2
    )
    assert "None or 0.5 for structure '2:4'" in capsys.readouterr().err


def test_run_analyses_read_the_zoo_and_cache_their_results(pruned_zoo, monkeypatch):
    from pruneviz.study import run_curvature, run_landscape, run_sharpness, run_spectrum

    lamp = pruned_zoo.runs(method="lamp").sort_values("sparsity_target").run.iloc[-1]
    spec = run_spectrum(pruned_zoo, lamp)
    assert (spec.run == lamp).all() and (spec.method == "lamp").all()
    sparsity = spec[spec.metric == "sparsity"].set_index("layer").value
    masks = pruned_zoo.masks(lamp)
    for name, mask in masks.items():
        assert sparsity[name] >= float((~mask).double().mean()) - 1e-9
    curv = run_curvature(pruned_zoo, lamp, k=2, iterations=8, probes=4, samples=64)
    assert curv.metric.tolist() == ["eigenvalue_1", "eigenvalue_2", "trace"]
    assert curv.dim.iloc[0] == sum(int(m.sum()) for m in masks.values()) + sum(
        p.numel()
        for n, p in pruned_zoo.load_model(lamp).named_parameters()
        if n.removesuffix(".weight") not in masks
    )
    block = run_curvature(
        pruned_zoo, lamp, k=1, iterations=5, probes=2, samples=64, params=["classifier.weight"]
    )
    assert block.dim.iloc[0] == int(masks["classifier"].sum())
    land = run_landscape(pruned_zoo, lamp, dims=1, steps=3, samples=64)
    # "auto": the budget the model's counted cost affords, the same on every call
    from pruneviz.analysis.budget import budget_samples, forward_macs

    train = pruned_zoo.splits(pruned_zoo.run(lamp).dataset).train
    macs = forward_macs(pruned_zoo.load_model(lamp), train.x[:2])
    auto = run_curvature(pruned_zoo, lamp, k=1, iterations=4, probes=2)
    want = budget_samples(macs, evaluations=8, seconds=8.0, available=len(train))
    assert (auto.samples == want).all() and want > 64
    with pytest.raises(ValidationError, match=r"samples.*'auto'"):
        run_curvature(pruned_zoo, lamp, samples="all")
    sharp = run_sharpness(pruned_zoo, lamp, samples=64)
    assert len(land) == 3 and set(sharp.measure) == {"sam", "asam", "average_adaptive"}

    import pruneviz.study.runs as runs

    monkeypatch.setattr(runs, "spectrum_table", lambda *a, **k: pytest.fail("recomputed a cached analysis"))
    import pruneviz.analysis.curvature as curvature

    monkeypatch.setattr(
        curvature, "curvature_summary", lambda *a, **k: pytest.fail("recomputed a cached analysis")
    )
    pd.testing.assert_frame_equal(run_spectrum(pruned_zoo, lamp), spec)
    pd.testing.assert_frame_equal(
        run_curvature(pruned_zoo, lamp, k=2, iterations=8, probes=4, samples=64), curv
    )


def test_a_target_error_picks_the_sample_budget(pruned_zoo):
    import torch
    import torch.nn.functional as F

    from pruneviz.study import run_curvature, run_landscape

    lamp = pruned_zoo.runs(method="lamp").sort_values("sparsity_target").run.iloc[-1]

    # curvature: the first computation at `samples`, then the power of two where the top eigenvalue's
    # error, shrinking as 1/sqrt(n), meets the target
    def top(frame):
        row = frame[frame.metric == "eigenvalue_1"].iloc[0]
        return row.sample_se / row.value

    first = top(run_curvature(pruned_zoo, lamp, k=1, iterations=4, probes=2, samples=32))
    want = int(2 ** np.ceil(np.log2(32 * (first / 0.1) ** 2)))
    assert first > 0.1 and want == 128
    grown = run_curvature(pruned_zoo, lamp, k=1, iterations=4, probes=2, samples=32, target_rse=0.1)
    plain = run_curvature(pruned_zoo, lamp, k=1, iterations=4, probes=2, samples=want)
    assert (grown.samples == want).all() and top(grown) <= 0.1
    pd.testing.assert_frame_equal(grown, plain)
    # landscape: the per-sample losses at the run's weights give the budget in closed form
    model = pruned_zoo.load_model(lamp).eval()
    train = pruned_zoo.splits(pruned_zoo.run(lamp).dataset).train
    with torch.no_grad():
        losses = F.cross_entropy(model(train.x), train.y, reduction="none").double().numpy()
    rse = losses.std(ddof=1) / np.sqrt(len(losses)) / losses.mean()
    target = rse * np.sqrt(len(losses) / 70)  # 70 samples would do: the next power of two is 128
    land = run_landscape(pruned_zoo, lamp, dims=1, steps=3, subset="train", target_rse=target)
    centre = land[land.alpha == 0].iloc[0]
    assert (land.samples == 128).all() and centre.loss_se / centre.loss <= target
    # out of reach: every sample of the subset, and a warning that says so
    with pytest.warns(UserWarning, match=r"target_rse=1e-06 was not reached.*490 samples"):
        out = run_landscape(pruned_zoo, lamp, dims=1, steps=3, subset="train", target_rse=1e-6)
    assert (out.samples == len(train)).all()
    for bad in (0, -0.1, True, "5%"):
        with pytest.raises(ValidationError, match=r"target_rse.*relative standard error"):
            run_curvature(pruned_zoo, lamp, target_rse=bad)


# -- schedules: IMP and gradual through prune_population and the sweep spec ---------------------------


@pytest.fixture(scope="module")
def small_dense_zoo(tmp_path_factory, digits):
    zoo = Zoo.create(tmp_path_factory.mktemp("sched") / "z")
    build_dense_population(zoo, digits.take(np.arange(300)), arch="mlp", seeds=1, config=TUNE, progress=False)
    return zoo


def test_imp_population_reaches_its_target_and_records_its_rounds(small_dense_zoo):
    zoo = small_dense_zoo
    table = prune_population(
        zoo,
        methods=["global_magnitude"],
        sparsities=[0.75],
        finetune=TUNE,
        schedule="imp",
        rounds=2,
        rewind_step=1,
        progress=False,
    )
    (run,) = table.run
    record = zoo.run(run)
    assert record.schedule["schedule"] == "imp" and record.schedule["rounds"] == 2
    assert record.schedule["rewind_step"] == 1
    assert record.schedule["round_sparsities"] == pytest.approx([0.5, 0.75])
    assert abs(record.sparsity - 0.75) < 1e-3
    model = zoo.load_model(run)
    masks = zoo.masks(run)
    total = sum(m.weight.numel() for m in prunable_layers(model).values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.75 * total)
    for name, m in prunable_layers(model).items():
        assert bool((m.weight[~masks[name]] == 0).all())
    # the same population one-shot is a different run (the schedule is part of the id), stored beside it
    one = prune_population(
        zoo, methods=["global_magnitude"], sparsities=[0.75], finetune=TUNE, progress=False
    )
    assert one.run[0] != run and zoo.run(one.run[0]).schedule["schedule"] == "one_shot"
    # resuming skips the stored IMP run
    again = prune_population(
        zoo,
        methods=["global_magnitude"],
        sparsities=[0.75],
        finetune=TUNE,
        schedule="imp",
        rounds=2,
        rewind_step=1,
        progress=False,
    )
    assert list(again.run) == [run]


def test_imp_masks_are_nested_across_rounds(small_dense_zoo):
    from pruneviz.prune import iterative_magnitude
    from pruneviz.zoo.populations import PruneSettings

    zoo = small_dense_zoo
    parent = zoo.run(zoo.runs(kind="dense").run[0])
    train = zoo.splits(parent.dataset).train
    settings = PruneSettings(finetune=TUNE, schedule="imp", rounds=2)
    dense = zoo.load_model(parent.run)
    two = settings.prune(
        dense, train, method="magnitude", sparsity=0.75, structure="unstructured",
        init=settings.initial_model(parent),
    )  # fmt: skip
    # round 1 alone is IMP with one round to the first round's sparsity: its survivors contain round 2's
    one = iterative_magnitude(
        settings.initial_model(parent), train, sparsity=0.5, rounds=1, config=TUNE,
        allocation="uniform", trained=dense, seed=0,
    )  # fmt: skip
    for name, keep in two.masks.items():
        assert bool((one.masks[name] | ~keep).all())
    assert two.masks.sparsity() == pytest.approx(0.75, abs=1e-3)


def test_gradual_population_and_schedule_errors(small_dense_zoo):
    zoo = small_dense_zoo
    table = prune_population(
        zoo, methods=["magnitude"], sparsities=[0.5], finetune=TUNE, schedule="gradual", updates=3,
        progress=False,
    )  # fmt: skip
    record = zoo.run(table.run[0])
    assert record.schedule["schedule"] == "gradual" and record.schedule["updates"] == 3
    assert abs(record.sparsity - 0.5) < 1e-2
    with pytest.raises(ValidationError, match="'methods' parameter of prune_population"):
        prune_population(zoo, methods=["lamp"], sparsities=[0.5], schedule="imp", progress=False)
    with pytest.raises(ValidationError, match="'structure' parameter of prune_population"):
        prune_population(
            zoo, methods=["magnitude"], sparsities=[0.5], structure="2:4", schedule="gradual", progress=False
        )
    with pytest.raises(ValidationError, match="'finetune' parameter of PruneSettings"):
        prune_population(
            zoo, methods=["magnitude"], sparsities=[0.5], finetune=None, schedule="imp", progress=False
        )
    with pytest.raises(ValidationError, match="'schedule' parameter of PruneSettings"):
        prune_population(zoo, methods=["magnitude"], sparsities=[0.5], schedule="lottery", progress=False)


def test_a_sweep_spec_asks_for_imp(tmp_path):
    from pruneviz.sweeps import parse_spec, run_sweep

    text = """
    [data]
    datasets = ["digits"]
    subset = 200
    [dense]
    architectures = ["mlp"]
    seeds = 1
    epochs = 1
    [prune]
    methods = ["global_magnitude", "lamp"]
    sparsities = [0.5]
    schedules = ["one_shot", "imp"]
    rounds = 2
    [prune.finetune]
    epochs = 1
    """
    spec = parse_spec(text.replace("\n    ", "\n"), source="imp.toml")
    assert spec.schedules == ("one_shot", "imp") and spec.rounds == 2
    table = run_sweep(spec, tmp_path / "zoo", executor="inprocess", progress=False)
    assert (table.status == "stored").all() and len(table) == 4  # dense + 2 one-shot + 1 imp
    zoo = Zoo(tmp_path / "zoo")
    pruned = zoo.runs(kind="pruned")
    schedules = sorted(zoo.run(r).schedule["schedule"] for r in pruned.run)
    assert schedules == ["imp", "one_shot", "one_shot"]
    imp = next(r for r in pruned.run if zoo.run(r).schedule["schedule"] == "imp")
    assert zoo.run(imp).method == "global_magnitude" and abs(zoo.run(imp).sparsity - 0.5) < 1e-3
    again = run_sweep(spec, tmp_path / "zoo", executor="inprocess", progress=False)
    assert (again.status == "skipped").all()
    bad = text.replace('"global_magnitude", "lamp"', '"lamp"').replace("\n    ", "\n")
    with pytest.raises(ValidationError, match="prune.methods"):
        parse_spec(bad, source="imp.toml")


def test_the_default_calibration_leaves_run_ids_unchanged():
    """PruneSettings writes ``calibration`` only when it is not the default, so every method's run ids
    are those the settings gave before the option existed."""
    from pruneviz.prune.api import population_method_names
    from pruneviz.zoo.populations import DEFAULT_FINETUNE, PruneSettings, pruned_run_id

    before = {  # PruneSettings().to_json() before calibration= was added
        "allocation": None,
        "exclude": [],
        "finetune": DEFAULT_FINETUNE.to_json(),
        "calibration_size": 512,
        "seed": 0,
    }
    default, dense = PruneSettings(), PruneSettings(calibration="dense")
    assert default.to_json() == before and "calibration" not in default.to_json()
    assert dense.to_json() == {**before, "calibration": "dense"}
    for method in population_method_names():
        assert pruned_run_id("p", method, "unstructured", 0.5, default.to_json()) == pruned_run_id(
            "p", method, "unstructured", 0.5, before
        )
        assert pruned_run_id("p", method, "unstructured", 0.5, dense.to_json()) != pruned_run_id(
            "p", method, "unstructured", 0.5, before
        )
