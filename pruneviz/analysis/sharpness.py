"""Sharpness: how much the loss rises when the weights move within a neighbourhood.

Every measure is ``L(θ + δ) - L(θ)`` on the given data for a perturbation ``δ`` that is zero on pruned
coordinates; the model is restored bit for bit afterwards. Frames carry their settings beside the value,
and ``sample_se``: how far the value would move with another draw of as many samples, for the same
perturbations — the standard error of the mean of the per-sample rises ``ℓᵢ(θ + δ) − ℓᵢ(θ)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._validation import check_int, check_positive_float, fail
from pruneviz.analysis.perturb import (
    apply_masks,
    mean_se,
    parameter_masks,
    perturbed,
    sample_losses,
    set_point,
)
from pruneviz.data.dataset import Dataset
from pruneviz.prune.criteria import GradientScope


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _gradient(model: nn.Module, data: Dataset, batch_size: int) -> dict[str, torch.Tensor]:
    """Gradient of the mean loss over ``data`` (eval mode; grads, flags and mode restored)."""
    params = _weights(model)
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    with GradientScope(model):
        for i in range(0, len(data), batch_size):
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(
                model(data.x[i : i + batch_size]), data.y[i : i + batch_size], reduction="sum"
            )
            (loss / len(data)).backward()
            for n, p in params.items():
                if p.grad is not None:
                    grads[n] += p.grad.detach()
    return grads


def _norm(tensors: Mapping[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float((t.double() ** 2).sum()) for t in tensors.values()))


def sam_sharpness(
    model: nn.Module,
    data: Dataset,
    *,
    rho: float = 0.05,
    adaptive: bool = False,
    steps: int = 1,
    masks: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 512,
) -> pd.DataFrame:
    """SAM sharpness (Foret et al. 2021): ``max_{||δ|| <= ρ} L(θ + δ) - L(θ)``, the maximiser approximated
    by ``steps`` normalised gradient-ascent steps projected back onto the ball (one step is SAM's own
    approximation ``δ = ρ g / ||g||``). ``adaptive=True`` gives ASAM (Kwon et al. 2021): the ball is
    measured in ``T⁻¹δ`` with ``T = |θ|``, so ``δ = ρ T² g / ||T g||`` — pruned (zero) weights never move.
    Frame: ``measure``, ``value``, ``sample_se``, ``loss``, ``perturbed_loss``, ``rho``, ``adaptive``,
    ``steps``, ``samples``."""
    where = "sam_sharpness"
    rho = check_positive_float(rho, "rho", where)
    steps = check_int(steps, "steps", where, minimum=1)
    pmasks = parameter_masks(model, masks)
    base_losses = sample_losses(model, data, batch_size=batch_size)
    with perturbed(model) as m:
        base = {n: p.detach().clone() for n, p in m.named_parameters()}
        scale = {n: base[n].abs() if adaptive else torch.ones_like(base[n]) for n in _weights(m)}
        delta = {n: torch.zeros_like(base[n]) for n in _weights(m)}
        for _ in range(steps):
            set_point(m, base, [(delta, 1.0)])
            g = apply_masks(_gradient(m, data, batch_size), pmasks)
            tg = {n: scale[n] * g[n] for n in g}
            norm = _norm(tg)
            if norm == 0.0:
                break
            step = {n: rho * scale[n] * tg[n] / norm for n in g}
            if steps == 1:
                delta = step
            else:  # ascend, then project onto {||T⁻¹δ|| <= ρ}
                delta = {n: delta[n] + step[n] / steps for n in g}
                scaled = _norm({n: torch.where(scale[n] > 0, delta[n] / scale[n], 0.0) for n in g})
                if scaled > rho:
                    delta = {n: delta[n] * (rho / scaled) for n in g}
            apply_masks(delta, pmasks)
        set_point(m, base, [(delta, 1.0)])
        rises = sample_losses(m, data, batch_size=batch_size) - base_losses
    base_loss = float(base_losses.mean())
    return pd.DataFrame(
        [
            {
                "measure": "asam" if adaptive else "sam",
                "value": float(rises.mean()),
                "sample_se": mean_se(rises),
                "loss": base_loss,
                "perturbed_loss": base_loss + float(rises.mean()),
                "rho": rho,
                "adaptive": adaptive,
                "steps": steps,
                "samples": len(data),
            }
        ]
    )


def _gaussian(
    model: nn.Module, sigma: float, adaptive: bool, pmasks, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    out = {}
    for n, p in _weights(model).items():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * sigma
        out[n] = noise * p.detach().abs() if adaptive else noise
    return apply_masks(out, pmasks)


def average_sharpness(
    model: nn.Module,
    data: Dataset,
    *,
    sigma: float = 0.01,
    samples: int = 10,
    adaptive: bool = True,
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Average-case sharpness ``E_δ[L(θ + δ)] - L(θ)`` with ``δ ~ N(0, σ²)`` — or, ``adaptive``,
    ``δ_i ~ N(0, σ² θ_i²)`` (Andriushchenko et al. 2023) — over ``samples`` draws, with its standard
    error over the draws (``se``) and over the data (``sample_se``, of the per-sample rises averaged over
    the draws). Frame: ``measure``, ``value``, ``se``, ``sample_se``, ``loss``, ``sigma``, ``adaptive``,
    ``draws``, ``samples``."""
    where = "average_sharpness"
    sigma = check_positive_float(sigma, "sigma", where)
    samples = check_int(samples, "samples", where, minimum=2)
    pmasks = parameter_masks(model, masks)
    base_losses = sample_losses(model, data, batch_size=batch_size)
    gen = torch.Generator().manual_seed(seed)
    rises = []  # per draw, per sample
    with perturbed(model) as m:
        base = {n: p.detach().clone() for n, p in m.named_parameters()}
        for _ in range(samples):
            set_point(m, base, [(_gaussian(m, sigma, adaptive, pmasks, gen), 1.0)])
            rises.append(sample_losses(m, data, batch_size=batch_size) - base_losses)
    per_draw = [float(r.mean()) for r in rises]
    mean = sum(per_draw) / samples
    se = math.sqrt(sum((r - mean) ** 2 for r in per_draw) / (samples - 1) / samples)
    return pd.DataFrame(
        [
            {
                "measure": "average_adaptive" if adaptive else "average",
                "value": mean,
                "se": se,
                "sample_se": mean_se(torch.stack(rises).mean(0)),
                "loss": float(base_losses.mean()),
                "sigma": sigma,
                "adaptive": adaptive,
                "draws": samples,
                "samples": len(data),
            }
        ]
    )


def worst_case_adaptive_sharpness(
    model: nn.Module,
    data: Dataset,
    *,
    rho: float = 0.01,
    steps: int = 10,
    masks: Mapping[str, torch.Tensor] | None = None,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Worst-case adaptive ℓ∞ sharpness (Andriushchenko et al. 2023): ``max L(θ + δ) - L(θ)`` over
    ``|δ_i| <= ρ |θ_i|``, by ``steps`` of projected sign-gradient ascent with step ``2.5 ρ / steps`` (as
    PGD). Frame: ``measure``, ``value``, ``sample_se``, ``loss``, ``perturbed_loss``, ``rho``, ``steps``,
    ``samples``."""
    where = "worst_case_adaptive_sharpness"
    rho = check_positive_float(rho, "rho", where)
    steps = check_int(steps, "steps", where, minimum=1)
    pmasks = parameter_masks(model, masks)
    base_losses = sample_losses(model, data, batch_size=batch_size)
    with perturbed(model) as m:
        base = {n: p.detach().clone() for n, p in m.named_parameters()}
        bound = {n: rho * base[n].abs() for n in _weights(m)}
        delta = {n: torch.zeros_like(base[n]) for n in bound}
        for _ in range(steps):
            set_point(m, base, [(delta, 1.0)])
            g = _gradient(m, data, batch_size)
            delta = {
                n: torch.clamp(delta[n] + 2.5 / steps * bound[n] * torch.sign(g[n]), -bound[n], bound[n])
                for n in g
            }
            apply_masks(delta, pmasks)
        set_point(m, base, [(delta, 1.0)])
        rises = sample_losses(m, data, batch_size=batch_size) - base_losses
    base_loss = float(base_losses.mean())
    return pd.DataFrame(
        [
            {
                "measure": "worst_case_adaptive",
                "value": float(rises.mean()),
                "sample_se": mean_se(rises),
                "loss": base_loss,
                "perturbed_loss": base_loss + float(rises.mean()),
                "rho": rho,
                "steps": steps,
                "samples": len(data),
            }
        ]
    )


def pac_bayes_sigma(
    model: nn.Module,
    data: Dataset,
    *,
    target: float = 0.1,
    samples: int = 5,
    adaptive: bool = False,
    masks: Mapping[str, torch.Tensor] | None = None,
    lower: float = 1e-5,
    upper: float = 1.0,
    iterations: int = 12,
    seed: int = 0,
    batch_size: int = 512,
) -> pd.DataFrame:
    """The PAC-Bayes flatness σ (Jiang et al. 2020, "Fantastic generalization measures"): the largest σ
    for which Gaussian weight noise ``N(0, σ²)`` raises the mean loss by at most ``target``, found by
    bisection on ``log σ`` in ``[lower, upper]`` (``iterations`` halvings, ``samples`` draws per σ).
    Larger σ means flatter. Frame: ``measure``, ``value``, ``target``, ``lower``, ``upper``,
    ``adaptive``, ``draws``, ``samples``."""
    where = "pac_bayes_sigma"
    target = check_positive_float(target, "target", where)
    iterations = check_int(iterations, "iterations", where, minimum=1)
    if not 0 < lower < upper:
        fail("lower", where, f"a number in (0, upper={upper})", lower, "e.g. lower=1e-5, upper=1.0.")
    lo, hi = math.log(lower), math.log(upper)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        rise = average_sharpness(
            model,
            data,
            sigma=math.exp(mid),
            samples=max(2, samples),
            adaptive=adaptive,
            masks=masks,
            seed=seed,
            batch_size=batch_size,
        )["value"].iloc[0]
        if rise <= target:
            lo = mid
        else:
            hi = mid
    return pd.DataFrame(
        [
            {
                "measure": "pac_bayes_sigma",
                "value": math.exp(lo),
                "target": target,
                "lower": lower,
                "upper": upper,
                "adaptive": adaptive,
                "draws": max(2, samples),
                "samples": len(data),
            }
        ]
    )
