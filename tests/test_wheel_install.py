"""The wheel installs and runs on its own: built from this checkout, installed into a clean virtual
environment with the runtime lock only (no test tools), it answers ``pruneviz --help``, builds and prunes
a tiny zoo, and carries its package data (the audit template, German Credit, the demo specs, LICENSE)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(args[:4])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done


def test_the_wheel_installs_into_a_clean_venv_and_runs(tmp_path):
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)], tmp_path)
    (wheel,) = dist.glob("pruneviz-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "pruneviz/views/templates/audit.html.j2",
        "pruneviz/data/bundled/german-credit.data",
        "pruneviz/sweeps/demo.toml",
        "pruneviz/sweeps/demo_fairness.toml",
        "pruneviz/py.typed",
    ):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "clean"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    clean_pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*clean_pip, "install", "-r", str(ROOT / "requirements" / "lock.txt")], tmp_path, timeout=1800)
    _run([*clean_pip, "install", "--no-deps", str(wheel)], tmp_path)
    probe = "import importlib.util as u; print(u.find_spec('pytest') is None and u.find_spec('fairlearn') is None)"
    assert _run([str(python), "-c", probe], tmp_path).stdout.strip() == "True"  # no test tools

    cli = venv / "bin" / "pruneviz"
    assert "usage: pruneviz" in _run([str(cli), "--help"], tmp_path).stdout
    zoo = tmp_path / "zoo"
    _run(
        [str(cli), "zoo", "build", "--out", str(zoo), "--arch", "mlp", "--seeds", "1", "--epochs", "2"],
        tmp_path,
    )
    _run([str(cli), "zoo", "prune", str(zoo), "--methods", "lamp", "--sparsities", "0.5"], tmp_path)
    listing = _run([str(cli), "zoo", "ls", str(zoo)], tmp_path).stdout
    assert "lamp" in listing and "mlp" in listing
    data = (
        "import pruneviz; from importlib import resources; "
        "ds = pruneviz.load_dataset('german-credit'); "
        "assert len(ds) == 1000 and (resources.files('pruneviz.views') / 'templates' / 'audit.html.j2').is_file(); "
        "print(pruneviz.__file__)"
    )
    where = _run([str(python), "-c", data], tmp_path).stdout.strip()
    assert str(venv) in where  # the installed wheel, not this checkout
