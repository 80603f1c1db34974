"""Imported once by the fork server of local sweep workers, so that every worker forked from it starts
with what a task needs already imported: pruneviz's task and analysis code, and ``torch._dynamo``, which
torch imports the first time an optimizer is made (about a second in every fresh process otherwise).

Importing starts no thread of torch's own pools (no tensor is computed here), so forking afterwards is
safe; each worker then sets its thread counts (:func:`pruneviz.sweeps._worker.init_worker`).
"""

from __future__ import annotations

import importlib

for _name in ("pruneviz.sweeps._worker", "pruneviz.sweeps.tasks", "pruneviz.study.plan"):
    importlib.import_module(_name)

try:  # torch's own module: a torch without it (or failing to import it) costs only the time
    importlib.import_module("torch._dynamo")
except Exception:  # pragma: no cover - depends on the torch build
    pass
