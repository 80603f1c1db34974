"""The import cost of `import pruneviz` and the one-way layering of DESIGN.md §1."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pruneviz"
HEAVY = ("panel", "altair", "triton", "captum", "umap", "dask", "distributed", "bokeh", "sklearn", "scipy")


def test_import_pruneviz_loads_no_optional_dependency():
    code = "import sys, json, pruneviz; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert {"torch", "numpy", "pandas", "pruneviz"} <= loaded
    assert not loaded & set(HEAVY), f"import pruneviz loaded {sorted(loaded & set(HEAVY))}"


# layer of each module prefix -> layers it may import (DESIGN.md §1)
LAYERS = {
    "core": set(),
    "data": {"core"},
    "models": {"core", "data"},
    "train": {"core", "data", "models"},
    "kernels": {"core"},
    "prune": {"core", "kernels", "models", "data", "train"},
    "zoo": {"core", "prune", "data", "models", "train"},
    # analysis is pure: models and data in, frames out; the zoo is the study layer's business
    "analysis": {"core", "prune", "data", "models", "train"},
    "study": {"core", "zoo", "prune", "data", "models", "train", "analysis"},
    "sweeps": {"core", "data", "models", "train", "prune", "zoo", "analysis", "study"},
    "charts": {"core"},
    # stand-ins for users' models and data, and reference implementations: for tests and benchmarks
    "testing": {"core", "data", "models"},
    "views": {"core", "analysis", "charts", "zoo", "data", "models", "study"},
    "app": {"core", "analysis", "charts", "zoo", "views", "data", "models", "study"},
    "cli": {
        "core",
        "data",
        "models",
        "train",
        "kernels",
        "prune",
        "zoo",
        "analysis",
        "study",
        "charts",
        "views",
        "app",
        "sweeps",
    },
    "root": {"core", "data", "models", "train", "zoo"},
}
# third-party modules a layer must never import, even lazily
FORBIDDEN_THIRD_PARTY = {"charts": {"torch"}, "core": {"panel", "altair"}, "analysis": {"panel", "altair"}}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts == ["pruneviz"]:
        return "root"
    name = parts[1]
    if name.startswith("_") or name == "exceptions":
        return "core"
    return {"app": "app", "cli": "cli", "train": "train"}.get(name, name)


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_layering(module, path):
    mine = layer_of(module)
    assert mine in LAYERS, f"{module} is in no layer of DESIGN.md §1; add it to the table"
    for name in imported_names(path):
        top = name.split(".")[0]
        if top == "pruneviz":
            if name == "pruneviz":
                continue
            other = layer_of(name)
            assert other == mine or other in LAYERS[mine], f"{module} ({mine}) imports {name} ({other})"
        else:
            assert top not in FORBIDDEN_THIRD_PARTY.get(mine, set()), f"{module} imports {name}"


def test_layering_checker_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from pruneviz.zoo import Zoo\n")
    names = imported_names(bad)
    assert layer_of(names[0]) == "zoo" and "zoo" not in LAYERS["models"]


def test_the_conda_environment_installs_the_lock():
    """environment.yml and the Makefile install the same pins: the conda file takes Python from
    pyproject's floor and every pin from requirements/ (none of its own), and names the no-deps lock."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    text = (root / "environment.yml").read_text()
    requires = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f"python={requires.lstrip('>=').split(',')[0]}" in text
    assert "- -r requirements/lock-dev.txt" in text and "- -e ." in text
    assert "pip install --no-deps -r requirements/lock-nodeps.txt" in text
    pins = [line for line in text.splitlines() if "==" in line and not line.lstrip().startswith("#")]
    assert pins == [], pins  # a pin here could disagree with the lock
    makefile = (root / "Makefile").read_text()
    assert (
        "-r requirements/lock-dev.txt" in makefile and "--no-deps -r requirements/lock-nodeps.txt" in makefile
    )
    lock = (root / "requirements" / "lock.txt").read_text()
    assert "jupyterlab==" in lock  # JupyterLab is part of the product
