"""Channel pruning of a ResNet-20-style CNN: real CPU latency against dense, per-layer measured vs
MAC-predicted speedup, and the peer (Torch-Pruning's own MetaPruner with L1 importance) side by side.

Target (BENCHMARKS.md): 50 % of channels removed gives >= 1.7x CPU latency at batch 1 and 32; the
pruned model's outputs equal the channel-masked model's before fine-tuning.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, write_json

from pruneviz.models import build_model
from pruneviz.prune import count_macs, export_inference, mask_channels_, prune_channels

SHAPE = (3, 32, 32)


def peer_prune(model: nn.Module, sparsity: float) -> nn.Module:
    import torch_pruning as tp

    work = copy.deepcopy(model)
    pruner = tp.pruner.MetaPruner(
        work,
        torch.zeros(1, *SHAPE),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=sparsity,
        ignored_layers=[work.classifier],
    )
    pruner.step()
    return work.eval()


def layer_inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_mod, inputs, _out) -> None:  # returns None: the output is left alone
            seen.setdefault(name, inputs[0].detach())

        return hook

    hooks = [
        m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.randn(1, *SHAPE))
    for h in hooks:
        h.remove()
    return seen


def per_layer(dense: nn.Module, pruned: nn.Module, repeats: int) -> list[dict[str, object]]:
    d_mods, p_mods = dict(dense.named_modules()), dict(pruned.named_modules())
    d_in, p_in = layer_inputs(dense), layer_inputs(pruned)
    d_macs = count_macs(dense, SHAPE).set_index("layer").dense_macs
    p_macs = count_macs(pruned, SHAPE).set_index("layer").dense_macs
    rows = []
    with torch.no_grad():
        for name in d_in:
            xd, xp = d_in[name].repeat(32, 1, 1, 1), p_in[name].repeat(32, 1, 1, 1)
            t = interleaved_medians(
                {"dense": lambda n=name, x=xd: d_mods[n](x), "pruned": lambda n=name, x=xp: p_mods[n](x)},
                repeats,
            )
            rows.append(
                {
                    "layer": name,
                    "mac_speedup": float(d_macs[name] / p_macs[name]),
                    "measured_speedup_b32": t["dense"] / t["pruned"],
                }
            )
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    torch.manual_seed(0)
    repeats = 25 if args.quick else 150
    dense = build_model("resnet20", input_shape=SHAPE, num_classes=10, seed=0).eval()
    with torch.no_grad():  # trained-like BatchNorm statistics, so the equivalence check is not trivial
        for m in dense.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    result = prune_channels(dense, sparsity=0.5, input_shape=SHAPE)
    ours = result.model.eval()
    peer = peer_prune(dense, 0.5)
    masked = mask_channels_(copy.deepcopy(dense), result.plan, input_shape=SHAPE)
    x = torch.randn(8, *SHAPE)
    with torch.no_grad():
        max_diff = float((ours(x) - masked(x)).abs().max())
    macs = {
        k: float(count_macs(m, SHAPE).dense_macs.iloc[-1])
        for k, m in [("dense", dense), ("ours", ours), ("peer", peer)]
    }
    figures: dict[str, object] = {
        "equivalence_max_abs_diff": max_diff,
        "mac_reduction": macs["dense"] / macs["ours"],
        "peer_mac_reduction": macs["dense"] / macs["peer"],
        "params_dense": sum(p.numel() for p in dense.parameters()),
        "params_pruned": sum(p.numel() for p in ours.parameters()),
    }
    # Latency of the exported models (BatchNorm folded, traced and frozen: the same export for all three),
    # each at its fastest CPU thread count (1 or all cores: tiny batch-1 convolutions lose to thread
    # synchronisation), and of the eager modules at the default thread count for reference.
    # Interleaved A/B timing, medians.
    models = {"dense": dense, "pruneviz": ours, "torch-pruning": peer}
    eager = models
    default_threads = torch.get_num_threads()
    rows = []
    for batch in (1, 32):
        xb = torch.randn(batch, *SHAPE)
        exported = {k: export_inference(m, SHAPE, batch_size=batch) for k, m in models.items()}
        per_threads = {}
        with torch.inference_mode():
            for threads in sorted({1, default_threads}):
                torch.set_num_threads(threads)
                per_threads[threads] = interleaved_medians(
                    {k: (lambda m=m, xb=xb: m(xb)) for k, m in exported.items()}, repeats
                )
            torch.set_num_threads(default_threads)
            te = interleaved_medians({k: (lambda m=m, xb=xb: m(xb)) for k, m in eager.items()}, repeats)
        t = {k: min(per_threads[n][k] for n in per_threads) for k in exported}
        for k in t:
            figures[f"latency_{k}_b{batch}_s"] = t[k]
            figures[f"latency_eager_{k}_b{batch}_s"] = te[k]
            for n in per_threads:
                figures[f"latency_{k}_b{batch}_threads{n}_s"] = per_threads[n][k]
        figures[f"speedup_b{batch}"] = t["dense"] / t["pruneviz"]
        figures[f"peer_speedup_b{batch}"] = t["dense"] / t["torch-pruning"]
        figures[f"speedup_b{batch}_threads{default_threads}"] = (
            per_threads[default_threads]["dense"] / per_threads[default_threads]["pruneviz"]
        )
        figures[f"eager_speedup_b{batch}"] = te["dense"] / te["pruneviz"]
        figures[f"target_1.7x_met_b{batch}"] = t["dense"] / t["pruneviz"] >= 1.7
        rows.append(
            {
                "batch": batch,
                "dense ms": 1e3 * t["dense"],
                "pruneviz ms": 1e3 * t["pruneviz"],
                "torch-pruning ms": 1e3 * t["torch-pruning"],
                "pruneviz speedup": t["dense"] / t["pruneviz"],
                "peer speedup": t["dense"] / t["torch-pruning"],
                "ratio pruneviz/peer": t["torch-pruning"] / t["pruneviz"],
                f"speedup at {default_threads} threads": figures[
                    f"speedup_b{batch}_threads{default_threads}"
                ],
                "eager speedup": te["dense"] / te["pruneviz"],
            }
        )
    layers = per_layer(dense, ours, max(5, repeats // 3))
    for r in layers:
        figures[f"layer_{r['layer']}_mac_speedup"] = r["mac_speedup"]
        figures[f"layer_{r['layer']}_measured_speedup_b32"] = r["measured_speedup_b32"]
    print(
        "## Channel pruning, 50 % of channels, ResNet-20 (3x32x32), CPU,"
        " exported (BN folded, frozen), best thread count\n"
    )
    print(markdown(rows))
    print(f"\nMACs: {figures['mac_reduction']:.2f}x fewer (peer {figures['peer_mac_reduction']:.2f}x); "
          f"params {figures['params_dense']} -> {figures['params_pruned']}; "
          f"pruned vs channel-masked max |diff| {max_diff:.2e}\n")  # fmt: skip
    print(markdown(layers))
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
