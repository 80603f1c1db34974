"""Sparse inference modules and :func:`sparsify`, which swaps a pruned model's layers for them.

:class:`SparseLinear` and :class:`SparseConv2d` hold a pruned weight packed for one or more *paths*
(see :mod:`pruneviz.kernels.dispatch`) and a route per batch size: a forward pass of ``M`` rows takes
the path chosen for the power of two nearest ``M``. Both are for inference — their packed weights are
not parameters (no gradient, not in ``state_dict``); ``.to(device / dtype)`` moves and casts them.
A convolution runs dense (``F.conv2d``), shrunk (all-zero output channels and input channels removed)
or as ``F.unfold`` followed by a sparse matmul; on CPU dense usually wins, and the dispatcher keeps it.

:func:`sparsify` decides per layer on the layer's own call, with the input laid out as the model feeds
it (recorded in one example forward pass: leading dimensions, strides, bias), and then checks the whole
model against the dense one, running a batch size dense wherever the sparse model is not faster — a
2-D timing of the raw kernel says little about a ``(batch, seq, hidden)`` call inside a transformer.

The outputs of a sparsified model equal those of the masked dense model up to float rounding (the sparse
paths sum in a different order).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._validation import check_int, fail
from pruneviz.kernels import dispatch
from pruneviz.kernels.dispatch import Selection, batch_bucket

__all__ = ["LayerCall", "SparseConv2d", "SparseLinear", "sparsify", "speedup_table"]


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
        pair = cast(Any, tuple)  # Conv2d keeps two-element tuples (a padding string is refused earlier)
        return cls(pair(conv.kernel_size), pair(conv.stride), pair(conv.padding), pair(conv.dilation))

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
# how the model calls its layers


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of a layer as the model makes it: the input's shape, strides, dtype and device.

    The dispatcher times every path on :meth:`replica` — a tensor laid out exactly like the recorded
    input — so a ``(batch, seq, hidden)`` activation, a transposed view or a channels-last image is
    timed as the model feeds it, not as a contiguous 2-D matrix.

    >>> call = LayerCall.of(torch.randn(4, 2, 8).transpose(0, 1))
    >>> call.shape, call.stride, call.replica().stride()
    ((2, 4, 8), (8, 16, 1), (8, 16, 1))
    """

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, x: torch.Tensor) -> LayerCall:
        return cls(tuple(x.shape), tuple(x.stride()), x.dtype, x.device)

    def label(self) -> str:
        """``shape/strides``, e.g. ``1x128x384/49152,384,1`` (part of the dispatcher's cache key)."""
        return f"{'x'.join(map(str, self.shape))}/{','.join(map(str, self.stride))}"

    def replica(self, seed: int = 0) -> torch.Tensor:
        """Standard-normal values with the recorded shape and strides (a view of a fresh buffer just
        large enough for them; zero strides, as of an expanded tensor, are kept)."""
        if any(n == 0 for n in self.shape):
            return torch.empty(self.shape, dtype=self.dtype, device=self.device)
        extent = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
        gen = torch.Generator().manual_seed(seed)
        base = torch.randn(extent, generator=gen).to(device=self.device, dtype=self.dtype)
        return base.as_strided(self.shape, self.stride)


_NO_FORWARD = object()


@contextlib.contextmanager
def _recording_calls(layers: Mapping[str, nn.Module]) -> Iterator[dict[str, list[LayerCall]]]:
    """While the block runs, record how every call of ``layers`` gets its input (first argument).

    The layers' ``forward`` is wrapped on the instance rather than hooked: some modules (torch's
    ``nn.TransformerEncoderLayer`` in inference) take a fused path that never calls their Linear
    children, but only when no hooks are attached — recording must not change which code runs. The
    wrappers are removed on exit, also when the forward pass raises."""
    calls: dict[str, list[LayerCall]] = {name: [] for name in layers}
    saved: dict[str, object] = {}
    try:
        for name, m in layers.items():
            saved[name] = m.__dict__.get("forward", _NO_FORWARD)
            m.forward = _recorder(m.forward, calls[name])
    except BaseException:
        _restore_forwards(layers, saved)
        raise
    try:
        yield calls
    finally:
        _restore_forwards(layers, saved)


def _recorder(forward: Callable[..., Any], sink: list[LayerCall]) -> Callable[..., Any]:
    def record(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], torch.Tensor):
            sink.append(LayerCall.of(args[0]))
        return forward(*args, **kwargs)

    return record


def _restore_forwards(layers: Mapping[str, nn.Module], saved: Mapping[str, object]) -> None:
    for name, previous in saved.items():
        if previous is _NO_FORWARD:
            layers[name].__dict__.pop("forward", None)
        else:
            layers[name].__dict__["forward"] = previous


@contextlib.contextmanager
def _inference(*models: nn.Module) -> Iterator[None]:
    """``eval()`` and ``no_grad`` for the block; every module's train/eval mode is restored after."""
    modes = {m: m.training for model in models for m in model.modules()}
    try:
        for model in models:
            model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


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


def _example_inputs(
    model: nn.Module,
    sizes: list[int],
    input_shape: Sequence[int] | None,
    example_input: torch.Tensor | None,
    dev: torch.device,
    where: str,
) -> dict[int, torch.Tensor]:
    """The model's input at each batch size: ``example_input``'s rows (dim 0) repeated or cut to the
    size, or standard-normal values of shape ``(batch, *input_shape)``; empty when neither is given."""
    if example_input is not None and input_shape is not None:
        fail(
            "example_input",
            where,
            "None when input_shape is given",
            None,
            got="both example_input and input_shape",
            fix="pass one of them (example_input for inputs that are not float tensors, such as token ids).",
        )
    if example_input is not None and hasattr(example_input, "keys") and hasattr(example_input, "to"):
        # named inputs (pruneviz.data.Inputs: token ids with their attention mask) index like a tensor
        if len(example_input) == 0:
            fail("example_input", where, "at least one sample", None, got="0 samples")
        x = example_input.to(dev)
        return {b: x[torch.arange(b) % len(x)] for b in sizes}
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.ndim == 0 or len(example_input) == 0:
            got = (
                f"shape {tuple(example_input.shape)}"
                if isinstance(example_input, torch.Tensor)
                else type(example_input).__name__
            )
            fail(
                "example_input",
                where,
                "a tensor whose first dimension is the batch (at least one sample)",
                None,
                got=got,
                fix="pass one batch of real inputs, e.g. example_input=tokens[:1].",
            )
        x = example_input.detach().to(dev)
        return {b: x[torch.arange(b, device=dev) % len(x)] for b in sizes}
    if input_shape is None:
        return {}
    ok = isinstance(input_shape, Sequence) and not isinstance(input_shape, str)
    if not ok or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in input_shape):
        fail("input_shape", where, "one sample's shape, a sequence of positive integers", input_shape)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    gen = torch.Generator().manual_seed(0)
    return {b: torch.randn(b, *input_shape, generator=gen).to(device=dev, dtype=dtype) for b in sizes}


def _candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and _conv_supported(m))
    }


def _recorded_calls(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    inputs: Mapping[int, torch.Tensor],
    where: str,
    param: str,
) -> dict[int, dict[str, list[LayerCall]]]:
    """By batch size, how one inference forward pass (eval, no grad) calls each of ``layers``."""
    out: dict[int, dict[str, list[LayerCall]]] = {}
    with _inference(model):
        for b, x in inputs.items():
            with _recording_calls(layers) as calls:
                try:
                    model(x)
                except Exception as exc:
                    fail(
                        param,
                        where,
                        "an input the model accepts"
                        + (" (one sample's shape)" if param == "input_shape" else ""),
                        None,
                        got=f"an input of shape {tuple(x.shape)} on which the model raised "
                        f"{type(exc).__name__}: {str(exc)[:200]}",
                        fix="pass one batch the model runs on as example_input (or its sample shape as "
                        "input_shape).",
                    )
            out[b] = {name: c for name, c in calls.items() if c}
    return out


# torch modules that read their Linear children's weights instead of calling them: nn.MultiheadAttention
# always (its projections), nn.TransformerEncoderLayer in its fused inference path
_READ_DIRECTLY = (nn.MultiheadAttention, nn.TransformerEncoderLayer)


def _synthetic_calls(
    model: nn.Module, layers: Mapping[str, nn.Module], sizes: list[int], dev: torch.device
) -> dict[int, dict[str, list[LayerCall]]]:
    """Without an input: every Linear called with a contiguous ``(batch, in)`` matrix (what an MLP
    feeds it), except the Linear children of the torch modules that may read their weights without
    calling them (:data:`_READ_DIRECTLY`). Convolutions are left out."""
    read_directly = {
        id(child) for m in model.modules() if isinstance(m, _READ_DIRECTLY) for child in m.children()
    }
    linears = {n: m for n, m in layers.items() if isinstance(m, nn.Linear) and id(m) not in read_directly}
    return {
        b: {
            n: [LayerCall((b, m.in_features), (m.in_features, 1), m.weight.dtype, dev)]
            for n, m in linears.items()
        }
        for b in sizes
    }


@dataclasses.dataclass(frozen=True)
class _Choice:
    """The dispatcher's choice for one layer at one of the model's batch sizes."""

    batch_size: int
    call: LayerCall
    rows: int  # what the sparse module routes by: rows of a Linear's input, images of a conv's
    selection: Selection

    @property
    def bucket(self) -> int:
        return batch_bucket(self.rows)


@dataclasses.dataclass
class _LayerPlan:
    module: nn.Module  # the dense (masked) layer
    choices: list[_Choice]
    packed: dict[str, Any]  # the packed weights of the chosen paths

    def routes(self) -> dict[int, str]:
        """The chosen path by row bucket (the first call recorded in a bucket decides it)."""
        routes: dict[int, str] = {}
        for c in self.choices:
            routes.setdefault(c.bucket, c.selection.path)
        return routes

    def buckets(self, batch_size: int) -> set[int]:
        return {c.bucket for c in self.choices if c.batch_size == batch_size}


def _plan(
    model: nn.Module,
    batch_sizes: list[int],
    dev: torch.device,
    cache_dir: Any,
    inputs: Mapping[int, torch.Tensor],
    paths: Sequence[str] | None,
    where: str,
    input_param: str,
) -> dict[str, _LayerPlan]:
    layers = _candidate_layers(model)
    if inputs:
        recorded = _recorded_calls(model, layers, inputs, where, input_param)
    else:
        recorded = _synthetic_calls(model, layers, batch_sizes, dev)
    plan: dict[str, _LayerPlan] = {}
    for name, m in layers.items():
        candidates: dict[str, nn.Module] = {}  # one module per path, shared by the layer's calls
        choices: list[_Choice] = []
        for b in batch_sizes:
            seen: set[tuple[int, LayerCall]] = set()
            for call in recorded.get(b, {}).get(name, []):
                rows = _rows(m, call)
                if (batch_bucket(rows), call) in seen:
                    continue
                seen.add((batch_bucket(rows), call))
                sel = _select_call(m, call, rows, candidates, dev, cache_dir, paths)
                choices.append(_Choice(b, call, rows, sel))
        if choices:
            packed = {}  # the chosen paths' packed weights (a cached choice has no candidate module yet)
            for c in choices:
                p = c.selection.path
                if p != "dense" and p not in packed:
                    module: Any = candidates[p] if p in candidates else _candidate(m, p, c.selection.block)
                    packed[p] = module._packed[p]
            plan[name] = _LayerPlan(m, choices, packed)
    return plan


def _rows(module: nn.Module, call: LayerCall) -> int:
    if isinstance(module, nn.Linear):
        return math.prod(call.shape) // max(module.in_features, 1)
    return call.shape[0] if call.shape else 1


def _call_module(_path: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """How the dispatcher runs a path for :func:`sparsify`: the module's own call."""
    return module(x)


def _select_call(
    layer: nn.Module,
    call: LayerCall,
    rows: int,
    candidates: dict[str, nn.Module],
    dev: torch.device,
    cache_dir: Any,
    paths: Sequence[str] | None,
) -> Selection:
    """Time the layer's module call against the sparse module of every applicable path, each called on
    a replica of ``call`` (same shape and strides, with the layer's bias) — or read the cache."""
    weight = cast(torch.Tensor, layer.weight).detach()
    has_bias = getattr(layer, "bias", None) is not None
    if isinstance(layer, nn.Linear):
        matrix, allowed, kind = weight, paths, "linear"
    else:
        matrix = weight.reshape(weight.shape[0], -1)
        allowed = list(paths) if paths is not None else list(dispatch.PATHS)
        if not ConvShrunk.from_weight(weight).removes_any:
            allowed = [p for p in allowed if p != "shrunk"]
        kind = f"conv2d:{_ConvGeometry.of(cast(nn.Conv2d, layer)).label()}:{tuple(weight.shape[1:])}"
        kind = kind.replace(" ", "")

    def prepare_fn(path: str, _matrix: torch.Tensor, block: int | None) -> nn.Module:
        if path not in candidates:
            candidates[path] = layer if path == "dense" else _candidate(layer, path, block)
        return candidates[path]

    return dispatch.select_path(
        matrix,
        batch_size=rows,
        device=dev,
        cache_dir=cache_dir,
        paths=allowed,
        key_extra=f"call:{kind}:{call.label()}:{'bias' if has_bias else 'nobias'}",
        make_input=lambda _bucket: call.replica(),
        prepare_fn=prepare_fn,
        runner=_call_module,
    )


def _candidate(layer: nn.Module, path: str, block: int | None) -> nn.Module:
    """The sparse module that runs ``layer`` by ``path`` at every batch size."""
    if isinstance(layer, nn.Linear):
        return SparseLinear.from_linear(layer, routes={1: path}, block=block)
    return SparseConv2d.from_conv(cast(nn.Conv2d, layer), routes={1: path}, block=block)


def _sparse_module(plan: _LayerPlan, routes: Mapping[int, str]) -> nn.Module:
    """The layer as a sparse module with ``routes``, reusing the packed weights of the plan."""
    m: Any = plan.module
    packed = {p: plan.packed[p] if p != "dense" else m.weight.detach().contiguous() for p in routes.values()}
    if isinstance(m, nn.Linear):
        built: nn.Module = SparseLinear(
            m.in_features, m.out_features, routes=routes, packed=packed, bias=m.bias
        )
    else:
        built = SparseConv2d(
            m.in_channels,
            m.out_channels,
            _ConvGeometry.of(m),
            routes=routes,
            packed=packed,
            bias=m.bias,
        )
    built.train(m.training)
    return built


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def measure_models(fns: Mapping[str, Callable[[], object]], *, device: torch.device) -> dict[str, float]:
    """Median seconds of whole-model forward passes, interleaved (:func:`pruneviz.kernels.dispatch.measure`
    with at least 5 rounds, up to 21 or about 1 s) — the timer of :func:`sparsify`'s whole-model check."""
    return dispatch.measure(fns, device=device, repeats=21, min_repeats=5, budget_s=1.0)


def _sparsified_faster(sparse: nn.Module, dense: nn.Module, x: torch.Tensor, dev: torch.device) -> bool:
    """Whether ``sparse(x)`` beats ``dense(x)`` by the dispatcher's margin, in a first run and again
    pessimistically (its slower median of two runs against dense's faster one)."""
    fns = {"dense": lambda: dense(x), "sparsified": lambda: sparse(x)}
    first = measure_models(fns, device=dev)
    if dispatch.choose_path(first) != "sparsified":
        return False
    again = measure_models(fns, device=dev)
    worst = {"dense": min(first["dense"], again["dense"])}
    worst["sparsified"] = max(first["sparsified"], again["sparsified"])
    return dispatch.choose_path(worst) == "sparsified"


def _check_whole_model(
    sparse: nn.Module,
    dense: nn.Module,
    plan: Mapping[str, _LayerPlan],
    routes: dict[str, dict[int, str]],
    inputs: Mapping[int, torch.Tensor],
    dev: torch.device,
) -> None:
    """The guard: at each batch size, time the whole model dense and with its sparse layers; where
    the sparse model is not at least the dispatcher's margin (2 %) faster, every layer goes back to
    dense for the row buckets that batch size uses. If the sparse model fails to run at all (a parent
    reading a swapped layer's ``weight``, say), every layer goes back to dense, with a warning.
    ``sparse`` and ``routes`` are updated in place."""
    with _inference(sparse, dense):
        for b, x in inputs.items():
            live = {n: plan[n].buckets(b) for n in routes}
            live = {n: ks for n, ks in live.items() if any(routes[n].get(k, "dense") != "dense" for k in ks)}
            if not live:
                continue
            try:
                faster = _sparsified_faster(sparse, dense, x, dev)
            except Exception as exc:
                warnings.warn(
                    f"pruneviz.kernels.sparsify: the model with sparse layers failed on an input of shape "
                    f"{tuple(x.shape)} ({type(exc).__name__}: {str(exc)[:200]}); every layer is left "
                    "dense",
                    RuntimeWarning,
                    stacklevel=3,
                )
                live = {n: set(routes[n]) for n in routes}
                faster = False
            if faster:
                continue
            for n, ks in live.items():
                routes[n].update({k: "dense" for k in ks if k in routes[n]})
                keep = set(routes[n].values()) != {"dense"}
                _set_module(sparse, n, _sparse_module(plan[n], routes[n]) if keep else plan[n].module)


def sparsify(
    model: nn.Module,
    *,
    batch_size: int | Sequence[int] = 1,
    device: torch.device | str | None = None,
    cache_dir: str | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    input_shape: Sequence[int] | None = None,
    example_input: torch.Tensor | None = None,
    paths: Sequence[str] | None = None,
) -> nn.Module:
    """A copy of ``model`` whose pruned Linear (and Conv2d) layers run by the fastest measured path,
    never slower than the dense model as a whole.

    Zeros in the weights are the pruned weights; ``masks`` (a :class:`pruneviz.prune.Masks` or any
    mapping of layer name to bool keep-mask) are multiplied in first. Then, for each of ``batch_size``
    (the model's batch sizes, one or several):

    1. **Record** (with ``input_shape``, one sample's shape, or ``example_input``, a batch of real
       inputs — needed for token ids — whose rows are repeated or cut to each batch size): one
       inference forward pass (eval, no grad) records how the model calls each layer — the input's
       shape with its leading dimensions (``(batch, seq, hidden)`` in a transformer), strides and
       dtype. A layer the forward pass never calls as a module (the projections of
       ``nn.MultiheadAttention``; the Linear layers of ``nn.TransformerEncoderLayer`` when it takes
       torch's fused inference path) stays as it is.
    2. **Time each layer as it runs** (:func:`pruneviz.kernels.dispatch.select_path`, or its
       per-machine cache): the layer's own call against the call of a :class:`SparseLinear` /
       :class:`SparseConv2d` for every applicable path, with the bias, on an input laid out exactly
       as recorded (:class:`LayerCall`); dense stays unless a path is >= 2 % faster.
    3. **Check the whole model**: the model with its chosen paths is timed against the dense model on
       the same inputs, interleaved; at a batch size where it is not >= 2 % faster (twice, the second
       time pessimistically) every layer runs dense at that batch size — the whole model is never
       slower than dense by these measurements. If it fails to run, every layer stays dense (with a
       ``RuntimeWarning``). Its medians are not cached: each call checks again.

    Without ``input_shape`` and ``example_input`` nothing can be recorded or run: Linear layers are
    timed called with a contiguous ``(batch, in)`` matrix (what an MLP feeds them), convolutions stay
    dense, and the whole-model check is skipped.

    ``paths`` restricts the candidates. The input model is not changed. A layer becomes a sparse module
    unless dense won at every batch size; a forward pass takes the path of the nearest measured
    number of rows (Linear) or images (Conv2d). Returns the new model, in the mode (train/eval) of the
    input, on ``device`` (default: the model's).

    Example::

        >>> sparse = sparsify(pruned_encoder, batch_size=[1, 8], example_input=tokens[:1])  # doctest: +SKIP
        >>> torch.allclose(sparse(tokens), pruned_encoder(tokens), atol=1e-5)  # doctest: +SKIP
        True
    """
    where = "sparsify"
    sizes = _batch_sizes(batch_size, where, "batch_size")
    dev = _model_device(model, device, where) if isinstance(model, nn.Module) else torch.device("cpu")
    new = _masked_copy(model, masks, dev, where)
    inputs = _example_inputs(new, sizes, input_shape, example_input, dev, where)
    input_param = "input_shape" if input_shape is not None else "example_input"
    plan = _plan(new, sizes, dev, cache_dir, inputs, paths, where, input_param)
    routes = {name: lp.routes() for name, lp in plan.items()}
    routes = {name: r for name, r in routes.items() if set(r.values()) != {"dense"}}
    if not routes:
        return new
    # the sparse model shares every parameter and buffer with the dense one (no second copy of weights)
    shared = {id(t): t for t in [*new.parameters(), *new.buffers()]}
    sparse = copy.deepcopy(new, memo=shared)
    for name, r in routes.items():
        _set_module(sparse, name, _sparse_module(plan[name], r))
    if inputs:
        _check_whole_model(sparse, new, plan, routes, inputs, dev)
    return sparse


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
    example_input: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Per layer and batch size: the path the dispatcher picks and its measured vs theoretical speedup.

    One row per (``layer``, ``batch_size``) — the model's batch size; a layer called several times in
    one forward pass has a row per distinct call — with ``path``, ``structure`` (dense / channel /
    blockB / 2:4 / unstructured), ``density`` (non-zero weights / all), ``theoretical_speedup``
    (``1 / density``: the dense MACs over the MACs of the non-zero weights), ``measured_speedup``
    (``dense_ms / chosen_ms``, >= 1 by the dispatcher's rule), ``dense_ms``, ``chosen_ms`` (medians of
    the layer's module call) and ``cached``. Layers are timed as :func:`sparsify` times them (the same
    per-machine cache, the same recorded calls with ``input_shape`` or ``example_input``; without
    either, Linear layers on a ``(batch, in)`` matrix and no convolutions). These are per-layer
    choices: :func:`sparsify`'s whole-model check may still run a layer dense. The model is not changed.

    Example::

        >>> speedup_table(pruned_mlp, batch_sizes=(1, 16))  # doctest: +SKIP
    """
    where = "speedup_table"
    sizes = _batch_sizes(list(batch_sizes), where, "batch_sizes")
    dev = _model_device(model, device, where) if isinstance(model, nn.Module) else torch.device("cpu")
    new = _masked_copy(model, masks, dev, where)
    inputs = _example_inputs(new, sizes, input_shape, example_input, dev, where)
    rows = []
    input_param = "input_shape" if input_shape is not None else "example_input"
    for name, lp in _plan(new, sizes, dev, cache_dir, inputs, None, where, input_param).items():
        for c in lp.choices:
            s = c.selection
            density = s.structure.density
            rows.append(
                {
                    "layer": name,
                    "batch_size": c.batch_size,
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
