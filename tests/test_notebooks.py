"""The notebooks in ``notebooks/``: committed without outputs, using the public API only, and each runs top
to bottom in small mode (``PRUNEVIZ_NOTEBOOK_SMALL=1``) in a kernel of this interpreter (the ``notebook``
tier: about two minutes on two cores)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
DOCS = Path(__file__).resolve().parents[1] / "build" / "notebooks"  # the executed notebooks as HTML
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
STORIES = {"quickstart", "geometry", "exemplars", "sharpness", "spectrum", "robustness", "fairness_audit"}
PUBLIC = {
    "pruneviz",
    "pruneviz.analysis",
    "pruneviz.study",
    "pruneviz.charts",
    "pruneviz.views",
    "pruneviz.views.report",
    "pruneviz.zoo",
}
CELL_TIMEOUT = 300  # seconds per cell


def _code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _execute(notebook, cwd: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(
        notebook, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()


def test_every_story_is_there():
    assert {p.stem for p in NOTEBOOKS} >= STORIES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in notebook["metadata"]  # no saved widget state
    for cell in _code_cells(path):
        assert cell["outputs"] == [], f"{path.name}: cell {cell.get('id')} has outputs; clear them"
        assert cell["execution_count"] is None, f"{path.name}: cell {cell.get('id')} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_public_api_and_small_mode(path):
    cells = _code_cells(path)
    assert 'SMALL = os.environ.get("PRUNEVIZ_NOTEBOOK_SMALL") == "1"' in _source(cells[0])
    for cell in cells:
        for node in ast.walk(ast.parse(_source(cell))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pruneviz"):
                assert node.module in PUBLIC, f"{path.name} imports from {node.module}"
                assert not any(alias.name.startswith("_") for alias in node.names), path.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("pruneviz") or alias.name in PUBLIC, alias.name


@pytest.mark.notebook
def test_kernel_runs_this_interpreter(tmp_path):
    """The kernelspec says ``python``; jupyter_client runs it as ``sys.executable``, i.e. this venv."""
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")])
    _execute(notebook, tmp_path)
    assert notebook.cells[0].outputs[0]["text"].strip() == sys.prefix


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_in_small_mode(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    monkeypatch.setenv("PRUNEVIZ_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("PRUNEVIZ_NOTEBOOK_ZOO", str(tmp_path / "zoo"))
    notebook = nbformat.read(path, as_version=4)
    _execute(notebook, tmp_path)  # raises CellExecutionError with the traceback if a cell fails
    code = [c for c in notebook.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    warnings = [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not warnings, f"{path.name} wrote to stderr: {warnings}"
    last = [o for o in code[-1].outputs if o.output_type in ("execute_result", "display_data", "stream")]
    assert last, f"{path.name}: the last cell shows nothing"
    assert (tmp_path / "zoo" / "zoo.sqlite").exists()  # the zoo went where it was told
    # the executed notebook, outputs and all, is the documentation page `make docs` leaves in build/
    from nbconvert import HTMLExporter

    page, _ = HTMLExporter().from_notebook_node(notebook)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / f"{path.stem}.html").write_text(page, encoding="utf-8")
    title = notebook.cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert title.split(":")[0] in page and "jp-OutputArea" in page
