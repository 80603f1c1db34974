"""Build bundled architectures by name from a JSON-serialisable specification."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pruneviz._seed import seeded
from pruneviz._validation import check_choice, check_int, fail
from pruneviz.models.architectures import MLP, LeNet, ResNet, ResNet18

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": LeNet,
    "resnet20": lambda input_shape, num_classes, **kw: ResNet(input_shape, num_classes, depth=20, **kw),
    "resnet": ResNet,
    "resnet18": ResNet18,
}


def architecture_names() -> list[str]:
    """Names accepted by :func:`build_model` (``cnn`` is the LeNet-style CNN)."""
    return sorted(_BUILDERS)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a bundled model: architecture name, input shape, classes, options."""

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | str) -> ModelSpec:
        d = json.loads(obj) if isinstance(obj, str) else obj
        return cls(d["arch"], tuple(d["input_shape"]), int(d["num_classes"]), dict(d.get("options") or {}))


def build_model(
    arch: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """Build a bundled architecture with weights initialised from ``seed`` (global RNG untouched).

    >>> m = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0)
    >>> type(m).__name__
    'LeNet'
    """
    where = "build_model"
    check_choice(arch, "arch", where, _BUILDERS)
    check_int(num_classes, "num_classes", where, minimum=2)
    seed = check_int(seed, "seed", where, minimum=0)
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        fail("input_shape", where, "a tuple of positive sizes, e.g. (1, 8, 8)", input_shape)
    with seeded(seed):
        try:
            return _BUILDERS[arch](shape, num_classes, **options)
        except TypeError as exc:
            raise fail(
                "options", where, f"keyword options of the {arch!r} architecture", sorted(options), str(exc)
            ) from exc


def build_from_spec(spec: ModelSpec, *, seed: int = 0) -> nn.Module:
    """Rebuild a model from its :class:`ModelSpec` (weights from ``seed``; load a state dict after)."""
    return build_model(
        spec.arch, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=seed, **spec.options
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
