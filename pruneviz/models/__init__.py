"""Bundled architectures and building them by name. Any ``nn.Module`` is accepted elsewhere."""

from pruneviz.models.adapter import adapt, adapted, is_adapted, to_logits, unadapt
from pruneviz.models.architectures import MLP, BasicBlock, LeNet, ResNet, ResNet18
from pruneviz.models.registry import (
    ModelSpec,
    architecture_names,
    build_from_spec,
    build_model,
    count_parameters,
)

__all__ = [
    "MLP",
    "BasicBlock",
    "LeNet",
    "ModelSpec",
    "ResNet",
    "ResNet18",
    "adapt",
    "adapted",
    "architecture_names",
    "build_from_spec",
    "build_model",
    "count_parameters",
    "is_adapted",
    "to_logits",
    "unadapt",
]
