"""Per-layer spectra of a ResNet-18-size model, 90 % pruned: pruneviz against weightwatcher side by side.

Targets (BENCHMARKS.md, `spectrum`): α equal to weightwatcher's within 1e-6 on layers with >= 50
eigenvalues; the table in <= 2 s; randomised / Marchenko-Pastur statistics in <= 5 s; exact operator
spectra of all stride-1 convolutions in <= 7 s.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown, parse_args, timed, write_json

from pruneviz.analysis import conv_operator_singular_values, randomized_spectrum_table, spectrum_table
from pruneviz.analysis.spectrum import _layer_inputs
from pruneviz.models import build_model
from pruneviz.prune import prune_

SHAPE = (3, 32, 32)


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
    peer, t_peer = timed(lambda: watcher.analyze(randomize=False, mp_fit=False, plot=False), repeats)

    wide = ours.pivot_table(index="layer", columns="metric", values="value", sort=False)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    diffs = []
    for i, row in peer.reset_index(drop=True).iterrows():
        name = row.get("longname", names[i])
        if name in wide.index and wide.loc[name, "num_evals"] >= 50:
            diffs.append(abs(wide.loc[name, "alpha"] - row["alpha"]))

    _, t_rand = timed(lambda: randomized_spectrum_table(model), repeats)
    figures: dict[str, object] = {
        "table_s": t_ours,
        "peer_analyze_s": t_peer,
        "table_speedup": t_peer / t_ours,
        "alpha_layers_compared": len(diffs),
        "alpha_max_abs_diff": max(diffs),
        "randomized_s": t_rand,
        "layers": len(names),
    }
    if not args.quick:
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
    figures["target_alpha_met"] = max(diffs) <= 1e-6
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
        f"\nα vs weightwatcher on {len(diffs)} layers with >= 50 eigenvalues: max |diff| = {max(diffs):.2e}"
    )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
