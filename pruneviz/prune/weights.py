"""Prunable weights: the unit the pruning engine scores, masks and reconstructs.

A *prunable weight* is one parameter of one module, named by a key:

- the ``weight`` of ``nn.Linear``, ``nn.Conv1d/2d/3d`` (grouped and depthwise too),
  ``nn.ConvTranspose1d/2d/3d``, a GPT-2-style ``Conv1D`` (a module class named ``Conv1D`` with an
  ``nf`` attribute, as in Hugging Face transformers) and, opt-in, ``nn.Embedding`` — keyed by the module
  name (``"features.1"``), so masks saved before this generalisation still load;
- the input projections of ``nn.MultiheadAttention``: ``in_proj_weight``, or ``q_proj_weight``,
  ``k_proj_weight`` and ``v_proj_weight`` when ``kdim``/``vdim`` differ from ``embed_dim`` — keyed by
  ``f"{module_name}.{param_name}"`` (``"enc.attn.in_proj_weight"``). Its ``out_proj`` is an
  ``nn.Linear`` and is keyed like one (``"enc.attn.out_proj"``).

Row-wise criteria and structures (Wanda's per-output comparison, N:M groups along the input, per-row
allocation, blocks, SparseGPT's columns) need each weight as an ``(out, in)`` matrix.
:meth:`PrunableWeight.oriented` gives that orientation as an ``(out, in_per_group, *kernel)`` tensor:
the identity for Linear, Conv, attention and embeddings, a transpose for GPT-2's ``Conv1D`` (stored
``(in, out)``), and for ``ConvTranspose`` (stored ``(in, out / groups, *kernel)``) the output channels
made the leading axis within each group. :meth:`PrunableWeight.matrix` flattens it to ``(out, -1)``;
:meth:`PrunableWeight.from_oriented` and :meth:`PrunableWeight.from_matrix` map back.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> sorted(prunable_weights(model))
['0', '2']
>>> prunable_weights(model)["0"].matrix().shape
torch.Size([8, 4])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from pruneviz._validation import check_model, fail

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TRANSPOSE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
#: modules whose ``weight`` is prunable by default (GPT-2's ``Conv1D`` is recognised by name, and
#: ``nn.MultiheadAttention``'s input projections are parameters of the attention module itself)
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, *CONV_TYPES, *CONV_TRANSPOSE_TYPES)
EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding,)
ATTENTION_PARAMS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
KINDS = ("linear", "conv", "conv_transpose", "conv1d_gpt2", "attention", "embedding", "other")


def is_gpt2_conv1d(module: nn.Module) -> bool:
    """A GPT-2-style ``Conv1D``: class named ``Conv1D`` with ``nf`` and a 2-D ``(in, out)`` weight, as
    Hugging Face transformers detects it (its forward is ``x @ weight + bias``)."""
    w = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(w, torch.Tensor)
        and w.ndim == 2
    )


def _kind_of(module: nn.Module, param_name: str) -> str:
    if isinstance(module, nn.MultiheadAttention) and param_name in ATTENTION_PARAMS:
        return "attention"
    if param_name != "weight":
        return "other"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, CONV_TYPES):
        return "conv"
    if isinstance(module, CONV_TRANSPOSE_TYPES):
        return "conv_transpose"
    if is_gpt2_conv1d(module):
        return "conv1d_gpt2"
    if isinstance(module, EMBEDDING_TYPES):
        return "embedding"
    return "other"


@dataclass(frozen=True, eq=False)
class PrunableWeight:
    """One prunable parameter: ``getattr(module, param_name)``, named ``key`` in masks and scores.

    ``module_name`` is the module's name in the model; :attr:`parameter_name` the parameter's name in
    ``model.named_parameters()``. ``kind`` is one of :data:`KINDS` and fixes the orientation.
    """

    key: str
    module_name: str
    module: nn.Module
    param_name: str = "weight"
    kind: str = "other"

    @classmethod
    def of(cls, module: nn.Module, *, key: str, module_name: str | None = None, param_name: str = "weight"):
        """The prunable weight ``param_name`` of ``module`` (its kind read from the module)."""
        return cls(
            key, key if module_name is None else module_name, module, param_name, _kind_of(module, param_name)
        )

    @property
    def weight(self) -> torch.Tensor:
        """The parameter itself (not a copy): in-place changes change the model."""
        return getattr(self.module, self.param_name)

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape

    @property
    def parameter_name(self) -> str:
        return f"{self.module_name}.{self.param_name}" if self.module_name else self.param_name

    @property
    def groups(self) -> int:
        return int(getattr(self.module, "groups", 1)) if self.kind in ("conv", "conv_transpose") else 1

    def oriented(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """``t`` (default: the weight, detached), a tensor of the weight's shape, as
        ``(out, in_per_group, *kernel)``: rows are outputs, the second axis is the input."""
        t = self.weight.detach() if t is None else t
        if self.kind == "conv1d_gpt2":
            return t.T
        if self.kind == "conv_transpose":
            g = self.groups
            cin, out_g, *k = t.shape
            return t.reshape(g, cin // g, out_g, *k).transpose(1, 2).reshape(g * out_g, cin // g, *k)
        return t

    def from_oriented(self, t: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`oriented`: a tensor of the weight's shape."""
        if self.kind == "conv1d_gpt2":
            return t.T
        if self.kind == "conv_transpose":
            g = self.groups
            out, cin_g, *k = t.shape
            return t.reshape(g, out // g, cin_g, *k).transpose(1, 2).reshape(g * cin_g, out // g, *k)
        return t

    def matrix(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """``t`` (default: the weight) as the ``(out, in_per_group * kernel)`` matrix; for convolutions the
        columns are in ``F.unfold`` order (input channel major, kernel position minor)."""
        o = self.oriented(t)
        return o.reshape(o.shape[0], -1)

    def from_matrix(self, mat: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`matrix`."""
        shape = self.oriented(torch.empty(self.shape, device="meta")).shape
        return self.from_oriented(mat.reshape(shape))

    def __repr__(self) -> str:
        where = f"{type(self.module).__name__}.{self.param_name}"
        return f"PrunableWeight({self.key!r}, {where}, shape={tuple(self.shape)})"


def all_prunable_weights(model: nn.Module, *, include_embeddings: bool = False) -> dict[str, PrunableWeight]:
    """Every prunable weight of ``model`` by key, unchecked (may be empty); see :func:`prunable_weights`."""
    return _candidates(model, include_embeddings)


def _candidates(model: nn.Module, include_embeddings: bool) -> dict[str, PrunableWeight]:
    found: dict[str, PrunableWeight] = {}
    for name, m in model.named_modules():
        if (
            isinstance(m, PRUNABLE_TYPES)
            or is_gpt2_conv1d(m)
            or (include_embeddings and isinstance(m, EMBEDDING_TYPES))
        ):
            if isinstance(getattr(m, "weight", None), torch.Tensor):
                found[name] = PrunableWeight.of(m, key=name)
        elif isinstance(m, nn.MultiheadAttention):
            for p in ATTENTION_PARAMS:
                if isinstance(getattr(m, p, None), torch.Tensor):
                    key = f"{name}.{p}" if name else p
                    found[key] = PrunableWeight.of(m, key=key, module_name=name, param_name=p)
    return found


def prunable_weights(
    model: nn.Module,
    *,
    exclude: Iterable[str] = (),
    include_embeddings: bool = False,
    where: str = "prune",
) -> dict[str, PrunableWeight]:
    """The model's prunable weights by key, in model order, minus ``exclude``.

    Keys: a module's ``weight`` is keyed by the module name; ``nn.MultiheadAttention``'s input
    projections by ``"<module>.<parameter>"``. ``include_embeddings=True`` adds ``nn.Embedding`` tables
    (left dense by default: pruning a token's row removes the token). Raises if a name in ``exclude`` is
    not a key, if nothing is left, or if a weight is not finite.
    """
    check_model(model, "model", where, half=True)
    found = _candidates(model, include_embeddings)
    excluded = list(exclude)
    unknown = [n for n in excluded if n not in found]
    if unknown:
        fail(
            "exclude",
            where,
            f"names of prunable weights of the model ({sorted(found)})",
            unknown if len(unknown) > 1 else unknown[0],
            "copy the names from pruneviz.prune.prunable_weights(model).",
        )
    layers = {n: w for n, w in found.items() if n not in set(excluded)}
    if not layers:
        has_embeddings = not include_embeddings and any(
            isinstance(m, EMBEDDING_TYPES) for m in model.modules()
        )
        fail(
            "include_embeddings" if has_embeddings else "model",
            where,
            "True for a model whose only prunable weights are embedding tables"
            if has_embeddings
            else "a model with at least one prunable layer (Linear, Conv, ConvTranspose, Conv1D, "
            "MultiheadAttention) not excluded",
            False if has_embeddings else type(model).__name__,
            "pass include_embeddings=True to prune nn.Embedding tables."
            if has_embeddings
            else "pass a model with linear, convolutional or attention layers, or exclude fewer layers.",
        )
    for name, w in layers.items():
        bias = getattr(w.module, "bias", None) if w.param_name == "weight" else None
        for part, t in (("weight", w.weight), ("bias", bias)):
            if isinstance(t, torch.Tensor) and not bool(torch.isfinite(t).all()):
                fail(
                    "model",
                    where,
                    "finite weights and biases (no NaN or inf)",
                    None,
                    got=f"non-finite values in the {part} of layer {name!r}",
                    fix="the model diverged; retrain it or load a healthy checkpoint.",
                )
    return layers


def as_weights(layers: Mapping[str, PrunableWeight | nn.Module]) -> dict[str, PrunableWeight]:
    """``layers`` with every module (standing for its ``weight``) made a :class:`PrunableWeight` of that
    key; prunable weights pass through."""
    return {k: v if isinstance(v, PrunableWeight) else PrunableWeight.of(v, key=k) for k, v in layers.items()}


def weights_of(model: nn.Module, layers: Mapping[str, PrunableWeight]) -> dict[str, PrunableWeight]:
    """The prunable weights of ``model`` with the same keys and parameters as ``layers`` (e.g. in a copy)."""
    modules = dict(model.named_modules())
    return {
        k: PrunableWeight(k, w.module_name, modules[w.module_name], w.param_name, w.kind)
        for k, w in as_weights(layers).items()
    }


def parameter_name_of(model: nn.Module, key: str) -> str | None:
    """The parameter a mask key stands for in ``model``: ``"<key>.weight"`` for a module, the key itself
    for a parameter key (``"attn.in_proj_weight"``); ``None`` if neither exists."""
    named = dict(model.named_parameters(remove_duplicate=False))
    if f"{key}.weight" in named:
        return f"{key}.weight"
    if key in named:
        return key
    return None


__all__ = [
    "EMBEDDING_TYPES",
    "PRUNABLE_TYPES",
    "PrunableWeight",
    "all_prunable_weights",
    "as_weights",
    "is_gpt2_conv1d",
    "parameter_name_of",
    "prunable_weights",
    "weights_of",
]
