"""Export: masks folded into weights, and the sparse formats ``pruneviz.kernels`` consumes.

The formats, in one place (weights are ``(out, in)`` matrices; convolutions are flattened to
``(out, in * kernel)``, N:M with the input channel fastest as in :mod:`pruneviz.prune.allocation`):

- **CSR**: ``torch.sparse_csr_tensor`` — ``crow_indices`` (out + 1), ``col_indices`` and ``values``
  (one per non-zero). Suits unstructured sparsity at high sparsity.
- **BSR**: ``torch.sparse_bsr_tensor`` with ``(bh, bw)`` blocks — ``crow_indices`` over block rows,
  ``col_indices`` of non-zero blocks, ``values`` of shape ``(nnz_blocks, bh, bw)``. Suits block masks.
- **N:M**: :class:`NMCompressed` — ``values (out, in * N / M)`` holding the kept weights of each group in
  order, and ``indices (out, in * N / M)`` (uint8) giving each value's position 0..M-1 in its group.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from pruneviz._validation import check_int, check_model, fail
from pruneviz.kernels._layout import as_matrix, compress_nm, nm_unview, nm_view
from pruneviz.models.layout import to_memory_format
from pruneviz.prune.allocation import Structure, check_nm_divisible
from pruneviz.prune.masks import Masks


def fold_masks(model: nn.Module, masks: Masks) -> nn.Module:
    """A copy of ``model`` with the masks multiplied into its weights (no masks or hooks left)."""
    return masks.apply_(copy.deepcopy(model))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` with every BatchNorm that directly follows a convolution folded
    into it (``w' = w·γ/σ``, ``b' = (b - μ)·γ/σ + β``), traced with ``torch.fx``. Fewer operators per
    forward pass — the export step before measuring latency. Pruned weights stay exactly zero.
    """
    return fold_batchnorm_pairs(model)[0]


def fold_batchnorm_pairs(model: nn.Module) -> tuple[nn.Module, dict[str, str]]:
    """:func:`fold_batchnorm`, and which BatchNorm went into which convolution (``{conv: norm}``, by the
    modules' qualified names in ``model``; the folded copy keeps the convolution's name).

    ``torch.fx`` patches ``nn.Module.__call__`` for the whole process while it traces, so a model called
    in another thread meanwhile fails; code that runs beside other analyses (the app, the landscapes)
    folds with :func:`fold_batchnorm_eager` instead."""
    import torch.fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as exc:  # data-dependent control flow and the like
        raise fail(
            "model",
            "fold_batchnorm",
            "a model torch.fx can trace (no data-dependent control flow)",
            type(model).__name__,
            f"measure the eager model instead ({type(exc).__name__}: {exc}).",
        ) from exc
    modules = dict(graph.named_modules())
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    pairs: dict[str, str] = {}
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], norms):
            continue
        prev = node.args[0]
        if not (isinstance(prev, torch.fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        target = prev.target  # a call_module node's target is the module's qualified name
        if not isinstance(target, str):
            continue
        conv = modules[target]
        if not isinstance(conv, nn.Conv1d | nn.Conv2d):
            continue
        fused = fuse_conv_bn_eval(conv, modules[node.target])
        parent, _, name = target.rpartition(".")
        setattr(graph.get_submodule(parent) if parent else graph, name, fused)
        pairs[target] = str(node.target)
        node.replace_all_uses_with(prev)
        graph.graph.erase_node(node)
    graph.graph.lint()
    graph.delete_all_unused_submodules()
    graph.recompile()
    return graph.eval(), pairs


def output_tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a model's output: a tensor, or tensors nested in tuples, lists and mappings."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for v in value for t in output_tensors(v)]
    return []


def _consumers(outputs: Sequence[torch.Tensor]) -> dict[Any, int]:
    """For each node of the autograd graph behind ``outputs``, how many edges lead into it."""
    counts: dict[Any, int] = {}
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                counts[child] = counts.get(child, 0) + 1
                stack.append(child)
    return counts


def conv_batchnorm_pairs(model: nn.Module, example: Any) -> dict[str, str]:
    """The ``{conv: norm}`` pairs of ``model`` (qualified names) whose BatchNorm can be folded into the
    convolution: found by calling the model once on ``example`` with forward hooks, not by tracing.

    A pair is folded only when the norm's input is the convolution's output itself, each module is
    called once, and nothing else uses the convolution's output (counted in the autograd graph of the
    model's outputs) — so folding cannot change what the model computes. Any model that runs can be
    searched: dict outputs, data-dependent control flow and adapters alike.
    """
    probe = copy.deepcopy(model).eval()
    for p in probe.parameters():
        p.requires_grad_(True)
    names = {id(m): n for n, m in probe.named_modules()}
    calls: dict[str, int] = {}
    produced: dict[int, tuple[str, torch.Tensor, Any]] = {}
    follows: dict[str, tuple[str, Any]] = {}

    def after_conv(module: nn.Module, inputs: Any, output: Any) -> None:
        name = names[id(module)]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(output, torch.Tensor):
            produced[id(output)] = (name, output, output.grad_fn)

    def before_norm(module: nn.Module, inputs: Any) -> None:
        name = names[id(module)]
        calls[name] = calls.get(name, 0) + 1
        x = inputs[0] if inputs else None
        hit = produced.get(id(x))
        if hit is not None and hit[1] is x and x.grad_fn is hit[2]:  # not changed in place since
            follows[name] = (hit[0], hit[2])

    handles = []
    for module in probe.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.enable_grad():
            outputs = output_tensors(probe(example))
    finally:
        for handle in handles:
            handle.remove()
    counts = _consumers(outputs)
    return {
        conv: norm
        for norm, (conv, node) in follows.items()
        if calls.get(conv) == 1 and calls.get(norm) == 1 and node is not None and counts.get(node) == 1
    }


def fold_batchnorm_eager(model: nn.Module, example: Any) -> tuple[nn.Module, dict[str, str]]:
    """An eval-mode copy of ``model`` with the BatchNorms of :func:`conv_batchnorm_pairs` folded into
    their convolutions (``w' = w·γ/σ``, ``b' = (b - μ)·γ/σ + β``) and replaced by ``nn.Identity``, and
    the pairs. The copy keeps the model's own ``forward``; nothing is traced, so it is safe to call
    while other threads run models."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = conv_batchnorm_pairs(model, example)
    folded = copy.deepcopy(model).eval()
    for conv, norm in pairs.items():
        c, n = folded.get_submodule(conv), folded.get_submodule(norm)
        assert isinstance(c, nn.Conv1d | nn.Conv2d) and isinstance(n, nn.BatchNorm1d | nn.BatchNorm2d)
        fused: nn.Module = fuse_conv_bn_eval(c, n)
        for name, module in ((conv, fused), (norm, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, leaf, module)
    return folded, pairs


def export_inference(model: nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1) -> nn.Module:
    """The deployable CPU form of a (shrunk) model: BatchNorm folded (:func:`fold_batchnorm`), then traced
    and frozen with TorchScript on an input of ``(batch_size, *input_shape)``.

    Freezing removes the per-module Python overhead that dominates small-batch CPU latency. TorchScript
    is deprecated upstream in favour of ``torch.compile``, but measured here (``benchmarks/structured.py``)
    it is the faster CPU path for small CNNs: ``torch.compile`` took ~40 s to compile ResNet-20 and its
    batch-1 speedup of a 50 %-channel-pruned ResNet-20 was 1.4x against 1.9-2.1x for a frozen trace.
    :func:`tune_inference` also chooses the memory format and thread count by timing them.
    """
    return _frozen(fold_batchnorm(model), torch.zeros(batch_size, *input_shape), optimize=False)


def _frozen(folded: nn.Module, example: torch.Tensor, *, optimize: bool) -> torch.jit.ScriptModule:
    """``folded`` traced on ``example`` and frozen; with ``optimize`` also passed through
    ``torch.jit.optimize_for_inference`` (oneDNN convolutions on CPU)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        frozen = torch.jit.freeze(torch.jit.trace(folded, example))
        return torch.jit.optimize_for_inference(frozen) if optimize else frozen


MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


class InferenceModule(nn.Module):
    """A compiled inference model that runs each call with its chosen memory format and thread count.

    ``forward`` converts the input to ``memory_format`` (the conversion is part of the measured time),
    sets ``torch.set_num_threads(threads)`` for the call and restores the caller's setting afterwards;
    gradients are off. Made by :func:`tune_inference`.
    """

    def __init__(self, compiled: torch.jit.ScriptModule, *, memory_format: str, threads: int) -> None:
        super().__init__()
        self.compiled = compiled
        self.memory_format = memory_format
        self.threads = threads
        self._format = MEMORY_FORMATS[memory_format]

    def forward(self, x: torch.Tensor) -> Any:
        before = torch.get_num_threads()
        if before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                if x.dim() == 4:
                    x = x.contiguous(memory_format=self._format)
                return self.compiled(x)
        finally:
            if before != self.threads:
                torch.set_num_threads(before)

    def extra_repr(self) -> str:
        return f"memory_format={self.memory_format!r}, threads={self.threads}"


@dataclass(frozen=True)
class TunedInference:
    """Result of :func:`tune_inference`.

    ``model`` is the fastest candidate, wrapped so that it runs as it was timed; ``memory_format``,
    ``threads`` and ``optimized`` say which candidate won and ``median_s`` its probed latency; ``probe``
    has one row per candidate: ``memory_format``, ``threads``, ``optimized``, ``median_s``, ``chosen``.
    """

    model: InferenceModule
    memory_format: str
    threads: int
    optimized: bool
    median_s: float
    probe: pd.DataFrame

    def describe(self) -> str:
        """One line: the choice and its latency against the slowest and the plain (contiguous, current
        thread count, not optimised) candidates."""
        plain = self.probe[~self.probe.optimized & (self.probe.memory_format == "contiguous")]
        plain_s = float(plain.median_s.min()) if len(plain) else float("nan")
        return (
            f"{self.memory_format}, {self.threads} thread(s), "
            f"{'optimize_for_inference' if self.optimized else 'frozen'}: {1e3 * self.median_s:.3g} ms "
            f"(best contiguous frozen {1e3 * plain_s:.3g} ms, {len(self.probe)} candidates probed)"
        )


def _thread_candidates(threads: Sequence[int] | None, where: str) -> list[int]:
    if threads is None:
        n = torch.get_num_threads()
        return sorted({1, n, *(2**k for k in range(1, n.bit_length()) if 2**k < n)})
    if isinstance(threads, str | bytes) or not isinstance(threads, Sequence) or not threads:
        fail(
            "threads",
            where,
            "a non-empty sequence of thread counts, or None",
            threads,
            "pass threads=[1, 2].",
        )
    return sorted({check_int(t, "threads", where, minimum=1) for t in threads})


def tune_inference(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    threads: Sequence[int] | None = None,
    repeats: int = 5,
) -> TunedInference:
    """The fastest CPU inference form of a (channel-pruned) model, chosen by a short timed probe.

    Every BatchNorm that follows a convolution is folded into it (:func:`fold_batchnorm`, exact up to
    float rounding), and the folded model is traced and frozen with TorchScript on a zero batch of
    ``(batch_size, *input_shape)``. The probe then times each candidate — memory format (contiguous or,
    for image inputs ``(C, H, W)``, channels-last), with or without ``torch.jit.optimize_for_inference``,
    times each thread count in ``threads`` (default: 1, the powers of two below the current count, and
    the current count) — ``repeats`` times in interleaved order after 3 warm-up passes, and keeps the
    lowest median. The choice is machine- and batch-specific: tune on the machine that serves.

    ``model`` is left unchanged. Any batch size runs on the result; only ``batch_size`` was probed.
    Returns a :class:`TunedInference` (the model, the choice, and the table of probed latencies).

    >>> from pruneviz.models import build_model
    >>> from pruneviz.prune import prune_channels
    >>> small = prune_channels(build_model("resnet20", input_shape=(3, 16, 16), num_classes=4),
    ...                        sparsity=0.5, input_shape=(3, 16, 16)).model
    >>> tuned = tune_inference(small, (3, 16, 16), threads=[1], repeats=3)
    >>> tuned.model(torch.zeros(2, 3, 16, 16)).shape, len(tuned.probe)
    (torch.Size([2, 4]), 4)
    """
    where = "tune_inference"
    model = check_model(model, "model", where)
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, Sequence) or not input_shape:
        fail("input_shape", where, "the shape of one sample, e.g. (3, 224, 224)", input_shape)
    shape = tuple(check_int(s, "input_shape", where, minimum=1) for s in input_shape)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    counts = _thread_candidates(threads, where)
    repeats = check_int(repeats, "repeats", where, minimum=1)

    folded = fold_batchnorm(model)
    formats = ["contiguous", "channels_last"] if len(shape) == 3 else ["contiguous"]
    compiled: dict[tuple[str, bool], torch.jit.ScriptModule] = {}
    for fmt in formats:
        work = to_memory_format(copy.deepcopy(folded), MEMORY_FORMATS[fmt]) if fmt != "contiguous" else folded
        example = torch.zeros(batch_size, *shape).contiguous(memory_format=MEMORY_FORMATS[fmt])
        for optimize in (False, True):
            try:
                compiled[fmt, optimize] = _frozen(work, example, optimize=optimize)
            except Exception as exc:  # an optimisation torch cannot apply to this model: a candidate less
                if not optimize:
                    raise
                warnings.warn(
                    f"tune_inference: torch.jit.optimize_for_inference failed on the {fmt} model "
                    f"({type(exc).__name__}: {exc}); probing the frozen model without it.",
                    RuntimeWarning,
                    stacklevel=2,
                )
    candidates = {
        (fmt, n, optimize): InferenceModule(module, memory_format=fmt, threads=n)
        for (fmt, optimize), module in compiled.items()
        for n in counts
    }
    x = torch.zeros(batch_size, *shape)
    times: dict[tuple[str, int, bool], list[float]] = {key: [] for key in candidates}
    for rep in range(3 + repeats):
        for key, module in candidates.items():
            t0 = time.perf_counter()
            module(x)
            if rep >= 3:
                times[key].append(time.perf_counter() - t0)
    medians = {key: statistics.median(t) for key, t in times.items()}
    best = min(medians, key=medians.__getitem__)
    probe = pd.DataFrame(
        [
            {
                "memory_format": f,
                "threads": n,
                "optimized": o,
                "median_s": medians[f, n, o],
                "chosen": (f, n, o) == best,
            }
            for f, n, o in candidates
        ]
    )
    fmt, n, optimize = best
    return TunedInference(
        model=candidates[best].eval(),
        memory_format=fmt,
        threads=n,
        optimized=optimize,
        median_s=medians[best],
        probe=probe,
    )


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """CSR of the weight matrix (zeros dropped)."""
    return as_matrix(weight).to_sparse_csr()


def to_bsr(weight: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """BSR of the weight matrix with ``block`` = (rows, cols) blocks; all-zero blocks are dropped."""
    mat = as_matrix(weight)
    bh, bw = block
    if mat.shape[0] % bh or mat.shape[1] % bw:
        fail("block", "to_bsr", f"a block size dividing the weight matrix {tuple(mat.shape)}", block)
    with warnings.catch_warnings():  # torch marks BSR as beta; the conversion itself is exact
        warnings.simplefilter("ignore", UserWarning)
        return mat.to_sparse_bsr((bh, bw))


@dataclass(frozen=True)
class NMCompressed:
    """N:M-compressed weight: the kept values and their positions within each group of M."""

    values: torch.Tensor
    indices: torch.Tensor
    shape: tuple[int, ...]
    n: int
    m: int

    def to_dense(self) -> torch.Tensor:
        rows = self.values.shape[0]
        groups = self.values.shape[1] // self.n
        dense = torch.zeros(rows, groups, self.m, dtype=self.values.dtype)
        dense.scatter_(
            2, self.indices.long().reshape(rows, groups, self.n), self.values.reshape(rows, groups, self.n)
        )
        return nm_unview(dense.reshape(rows, groups * self.m), torch.Size(self.shape))


def to_nm(weight: torch.Tensor, n: int, m: int) -> NMCompressed:
    """Compress a weight that satisfies N:M (at most N non-zeros in every group of M along the input)."""
    w = weight.detach()
    check_nm_divisible(w.shape[1], Structure("nm", n=n, m=m), "weight", "to_nm")
    flat = nm_view(w)
    groups = flat.reshape(flat.shape[0], -1, m)
    nonzero = (groups != 0).sum(-1)
    if bool((nonzero > n).any()):
        fail(
            "weight",
            "to_nm",
            f"at most {n} non-zeros in every group of {m}",
            None,
            got=f"up to {int(nonzero.max())}",
        )
    values, indices = compress_nm(flat, n, m)
    return NMCompressed(values, indices, tuple(w.shape), n, m)
