"""Every analysis of a zoo at once: analyse_zoo and `pruneviz zoo analyse`."""

from __future__ import annotations

import pytest

from pruneviz.cli import main
from pruneviz.exceptions import ValidationError
from pruneviz.study.plan import STEPS, StudySettings, analyse_zoo
from pruneviz.zoo.store import INDEX_FILE


def _state(zoo) -> tuple[int, dict[str, float]]:
    import sqlite3

    con = sqlite3.connect(zoo.path / INDEX_FILE)
    try:
        entries = con.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
    finally:
        con.close()
    stamps = {p.name: p.stat().st_mtime for p in (zoo.path / "runs").glob("*/outputs.parquet")}
    return entries, stamps


@pytest.fixture()
def settings_restored(study_zoo):
    """The shared zoo's recorded study settings (which the views read) as they were before the test."""
    before = study_zoo.meta("study_settings")
    yield
    study_zoo.set_meta("study_settings", before)


def test_analyse_zoo_runs_every_step_then_reads_everything_from_the_cache(
    study_zoo, capsys, settings_restored
):
    report = analyse_zoo(study_zoo, settings=StudySettings.quick(), progress=True)
    assert list(report.step) == list(STEPS)
    assert (report["items"] > 0).all() and (report["rows"] > 0).all()
    before = _state(study_zoo)
    assert before[0] > 50
    # a second pass computes nothing: no new cache entries, no outputs rewritten
    assert main(["zoo", "analyse", str(study_zoo.path), "--quick", "--quiet"]) == 0
    assert _state(study_zoo) == before
    assert "analyses cached" in capsys.readouterr().out


def test_analyse_zoo_validates_its_steps(study_zoo, capsys):
    with pytest.raises(ValidationError, match="'steps' parameter of analyse_zoo.*did you mean 'spectrum'"):
        analyse_zoo(study_zoo, steps=["spectrm"])
    assert main(["zoo", "analyse", str(study_zoo.path), "--steps", "nope"]) == 2
    assert "'steps' parameter" in capsys.readouterr().err
