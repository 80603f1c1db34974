"""A 2-D loss landscape of a ResNet-20-size model on 512 samples: pruneviz against loss-landscapes 3.0.6.

Target (BENCHMARKS.md, `landscape`): a 21 x 21 grid in <= 5 minutes on 2 cores; the model restored bit for
bit; pruned weights stay exactly 0; a standard error at every point. The model is the CIFAR-style
ResNet-20 (0.27M parameters) trained on the embedded digits data (1x8x8 inputs), 80 % pruned with LAMP.
The peer (``random_plane``, filter normalisation) is run on the same model and grid size; the two are
timed alternately, three times each, and the medians compared (realsize target: >= 1.5x the peer).
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, write_json

from pruneviz.analysis import landscape_2d
from pruneviz.data import load_digits
from pruneviz.models import build_model
from pruneviz.prune import prunable_layers, prune_
from pruneviz.train import TrainConfig, fit


def pruned_weights_nonzero(model: nn.Module, masks) -> int:
    layers = prunable_layers(model)
    return sum(int((layers[n].weight.detach()[~m] != 0).sum()) for n, m in masks.items())


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    warnings.simplefilter("ignore")
    digits = load_digits()
    parts = digits.split(seed=0)
    model = build_model("resnet20", input_shape=digits.info.input_shape, num_classes=10, seed=0)
    fit(model, parts.train, config=TrainConfig(epochs=3 if args.quick else 10), progress=False)
    masks = prune_(model, method="lamp", sparsity=0.8)
    model.eval()
    data = parts.train.take(np.arange(512))
    steps = 11 if args.quick else 21
    before = copy.deepcopy(model.state_dict())

    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), data.x, data.y)
    results: dict[str, object] = {}

    def run_ours() -> None:
        results["ours"] = landscape_2d(model, data, steps=steps, radius=1.0, masks=masks, batch_size=512)

    def run_peer() -> None:
        peer_model = copy.deepcopy(model)
        with torch.no_grad():
            grid = loss_landscapes.random_plane(
                peer_model, metric, distance=1.0, steps=steps, normalization="filter"
            )
        results["peer"], results["peer_model"] = grid, peer_model

    # side by side, alternating, medians: the machine is shared and a single pair of runs drifts
    repeats = 1 if args.quick else 3
    medians = interleaved_medians({"ours": run_ours, "peer": run_peer}, repeats=repeats, warmup=0)
    t_ours, t_peer = medians["ours"], medians["peer"]
    ours, peer, peer_model = results["ours"], results["peer"], results["peer_model"]
    restored = all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    peer_restored = all(torch.equal(v, before[k]) for k, v in peer_model.state_dict().items())
    peer_grid_has_centre = bool(np.isclose(np.asarray(peer), float(ours.loss[len(ours) // 2])).any())

    figures = {
        "grid": f"{steps}x{steps}",
        "samples": len(data),
        "params": sum(p.numel() for p in model.parameters()),
        "repeats": repeats,
        "pruneviz_s": t_ours,
        "peer_s": t_peer,
        "ratio_peer_over_pruneviz": t_peer / t_ours,
        "pruneviz_restored_bit_for_bit": restored,
        "peer_restored_bit_for_bit": peer_restored,
        "pruned_weights_nonzero_after": pruned_weights_nonzero(model, masks),
        "pruneviz_centre_is_model": bool(ours[(ours.alpha == 0) & (ours.beta == 0)].shape[0] == 1),
        "peer_grid_contains_model_loss": peer_grid_has_centre,
        "max_loss_se": float(ours.loss_se.max()),
        "target_time_met": t_ours <= 300 if steps == 21 else None,
        "target_ratio_met": t_peer / t_ours >= 1.5 if steps == 21 else None,
    }
    rows = [
        {"": "seconds (median)", "pruneviz": t_ours, "loss-landscapes": t_peer},
        {"": "model restored bit for bit", "pruneviz": restored, "loss-landscapes": peer_restored},
        {
            "": "grid centred on the model",
            "pruneviz": figures["pruneviz_centre_is_model"],
            "loss-landscapes": peer_grid_has_centre,
        },
        {"": "standard error per point", "pruneviz": True, "loss-landscapes": False},
    ]
    title = f"ResNet-20 ({figures['params']} params, 80 % pruned), {steps}x{steps}, 512 samples"
    print(f"## 2-D landscape, {title}\n")
    print(markdown(rows))
    write_json(args.json, figures, args.quick)


if __name__ == "__main__":
    main()
