"""The pruning engine: criteria, allocations, structures, schedules, channel removal, accounting, export.

>>> from pruneviz.models import build_model
>>> from pruneviz.prune import prune_
>>> model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
>>> masks = prune_(model, method="lamp", sparsity=0.5)
>>> round(masks.sparsity(), 2)
0.5
"""

from pruneviz.prune.accounting import count_macs, kernel_speedups, measure_latency, sparsity_by_layer
from pruneviz.prune.allocation import (
    ALLOCATIONS,
    Structure,
    allocate,
    erk_densities,
    nm_mask,
    parse_structure,
)
from pruneviz.prune.api import METHODS, compute_masks, method_names, prune_
from pruneviz.prune.channels import ChannelPruned, apply_channel_plan, mask_channels_, prune_channels
from pruneviz.prune.criteria import CRITERIA, layer_input_blocks, layer_inputs, score
from pruneviz.prune.formats import (
    InferenceModule,
    NMCompressed,
    TunedInference,
    export_inference,
    fold_batchnorm,
    fold_batchnorm_eager,
    fold_masks,
    to_bsr,
    to_csr,
    to_nm,
    tune_inference,
)
from pruneviz.prune.masks import Masks, prunable_layers
from pruneviz.prune.schedules import (
    PruneResult,
    calibration_subset,
    cubic_sparsity,
    gradual,
    iterative_magnitude,
    movement_prune,
    one_shot,
    weights_at_step,
)
from pruneviz.prune.sparsegpt import optimal_reconstruction, reconstruction_error, sparsegpt_layer
from pruneviz.prune.weights import PrunableWeight, prunable_weights

__all__ = [
    "ALLOCATIONS",
    "CRITERIA",
    "METHODS",
    "ChannelPruned",
    "InferenceModule",
    "Masks",
    "NMCompressed",
    "PrunableWeight",
    "PruneResult",
    "Structure",
    "TunedInference",
    "allocate",
    "apply_channel_plan",
    "calibration_subset",
    "compute_masks",
    "count_macs",
    "cubic_sparsity",
    "erk_densities",
    "export_inference",
    "fold_batchnorm",
    "fold_batchnorm_eager",
    "fold_masks",
    "gradual",
    "iterative_magnitude",
    "kernel_speedups",
    "layer_input_blocks",
    "layer_inputs",
    "mask_channels_",
    "measure_latency",
    "method_names",
    "movement_prune",
    "nm_mask",
    "one_shot",
    "optimal_reconstruction",
    "parse_structure",
    "prunable_layers",
    "prunable_weights",
    "prune_",
    "prune_channels",
    "reconstruction_error",
    "score",
    "sparsegpt_layer",
    "sparsity_by_layer",
    "to_bsr",
    "to_csr",
    "to_nm",
    "tune_inference",
    "weights_at_step",
]
