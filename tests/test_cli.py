from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from pruneviz.cli import main
from pruneviz.models import build_from_spec
from pruneviz.sweeps import build_demo_zoo
from pruneviz.train import TrainConfig, fit
from pruneviz.zoo import Zoo

CLI = [sys.executable, "-m", "pruneviz.cli"]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "demo" in text and "zoo" in text


def test_errors_are_one_clear_line_not_a_traceback(tmp_path, capsys):
    assert main(["zoo", "ls", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pruneviz: error: The zoo") and "Traceback" not in err
    assert main(["zoo", "build", "--out", str(tmp_path / "z"), "--arch", "vgg", "--seeds", "1"]) == 2
    assert "'arch' parameter of build_model must be one of" in capsys.readouterr().err
    assert main(["zoo", "build", "--out", str(tmp_path / "z"), "--seeds", "0"]) == 2
    assert "'seeds' parameter of build_dense_population must be a positive integer" in capsys.readouterr().err


def count_runs(zoo_dir) -> int:
    try:
        con = sqlite3.connect(zoo_dir / "zoo.sqlite", timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_build_killed_with_sigkill_resumes_to_every_run_once(tmp_path):
    out = tmp_path / "zoo"
    args = [
        *CLI,
        "zoo",
        "build",
        "--out",
        str(out),
        "--arch",
        "cnn",
        "--seeds",
        "3",
        "--epochs",
        "8",
        "--quiet",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while count_runs(out) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second run's training or writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    killed_at = count_runs(out)
    assert 1 <= killed_at < 3

    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    zoo = Zoo(out)
    ids = zoo.run_ids()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(ids)  # no orphans, no temporaries
    assert zoo.verify().empty
    assert sorted(zoo.runs().seed) == [0, 1, 2]

    # Determinism across processes: retraining seed 0 here gives the stored weights bit for bit.
    record = zoo.run(zoo.runs(seed=0).run[0])
    model = build_from_spec(record.model_spec, seed=0)
    fit(
        model,
        zoo.splits(record.dataset).train,
        config=TrainConfig(**record.train_config),
        seed=0,
        progress=False,
    )
    stored = zoo.load_model(record.run).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[key]), key


def test_zoo_build_and_ls_from_the_shell(tmp_path):
    out = tmp_path / "z"
    built = subprocess.run(
        [
            *CLI,
            "zoo",
            "build",
            "--out",
            str(out),
            "--arch",
            "mlp",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    listed = subprocess.run([*CLI, "zoo", "ls", str(out)], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    rid = Zoo(out).run_ids()[0]
    assert rid in listed.stdout and "test_accuracy" in listed.stdout


@pytest.mark.slow
def test_demo_zoo_meets_the_bar_and_reopens_without_training(tmp_path, monkeypatch, capsys):
    from pruneviz.zoo.build import DEMO_METHODS, DEMO_SPARSITIES

    zoo = build_demo_zoo(tmp_path / "demo", progress=False)
    runs = zoo.runs()
    fairness = runs[runs.dataset.str.startswith("german-credit")]
    assert len(fairness[fairness.kind == "dense"]) == 3 and len(fairness) == 3 + 3 * 4 * 4
    assert (fairness[fairness.kind == "dense"].test_accuracy >= 0.65).all()
    dense = zoo.runs(kind="dense", arch="cnn")
    assert len(dense) == 3 and dense.dataset.str.startswith("digits").all()
    assert (dense.test_accuracy >= 0.95).all(), dense.test_accuracy.tolist()
    pruned = runs[(runs.kind == "pruned") & runs.parent.isin(dense.run)]
    assert len(pruned) == 3 * len(DEMO_METHODS) * len(DEMO_SPARSITIES)
    assert set(pruned.method) == set(DEMO_METHODS) and set(pruned.parent) == set(dense.run)
    assert sorted(set(pruned.sparsity_target)) == list(DEMO_SPARSITIES)
    masked = pruned[pruned.structure == "unstructured"]
    assert (masked.sparsity - masked.sparsity_target).abs().max() < 1e-3
    assert zoo.verify().empty

    import pruneviz.zoo.build as build
    import pruneviz.zoo.populations as populations

    monkeypatch.setattr(build, "fit", lambda *a, **k: pytest.fail("the demo retrained a stored run"))
    monkeypatch.setattr(
        populations, "one_shot", lambda *a, **k: pytest.fail("the demo re-pruned a stored run")
    )
    assert main(["demo", "--zoo", str(tmp_path / "demo"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert all(rid in printed for rid in dense.run) and all(m in printed for m in DEMO_METHODS)
