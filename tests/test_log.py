"""pruneviz's progress lines go through the ``pruneviz`` logger."""

from __future__ import annotations

import logging
import subprocess
import sys


def test_progress_lines_reach_stderr_where_logging_is_not_set_up():
    code = "from pruneviz._log import progress; progress('sweep: 1 done')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr == "sweep: 1 done\n" and done.stdout == ""


def test_progress_lines_follow_the_logging_set_up(caplog):
    from pruneviz._log import progress

    caplog.set_level(logging.INFO, logger="pruneviz")
    progress("analyses: geometry: 3 done")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("pruneviz", logging.INFO, "analyses: geometry: 3 done")
    ]
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="pruneviz")  # silenced
    progress("analyses: geometry: 4 done")
    assert caplog.records == []


def test_long_loops_show_a_progress_bar_on_request(capsys):
    import torch

    from pruneviz.analysis import landscape_1d
    from pruneviz.data import Dataset

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    data = Dataset(torch.randn(20, 3).numpy(), [0, 1] * 10)
    landscape_1d(model, data, steps=5)
    assert capsys.readouterr().err == ""  # silent by default
    landscape_1d(model, data, steps=5, progress=True)
    err = capsys.readouterr().err
    assert "landscape 1-D" in err and "/5 " in err  # the bar over the 5 grid points
