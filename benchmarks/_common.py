"""Shared plumbing of the benchmark scripts: arguments, machine facts, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch


def parse_args(description: str, sections: Sequence[str] = ()) -> argparse.Namespace:
    """``--quick`` and ``--json PATH``; with ``sections``, also ``--only SECTION`` (run one section and
    merge its figures into the JSON file instead of replacing it, see :func:`write_json`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="finish in about a minute on 2 CPU cores")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as a flat JSON object")
    if sections:
        parser.add_argument(
            "--only",
            choices=list(sections),
            default=None,
            help="run only this section; --json then merges its figures into the existing file",
        )
    return parser.parse_args()


def machine() -> dict[str, object]:
    return {
        "machine": f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def write_json(
    path: Path | None, figures: dict[str, object], quick: bool, section: str | None = None
) -> None:
    """Write ``figures`` with ``machine``, ``torch``, ``device``, ``quick`` and ``date``. With ``section``
    (a run of one section only) the figures are merged into the existing file: its other keys, and its
    top-level facts of the full run, stay; this run's facts go under ``<section>.machine`` etc."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    facts = {**machine(), "quick": quick, "date": time.strftime("%Y-%m-%d")}
    if section is None:
        out = {**figures, **facts}
    else:
        old = json.loads(path.read_text()) if path.exists() else {}
        out = {**facts, **old, **figures, **{f"{section}.{k}": v for k, v in facts.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2, sort_keys=True, default=_plain) + "\n")
    tmp.replace(path)


def _plain(value: object) -> object:
    """numpy scalars (np.bool_, np.float64, ...) as plain Python values for JSON."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def markdown(rows: list[dict[str, object]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


T = TypeVar("T")


def timed(fn: Callable[[], T], repeats: int) -> tuple[T, float]:
    """The last result of ``fn`` and the median seconds of ``repeats`` calls."""
    times: list[float] = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)  # type: ignore[return-value]


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Median seconds of each callable, timed in interleaved A/B/A/B order so drift hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
