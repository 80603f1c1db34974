"""Loss-landscape curvature: a mask-aware Hessian operator, its top eigenvalues (Lanczos), trace
(Hutch++) and spectral density (stochastic Lanczos quadrature).

The Hessian is that of the mean loss over a dataset with respect to the chosen parameters, restricted
to the coordinates a pruning mask keeps: pruned weights are not variables (their rows and columns are
left out), so the operator acts on the unpruned coordinates only. Hessian-vector products use
forward-over-reverse differentiation on a functional copy of the parameters: the model's own tensors
are never written, so nothing needs restoring, whatever is raised midway. BatchNorm uses its running
statistics (eval mode).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._log import bar
from pruneviz._scope import eval_mode
from pruneviz._validation import check_int, fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.weights import parameter_name_of

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _mean_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="sum")


def _size(index: torch.Tensor | None, parameter: torch.Tensor) -> int:
    """How many entries of ``parameter`` the operator covers: those at ``index``, or all."""
    return int(index.numel()) if index is not None else parameter.numel()


class _AffineNorm(nn.Module):
    """An eval-mode BatchNorm as the per-channel affine map it is, ``x·γ/σ + (β - μ·γ/σ)``, with the
    norm's own parameter and buffer names (so a state dict for the norm still fits). Differentiated
    twice, this is cheaper than the fused batch-norm kernel's double backward."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        assert norm.running_mean is not None and norm.running_var is not None  # callers check
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        if norm.num_batches_tracked is not None:
            self.register_buffer("num_batches_tracked", norm.num_batches_tracked)
        self.eps = norm.eps

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(self.running_var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -self.running_mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * scale.reshape(shape) + shift.reshape(shape)


def _affine_norms(model: nn.Module) -> nn.Module:
    """``model``, or a copy of it whose BatchNorms with running statistics are :class:`_AffineNorm`
    (the operator evaluates in eval mode, where the two compute the same)."""
    norms = [
        n
        for n, m in model.named_modules()
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) and m.track_running_stats
    ]
    if not norms:
        return model
    import copy

    out = copy.deepcopy(model)
    for name in norms:
        parent, _, leaf = name.rpartition(".")
        norm = out.get_submodule(name)
        assert isinstance(norm, nn.modules.batchnorm._BatchNorm)
        setattr(out.get_submodule(parent) if parent else out, leaf, _AffineNorm(norm))
    return out


class HessianOperator:
    """``v ↦ H v`` for the Hessian of the mean loss over ``data``, on the unpruned coordinates.

    Parameters
    ----------
    model : any ``nn.Module``; left untouched.
    data : the samples the loss averages over (a pruneviz :class:`~pruneviz.data.Dataset`).
    masks : keep-masks by module name (``{"fc": bool tensor}``, e.g. from a zoo run); masked-out
        weights are not variables of the Hessian.
    params : names of the parameters to differentiate (e.g. one layer's ``"blocks.0.conv1.weight"``
        for a per-layer block); default every parameter that requires a gradient.
    loss : ``loss(logits, y)`` returning the *sum* over the batch (default cross-entropy); the operator
        divides by ``len(data)``.
    dtype : computation precision (``torch.float64`` for reference-grade results on small models).

    ``dim`` is the number of variables; ``hvps`` counts the products computed so far.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        masks: Mapping[str, torch.Tensor] | None = None,
        params: Sequence[str] | None = None,
        loss: LossFn = _mean_ce,
        batch_size: int = 512,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        where = "HessianOperator"
        if not isinstance(model, nn.Module):
            fail("model", where, "a torch nn.Module", type(model).__name__)
        if not isinstance(data, Dataset):
            fail(
                "data",
                where,
                "a pruneviz Dataset",
                type(data).__name__,
                "wrap samples in pruneviz.data.Dataset.",
            )
        if len(data) == 0:
            fail(
                "data",
                where,
                "a non-empty Dataset",
                "0 samples",
                "pass the samples to average the loss over.",
            )
        self.batch_size = check_int(batch_size, "batch_size", where, minimum=1)
        named = dict(model.named_parameters())
        if params is None:
            names = [n for n, p in named.items() if p.requires_grad]
        else:
            names = list(params)
            unknown = [n for n in names if n not in named]
            if unknown:
                fail(
                    "params",
                    where,
                    "names of the model's parameters",
                    unknown if len(unknown) > 1 else unknown[0],
                    "list them with [n for n, _ in model.named_parameters()].",
                )
        if not names:
            fail(
                "params",
                where,
                "at least one parameter to differentiate",
                [],
                "pass params=[...] or unfreeze.",
            )
        keep: dict[str, torch.Tensor] = {}
        for module_name, mask in (masks or {}).items():
            pname = parameter_name_of(model, module_name) or f"{module_name}.weight"
            if pname in names:
                if tuple(mask.shape) != tuple(named[pname].shape):
                    fail(
                        "masks",
                        where,
                        f"a mask of shape {tuple(named[pname].shape)} for {module_name!r}",
                        None,
                        got=f"shape {tuple(mask.shape)}",
                    )
                keep[pname] = mask.to(torch.bool).flatten()
        self.model = _affine_norms(model)
        self.data = data
        self.loss = loss
        self.dtype = dtype
        self.names = names
        self.shapes = {n: named[n].shape for n in names}
        self.index = {n: torch.nonzero(keep[n]).flatten() if n in keep else None for n in names}
        self.sizes = [_size(self.index[n], named[n]) for n in names]
        self.dim = int(sum(self.sizes))
        if self.dim == 0:
            fail("masks", where, "at least one unpruned coordinate among the chosen parameters", "all pruned")
        self.base = {
            n: (t.detach().to(dtype) if t.is_floating_point() else t.detach()).clone()
            for n, t in model.state_dict(keep_vars=False).items()
        }
        for n in names:
            self.base[n] = named[n].detach().to(dtype).clone()
        self.hvps = 0
        self._graph: tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]] | None = None

    # -- vectors <-> parameter tensors ------------------------------------------------------------
    def _to_tensors(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for n, size in zip(self.names, self.sizes, strict=True):
            chunk = v[start : start + size]
            start += size
            idx = self.index[n]
            if idx is None:
                out[n] = chunk.reshape(self.shapes[n])
            else:
                # out of place, so that it also works under torch.func.vmap
                full = chunk.new_zeros(math.prod(self.shapes[n])).index_put((idx,), chunk)
                out[n] = full.reshape(self.shapes[n])
        return out

    def _to_vector(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for n in self.names:
            flat = tensors[n].reshape(-1)
            idx = self.index[n]
            parts.append(flat if idx is None else flat[idx])
        return torch.cat(parts)

    def parameters_vector(self) -> torch.Tensor:
        """The current values of the variables, as a vector of length ``dim``."""
        return self._to_vector({n: self.base[n] for n in self.names})

    # -- loss, gradient, Hessian-vector product ---------------------------------------------------
    def _batch_loss(self, variables: Mapping[str, torch.Tensor], xb: Any, yb: torch.Tensor) -> torch.Tensor:
        params = dict(self.base)
        params.update(variables)
        logits = torch.func.functional_call(self.model, params, (xb.to(self.dtype),))
        return self.loss(logits, yb) / len(self.data)

    def _batches(self) -> Iterator[tuple[Any, torch.Tensor]]:
        """The data in batches: inputs (a tensor, or :class:`~pruneviz.data.Inputs`) and labels."""
        for i in range(0, len(self.data), self.batch_size):
            yield self.data.x[i : i + self.batch_size], self.data.y[i : i + self.batch_size]

    def loss_value(self) -> float:
        """The mean loss at the current parameters."""
        with eval_mode(self.model), torch.no_grad():
            total = sum(float(self._batch_loss({}, xb, yb)) for xb, yb in self._batches())
        return total

    def gradient(self) -> torch.Tensor:
        """The gradient of the mean loss on the variables (length ``dim``)."""
        primals = {n: self.base[n] for n in self.names}
        total = torch.zeros(self.dim, dtype=self.dtype)
        with eval_mode(self.model):
            for xb, yb in self._batches():
                g = torch.func.grad(lambda p, xb=xb, yb=yb: self._batch_loss(p, xb, yb))(primals)
                total += self._to_vector(g)
        return total

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a vector ``v`` of length ``dim`` (one Hessian-vector product)."""
        v = torch.as_tensor(v, dtype=self.dtype)
        if v.shape != (self.dim,):
            fail(
                "v",
                "HessianOperator.matvec",
                f"a vector of length {self.dim}",
                None,
                got=f"shape {tuple(v.shape)}",
            )
        tangents = self._to_tensors(v)
        if len(self.data) <= self.batch_size:
            leaves, grads = self._single_batch_graph()
            # a gradient that does not depend on the variables (e.g. of a loss linear in them) adds nothing
            live = [n for n, g in zip(leaves, grads, strict=True) if g.grad_fn is not None]
            outputs = [g for g in grads if g.grad_fn is not None]
            hv = (
                torch.autograd.grad(
                    outputs,
                    list(leaves.values()),
                    [tangents[n] for n in live],
                    retain_graph=True,
                    allow_unused=True,
                )
                if outputs
                else [None] * len(leaves)
            )
            parts = {
                n: torch.zeros_like(leaves[n]) if h is None else h for n, h in zip(leaves, hv, strict=True)
            }
            out = self._to_vector(parts).detach()
        else:
            primals = {n: self.base[n] for n in self.names}
            out = torch.zeros(self.dim, dtype=self.dtype)
            with eval_mode(self.model):
                for xb, yb in self._batches():
                    grad_fn = torch.func.grad(lambda p, xb=xb, yb=yb: self._batch_loss(p, xb, yb))
                    hv = torch.func.jvp(grad_fn, (primals,), (tangents,))[1]
                    out += self._to_vector(hv)
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError(
                "A Hessian-vector product is NaN or inf: the loss or its derivatives overflowed at these "
                "weights. Fix: check the model for NaN/inf weights and the data for extreme values, or use "
                "dtype=torch.float64."
            )
        self.hvps += 1
        return out

    def _single_batch_graph(self) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """When the data is one batch: the gradient, kept differentiable, with respect to fresh leaf copies
        of the variables (Pearlmutter's double-backward), built once; each product is then one backward
        pass. The model's own parameters are not involved."""
        if self._graph is None:
            leaves = {n: self.base[n].clone().requires_grad_(True) for n in self.names}
            with eval_mode(self.model), torch.enable_grad():
                loss = self._batch_loss(leaves, self.data.x, self.data.y)
                grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
            self._graph = (leaves, grads)
        return self._graph

    def matmat(self, vectors: torch.Tensor, *, chunk: int = 16) -> torch.Tensor:
        """``H V`` for a ``(dim, k)`` matrix ``V``: products computed ``chunk`` columns at a time
        (vectorised; memory grows with ``chunk``, not with k)."""
        vectors = torch.as_tensor(vectors, dtype=self.dtype)
        if vectors.ndim != 2 or vectors.shape[0] != self.dim:
            fail("vectors", "HessianOperator.matmat", f"a matrix of shape ({self.dim}, k)", None,
                 got=f"shape {tuple(vectors.shape)}")  # fmt: skip
        primals = {n: self.base[n] for n in self.names}
        out = torch.zeros_like(vectors)
        with eval_mode(self.model):
            for xb, yb in self._batches():
                grad_fn = torch.func.grad(lambda p, xb=xb, yb=yb: self._batch_loss(p, xb, yb))

                def hvp(v: torch.Tensor, grad_fn=grad_fn) -> torch.Tensor:
                    return self._to_vector(torch.func.jvp(grad_fn, (primals,), (self._to_tensors(v),))[1])

                for start in range(0, vectors.shape[1], chunk):
                    block = vectors[:, start : start + chunk]
                    out[:, start : start + chunk] += torch.func.vmap(hvp, in_dims=1, out_dims=1)(block)
        if not bool(torch.isfinite(out).all()):
            raise FloatingPointError(
                "A Hessian-vector product is NaN or inf. Fix: check the model for NaN/inf weights and the "
                "data for extreme values, or use dtype=torch.float64."
            )
        self.hvps += vectors.shape[1]
        return out

    def dense(self, *, chunk: int = 64) -> torch.Tensor:
        """The full ``dim × dim`` Hessian, ``chunk`` columns at a time (for small models and tests)."""
        eye = torch.eye(self.dim, dtype=self.dtype)
        return torch.cat([self.matmat(eye[:, i : i + chunk]) for i in range(0, self.dim, chunk)], dim=1)


def _random_vector(
    dim: int, gen: torch.Generator, dtype: torch.dtype, kind: str = "gaussian"
) -> torch.Tensor:
    if kind == "rademacher":
        return torch.randint(0, 2, (dim,), generator=gen).to(dtype) * 2 - 1
    return torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype)


class LinearOperator(Protocol):
    """What :func:`lanczos` needs of an operator: its size, precision and ``v ↦ A v``."""

    dim: int
    dtype: torch.dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


def lanczos(
    op: LinearOperator,
    iterations: int,
    *,
    seed: int = 0,
    start: torch.Tensor | None = None,
    reorthogonalize: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
    """``iterations`` steps of Lanczos on ``op`` from a random (or given) start vector.

    Returns ``(alpha, beta, Q)``: the tridiagonal's diagonal (length m) and off-diagonal (length m, the
    last entry the residual norm β_m), and the Lanczos basis ``(dim, m)`` if ``reorthogonalize`` (full
    reorthogonalisation, memory ``m · dim``) else ``None`` (three vectors, bounded memory). Stops early
    on an invariant subspace. ``progress`` shows a bar over the iterations (one Hessian-vector product
    each).
    """
    gen = torch.Generator().manual_seed(seed)
    q = _random_vector(op.dim, gen, torch.float64) if start is None else start.to(torch.float64).clone()
    q /= q.norm()
    basis = [q] if reorthogonalize else None
    q_prev = torch.zeros_like(q)
    beta_prev = 0.0
    alphas, betas = [], []
    for _ in bar(range(min(iterations, op.dim)), show=progress, desc="Lanczos (Hessian-vector products)"):
        w = op.matvec(q.to(op.dtype)).to(torch.float64)
        a = float(w @ q)
        w = w - a * q - beta_prev * q_prev
        if basis is not None:
            stacked = torch.stack(basis, dim=1)
            for _ in range(2):  # twice is enough (Parlett)
                w = w - stacked @ (stacked.T @ w)
        b = float(w.norm())
        alphas.append(a)
        betas.append(b)
        if b <= 1e-12 * max(1.0, abs(a)):
            break
        q_prev, q = q, w / b
        beta_prev = b
        if basis is not None:
            basis.append(q)
    q_mat = torch.stack(basis[: len(alphas)], dim=1) if basis is not None else None
    return np.array(alphas), np.array(betas), q_mat


def _tridiagonal_eigh(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    return np.linalg.eigh(t)


def hessian_eigenvalues(
    op: HessianOperator,
    *,
    k: int = 1,
    iterations: int | None = None,
    seed: int = 0,
    which: str = "largest",
    progress: bool = False,
) -> pd.DataFrame:
    """The ``k`` largest (``which="largest"``) or largest-magnitude (``"magnitude"``) Hessian
    eigenvalues by Lanczos with full reorthogonalisation (Lanczos 1950; Golub & Van Loan §10.1).

    ``iterations`` (the number of Hessian-vector products) defaults to ``max(10, 4k)``. Each eigenvalue
    comes with its Lanczos residual ``||H y - θ y|| = β_m |e_mᵀ s|``, a computable error bound
    (``|θ - λ| <= residual`` for some eigenvalue λ). Tidy frame: ``rank``, ``eigenvalue``,
    ``residual``, ``hvps``, ``dim``. ``progress`` shows a bar over the Hessian-vector products.
    """
    where = "hessian_eigenvalues"
    k = check_int(k, "k", where, minimum=1)
    if k > op.dim:
        fail(
            "k",
            where,
            f"at most the number of unpruned parameters ({op.dim})",
            k,
            "ask for fewer eigenvalues, or include more parameters.",
        )
    iterations = (
        max(10, 4 * k) if iterations is None else check_int(iterations, "iterations", where, minimum=k)
    )
    if which not in ("largest", "magnitude"):
        fail("which", where, "'largest' or 'magnitude'", which)
    before = op.hvps
    alphas, betas, _ = lanczos(op, iterations, seed=seed, progress=progress)
    theta, s = _tridiagonal_eigh(alphas, betas)
    order = np.argsort(-theta) if which == "largest" else np.argsort(-np.abs(theta))
    order = order[:k]
    residual = np.abs(betas[-1] * s[-1, order])
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "eigenvalue": theta[order],
            "residual": residual,
            "hvps": op.hvps - before,
            "dim": op.dim,
        }
    )


def hessian_trace(op: HessianOperator, *, hvps: int = 99, seed: int = 0) -> pd.DataFrame:
    """Trace of the Hessian by Hutch++ (Meyer, Musco, Musco & Woodruff 2021) with ``hvps`` products:
    a third sketch the dominant subspace ``Q = orth(H S)``, a third give ``tr(QᵀHQ)`` exactly, a third
    estimate the rest with Hutchinson's estimator on ``(I - QQᵀ)``. The standard error is that of the
    Hutchinson part (sample standard deviation / √samples). Frame: ``metric="trace"``, ``value``,
    ``se``, ``hvps``, ``dim``."""
    where = "hessian_trace"
    hvps = check_int(hvps, "hvps", where, minimum=3)
    gen = torch.Generator().manual_seed(seed)
    k = hvps // 3
    k = min(k, op.dim)
    before = op.hvps
    s = torch.stack([_random_vector(op.dim, gen, torch.float64, "rademacher") for _ in range(k)], dim=1)
    y = op.matmat(s.to(op.dtype)).to(torch.float64)
    q, _ = torch.linalg.qr(y)
    top = float(torch.trace(q.T @ op.matmat(q.to(op.dtype)).to(torch.float64)))
    n_rest = max(1, hvps - 2 * k)
    samples: list[float] = []
    if q.shape[1] < op.dim:
        g = torch.stack(
            [_random_vector(op.dim, gen, torch.float64, "rademacher") for _ in range(n_rest)], dim=1
        )
        g = g - q @ (q.T @ g)
        hg = op.matmat(g.to(op.dtype)).to(torch.float64)
        hg = hg - q @ (q.T @ hg)
        samples = (g * hg).sum(dim=0).tolist()
    rest = float(np.mean(samples)) if samples else 0.0
    se = float(np.std(samples, ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else 0.0
    return pd.DataFrame(
        [{"metric": "trace", "value": top + rest, "se": se, "hvps": op.hvps - before, "dim": op.dim}]
    )


class GroupedHessian:
    """The Hessian of the mean loss over ``data`` as the weighted sum ``H = Σ_g (n_g / n) H_g`` of the
    Hessians of ``groups`` disjoint groups of its samples, each a :class:`HessianOperator` with its own
    cached double-backward graph. One product ``H v`` costs what it costs on the whole data and also
    gives every group's ``H_g v``: how much the curvature varies between groups of samples is the
    sampling error of the budget (:func:`curvature_summary`).

    ``masks``, ``params``, ``loss`` and ``dtype`` are those of :class:`HessianOperator`.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        *,
        groups: int = 4,
        masks: Mapping[str, torch.Tensor] | None = None,
        params: Sequence[str] | None = None,
        loss: LossFn = _mean_ce,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        where = "GroupedHessian"
        groups = check_int(groups, "groups", where, minimum=1)
        if not isinstance(data, Dataset) or len(data) < groups:
            fail(
                "data",
                where,
                f"a pruneviz Dataset with at least groups={groups} samples",
                len(data) if isinstance(data, Dataset) else type(data).__name__,
                "pass more samples or fewer groups.",
            )
        bounds = np.linspace(0, len(data), groups + 1).round().astype(int)
        parts = [data.take(np.arange(a, b)) for a, b in itertools.pairwise(bounds)]
        self.ops: list[HessianOperator] = []
        for part in parts:  # the first operator's model (norms made affine) serves them all
            shared = self.ops[0].model if self.ops else model
            self.ops.append(
                HessianOperator(
                    shared, part, masks=masks, params=params, loss=loss, batch_size=len(part), dtype=dtype
                )
            )
        first = self.ops[0]
        self.weights = torch.tensor([len(p) / len(data) for p in parts], dtype=torch.float64)
        self.dim, self.dtype, self.samples = first.dim, dtype, len(data)
        self.hvps = 0

    def matvec_groups(self, v: torch.Tensor) -> torch.Tensor:
        """The groups' products ``[H_1 v, …, H_G v]`` as the columns of a ``(dim, G)`` float64 matrix."""
        out = torch.stack([op.matvec(v.to(self.dtype)).to(torch.float64) for op in self.ops], dim=1)
        self.hvps += 1
        return out

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` (one Hessian-vector product over all the samples)."""
        return (self.matvec_groups(v) @ self.weights).to(self.dtype)


class _Recorded:
    """An operator for :func:`lanczos` that remembers, for the vectors it was applied to, the groups'
    Rayleigh matrices ``M_g[i, j] = q_iᵀ H_g q_j``."""

    def __init__(self, op: GroupedHessian) -> None:
        self.op, self.dim, self.dtype = op, op.dim, op.dtype
        self.vectors: list[torch.Tensor] = []
        self.columns: list[torch.Tensor] = []  # column j: (j + 1, G)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        parts = self.op.matvec_groups(v)
        self.vectors.append(v.to(torch.float64))
        self.columns.append(torch.stack(self.vectors, dim=1).T @ parts)
        return (parts @ self.op.weights).to(self.dtype)

    def rayleigh(self, m: int) -> torch.Tensor:
        """``(G, m, m)``: each group's ``QᵀH_gQ`` over the first ``m`` vectors (symmetrised)."""
        groups = len(self.op.ops)
        out = torch.zeros(groups, m, m, dtype=torch.float64)
        for j in range(m):
            out[:, : j + 1, j] = self.columns[j].T
        upper = torch.triu(out)
        return upper + upper.transpose(1, 2) - torch.diag_embed(torch.diagonal(out, dim1=1, dim2=2))


def _between_groups_se(values: torch.Tensor) -> float:
    """Standard error of the mean of per-group values (groups of near-equal size): ``std / √G``."""
    if values.numel() < 2:
        return float("nan")
    return float(values.std(unbiased=True) / math.sqrt(values.numel()))


def curvature_summary(
    op: GroupedHessian,
    *,
    k: int = 5,
    iterations: int = 20,
    probes: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Top-``k`` eigenvalues and the trace of the Hessian from one Lanczos run plus ``probes`` products.

    - **Eigenvalues**: Lanczos with full reorthogonalisation, ``iterations`` products; each comes with
      its residual ``β_m |e_mᵀ s|`` as :func:`hessian_eigenvalues`.
    - **Trace**, Krylov-aware (Chen & Hallman 2023): the Lanczos basis ``Q`` gives ``tr(QᵀHQ) = Σ α``
      exactly, and Hutchinson's estimator with ``probes`` Rademacher vectors projected off ``Q`` gives
      ``tr((I - QQᵀ) H (I - QQᵀ))``; ``se`` is the standard error of that part. The products of the
      eigenvalues are reused, so the trace costs ``probes`` products instead of Hutch++'s ~100.
    - **Sampling error** (``sample_se``): the Hessian averages over a budget of samples. Each quantity is
      also computed on the operator's groups of samples (an eigenvalue as the Rayleigh quotient of its
      Ritz vector on each group, the trace as each group's own estimate), and its standard error across
      groups estimates how much it would move with another draw of samples of the same size.

    Tidy frame: ``metric`` (``eigenvalue_<rank>``, ``trace``), ``value``, ``residual`` (eigenvalues),
    ``se`` (trace), ``sample_se``, ``hvps`` (the products each needed), ``dim``, ``samples``.
    """
    where = "curvature_summary"
    if not isinstance(op, GroupedHessian):
        fail("op", where, "a GroupedHessian", type(op).__name__, "build one: GroupedHessian(model, data).")
    k = check_int(k, "k", where, minimum=1)
    iterations = check_int(iterations, "iterations", where, minimum=k)
    probes = check_int(probes, "probes", where, minimum=2)
    if k > op.dim:
        fail("k", where, f"at most the number of unpruned parameters ({op.dim})", k)
    recorded = _Recorded(op)
    alphas, betas, q = lanczos(recorded, iterations, seed=seed, progress=progress)
    assert q is not None  # full reorthogonalisation keeps the basis
    m = len(alphas)
    lanczos_hvps = op.hvps
    theta, s = _tridiagonal_eigh(alphas, betas)
    order = np.argsort(-theta)[:k]
    residual = np.abs(betas[-1] * s[-1, order])
    per_group = recorded.rayleigh(m)  # (G, m, m)
    ritz = torch.from_numpy(s[:, order])  # (m, k)
    group_eigs = torch.einsum("mr,gmn,nr->gr", ritz, per_group, ritz)  # (G, k)
    rows = [
        {"metric": f"eigenvalue_{r + 1}", "value": float(theta[i]), "residual": float(residual[r]),
         "se": np.nan, "sample_se": _between_groups_se(group_eigs[:, r]), "hvps": lanczos_hvps}
        for r, i in enumerate(order)
    ]  # fmt: skip

    gen = torch.Generator().manual_seed(seed + 1)
    top = torch.diagonal(per_group, dim1=1, dim2=2).sum(dim=1)  # (G,): tr(QᵀH_gQ)
    samples = []
    if m < op.dim:
        for _ in bar(range(probes), show=progress, desc="trace (Hessian-vector products)"):
            g = _random_vector(op.dim, gen, torch.float64, "rademacher")
            g = g - q @ (q.T @ g)
            samples.append(g @ op.matvec_groups(g))  # (G,): gᵀ H_g g
    rest = torch.stack(samples) if samples else torch.zeros(1, len(op.ops), dtype=torch.float64)
    group_traces = top + rest.mean(dim=0)
    combined = rest @ op.weights  # (probes,)
    rows.append({
        "metric": "trace",
        "value": float(alphas.sum() + combined.mean()),
        "residual": np.nan,
        "se": float(combined.std(unbiased=True) / math.sqrt(len(combined))) if len(combined) > 1 else 0.0,
        "sample_se": _between_groups_se(group_traces),
        "hvps": op.hvps,
    })  # fmt: skip
    return pd.DataFrame(rows).assign(dim=op.dim, samples=op.samples)


def hessian_density(
    op: HessianOperator,
    *,
    vectors: int = 3,
    iterations: int = 60,
    grid: int = 400,
    sigma: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spectral density by stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019; Lin, Saad &
    Yang 2016), with bounded memory (no stored Lanczos basis: three vectors per run).

    Each of ``vectors`` Gaussian start vectors gives a Gauss quadrature rule — nodes θ (Ritz values) and
    weights τ² (squared first components of the tridiagonal's eigenvectors) — exact for ``vᵀ p(H) v /
    |v|²`` with polynomials ``p`` of degree < 2·iterations. Returns ``(nodes, density)``: ``nodes`` has
    ``vector``, ``node``, ``weight``; ``density`` the average of the rules smoothed with a Gaussian of
    width ``sigma`` (default 1 % of the spectral range) on ``grid`` points (``eigenvalue``, ``density``).
    ``progress`` shows a bar over the start vectors.
    """
    where = "hessian_density"
    vectors = check_int(vectors, "vectors", where, minimum=1)
    iterations = check_int(iterations, "iterations", where, minimum=2)
    rows = []
    for v in bar(range(vectors), show=progress, desc="stochastic Lanczos quadrature"):
        alphas, betas, _ = lanczos(op, iterations, seed=seed + 1000 * v, reorthogonalize=False)
        theta, s = _tridiagonal_eigh(alphas, betas)
        weights = s[0, :] ** 2
        rows += [
            {"vector": v, "node": float(t), "weight": float(w)} for t, w in zip(theta, weights, strict=True)
        ]
    nodes = pd.DataFrame(rows)
    lo, hi = nodes.node.min(), nodes.node.max()
    span = max(hi - lo, 1e-12)
    width = 0.01 * span if sigma is None else float(sigma)
    xs = np.linspace(lo - 5 * width, hi + 5 * width, grid)
    dens = np.zeros_like(xs)
    for t, w in zip(nodes.node, nodes.weight, strict=True):
        dens += w * np.exp(-((xs - t) ** 2) / (2 * width**2)) / (width * math.sqrt(2 * math.pi))
    dens /= vectors
    return nodes, pd.DataFrame({"eigenvalue": xs, "density": dens})
