"""Channel pruning of torchvision's ResNet-18 and MobileNetV2 (224x224, batch 1 and 8): pruneviz's pruned
and exported model (BatchNorm folded, memory format / graph optimisation / thread count chosen by
`tune_inference`'s timed probe) against Torch-Pruning's MetaPruner model as users run it (eval mode,
default memory format and thread count), side by side in one run.

Target (BENCHMARKS.md, `realsize`): channel-pruned latency >= 1.1x better than Torch-Pruning's on both
models. Both prune 50 % of the channels of every coupled group by L1 magnitude, the classifier kept, so
the two pruned architectures are the same: the gain is the export, not the pruning. The JSON says so
with two fairer figures: the peer with BatchNorm folded (`ratio_folded_*`) and the peer through the very
same `tune_inference` export (`ratio_same_export_*`, ~1.0 by construction). Also: pruned vs
channel-masked outputs before fine-tuning, exported vs pruned outputs, the probe's choice per model and
batch. torchvision 0.28 does not import on this CPU-only torch (its wheel's C ops need CUDA libraries),
so the networks are `pruneviz.testing.models.resnet18` / `MobileNetV2`: torchvision's layer shapes,
module names and initialisation (state_dict shapes and outputs checked equal against its source).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, write_json

from pruneviz.prune import (
    TunedInference,
    count_macs,
    fold_batchnorm,
    mask_channels_,
    prune_channels,
    tune_inference,
)
from pruneviz.testing.models import MobileNetV2, resnet18, trained_like

SHAPE = (3, 224, 224)
SPARSITY = 0.5
TARGET = 1.1


def peer_prune(model: nn.Module, classifier: str) -> nn.Module:
    """Torch-Pruning's MetaPruner with L1 magnitude importance, as its README runs it."""
    import torch_pruning as tp

    work = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(
        work,
        torch.zeros(1, *SHAPE),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=SPARSITY,
        ignored_layers=[work.get_submodule(classifier)],
    )
    pruner.step()
    return work.eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def one_thread(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The peer's eager model run with one torch thread (small convolutions often run faster so)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return model(x)
    finally:
        torch.set_num_threads(before)


def choice(tuned: TunedInference) -> str:
    return f"{tuned.memory_format}, threads={tuned.threads}, optimized={bool(tuned.optimized)}"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = 7 if args.quick else 31
    probe_repeats = 3 if args.quick else 5
    default_threads = torch.get_num_threads()
    nets = {"resnet18": (resnet18, "fc"), "mobilenet_v2": (MobileNetV2, "classifier.1")}
    figures: dict[str, object] = {"sparsity": SPARSITY, "peer_threads": default_threads}
    rows = []
    for name, (build, classifier) in nets.items():
        dense = trained_like(build(seed=0))
        result = prune_channels(dense, sparsity=SPARSITY, input_shape=SHAPE, exclude=[classifier])
        ours = result.model.eval()
        peer = peer_prune(dense, classifier)
        masked = mask_channels_(copy.deepcopy(dense), result.plan, input_shape=SHAPE)
        x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            figures[f"{name}_pruned_vs_masked_rel_err"] = rel_err(ours(x), masked(x))
        macs = {  # the last row of count_macs is the total
            k: float(count_macs(m, SHAPE).dense_macs.iloc[-1])
            for k, m in [("dense", dense), ("ours", ours), ("peer", peer)]
        }
        figures[f"{name}_mac_reduction"] = macs["dense"] / macs["ours"]
        figures[f"{name}_peer_mac_reduction"] = macs["dense"] / macs["peer"]
        figures[f"{name}_params_dense"] = sum(p.numel() for p in dense.parameters())
        figures[f"{name}_params_pruned"] = sum(p.numel() for p in ours.parameters())
        figures[f"{name}_params_peer"] = sum(p.numel() for p in peer.parameters())
        peer_folded = fold_batchnorm(peer)
        for batch in (1, 8):
            key = f"{name}_b{batch}"
            tuned = tune_inference(ours, SHAPE, batch_size=batch, repeats=probe_repeats)
            tuned_peer = tune_inference(peer, SHAPE, batch_size=batch, repeats=probe_repeats)
            xb = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                figures[f"{key}_exported_vs_pruned_rel_err"] = rel_err(tuned.model(xb), ours(xb))
                figures[f"{key}_peer_folded_vs_peer_rel_err"] = rel_err(peer_folded(xb), peer(xb))
                t = interleaved_medians(
                    {
                        "pruneviz": lambda m=tuned.model, xb=xb: m(xb),
                        "torch-pruning": lambda m=peer, xb=xb: m(xb),
                        "torch-pruning 1 thread": lambda m=peer, xb=xb: one_thread(m, xb),
                        "torch-pruning folded": lambda m=peer_folded, xb=xb: m(xb),
                        "torch-pruning same export": lambda m=tuned_peer.model, xb=xb: m(xb),
                        "dense": lambda m=dense, xb=xb: m(xb),
                    },
                    repeats,
                )
            for k, v in t.items():
                figures[f"latency_{key}_{k.replace(' ', '_')}_s"] = v
            ratio = t["torch-pruning"] / t["pruneviz"]
            figures[f"ratio_{key}"] = ratio
            figures[f"ratio_peer_best_threads_{key}"] = (
                min(t["torch-pruning"], t["torch-pruning 1 thread"]) / t["pruneviz"]
            )
            figures[f"ratio_folded_{key}"] = t["torch-pruning folded"] / t["pruneviz"]
            figures[f"ratio_same_export_{key}"] = t["torch-pruning same export"] / t["pruneviz"]
            figures[f"speedup_vs_dense_{key}"] = t["dense"] / t["pruneviz"]
            figures[f"peer_speedup_vs_dense_{key}"] = t["dense"] / t["torch-pruning"]
            figures[f"target_{TARGET}x_met_{key}"] = ratio >= TARGET
            figures[f"choice_{key}"] = choice(tuned)
            figures[f"peer_choice_{key}"] = choice(tuned_peer)
            for r in tuned.probe.itertuples():
                opt = "optimized" if r.optimized else "frozen"
                figures[f"probe_{key}_{r.memory_format}_{opt}_threads{r.threads}_s"] = float(r.median_s)
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "pruneviz ms": 1e3 * t["pruneviz"],
                    "torch-pruning ms": 1e3 * t["torch-pruning"],
                    "ratio": ratio,
                    "ratio vs peer best threads": figures[f"ratio_peer_best_threads_{key}"],
                    "ratio vs peer folded": figures[f"ratio_folded_{key}"],
                    "ratio vs peer same export": figures[f"ratio_same_export_{key}"],
                    "dense ms": 1e3 * t["dense"],
                    "choice": figures[f"choice_{key}"],
                }
            )
    figures["target_met"] = all(v for k, v in figures.items() if k.startswith(f"target_{TARGET}x_met_"))
    print(
        f"## Channel pruning ({SPARSITY:.0%} of channels, L1), 224x224, CPU: pruneviz exported "
        f"(tune_inference) vs Torch-Pruning MetaPruner (eager, {default_threads} threads)\n"
    )
    print(markdown(rows))
    for name in nets:
        print(
            f"\n{name}: params {figures[f'{name}_params_dense']} -> {figures[f'{name}_params_pruned']} "
            f"(peer {figures[f'{name}_params_peer']}), MACs {figures[f'{name}_mac_reduction']:.2f}x fewer, "
            f"pruned vs masked rel. err {figures[f'{name}_pruned_vs_masked_rel_err']:.1e}"
        )
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
