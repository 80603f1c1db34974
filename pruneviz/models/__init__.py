"""Bundled architectures, building them by name or through a factory reference (``"pkg.mod:Builder"``).

Any ``nn.Module`` is accepted elsewhere."""

from pruneviz.models.adapter import adapt, adapted, is_adapted, to_logits, unadapt
from pruneviz.models.architectures import MLP, BasicBlock, LeNet, ResNet, ResNet18
from pruneviz.models.layout import inference_layout, to_memory_format
from pruneviz.models.registry import (
    DEFAULT_TRUSTED_MODULES,
    TRUSTED_ENV,
    ModelSpec,
    architecture_names,
    build_factory,
    build_from_spec,
    build_model,
    count_parameters,
    is_factory_reference,
    resolve_factory,
    trust_modules,
    trusted_modules,
    trusting,
)

__all__ = [
    "DEFAULT_TRUSTED_MODULES",
    "MLP",
    "TRUSTED_ENV",
    "BasicBlock",
    "LeNet",
    "ModelSpec",
    "ResNet",
    "ResNet18",
    "adapt",
    "adapted",
    "architecture_names",
    "build_factory",
    "build_from_spec",
    "build_model",
    "count_parameters",
    "inference_layout",
    "is_adapted",
    "is_factory_reference",
    "resolve_factory",
    "to_logits",
    "to_memory_format",
    "trust_modules",
    "trusted_modules",
    "trusting",
    "unadapt",
]
