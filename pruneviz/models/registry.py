"""Build models from a JSON-serialisable specification: a bundled architecture by name, or any model
through a *factory reference* ``"package.module:callable"``.

A factory reference names an importable class or function that builds the model from keyword options
(``ModelSpec.options``). It is resolved with :mod:`importlib` only (never from a file in a zoo, never
from a pickle), and only when it is safe to call on a stranger's say-so (a zoo may come from someone
else): the object is an ``nn.Module`` subclass, or a callable defined in a *trusted* package —
:data:`DEFAULT_TRUSTED_MODULES`, those added with :func:`trust_modules` (or scoped with
:func:`trusting`), and those listed in the environment variable ``PRUNEVIZ_TRUSTED_MODULES``
(comma-separated). Everything else is refused with a message naming the reference and the fix.
Importing a module runs its top-level code, as any ``import`` does: only installed modules can be named.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from pruneviz._seed import seeded
from pruneviz._validation import check_choice, check_int, fail
from pruneviz.models.adapter import adapt
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


#: packages whose callables a factory reference may name without further trust. Only the model-building
#: parts of pruneviz are trusted: the rest of it (the CLI, the zoo writers) writes files.
DEFAULT_TRUSTED_MODULES = ("torchvision", "timm", "transformers", "pruneviz.models", "pruneviz.testing")
#: the environment variable listing more trusted packages (comma-separated, e.g. ``mypkg,lab.models``)
TRUSTED_ENV = "PRUNEVIZ_TRUSTED_MODULES"
_TRUSTED: list[str] = []  # added with trust_modules()
_MODULE_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_REFERENCE = re.compile(rf"({_MODULE_NAME}):({_MODULE_NAME})")
_REFERENCE_EXAMPLE = "'mypkg.models:build_net' (module path, a colon, then the class or function name)"


def is_factory_reference(arch: object) -> bool:
    """Whether ``arch`` is written as a factory reference (``"package.module:callable"``), not a
    bundled architecture name. Says nothing about whether it resolves (see :func:`resolve_factory`)."""
    return isinstance(arch, str) and ":" in arch


def _check_module_names(names: Sequence[str], param: str, where: str) -> list[str]:
    out = []
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(_MODULE_NAME, name.strip()):
            fail(
                param,
                where,
                "names of importable packages or modules, such as 'mypkg' or 'mypkg.models'",
                name,
                "pass the top-level package name of the code that builds your model.",
            )
        out.append(name.strip())
    return out


def trust_modules(*names: str) -> tuple[str, ...]:
    """Trust the callables of the packages ``names`` (a package trusts its submodules) as factories
    for the rest of the process; return the trusted packages now in effect (:func:`trusted_modules`).

    Trust only code you would run yourself: a zoo names the factory that rebuilds its models, and a
    trusted factory is called with the options the zoo stores. Classes derived from ``nn.Module``
    need no trust. :func:`trusting` scopes the trust to a ``with`` block.

    >>> "mylab" in trust_modules("mylab")
    True
    """
    for name in _check_module_names(names, "names", "trust_modules"):
        if name not in _TRUSTED:
            _TRUSTED.append(name)
    return trusted_modules()


@contextmanager
def trusting(*names: str) -> Iterator[tuple[str, ...]]:
    """Trust the packages ``names`` (as :func:`trust_modules`) inside a ``with`` block only."""
    added = [n for n in _check_module_names(names, "names", "trusting") if n not in _TRUSTED]
    _TRUSTED.extend(added)
    try:
        yield trusted_modules()
    finally:
        for name in added:
            _TRUSTED.remove(name)


def trusted_modules() -> tuple[str, ...]:
    """The packages whose callables factory references may name: the defaults, those added with
    :func:`trust_modules`, and those in ``$PRUNEVIZ_TRUSTED_MODULES`` (read now, comma-separated)."""
    env = [n.strip() for n in os.environ.get(TRUSTED_ENV, "").split(",") if n.strip()]
    env = [n for n in env if re.fullmatch(_MODULE_NAME, n)]  # a malformed entry trusts nothing
    return tuple(dict.fromkeys([*DEFAULT_TRUSTED_MODULES, *_TRUSTED, *env]))


def _is_trusted(module: str, trusted: Sequence[str]) -> bool:
    return any(module == t or module.startswith(t + ".") for t in trusted)


def resolve_factory(reference: str, *, where: str = "resolve_factory") -> Callable[..., Any]:
    """The class or function a factory reference ``"package.module:callable"`` names, if it may be
    called: an ``nn.Module`` subclass, or a callable both named through and defined in a trusted
    package (:func:`trusted_modules`). Raises an error naming the reference and the fix otherwise,
    and when the module or the attribute cannot be imported.

    >>> resolve_factory("pruneviz.testing.models:TinyEncoder").__name__
    'TinyEncoder'
    """
    match = _REFERENCE.fullmatch(reference) if isinstance(reference, str) else None
    if match is None:
        fail(
            "factory",
            where,
            f"a factory reference such as {_REFERENCE_EXAMPLE}",
            reference,
            "separate the importable module from the class or function with a colon, e.g. "
            "'torchvision.models:resnet18'.",
        )
    module_name, qualname = match.groups()
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        fail(
            "factory",
            where,
            "a reference to a module that can be imported",
            reference,
            f"install the package that provides {module_name!r}, or put its folder on sys.path / "
            f"PYTHONPATH ({type(exc).__name__}: {exc}).",
        )
    for part in qualname.split("."):
        if not hasattr(obj, part):
            fail(
                "factory",
                where,
                f"a class or function that the module {module_name!r} defines",
                reference,
                f"{module_name!r} has no attribute {part!r}; check the spelling after the colon.",
            )
        obj = getattr(obj, part)
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return obj
    trusted = trusted_modules()
    defined_in = getattr(obj, "__module__", None) or ""
    if not callable(obj):
        fail(
            "factory",
            where,
            "a reference to a class or function that builds a model",
            reference,
            f"it names a {type(obj).__name__}; name the class or function that returns the nn.Module.",
        )
    if not (_is_trusted(module_name, trusted) and _is_trusted(defined_in, trusted)):
        untrusted = defined_in if _is_trusted(module_name, trusted) else module_name
        top = (untrusted or module_name).split(".")[0]
        fail(
            "factory",
            where,
            f"an nn.Module subclass, or a function of a trusted package ({', '.join(trusted)})",
            reference,
            f"it is a {type(obj).__name__} defined in {defined_in or '?'!r}, which is not trusted. If you "
            f"trust that code, call pruneviz.models.trust_modules({top!r}) or set "
            f"{TRUSTED_ENV}={top}; a zoo from someone else should not make pruneviz call arbitrary "
            "functions.",
        )
    return obj


def build_factory(reference: str, options: Mapping[str, Any] | None = None, *, seed: int = 0) -> nn.Module:
    """Build a model with the factory ``reference`` names, called as ``factory(**options)`` with
    every random draw seeded by ``seed``; the model is adapted (:func:`~pruneviz.models.adapt`) so
    that ``model(x)`` returns logits for a tensor, tuple, dict or :class:`~pruneviz.data.Inputs`.

    >>> m = build_factory("pruneviz.testing.models:TinyEncoder", {"vocab": 20, "dim": 8})
    >>> type(m).__name__
    'TinyEncoder'
    """
    where = "build_factory"
    factory = resolve_factory(reference, where=where)
    kwargs = dict(options or {})
    seed = check_int(seed, "seed", where, minimum=0)
    with seeded(seed):
        try:
            model = factory(**kwargs)
        except TypeError as exc:
            raise fail(
                "options",
                where,
                f"keyword options that {reference!r} accepts",
                sorted(kwargs),
                f"pass the arguments that build the architecture ({exc}).",
            ) from exc
    if not isinstance(model, nn.Module):
        fail(
            "factory",
            where,
            "a reference to a class or function that returns a torch nn.Module",
            reference,
            f"it returned a {type(model).__name__}; reference the function that builds the nn.Module "
            "itself (not a config or a pipeline).",
        )
    return adapt(model)


def arch_label(arch: str) -> str:
    """A short readable name of an architecture for run ids: a bundled name as it is, a factory
    reference as its callable's name (``"mypkg.nets:WideNet"`` → ``"WideNet"``)."""
    if not is_factory_reference(arch):
        return arch
    name = arch.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:60] or "model"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model: the architecture, input shape, classes and options.

    ``arch`` is a bundled name (:func:`architecture_names`), built with ``input_shape`` and
    ``num_classes``, or a factory reference ``"package.module:callable"`` (see :func:`resolve_factory`),
    built as ``callable(**options)``; ``input_shape`` and ``num_classes`` then describe its data.
    """

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
    """Rebuild a model from its :class:`ModelSpec` (weights from ``seed``; load a state dict after).

    A factory reference is resolved and called by :func:`build_factory` (the model comes adapted)."""
    if is_factory_reference(spec.arch):
        return build_factory(spec.arch, spec.options, seed=seed)
    return build_model(
        spec.arch, input_shape=spec.input_shape, num_classes=spec.num_classes, seed=seed, **spec.options
    )


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``."""
    return sum(p.numel() for p in model.parameters())
