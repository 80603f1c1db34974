"""Loss and accuracy at many points of weight space, fast: the engine under the landscapes.

A landscape evaluates the same data at hundreds of points ``θ + Σ cᵢ dᵢ``. Two things make each point
cheaper than moving the user's model and calling it, and neither changes what is computed:

- **BatchNorm folded.** In eval mode a BatchNorm after a convolution is an affine map per channel, so the
  pair is one convolution with ``w' = w·γ/σ`` and ``b' = (b - μ)·γ/σ + β``. The pairs are found by
  running the model once with hooks (:func:`~pruneviz.prune.fold_batchnorm_eager`; no ``torch.fx``
  trace, which would patch ``nn.Module.__call__`` under every other thread of the app); at each point
  the folded weights are recomputed from the moved ones (a few small tensor operations), so directions
  that move BatchNorm scales are handled too.
- **Points in parallel.** At the batch sizes of an analysis a small network keeps two cores only partly
  busy; with ``workers`` threads, each with its own copy of the folded model and one intra-op thread,
  several points run at once. Each point is then computed single-threaded, so its numbers do not depend
  on the number of workers.

The user's model is never moved: the copies are.
"""

from __future__ import annotations

import contextlib
import copy
import queue
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from pruneviz._log import bar
from pruneviz._validation import check_int, fail
from pruneviz.analysis.perturb import Direction, loss_and_accuracy
from pruneviz.data.dataset import Dataset
from pruneviz.models.layout import inference_layout

# copies of a model larger than this are not made for parallel points (memory over speed)
_PARALLEL_BYTES = 1 << 30


def _folded(model: nn.Module, data: Dataset) -> tuple[nn.Module, dict[str, str]]:
    """An eval-mode copy with BatchNorms folded into their convolutions and the ``{conv: norm}`` pairs,
    or a plain copy and no pairs when the model cannot be run on two samples."""
    from pruneviz.prune.formats import fold_batchnorm_eager

    try:
        return fold_batchnorm_eager(model, data.x[:2])
    except Exception:  # whatever stops the probe: evaluate the model as it is
        return copy.deepcopy(model).eval(), {}


def _same_output(model: nn.Module, folded: nn.Module, data: Dataset) -> bool:
    """Whether the folded copy gives the model's outputs (its tensors, equal to 1e-4) on a few samples."""
    from pruneviz._scope import eval_mode
    from pruneviz.prune.formats import output_tensors

    with torch.no_grad(), eval_mode(model):
        x = data.x[:2]
        a, b = output_tensors(model(x)), output_tensors(folded(x))
    return (
        len(a) == len(b) > 0
        and all(s.shape == t.shape for s, t in zip(a, b, strict=True))
        and all(bool(torch.allclose(s, t, rtol=1e-4, atol=1e-5)) for s, t in zip(a, b, strict=True))
    )


def _contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def default_workers(model: nn.Module) -> int:
    """Parallel points: one per torch thread, unless copies of the model would take more than 1 GiB."""
    threads = torch.get_num_threads()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    return 1 if threads <= 1 or size * threads > _PARALLEL_BYTES else threads


class PointEvaluator:
    """``evaluate([(c₁, c₂, …), …])``: loss and accuracy (with standard errors, as
    :func:`~pruneviz.analysis.perturb.loss_and_accuracy`) of ``model`` at ``θ + Σ cᵢ · directions[i]``.

    ``workers`` threads evaluate points at once (``None``: :func:`default_workers`); ``fold=False``
    evaluates the unfolded model (the reference the folded one is tested against).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        directions: Sequence[Direction],
        *,
        batch_size: int = 512,
        workers: int | None = None,
        fold: bool = True,
    ) -> None:
        where = "PointEvaluator"
        self.batch_size = check_int(batch_size, "batch_size", where, minimum=1)
        self.workers = (
            default_workers(model) if workers is None else check_int(workers, "workers", where, minimum=1)
        )
        self.data = data
        self.directions = list(directions)
        named = dict(model.named_parameters())
        for d in self.directions:
            unknown = sorted(set(d) - set(named))
            if unknown:
                fail("directions", where, "directions keyed by the model's parameter names", unknown[0])
        self.base = {n: p.detach().clone() for n, p in named.items()}
        template, self.pairs = _folded(model, data) if fold else (copy.deepcopy(model).eval(), {})
        if not self.pairs or not _same_output(model, template, data):
            # a safety net: folding never changes the logits by construction
            template, self.pairs = copy.deepcopy(model).eval(), {}
        modules = dict(model.named_modules())
        # the norms' fixed parts (running statistics, eps) and their affine parameters' names
        self._norms = {}
        for conv, norm in self.pairs.items():
            bn = modules[norm]
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm)  # conv_batchnorm_pairs pairs norms only
            assert bn.running_mean is not None and bn.running_var is not None
            self._norms[conv] = (
                bn.running_mean.detach().clone(),
                torch.sqrt(bn.running_var.detach() + bn.eps),
                f"{norm}.weight" if bn.affine else None,
                f"{norm}.bias" if bn.affine else None,
            )
        template = inference_layout(template, data.x)
        # where each of the copy's parameters sits in its flat buffer (strides kept: channels-last stays)
        params = dict(template.named_parameters())
        self._dtype = next(iter(params.values())).dtype if params else torch.float32
        self._layout: dict[str, tuple[torch.Size, tuple[int, ...], int]] = {}
        offset = 0
        for n, p in params.items():
            dense = p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
            self._layout[n] = (p.shape, p.stride() if dense else _contiguous_strides(p.shape), offset)
            offset += p.numel()
        self._numel = offset
        # With the norms' scales unmoved the folded parameters are affine in the coefficients:
        # fold(θ + Σ cᵢdᵢ) = fold(θ) + Σ cᵢ·lin(dᵢ), one fused update per point.
        full = [{n: d[n].to(b.dtype) if n in d else torch.zeros_like(b) for n, b in self.base.items()}
                for d in self.directions]  # fmt: skip
        scales_fixed = all(
            gamma is None or not bool(d[gamma].any()) for *_, gamma, _ in self._norms.values() for d in full
        )
        flat_ok = bool(params) and all(p.dtype == self._dtype for p in params.values()) and bool(full)
        self._steps: list[torch.Tensor] | None = None
        if flat_ok and scales_fixed:
            self._origin = self._flatten(self._fold(self.base, self.base, centre=True))
            self._steps = [self._flatten(self._fold(d, self.base, centre=False)) for d in full]
        self._models: queue.SimpleQueue[tuple[nn.Module, torch.Tensor | None]] = queue.SimpleQueue()
        for i in range(self.workers):
            copied = template if i == 0 else copy.deepcopy(template)
            self._models.put((copied, self._flat_parameters(copied) if flat_ok else None))

    @property
    def fused(self) -> bool:
        """Whether a point is written by one fused update of a flat buffer (the norms' scales do not move)."""
        return self._steps is not None

    def _flat_parameters(self, model: nn.Module) -> torch.Tensor:
        """Make ``model``'s parameters views of one flat buffer (in ``_layout``) and return the buffer."""
        flat = torch.empty(self._numel, dtype=self._dtype)
        with torch.no_grad():
            for n, p in model.named_parameters():
                shape, stride, offset = self._layout[n]
                view = flat.as_strided(shape, stride, offset)
                view.copy_(p)
                p.data = view
        return flat

    def _fold(
        self, values: Mapping[str, torch.Tensor], gammas: Mapping[str, torch.Tensor], *, centre: bool
    ) -> dict[str, torch.Tensor]:
        """The folded copy's parameters for the original ``values``: each convolution paired with a norm
        gets ``w·s`` and ``(b - μ)·s + β`` (``s = γ/σ``, with ``γ`` from ``gammas``); the others are
        copied. ``centre=False`` leaves ``μ`` out: the linear part, for a direction."""
        out: dict[str, torch.Tensor] = {}
        for conv, (mean, sigma, gamma, beta) in self._norms.items():
            w = values[f"{conv}.weight"]
            scale = (gammas[gamma] if gamma else torch.ones_like(mean)) / sigma
            bias = values.get(f"{conv}.bias")
            b = torch.zeros_like(mean) if bias is None else bias
            shift = values[beta] if beta else torch.zeros_like(mean)
            out[f"{conv}.weight"] = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
            out[f"{conv}.bias"] = ((b - mean) if centre else b) * scale + shift  # a conv's own bias is in b'
        for n in self._layout:
            if n not in out:
                out[n] = values[n]
        return out

    def _moved(self, coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
        out = {}
        for n, base in self.base.items():
            value = base
            for d, c in zip(self.directions, coefficients, strict=True):
                if c != 0.0 and n in d:
                    value = value + float(c) * d[n].to(base.dtype)
            out[n] = value
        return out

    def _flatten(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``values`` (the folded copy's parameters) laid out as in a copy's flat buffer."""
        flat = torch.empty(self._numel, dtype=self._dtype)
        for n, (shape, stride, offset) in self._layout.items():
            flat.as_strided(shape, stride, offset).copy_(values[n])
        return flat

    @torch.no_grad()
    def _write(self, model: nn.Module, flat: torch.Tensor | None, coefficients: Sequence[float]) -> None:
        """Move a copy to the point: one ``base + Σ cᵢ·stepᵢ`` over its flat buffer where the fold is
        linear in the coefficients, else the moved parameters folded one by one."""
        if flat is not None and self._steps is not None:
            torch.add(self._origin, self._steps[0], alpha=float(coefficients[0]), out=flat)
            for step, c in zip(self._steps[1:], coefficients[1:], strict=True):
                flat.add_(step, alpha=float(c))
            return
        moved = self._moved(coefficients)
        values = self._fold(moved, moved, centre=True)
        for n, p in model.named_parameters():
            p.copy_(values[n])

    @contextlib.contextmanager
    def _model(self) -> Iterator[tuple[nn.Module, torch.Tensor | None]]:
        model = self._models.get()
        try:
            yield model
        finally:
            self._models.put(model)

    def _point(self, coefficients: Sequence[float]) -> dict[str, float]:
        with self._model() as (model, flat):
            self._write(model, flat, coefficients)
            return loss_and_accuracy(model, self.data, batch_size=self.batch_size)

    def evaluate(
        self, points: Sequence[Sequence[float]], *, progress: bool = False, desc: str = "points"
    ) -> list[dict[str, float]]:
        """The points' results, in the order given."""
        points = [tuple(float(c) for c in p) for p in points]
        if self.workers == 1 or len(points) < 2:
            return [self._point(p) for p in bar(points, show=progress, desc=desc)]
        from pruneviz._seed import torch_threads

        with torch_threads(1), ThreadPoolExecutor(self.workers) as pool:
            futures = [pool.submit(self._point, p) for p in points]
            return [f.result() for f in bar(futures, show=progress, desc=desc)]
