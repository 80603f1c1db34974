"""Adversarial inputs: FGSM and PGD (L∞ and L2), untargeted, and robust accuracy with its settings.

An attack asks how far a model's prediction moves when each input may be changed by at most ``eps``
(in the L∞ or L2 norm). :func:`fgsm` takes one signed-gradient step (Goodfellow, Shlens & Szegedy 2015);
:func:`pgd` iterates projected gradient ascent on the cross-entropy from a random start in the ball
(Madry et al. 2018). Both return adversarial inputs of the input's shape.

Guarantees:

- The model is left exactly as it was: it runs in eval mode and every module's training flag is
  restored, parameters' ``requires_grad`` and ``.grad`` are restored, weights are never written and no
  hook is registered — also when the model raises midway.
- Random starts come from a ``torch.Generator`` seeded with ``seed``, drawn for all samples at once in
  the order torchattacks 3.5.1 draws them, so a result is the same for every ``batch_size`` and equals
  ``torchattacks.PGD`` / ``PGDL2`` after ``torch.manual_seed(seed)`` (the tests check this). Gradients
  are of the summed loss of a batch, so each sample's step does not depend on which batch it is in.
- Memory is bounded by the output plus one batch of activations.

:class:`AttackSettings` names one attack; its :attr:`~AttackSettings.split` is the evaluation split
label a zoo stores, and :func:`robust_accuracy` reports every setting beside the accuracy.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._scope import eval_mode
from pruneviz._validation import check_choice, check_int, data_fail, fail
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import tensor_inputs

ATTACKS = ("fgsm", "pgd")
NORMS = ("l2", "linf")
DEFAULT_CLAMP = (0.0, 1.0)
#: ``clamp`` of an attack on tabular data: each feature stays within its range over the training data
#: (pass that range as ``feature_range``; :func:`feature_range` computes it)
FEATURE_RANGE = "feature-range"
_DIV_GUARD = 1e-10  # added to gradient norms before dividing (L2 steps), as torchattacks does


# -- model scope (shared with attribution.py) -----------------------------------------------------
@contextlib.contextmanager
def input_gradient_scope(model: nn.Module) -> Iterator[nn.Module]:
    """Prepare ``model`` for gradients with respect to its *inputs* inside the block, and put it back.

    Inside: eval mode, parameters with ``requires_grad=False`` (no parameter gradient is computed or
    accumulated) and gradients enabled. Afterwards, also after an exception: every module's training
    flag, every parameter's ``requires_grad`` and its ``.grad`` tensor (the very object) as before.
    """
    params = list(model.parameters())
    saved = [(p, p.requires_grad, p.grad) for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with eval_mode(model), torch.enable_grad():
            yield model
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad


def check_model_device(model: nn.Module, x: torch.Tensor, where: str) -> None:
    """``model``'s parameters and buffers must live on ``x``'s device."""
    tensors = [*model.parameters(), *model.buffers()]
    devices = {t.device for t in tensors}
    if devices and devices != {x.device}:
        shown = sorted(str(d) for d in devices)
        fail(
            "model",
            where,
            f"on the same device as the inputs ({x.device})",
            None,
            got=f"a model on {', '.join(shown)}",
            fix=f"move one of them, e.g. model.to({str(x.device)!r}) or x.to({shown[0]!r}).",
        )


def check_inputs(x: Any, where: str, *, param: str = "x") -> torch.Tensor:
    """``x`` must be a finite floating-point tensor of shape ``(N, ...)`` with ``N >= 1``."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        got = (
            f"a tensor of dtype {x.dtype} and shape {tuple(x.shape)}"
            if isinstance(x, torch.Tensor)
            else type(x).__name__
        )
        fail(
            param,
            where,
            "a floating-point tensor of shape (N, *input_shape)",
            None,
            got=got,
            fix="pass data.x of a pruneviz Dataset, or torch.as_tensor(x, dtype=torch.float32).",
        )
    if x.shape[0] == 0:
        data_fail(param, where, "at least one sample", "0 samples", "pass a non-empty batch.")
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        data_fail(
            param,
            where,
            "finite values only (no NaN or inf)",
            f"{bad.numel()} sample(s) with NaN/inf, the first at index {int(bad[0])}",
            "impute or drop those samples first.",
        )
    return x


def check_labels(y: Any, n: int, where: str, *, param: str = "y") -> torch.Tensor:
    """``y`` must be an integer tensor of ``n`` class indices; returned as int64."""
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        fail(
            param,
            where,
            f"an integer tensor of {n} class indices",
            None,
            got=type(y).__name__ if not isinstance(y, torch.Tensor) else f"a tensor of dtype {y.dtype}",
            fix="pass the labels as a torch.int64 tensor, e.g. data.y.",
        )
    if y.ndim != 1 or y.shape[0] != n:
        fail(
            param,
            where,
            f"a 1-D tensor of {n} class indices (one per sample of x)",
            None,
            got=f"shape {tuple(y.shape)}",
            fix="pass one label per input sample.",
        )
    return y.to(torch.int64)


def _check_outputs(logits: torch.Tensor, y: torch.Tensor, where: str, param: str = "y") -> None:
    if logits.ndim != 2:
        fail(
            "model",
            where,
            "a classifier returning logits of shape (N, K)",
            None,
            got=f"outputs of shape {tuple(logits.shape)}",
        )
    k = logits.shape[1]
    bad = (y < 0) | (y >= k)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        data_fail(
            param,
            where,
            f"class indices in [0, {k}) (the model has {k} outputs)",
            f"{int(y[i])} at index {i}",
            "pass labels of the dataset the model was trained on.",
        )


# -- settings checks ------------------------------------------------------------------------------
def _check_eps(eps: Any, where: str) -> float:
    ok = isinstance(eps, int | float | np.floating | np.integer) and not isinstance(eps, bool)
    if not ok or not math.isfinite(float(eps)) or float(eps) < 0:
        fail("eps", where, "a finite number >= 0 (the radius of the perturbation ball)", eps, "e.g. eps=0.1.")
    return float(eps)


def _check_step_size(step_size: Any, where: str) -> float:
    ok = isinstance(step_size, int | float | np.floating | np.integer) and not isinstance(step_size, bool)
    if not ok or not math.isfinite(float(step_size)) or float(step_size) <= 0:
        fail("step_size", where, "a finite number > 0, or None for 2.5·eps/steps", step_size)
    return float(step_size)


Clamp = tuple[float, float] | tuple[torch.Tensor, torch.Tensor]


def _check_clamp(clamp: Any, where: str) -> Clamp | None:
    if clamp is None:
        return None
    if (
        isinstance(clamp, tuple | list)
        and len(clamp) == 2
        and all(isinstance(v, torch.Tensor) for v in clamp)
    ):
        lo_t, hi_t = (v.detach().float() for v in clamp)
        if lo_t.shape != hi_t.shape or not bool(torch.isfinite(lo_t).all() & torch.isfinite(hi_t).all()):
            fail("clamp", where, "per-feature (low, high) tensors of one shape, finite", clamp)
        if bool((lo_t > hi_t).any()):
            fail("clamp", where, "per-feature ranges with low <= high", clamp)
        return lo_t, hi_t
    try:
        lo, hi = (float(v) for v in clamp)
    except (TypeError, ValueError):
        lo, hi = math.nan, math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        fail(
            "clamp",
            where,
            "a pair (low, high) of finite numbers with low < high, or None for unbounded inputs",
            clamp,
            "pass clamp=(0.0, 1.0) for images scaled to [0, 1], or clamp=None for tabular features.",
        )
    return lo, hi


def _check_in_range(x: torch.Tensor, clamp: Clamp | None, where: str) -> None:
    if clamp is None:
        return
    if isinstance(clamp[0], torch.Tensor):
        low, high = (v.to(x.device) for v in clamp)
        outside = (x < low) | (x > high)
        if bool(outside.any()):
            data_fail(
                "x",
                where,
                "values within the per-feature range given as clamp",
                f"{int(outside.sum())} value(s) outside it",
                "compute the range over data that includes these samples (pruneviz.analysis.feature_range).",
            )
        return
    lo, hi = float(x.min()), float(x.max())
    if lo < clamp[0] or hi > clamp[1]:
        data_fail(
            "x",
            where,
            f"values within clamp=({clamp[0]:g}, {clamp[1]:g})",
            f"values in [{lo:g}, {hi:g}]",
            "pass the clamp range of the data (e.g. clamp=None for unbounded features).",
        )


def _prepare(
    model: nn.Module, x: Any, y: Any, clamp: Any, batch_size: Any, where: str
) -> tuple[torch.Tensor, torch.Tensor, Clamp | None, int]:
    if not isinstance(model, nn.Module):
        fail("model", where, "a torch nn.Module", type(model).__name__)
    x = check_inputs(x, where)
    y = check_labels(y, x.shape[0], where).to(x.device)
    clamp = _check_clamp(clamp, where)
    _check_in_range(x, clamp, where)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    check_model_device(model, x, where)
    return x.detach(), y, clamp, batch_size


def _loss_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, where: str, first: bool
) -> torch.Tensor:
    """∂/∂x of the summed cross-entropy (each sample's gradient is that of its own loss)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if first:
        _check_outputs(logits, y, where)
    loss = F.cross_entropy(logits, y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _clamped(x: torch.Tensor, clamp: Clamp | None) -> torch.Tensor:
    if clamp is None:
        return x
    if isinstance(clamp[0], torch.Tensor):
        return torch.clamp(x, min=clamp[0].to(x.device), max=clamp[1].to(x.device))
    return torch.clamp(x, min=clamp[0], max=clamp[1])


def feature_range(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Each input feature's ``(min, max)`` over ``data`` (per-sample shape): the range an attack on
    tabular data keeps every feature in (``clamp=FEATURE_RANGE``), taken from the training part."""
    if not isinstance(data, Dataset) or not isinstance(data.x, torch.Tensor):
        fail("data", "feature_range", "a pruneviz Dataset of continuous inputs", type(data).__name__)
    return data.x.amin(0), data.x.amax(0)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B,)`` vector shaped to broadcast over ``like``'s sample axis."""
    return v.view(-1, *([1] * (like.ndim - 1)))


# -- the attacks ----------------------------------------------------------------------------------
def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    clamp: Clamp | None = DEFAULT_CLAMP,
    batch_size: int = 256,
) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow, Shlens & Szegedy 2015), untargeted.

    ``x_adv = clamp(x + eps · sign(∇ₓ CE(model(x), y)))``.

    Parameters
    ----------
    model : nn.Module returning logits ``(N, K)``; left exactly as it was (see the module docstring).
    x : float tensor of shape ``(N, *input_shape)``, within ``clamp``; on the model's device.
    y : int tensor of shape ``(N,)``, the true labels.
    eps : radius of the L∞ ball (>= 0).
    clamp : valid input range ``(low, high)`` (numbers, or per-feature tensors of the per-sample shape,
        e.g. :func:`feature_range` of tabular training data), or ``None`` for unbounded inputs.
    batch_size : samples per forward/backward pass.

    Returns
    -------
    Tensor of ``x``'s shape and dtype.

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.full((5, 4), 0.5)
    >>> x_adv = fgsm(model, x, torch.tensor([0, 1, 2, 0, 1]), eps=0.1)
    >>> torch.allclose((x_adv - x).abs(), torch.tensor(0.1))
    True
    """
    where = "fgsm"
    eps = _check_eps(eps, where)
    x, y, clamp, batch_size = _prepare(model, x, y, clamp, batch_size, where)
    out = torch.empty_like(x)
    with input_gradient_scope(model):
        for start in range(0, x.shape[0], batch_size):
            part = slice(start, start + batch_size)
            grad = _loss_gradient(model, x[part], y[part], where, first=start == 0)
            out[part] = _clamped(x[part] + eps * grad.sign(), clamp)
    return out


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    random_start: bool = True,
    seed: int = 0,
    clamp: Clamp | None = DEFAULT_CLAMP,
    batch_size: int = 256,
) -> torch.Tensor:
    """Projected gradient descent on the negative loss (Madry et al. 2018), untargeted, L∞ or L2.

    From a start ``x₀`` (``x`` itself, or a random point of the ``eps``-ball around it), ``steps``
    times: step ``step_size`` along ``sign(g)`` (L∞) or ``g / ‖g‖₂`` (L2), where ``g`` is the gradient of
    the cross-entropy; project the perturbation back onto the ``eps``-ball (clip each coordinate, or
    rescale to norm ``eps``); clamp to the input range.

    Random start (torchattacks' conventions, reproduced exactly): L∞ draws ``U(-eps, eps)`` per
    coordinate; L2 draws a standard normal direction per sample, normalised, times ``eps · r`` with
    ``r ~ U(0, 1)`` per sample (so the start is not uniform in the L2 ball). All draws come from
    ``torch.Generator().manual_seed(seed)``, for the whole of ``x`` at once.

    Parameters
    ----------
    model, x, y, clamp, batch_size : as for :func:`fgsm`.
    eps : radius of the ball (>= 0), in the chosen norm over all of a sample's features.
    step_size : step length; default ``2.5 · eps / steps`` (Madry et al.'s choice, so the iterate can
        cross the ball).
    steps : number of gradient steps (>= 1).
    norm : ``"linf"`` or ``"l2"``.
    random_start : start at a random point of the ball (``True``) or at ``x``.
    seed : seed of the random start.

    Returns
    -------
    Tensor of ``x``'s shape and dtype, within ``eps`` of ``x`` (up to rounding) and within ``clamp``.

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(5, 4)
    >>> x_adv = pgd(model, x, torch.tensor([0, 1, 2, 0, 1]), eps=0.1, steps=5)
    >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
    True
    """
    where = "pgd"
    eps = _check_eps(eps, where)
    steps = check_int(steps, "steps", where, minimum=1)
    alpha = 2.5 * eps / steps if step_size is None else _check_step_size(step_size, where)
    norm = check_choice(norm, "norm", where, NORMS)
    if not isinstance(random_start, bool):
        fail("random_start", where, "True or False", random_start)
    seed = check_int(seed, "seed", where, minimum=0)
    x, y, clamp, batch_size = _prepare(model, x, y, clamp, batch_size, where)
    n = x.shape[0]

    # The random start of every sample, drawn up front into the output buffer (one stream for all of x).
    out = torch.zeros_like(x)
    radius = None
    if random_start:
        gen = torch.Generator(device=x.device).manual_seed(seed)
        if norm == "linf":
            out.uniform_(-eps, eps, generator=gen)
        else:
            out.normal_(generator=gen)
            radius = torch.empty(n, dtype=x.dtype, device=x.device).uniform_(0.0, 1.0, generator=gen)

    with input_gradient_scope(model):
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            xb, yb, delta = x[part], y[part], out[part]
            if random_start and norm == "l2":
                assert radius is not None  # drawn above for a random L2 start
                lengths = _per_sample(delta.flatten(1).norm(p=2, dim=1), delta)
                delta = delta * (_per_sample(radius[part], delta) / lengths * eps)
            adv = _clamped(xb + delta, clamp) if random_start else xb.clone()
            for i in range(steps):
                grad = _loss_gradient(model, adv, yb, where, first=start == 0 and i == 0)
                if norm == "linf":
                    adv = adv + alpha * grad.sign()
                    delta = torch.clamp(adv - xb, min=-eps, max=eps)
                else:
                    grad_norm = grad.flatten(1).norm(p=2, dim=1) + _DIV_GUARD
                    adv = adv + alpha * (grad / _per_sample(grad_norm, grad))
                    delta = adv - xb
                    factor = eps / delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
                    delta = delta * _per_sample(factor.clamp(max=1.0), delta)
                adv = _clamped(xb + delta, clamp)
            out[part] = adv.detach()
    return out


# -- settings, datasets and robust accuracy ------------------------------------------------------
def _num(v: float) -> str:
    """The shortest text that reads back as ``v`` (``0.1``, ``2``, ``0.0313725``...)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class AttackSettings:
    """One adversarial attack, as reported beside a robust accuracy and stored as a zoo split.

    ``name`` is ``"fgsm"`` or ``"pgd"``. After construction every field holds the value actually used:
    for PGD a missing ``step_size`` becomes ``2.5 · eps / steps``; FGSM is one step of size ``eps`` from
    ``x`` itself, so its ``norm``, ``steps``, ``step_size``, ``random_start`` and ``seed`` are set to
    ``"linf"``, ``1``, ``eps``, ``False`` and ``0``. ``clamp`` is the valid input range (``None`` for
    unbounded inputs).

    >>> AttackSettings("pgd", eps=0.1).split
    'pgd-linf-eps0.1-steps10-seed0'
    >>> AttackSettings("fgsm", eps=0.05).split
    'fgsm-linf-eps0.05'
    """

    name: str = "pgd"
    norm: str = "linf"
    eps: float = 0.1
    step_size: float | None = None
    steps: int = 10
    random_start: bool = True
    seed: int = 0
    clamp: tuple[float, float] | str | None = DEFAULT_CLAMP

    def __post_init__(self) -> None:
        where = "AttackSettings"
        check_choice(self.name, "name", where, ATTACKS)
        eps = _check_eps(self.eps, where)
        clamp = self.clamp if self.clamp == FEATURE_RANGE else _check_clamp(self.clamp, where)
        if isinstance(clamp, tuple) and isinstance(clamp[0], torch.Tensor):
            fail(
                "clamp",
                where,
                f"(low, high) numbers, None or {FEATURE_RANGE!r} (settings are stored as JSON)",
                "per-feature tensors",
                f"pass clamp={FEATURE_RANGE!r} and the range as attack(..., feature_range=...).",
            )
        if self.name == "fgsm":
            if self.norm != "linf":
                fail("norm", where, "'linf' for FGSM (use name='pgd' for an L2 attack)", self.norm)
            values: dict[str, Any] = {"steps": 1, "step_size": eps, "random_start": False, "seed": 0}
        else:
            check_choice(self.norm, "norm", where, NORMS)
            steps = check_int(self.steps, "steps", where, minimum=1)
            if not isinstance(self.random_start, bool):
                fail("random_start", where, "True or False", self.random_start)
            step = 2.5 * eps / steps if self.step_size is None else _check_step_size(self.step_size, where)
            seed = check_int(self.seed, "seed", where, minimum=0)
            values = {"steps": steps, "step_size": step, "random_start": self.random_start, "seed": seed}
        for key, value in {"eps": eps, "clamp": clamp, **values}.items():
            object.__setattr__(self, key, value)

    @property
    def split(self) -> str:
        """The split label: readable, and different for any two different settings.

        ``"<name>-<norm>-eps<eps>"``, for PGD followed by ``-steps<steps>``, ``-step<step_size>`` when
        not the default ``2.5·eps/steps``, and ``-seed<seed>`` (random start) or ``-nostart``; then
        ``-noclamp`` or ``-clamp<low>_<high>`` when the range is not ``[0, 1]``.
        """
        text = f"{self.name}-{self.norm}-eps{_num(self.eps)}"
        if self.name == "pgd":
            text += f"-steps{self.steps}"
            if self.step_size is not None and self.step_size != 2.5 * self.eps / self.steps:
                text += f"-step{_num(self.step_size)}"
            text += f"-seed{self.seed}" if self.random_start else "-nostart"
        if self.clamp is None:
            text += "-noclamp"
        elif self.clamp == FEATURE_RANGE:
            text += "-featurerange"
        elif self.clamp != DEFAULT_CLAMP and not isinstance(self.clamp, str):
            text += f"-clamp{_num(self.clamp[0])}_{_num(self.clamp[1])}"
        return text

    def to_json(self) -> dict[str, Any]:
        """The settings as plain JSON values (``clamp`` as a list or ``None``)."""
        return {
            "name": self.name,
            "norm": self.norm,
            "eps": self.eps,
            "step_size": self.step_size,
            "steps": self.steps,
            "random_start": self.random_start,
            "seed": self.seed,
            "clamp": self.clamp if self.clamp is None or isinstance(self.clamp, str) else list(self.clamp),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AttackSettings:
        """Inverse of :meth:`to_json`."""
        clamp = obj.get("clamp", list(DEFAULT_CLAMP))
        return cls(**{**obj, "clamp": clamp if clamp is None or isinstance(clamp, str) else tuple(clamp)})


def adversarial_inputs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: AttackSettings,
    *,
    batch_size: int = 256,
    feature_range: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the attack ``settings`` describes on ``(x, y)``; see :func:`fgsm` and :func:`pgd`.

    ``feature_range`` (per-feature ``(min, max)`` tensors, :func:`feature_range` of the training data)
    is the clamp of settings with ``clamp=FEATURE_RANGE``, and is required by them."""
    where = "adversarial_inputs"
    if not isinstance(settings, AttackSettings):
        fail("settings", where, "an AttackSettings", type(settings).__name__)
    clamp: Any = settings.clamp
    if clamp == FEATURE_RANGE:
        if feature_range is None:
            fail(
                "feature_range",
                where,
                f"the per-feature (min, max) tensors for an attack with clamp={FEATURE_RANGE!r}",
                None,
                fix="pass feature_range=pruneviz.analysis.feature_range(train_data).",
            )
        clamp = tuple(feature_range)
    if settings.name == "fgsm":
        return fgsm(model, x, y, eps=settings.eps, clamp=clamp, batch_size=batch_size)
    return pgd(
        model,
        x,
        y,
        eps=settings.eps,
        step_size=settings.step_size,
        steps=settings.steps,
        norm=settings.norm,
        random_start=settings.random_start,
        seed=settings.seed,
        clamp=clamp,
        batch_size=batch_size,
    )


def attack(
    model: nn.Module,
    data: Dataset,
    settings: AttackSettings,
    *,
    batch_size: int = 256,
    feature_range: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Dataset:
    """``data`` with its inputs replaced by adversarial ones (same sample ids, labels, groups, info).

    The labels attacked are the true labels ``data.y``. The model is left as it was; it must be on
    ``data.x``'s device. As with :func:`~pruneviz.analysis.corruptions.corrupt`, the adversarial ``x``
    is float32 on ``data.x``'s device (the CPU for a dataset as built).

    >>> import numpy as np
    >>> ds = Dataset(np.random.rand(6, 4), np.array([0, 1, 2] * 2))
    >>> adv = attack(nn.Linear(4, 3), ds, AttackSettings("fgsm", eps=0.1))
    >>> adv.x.shape == ds.x.shape, bool((adv.sample_id == ds.sample_id).all())
    (True, True)
    """
    if not isinstance(data, Dataset):
        fail(
            "data",
            "attack",
            "a pruneviz Dataset",
            type(data).__name__,
            "wrap data with pruneviz.data.Dataset.",
        )
    x = tensor_inputs(data.x, "data", "attack", "white-box attacks")
    x_adv = adversarial_inputs(model, x, data.y, settings, batch_size=batch_size, feature_range=feature_range)
    out = data.take(np.arange(0))  # shares nothing with data; the fields are set below
    out.x = x_adv.detach().to(device=x.device, dtype=torch.float32)
    out.y = data.y.clone()
    out.sample_id = data.sample_id.copy()
    out.groups = data.groups.copy()
    out.subset = None if data.subset is None else data.subset.copy()
    return out


def robust_accuracy(
    model: nn.Module, data: Dataset, *, attacks: Sequence[AttackSettings], batch_size: int = 256
) -> pd.DataFrame:
    """Accuracy of ``model`` on ``data`` under each attack in ``attacks``, with the attack's settings.

    One row per attack; columns ``split``, ``attack``, ``norm``, ``eps``, ``step_size``, ``steps``,
    ``random_start``, ``attack_seed`` (the seed of the random start, :attr:`AttackSettings.seed`; named
    as in the zoo-level table, where ``seed`` is the run's training seed), ``metric``
    (``"accuracy"``), ``value``, ``samples``.

    >>> import numpy as np
    >>> ds = Dataset(np.random.rand(6, 4), np.array([0, 1, 2] * 2))
    >>> robust_accuracy(nn.Linear(4, 3), ds, attacks=[AttackSettings("fgsm", eps=0.1)]).split.tolist()
    ['fgsm-linf-eps0.1']
    """
    where = "robust_accuracy"
    if not isinstance(data, Dataset):
        fail(
            "data", where, "a pruneviz Dataset", type(data).__name__, "wrap data with pruneviz.data.Dataset."
        )
    if isinstance(attacks, AttackSettings) or not isinstance(attacks, Sequence) or not attacks:
        fail(
            "attacks",
            where,
            "a non-empty list of AttackSettings",
            attacks,
            "pass attacks=[AttackSettings(...)].",
        )
    for s in attacks:
        if not isinstance(s, AttackSettings):
            fail("attacks", where, "a list of AttackSettings", s)
    rows = []
    x = tensor_inputs(data.x, "data", where, "white-box attacks")
    for s in attacks:
        x_adv = adversarial_inputs(model, x, data.y, s, batch_size=batch_size)
        correct = 0
        with input_gradient_scope(model), torch.no_grad():
            for start in range(0, len(data), batch_size):
                logits = model(x_adv[start : start + batch_size])
                correct += int((logits.argmax(1) == data.y[start : start + batch_size]).sum())
        rows.append(
            {
                "split": s.split,
                "attack": s.name,
                "norm": s.norm,
                "eps": s.eps,
                "step_size": s.step_size,
                "steps": s.steps,
                "random_start": s.random_start,
                "attack_seed": s.seed,
                "metric": "accuracy",
                "value": correct / len(data),
                "samples": len(data),
            }
        )
    return pd.DataFrame(rows)
