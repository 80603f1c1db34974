"""Per-layer spectra of a ResNet-18-size model, 90 % pruned: pruneviz against weightwatcher side by side.

Targets (BENCHMARKS.md, `spectrum`): α equal to weightwatcher's within 1e-6 on every layer it reports,
small layers included (here also an MLP with nn.Linear(84, 10), a LeNet-style CNN with a collapsed
classifier and a small text model with embeddings and a Conv1d); the table in <= 2 s; randomised /
Marchenko-Pastur statistics in <= 5 s; exact operator spectra of all stride-1 convolutions in <= 7 s.
Also: the condition numbers against numpy's float64 SVD.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, timed, write_json

from pruneviz.analysis import conv_operator_singular_values, randomized_spectrum_table, spectrum_table
from pruneviz.analysis.spectrum import _layer_inputs, matrix_view
from pruneviz.models import build_model
from pruneviz.prune import prune_

SHAPE = (3, 32, 32)


class TinyText(nn.Module):
    """Token and position embeddings, a Conv1d, two Linear layers (the last too small to be reported)."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(1000, 32, padding_idx=0)
        self.positions = nn.Embedding(16, 32)
        self.conv = nn.Conv1d(32, 48, 9, padding=4)
        self.hidden = nn.Linear(48, 12)
        self.classifier = nn.Linear(12, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens) + self.positions(torch.arange(tokens.shape[1]))
        x = self.conv(x.transpose(1, 2)).relu().mean(-1)
        return self.classifier(self.hidden(x).relu())


def small_models() -> dict[str, nn.Module]:
    mlp = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(120, 84), seed=0)
    cnn = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, channels=(6, 16), seed=1)
    prune_(cnn, method="global_magnitude", sparsity=0.8)
    with torch.no_grad():
        cnn.classifier.weight[:3] = 0.0  # three classes' neurons pruned away: 7 eigenvalues of 10
    with torch.random.fork_rng():
        torch.manual_seed(2)
        text = TinyText()
    return {"mlp": mlp, "lenet": cnn, "text": text}


def compare_alpha(model: nn.Module, details: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """One row per layer weightwatcher reports: its α, ours, the number of eigenvalues. Its placeholders
    (α = -1 for a failed fit, 0 for equal eigenvalues) are compared with our NaN (no fit)."""
    wide = ours.set_index(["layer", "metric"])["value"].unstack()
    rows = []
    for _, row in details.iterrows():
        name = row["longname"]
        mine = wide.loc[name, "alpha"] if name in wide.index else math.nan
        theirs = float(row["alpha"])
        if theirs <= 0:
            diff = 0.0 if math.isnan(mine) else math.inf
        else:
            diff = abs(mine - theirs) if not math.isnan(mine) else math.inf
        rows.append(
            {"layer": name, "num_evals": int(row["num_evals"]), "ww": theirs, "ours": mine, "diff": diff}
        )
    fitted = set(wide.index[wide["alpha"].notna()])
    extra = fitted - {r["layer"] for r in rows if r["ww"] > 0}  # fitted here, not reported there
    for name in sorted(extra):
        rows.append(
            {
                "layer": name,
                "num_evals": -1,
                "ww": math.nan,
                "ours": wide.loc[name, "alpha"],
                "diff": math.inf,
            }
        )
    return pd.DataFrame(rows)


def analyze(model: nn.Module):
    import weightwatcher as ww

    with contextlib.redirect_stdout(io.StringIO()):  # its small-sample fit prints a line per layer
        return ww.WeightWatcher(model=model).analyze(randomize=False, mp_fit=False, plot=False)


def kappa_errors(model: nn.Module, table: pd.DataFrame) -> float:
    """Largest relative difference of the condition numbers (at the numerical rank, and the full one where
    finite) from those of numpy's float64 SVD of each layer's matrix view."""
    wide = table.set_index(["layer", "metric"])["value"].unstack()
    worst = 0.0
    for name, module in model.named_modules():
        if name not in wide.index:
            continue
        matrix = matrix_view(module.weight)
        sv = np.linalg.svd(matrix, compute_uv=False)
        r = int(wide.loc[name, "rank"])
        if r == 0 or sv[0] == 0:
            continue
        worst = max(worst, abs(wide.loc[name, "condition_number"] / (sv[0] / sv[r - 1]) - 1))
        if math.isfinite(wide.loc[name, "condition_number_full"]):
            worst = max(worst, abs(wide.loc[name, "condition_number_full"] / (sv[0] / sv[-1]) - 1))
    return worst


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    import weightwatcher as ww

    model = build_model("resnet18", input_shape=SHAPE, num_classes=10, seed=0).eval()
    prune_(model, method="global_magnitude", sparsity=0.9)
    repeats = 1 if args.quick else 3

    ours, t_ours = timed(lambda: spectrum_table(model, operator=False), repeats)
    watcher = ww.WeightWatcher(model=model)
    with contextlib.redirect_stdout(io.StringIO()):
        peer, t_peer = timed(lambda: watcher.analyze(randomize=False, mp_fit=False, plot=False), repeats)
    compared = [compare_alpha(model, peer, ours).assign(model="resnet18")]
    for label, small in small_models().items():
        compared.append(compare_alpha(small, analyze(small), spectrum_table(small)).assign(model=label))
    alpha = pd.concat(compared, ignore_index=True)
    small_rows = alpha[(alpha["num_evals"] >= 0) & (alpha["num_evals"] < 50)]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]

    _, t_rand = timed(lambda: randomized_spectrum_table(model), repeats)
    figures: dict[str, object] = {
        "table_s": t_ours,
        "peer_analyze_s": t_peer,
        "table_speedup": t_peer / t_ours,
        "alpha_layers_compared": len(alpha),
        "alpha_small_layers_compared": len(small_rows),
        "alpha_layers_under_20_evals": int(((alpha["num_evals"] >= 0) & (alpha["num_evals"] < 20)).sum()),
        "alpha_placeholders_matched": int((alpha["ww"] <= 0).sum()),
        "alpha_max_abs_diff": float(alpha["diff"].max()),
        "alpha_max_abs_diff_resnet18": float(alpha.loc[alpha["model"] == "resnet18", "diff"].max()),
        "alpha_max_abs_diff_small_layers": float(small_rows["diff"].max()),
        "kappa_max_rel_diff_vs_numpy": kappa_errors(model, ours),
        "randomized_s": t_rand,
        "layers": len(names),
    }
    if not args.quick:
        with contextlib.redirect_stdout(io.StringIO()):
            _, t_peer_rand = timed(lambda: watcher.analyze(randomize=True, mp_fit=True, plot=False), 1)
        figures["peer_randomize_mp_s"] = t_peer_rand
        figures["randomized_speedup"] = t_peer_rand / t_rand

    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride == (1, 1)}
    shapes = _layer_inputs(model, SHAPE, set(convs))

    def all_exact() -> int:
        return sum(conv_operator_singular_values(m, shapes[n][1:]).size for n, m in convs.items())

    count, t_exact = timed(all_exact, repeats)
    figures["exact_conv_spectra_s"] = t_exact
    figures["exact_conv_layers"] = len(convs)
    figures["exact_singular_values"] = count
    figures["target_alpha_met"] = bool(alpha["diff"].max() <= 1e-6)
    figures["target_table_met"] = t_ours <= 2.0
    figures["target_randomized_met"] = t_rand <= 5.0
    figures["target_exact_met"] = t_exact <= 7.0

    rows = [
        {
            "task": "per-layer table (SVD, α fit)",
            "pruneviz s": t_ours,
            "weightwatcher s": t_peer,
            "ratio": t_peer / t_ours,
        },
        {
            "task": "randomised ESD + MP statistics",
            "pruneviz s": t_rand,
            "weightwatcher s": figures.get("peer_randomize_mp_s", float("nan")),
            "ratio": figures.get("randomized_speedup", float("nan")),
        },
        {
            "task": f"exact spectra, {len(convs)} stride-1 convs",
            "pruneviz s": t_exact,
            "weightwatcher s": "n/a",
            "ratio": "n/a",
        },
    ]
    size = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"## Spectra of ResNet-18 (3x32x32, {size:.1f}M params), 90 % pruned\n")
    print(markdown(rows))
    print(
        f"\nα vs weightwatcher on every layer it reports ({len(alpha)}, of them {len(small_rows)} with < 50 "
        f"eigenvalues, in ResNet-18 and {len(compared) - 1} small models): "
        f"max |diff| = {alpha['diff'].max():.2e}"
    )
    print(
        f"condition numbers vs numpy's SVD: max relative diff = {figures['kappa_max_rel_diff_vs_numpy']:.2e}"
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
