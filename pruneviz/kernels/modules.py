"""Sparse inference modules and :func:`sparsify`, which swaps a pruned model's layers for them.

:class:`SparseLinear` and :class:`SparseConv2d` hold a pruned weight packed for one or more *paths*
(see :mod:`pruneviz.kernels.dispatch`) and a route per batch size: a forward pass of ``M`` rows takes
the path chosen for the power of two nearest ``M``. Both are for inference — their packed weights are
not parameters (no gradient, not in ``state_dict``); ``.to(device / dtype)`` moves and casts them.
A convolution runs dense (``F.conv2d``), shrunk (all-zero output channels and input channels removed)
or as ``F.unfold`` followed by a sparse matmul; on CPU dense usually wins, and the dispatcher keeps it.

The outputs of a sparsified model equal those of the masked dense model up to float rounding (the sparse
paths sum in a different order).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._validation import check_int, fail
from pruneviz.kernels import dispatch
from pruneviz.kernels.dispatch import Selection, batch_bucket

__all__ = ["SparseConv2d", "SparseLinear", "sparsify", "speedup_table"]


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to every tensor inside a packed weight (a tensor, or a dataclass of tensors)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map_tensors(v, fn) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, torch.Tensor | tuple):
                changes[f.name] = _map_tensors(value, fn)
            elif isinstance(value, torch.dtype):  # e.g. BlockELL.dtype follows its values
                changes[f.name] = fn(torch.empty(0, dtype=value)).dtype
        return dataclasses.replace(obj, **changes)
    return obj


def _route(routes: Sequence[tuple[int, str]], rows: int) -> str:
    """The path of the measured batch bucket nearest ``rows`` (in log2; ties go to the larger)."""
    target = math.log2(batch_bucket(max(rows, 1)))
    return min(routes, key=lambda r: (abs(math.log2(r[0]) - target), -r[0]))[1]


class _SparseBase(nn.Module):
    routes: list[tuple[int, str]]

    def __init__(self, routes: Mapping[int, str], packed: Mapping[str, Any], bias: torch.Tensor | None):
        super().__init__()
        self.routes = sorted((int(b), str(p)) for b, p in routes.items())
        self._route_memo: dict[int, str] = {}
        self._packed = dict(packed)
        if bias is not None:
            self.register_buffer("bias", bias.detach().clone())
        else:
            self.bias = None

    @property
    def paths(self) -> dict[int, str]:
        """The chosen path by batch bucket."""
        return dict(self.routes)

    def _path_for(self, rows: int) -> str:
        path = self._route_memo.get(rows)
        if path is None:
            path = self._route_memo[rows] = _route(self.routes, rows)
        return path

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> _SparseBase:
        super()._apply(fn, recurse)
        self._packed = {k: _map_tensors(v, fn) for k, v in self._packed.items()}
        return self


class SparseLinear(_SparseBase):
    """``y = x @ W.T + b`` for a pruned ``W``, by the path chosen for the batch size.

    Build one with :meth:`from_linear` (or let :func:`sparsify` do it). ``routes`` maps a batch bucket
    (power of two) to a path name of :data:`pruneviz.kernels.dispatch.PATHS`.

    Example::

        >>> lin = nn.Linear(64, 64); lin.weight.data[:, 32:] = 0
        >>> sp = SparseLinear.from_linear(lin, routes={1: "shrunk"})
        >>> torch.allclose(sp(torch.ones(2, 64)), lin(torch.ones(2, 64)))
        True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        routes: Mapping[int, str],
        packed: Mapping[str, Any],
        bias: torch.Tensor | None = None,
    ):
        super().__init__(routes, packed, bias)
        self.in_features = in_features
        self.out_features = out_features

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        *,
        routes: Mapping[int, str],
        mask: torch.Tensor | None = None,
        block: int | None = None,
    ) -> SparseLinear:
        """Pack ``linear``'s weight (times ``mask`` if given) for every path in ``routes``.
        ``block`` is the block side of the block paths (default: the one :func:`structure_of` picks)."""
        where = "SparseLinear.from_linear"
        if not isinstance(linear, nn.Linear):
            fail("linear", where, "an nn.Linear", None, got=type(linear).__name__)
        w = _masked(linear.weight, mask, where)
        packed = _pack_all(w, routes, block, _linear_prepare, where)
        return cls(linear.in_features, linear.out_features, routes=routes, packed=packed, bias=linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = self._path_for(x.numel() // max(self.in_features, 1))
        packed = self._packed[path]
        if path == "dense" and x.device == packed.device:  # the common case, without the checks
            return F.linear(x, packed, self.bias)
        return dispatch.run(path, x, packed, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, paths={self.paths}"


# --------------------------------------------------------------------------------------------------
# convolutions


@dataclasses.dataclass(frozen=True)
class ConvShrunk:
    """A conv weight without its all-zero output channels (``rows``) and input channels (``cin``);
    either is ``None`` when nothing was removed on that side."""

    out_channels: int
    weight: torch.Tensor
    rows: torch.Tensor | None
    cin: torch.Tensor | None

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> ConvShrunk:
        nz = weight.detach() != 0
        rows = nz.flatten(1).any(1).nonzero().flatten()
        cin = nz.transpose(0, 1).flatten(1).any(1).nonzero().flatten()
        keep_rows = None if len(rows) == weight.shape[0] else rows
        keep_cin = None if len(cin) == weight.shape[1] else cin
        w = weight.detach()
        w = w if keep_rows is None else w.index_select(0, keep_rows)
        w = w if keep_cin is None else w.index_select(1, keep_cin)
        return cls(weight.shape[0], w.contiguous(), keep_rows, keep_cin)

    @property
    def removes_any(self) -> bool:
        return self.rows is not None or self.cin is not None


@dataclasses.dataclass(frozen=True)
class _ConvGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @classmethod
    def of(cls, conv: nn.Conv2d) -> _ConvGeometry:
        return cls(tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation))

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        sizes = []
        for n, k, s, p, d in zip((h, w), self.kernel, self.stride, self.padding, self.dilation, strict=True):
            sizes.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]

    def label(self) -> str:
        return f"k{self.kernel}s{self.stride}p{self.padding}d{self.dilation}".replace(" ", "")


def _linear_prepare(path: str, matrix: torch.Tensor, block: int | None) -> Any:
    return dispatch.prepare(path, matrix, block=block)


def _conv_prepare(path: str, weight4d: torch.Tensor, block: int | None) -> Any:
    if path == "dense":
        return weight4d.detach().contiguous()
    if path == "shrunk":
        return ConvShrunk.from_weight(weight4d)
    return dispatch.prepare(path, weight4d.detach().reshape(weight4d.shape[0], -1), block=block)


def _conv_run(
    path: str, x: torch.Tensor, packed: Any, bias: torch.Tensor | None, geom: _ConvGeometry
) -> torch.Tensor:
    if path == "dense":
        _check_x_device(x, packed.device)
        return F.conv2d(x, packed, bias, geom.stride, geom.padding, geom.dilation)
    if path == "shrunk":
        _check_x_device(x, packed.weight.device)
        if packed.rows is not None and len(packed.rows) == 0:  # every output channel pruned
            shape = (x.shape[0], packed.out_channels, *geom.out_size(x.shape[2], x.shape[3]))
            if bias is None:
                return x.new_zeros(shape)
            return bias.view(1, -1, 1, 1).expand(shape).clone()
        xs = x if packed.cin is None else x.index_select(1, packed.cin)
        if packed.rows is None:
            return F.conv2d(xs, packed.weight, bias, geom.stride, geom.padding, geom.dilation)
        ys = F.conv2d(xs, packed.weight, None, geom.stride, geom.padding, geom.dilation)
        shape = (ys.shape[0], packed.out_channels, ys.shape[2], ys.shape[3])
        if bias is None:
            y = ys.new_zeros(shape)
            y.index_copy_(1, packed.rows, ys)
        else:
            y = bias.view(1, -1, 1, 1).expand(shape).clone()
            y.index_add_(1, packed.rows, ys)
        return y
    n, _, h, w = x.shape
    ho, wo = geom.out_size(h, w)
    cols = F.unfold(x, geom.kernel, dilation=geom.dilation, padding=geom.padding, stride=geom.stride)
    y = dispatch.run(path, cols.transpose(1, 2), packed, bias)  # (N, L, out)
    return y.transpose(1, 2).reshape(n, -1, ho, wo)


def _check_x_device(x: torch.Tensor, device: torch.device) -> None:
    dispatch._check_device(x, device, "SparseConv2d")


class SparseConv2d(_SparseBase):
    """A pruned ``nn.Conv2d`` (``groups=1``, zero padding) run by the path chosen for the batch size:
    ``dense`` (``F.conv2d``), ``shrunk`` (all-zero output/input channels removed), or a sparse matmul
    path of :mod:`pruneviz.kernels.dispatch` applied to ``F.unfold`` of the input.

    Example::

        >>> conv = nn.Conv2d(4, 8, 3, padding=1); conv.weight.data[4:] = 0
        >>> sp = SparseConv2d.from_conv(conv, routes={1: "shrunk"})
        >>> x = torch.randn(1, 4, 6, 6)
        >>> torch.allclose(sp(x), conv(x), atol=1e-6)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        geometry: _ConvGeometry,
        *,
        routes: Mapping[int, str],
        packed: Mapping[str, Any],
        bias: torch.Tensor | None = None,
    ):
        super().__init__(routes, packed, bias)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.geometry = geometry

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        *,
        routes: Mapping[int, str],
        mask: torch.Tensor | None = None,
        block: int | None = None,
    ) -> SparseConv2d:
        """Pack ``conv``'s weight (times ``mask`` if given) for every path in ``routes``."""
        where = "SparseConv2d.from_conv"
        _check_conv(conv, where)
        w = _masked(conv.weight, mask, where)
        packed = _pack_all(w, routes, block, _conv_prepare, where)
        return cls(
            conv.in_channels,
            conv.out_channels,
            _ConvGeometry.of(conv),
            routes=routes,
            packed=packed,
            bias=conv.bias,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            fail(
                "x",
                "SparseConv2d",
                f"a (N, {self.in_channels}, H, W) tensor",
                None,
                got=f"shape {tuple(x.shape)}",
                fix="pass a batched 4-D input.",
            )
        path = self._path_for(x.shape[0])
        packed = self._packed[path]
        if path == "dense" and x.device == packed.device:  # the common case
            g = self.geometry
            return F.conv2d(x, packed, self.bias, g.stride, g.padding, g.dilation)
        return _conv_run(path, x, packed, self.bias, self.geometry)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={g.kernel}, stride={g.stride}, "
            f"padding={g.padding}, dilation={g.dilation}, paths={self.paths}"
        )


def _check_conv(conv: Any, where: str) -> None:
    if not isinstance(conv, nn.Conv2d):
        fail("conv", where, "an nn.Conv2d", None, got=type(conv).__name__)
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        fail(
            "conv",
            where,
            "a Conv2d with groups=1, padding_mode='zeros' and numeric padding",
            None,
            got=f"groups={conv.groups}, padding_mode={conv.padding_mode!r}, padding={conv.padding!r}",
            fix="leave this layer dense (sparsify does so by itself).",
        )


def _conv_supported(conv: nn.Conv2d) -> bool:
    return conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _masked(weight: torch.Tensor, mask: torch.Tensor | None, where: str) -> torch.Tensor:
    w = weight.detach()
    if mask is None:
        return w
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(w.shape):
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        fail("mask", where, f"a bool tensor of the weight's shape {tuple(w.shape)}", None, got=got)
    return torch.where(mask.to(w.device, torch.bool), w, torch.zeros((), dtype=w.dtype, device=w.device))


def _pack_all(
    w: torch.Tensor,
    routes: Mapping[int, str],
    block: int | None,
    prep: Callable[..., Any],
    where: str,
) -> dict[str, Any]:
    if not isinstance(routes, Mapping) or not routes:
        fail("routes", where, "a non-empty mapping {batch_size: path}", routes, "pass routes={1: 'dense'}.")
    unknown = [p for p in routes.values() if p not in dispatch.PATHS]
    if unknown:
        fail("routes", where, f"paths from {list(dispatch.PATHS)}", unknown[0], "pick from kernels.PATHS.")
    if block is None:
        block = dispatch.structure_of(w.reshape(w.shape[0], -1)).block
    return {p: prep(p, w, block) for p in dict.fromkeys(routes.values())}


# --------------------------------------------------------------------------------------------------
# sparsify and the speedup table


def _batch_sizes(batch_size: Any, where: str, param: str) -> list[int]:
    values = [batch_size] if isinstance(batch_size, int) else batch_size
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        fail(
            param, where, "a positive integer or a non-empty sequence of them", batch_size, f"e.g. {param}=1."
        )
    return sorted({check_int(v, param, where, minimum=1) for v in values})


def _model_device(model: nn.Module, device: Any, where: str) -> torch.device:
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            fail("device", where, "a torch device such as 'cpu' or 'cuda'", device)
    else:
        first = next(iter(model.parameters()), None)
        dev = first.device if first is not None else torch.device("cpu")
    if dev.type not in ("cpu", "cuda"):
        fail("device", where, "a CPU or CUDA device", str(dev), "pass device='cpu' (or 'cuda').")
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("device", where, "a device present on this machine", str(dev), "pass device='cpu'.")
    return dev


def _masked_copy(model: nn.Module, masks: Mapping[str, torch.Tensor] | None, dev: torch.device, where: str):
    if not isinstance(model, nn.Module):
        fail("model", where, "a torch.nn.Module", None, got=type(model).__name__)
    new = copy.deepcopy(model).to(dev)
    if masks is None:
        return new
    if not isinstance(masks, Mapping):
        fail(
            "masks", where, "a Masks (or mapping of layer name to bool mask)", None, got=type(masks).__name__
        )
    modules = dict(new.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            m = modules.get(name)
            weight = getattr(m, "weight", None)
            if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != tuple(mask.shape):
                got = "no such layer" if m is None else f"weight shape {getattr(weight, 'shape', None)}"
                fail(
                    "masks",
                    where,
                    f"masks of the model's layers (layer {name!r}, shape {tuple(mask.shape)})",
                    None,
                    got=got,
                    fix="pass the masks computed for this architecture.",
                )
            weight.mul_(mask.to(weight.device, torch.bool).to(weight.dtype))
    return new


def _conv_inputs(model: nn.Module, input_shape: Sequence[int] | None, dev: torch.device) -> dict[str, tuple]:
    """The per-sample input shape ``(C, H, W)`` of every Conv2d, from one forward pass of zeros."""
    if input_shape is None:
        return {}
    shapes: dict[str, tuple] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):

            def hook(_m: nn.Module, args: tuple, _out: Any, name: str = name) -> None:
                shapes[name] = tuple(args[0].shape[1:])

            hooks.append(m.register_forward_hook(hook))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            dtype = next((p.dtype for p in model.parameters()), torch.float32)
            model(torch.zeros(1, *input_shape, device=dev, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return shapes


def _plan(
    model: nn.Module,
    batch_sizes: list[int],
    dev: torch.device,
    cache_dir: Any,
    input_shape: Sequence[int] | None,
    paths: Sequence[str] | None,
) -> dict[str, tuple[nn.Module, list[Selection]]]:
    conv_inputs = _conv_inputs(model, input_shape, dev)
    plan: dict[str, tuple[nn.Module, list[Selection]]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            prep = dispatch.reusing_prepare()  # pack each path once for all batch sizes
            sels = [
                dispatch.select_path(
                    m.weight, batch_size=b, device=dev, cache_dir=cache_dir, paths=paths, prepare_fn=prep
                )
                for b in batch_sizes
            ]
            plan[name] = (m, sels)
        elif isinstance(m, nn.Conv2d) and _conv_supported(m) and name in conv_inputs:
            plan[name] = (
                m,
                [_select_conv(m, conv_inputs[name], b, dev, cache_dir, paths) for b in batch_sizes],
            )
    return plan


def _select_conv(
    conv: nn.Conv2d,
    sample_shape: tuple,
    batch: int,
    dev: torch.device,
    cache_dir: Any,
    paths: Sequence[str] | None,
) -> Selection:
    geom = _ConvGeometry.of(conv)
    weight = conv.weight.detach()
    matrix = weight.reshape(weight.shape[0], -1)
    allowed = list(paths) if paths is not None else list(dispatch.PATHS)
    if not ConvShrunk.from_weight(weight).removes_any:
        allowed = [p for p in allowed if p != "shrunk"]
    gen = torch.Generator().manual_seed(0)

    def make_input(b: int) -> torch.Tensor:
        return torch.randn(b, *sample_shape, generator=gen).to(device=dev, dtype=weight.dtype)

    return dispatch.select_path(
        matrix,
        batch_size=batch,
        device=dev,
        cache_dir=cache_dir,
        paths=allowed,
        key_extra=f"conv2d:{tuple(weight.shape[1:])}:{geom.label()}:{tuple(sample_shape[1:])}".replace(
            " ", ""
        ),
        make_input=make_input,
        prepare_fn=lambda p, _mat, block: _conv_prepare(p, weight, block),
        runner=lambda p, packed, x: _conv_run(p, x, packed, None, geom),
    )


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def sparsify(
    model: nn.Module,
    *,
    batch_size: int | Sequence[int] = 1,
    device: torch.device | str | None = None,
    cache_dir: str | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    input_shape: Sequence[int] | None = None,
    paths: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose pruned Linear (and Conv2d) layers run by the fastest measured path.

    Zeros in the weights are the pruned weights; ``masks`` (a :class:`pruneviz.prune.Masks` or any
    mapping of layer name to bool keep-mask) are multiplied in first. For each layer with any zero and
    each of ``batch_size`` (one or several; a forward pass uses the nearest), the dispatcher
    (:func:`pruneviz.kernels.dispatch.select_path`) times the applicable paths — or reads them from the
    per-machine cache — and keeps dense unless a path is >= 2 % faster; the layer becomes a
    :class:`SparseLinear` / :class:`SparseConv2d` unless dense won at every batch size. Convolutions
    are only measured when ``input_shape`` (one sample's shape, e.g. ``(1, 8, 8)``) is given; without
    it they stay dense (masked). ``paths`` restricts the candidates. The input model is not changed.

    Returns the new model, in the mode (train/eval) of the input, on ``device`` (default: the model's).

    Example::

        >>> sparse = sparsify(pruned_mlp, batch_size=[1, 64])  # doctest: +SKIP
        >>> torch.allclose(sparse(x), pruned_mlp(x), atol=1e-5)  # doctest: +SKIP
        True
    """
    where = "sparsify"
    sizes = _batch_sizes(batch_size, where, "batch_size")
    dev = _model_device(model, device, where) if isinstance(model, nn.Module) else torch.device("cpu")
    new = _masked_copy(model, masks, dev, where)
    for name, (module, sels) in _plan(new, sizes, dev, cache_dir, input_shape, paths).items():
        routes = {batch_bucket(s.batch_size): s.path for s in sels}
        if set(routes.values()) == {"dense"}:
            continue
        block = sels[0].block
        if isinstance(module, nn.Linear):
            swapped: nn.Module = SparseLinear.from_linear(module, routes=routes, block=block)
        else:
            swapped = SparseConv2d.from_conv(module, routes=routes, block=block)
        swapped.train(module.training)
        _set_module(new, name, swapped)
    return new


TABLE_COLUMNS = [
    "layer",
    "batch_size",
    "path",
    "structure",
    "density",
    "theoretical_speedup",
    "measured_speedup",
    "dense_ms",
    "chosen_ms",
    "cached",
]


def speedup_table(
    model: nn.Module,
    *,
    batch_sizes: Sequence[int] = (1, 16, 256),
    device: torch.device | str | None = None,
    cache_dir: str | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    input_shape: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per layer and batch size: the path the dispatcher picks and its measured vs theoretical speedup.

    One row per (``layer``, ``batch_size``) with ``path``, ``structure`` (dense / channel / blockB /
    2:4 / unstructured), ``density`` (non-zero weights / all), ``theoretical_speedup`` (``1 / density``:
    the dense MACs over the MACs of the non-zero weights), ``measured_speedup`` (``dense_ms /
    chosen_ms``, >= 1 by the dispatcher's rule), ``dense_ms``, ``chosen_ms`` (medians) and ``cached``.
    Linear layers always; Conv2d layers when ``input_shape`` is given (else they are left out).
    Timings come from the same per-machine cache as :func:`sparsify`; the model is not changed.

    Example::

        >>> speedup_table(pruned_mlp, batch_sizes=(1, 16))  # doctest: +SKIP
    """
    where = "speedup_table"
    sizes = _batch_sizes(list(batch_sizes), where, "batch_sizes")
    dev = _model_device(model, device, where) if isinstance(model, nn.Module) else torch.device("cpu")
    new = _masked_copy(model, masks, dev, where)
    rows = []
    for name, (_, sels) in _plan(new, sizes, dev, cache_dir, input_shape, None).items():
        for s in sels:
            density = s.structure.density
            rows.append(
                {
                    "layer": name,
                    "batch_size": s.batch_size,
                    "path": s.path,
                    "structure": s.structure.label,
                    "density": density,
                    "theoretical_speedup": 1.0 / density if density > 0 else math.inf,
                    "measured_speedup": s.dense_ms / s.chosen_ms if s.chosen_ms > 0 else math.nan,
                    "dense_ms": s.dense_ms,
                    "chosen_ms": s.chosen_ms,
                    "cached": s.cached,
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
