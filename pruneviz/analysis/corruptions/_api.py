"""Corrupting images and datasets by name and severity."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import torch

from pruneviz._validation import check_choice, check_int, data_fail, fail
from pruneviz.analysis.corruptions import _ops as ops
from pruneviz.analysis.corruptions._catalogue import SPECS, Context, CorruptionSpec
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import tensor_inputs

#: Each suite's corruptions, in the order of its paper.
SUITES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        suite: tuple(s.name for s in SPECS if s.suite == suite)
        for suite in ("mnist_c", "cifar10_c", "cifar10_c_extra")
    }
)
#: Every corruption name: MNIST-C's, then CIFAR-10-C's and its held-out ones not already listed.
CORRUPTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.name for s in SPECS))
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIDE = 4

_BY_KEY = {(s.suite, s.name): s for s in SPECS}
_SPLIT = re.compile(r"^(?P<name>[a-z_]+)@(?P<severity>\d+)$")


def corruption_names(suite: str | None = None) -> list[str]:
    """The corruption names of ``suite`` ("mnist_c", "cifar10_c" or "cifar10_c_extra") in the order of
    its paper, or every name when ``suite`` is None.

    >>> corruption_names("cifar10_c_extra")
    ['speckle_noise', 'gaussian_blur', 'spatter', 'saturate']
    >>> len(corruption_names())  # 15 + 15 + 4, seven names shared by MNIST-C and CIFAR-10-C
    27
    """
    if suite is None:
        return list(CORRUPTIONS)
    return list(SUITES[check_choice(suite, "suite", "corruption_names", SUITES)])


def corruption_spec(name: str, *, suite: str | None = None, channels: int = 1) -> CorruptionSpec:
    """The spec (parameter table, reference size, source, notes) that :func:`corrupt_images` uses for
    ``name`` on images with ``channels`` channels.

    Seven names (shot_noise, impulse_noise, glass_blur, motion_blur, fog, brightness, spatter) are in
    both MNIST-C and CIFAR-10-C with different tables. Without ``suite``, grayscale images get
    MNIST-C's table and colour images CIFAR-10-C's.

    >>> corruption_spec("fog", channels=1).table[0], corruption_spec("fog", channels=3).table[0]
    ((1.5, 1.7), (0.2, 3.0))
    """
    where = "corruption_spec"
    check_choice(name, "name", where, CORRUPTIONS)
    if suite is not None:
        check_choice(suite, "suite", where, SUITES)
        if name not in SUITES[suite]:
            others = [s for s, names in SUITES.items() if name in names]
            fail("suite", where, f"a suite that defines {name!r} ({others})", suite, "pass suite=None.")
        return _BY_KEY[(suite, name)]
    suites = [s for s, names in SUITES.items() if name in names]
    if len(suites) > 1:
        return _BY_KEY[("mnist_c" if channels == 1 else suites[1], name)]
    return _BY_KEY[(suites[0], name)]


def corruption_split_name(name: str, severity: int) -> str:
    """The evaluation split label a zoo stores for ``name`` at ``severity``.

    >>> corruption_split_name("fog", 3)
    'fog@3'
    """
    where = "corruption_split_name"
    check_choice(name, "name", where, CORRUPTIONS)
    severity = check_int(severity, "severity", where, minimum=1, maximum=5)
    return f"{name}@{severity}"


def parse_corruption_split(split: str) -> tuple[str, int]:
    """Inverse of :func:`corruption_split_name`: ``"fog@3"`` -> ``("fog", 3)``.

    >>> parse_corruption_split("zoom_blur@5")
    ('zoom_blur', 5)
    """
    match = _SPLIT.match(split) if isinstance(split, str) else None
    if match is None or match["name"] not in CORRUPTIONS or int(match["severity"]) not in SEVERITIES:
        fail(
            "split",
            "parse_corruption_split",
            "a corruption split label '<corruption>@<severity 1-5>' such as 'fog@3'",
            split,
            "build labels with corruption_split_name(name, severity).",
        )
    return match["name"], int(match["severity"])


def corruption_table(suite: str | None = None) -> pd.DataFrame:
    """Every corruption's parameters, one row per (suite, corruption, severity, parameter).

    Columns ``suite``, ``corruption``, ``severity``, ``parameter``, ``value``, ``reference_size`` (the
    image side pixel-valued parameters refer to), ``random``, ``source`` and ``note`` (how pruneviz departs
    from the published procedure, empty when it does not).

    >>> t = corruption_table("cifar10_c")
    >>> t[(t.corruption == "contrast") & (t.severity == 5)].value.item()
    0.15
    """
    if suite is not None:
        check_choice(suite, "suite", "corruption_table", SUITES)
    rows = []
    for spec in SPECS:
        if suite is not None and spec.suite != suite:
            continue
        for severity, params in zip(SEVERITIES, spec.table, strict=True):
            for field, value in zip(spec.fields, params, strict=True):
                rows.append(
                    {
                        "suite": spec.suite,
                        "corruption": spec.name,
                        "severity": severity,
                        "parameter": field,
                        "value": value,
                        "reference_size": spec.ref,
                        "random": spec.random,
                        "source": spec.source,
                        "note": spec.note,
                    }
                )
    return pd.DataFrame(rows)


def _check_images(x: Any, where: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        fail(
            "x",
            where,
            "a float tensor of images of shape (N, C, H, W)",
            type(x).__name__,
            "convert with torch.as_tensor(x, dtype=torch.float32).",
        )
    if x.ndim != 4 or not x.is_floating_point():
        fail(
            "x",
            where,
            "a float tensor of images of shape (N, C, H, W)",
            None,
            got=f"a {x.dtype} tensor of shape {tuple(x.shape)}",
            fix="add the channel axis (x[:, None]) for grayscale images.",
        )
    if min(x.shape[2], x.shape[3]) < MIN_SIDE:
        fail("x", where, f"images at least {MIN_SIDE}×{MIN_SIDE} pixels", None, got=f"shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(dim=1).sum())
        data_fail(
            "x",
            where,
            "finite pixel values",
            f"NaN or inf values in {bad} image(s)",
            "impute or drop those images first.",
        )
    if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
        data_fail(
            "x",
            where,
            "pixel values in [0, 1]",
            f"values in [{float(x.min()):.4g}, {float(x.max()):.4g}]",
            "scale the images to [0, 1] (e.g. divide 8-bit images by 255).",
        )
    return x


def corrupt_images(
    x: torch.Tensor, name: str, *, severity: int, seed: int = 0, suite: str | None = None
) -> torch.Tensor:
    """Apply the corruption ``name`` at ``severity`` (1–5) to a batch of images.

    MNIST-C (Mu & Gilmer 2019) and CIFAR-10-C with its held-out four (Hendrycks & Dietterich 2019),
    written in torch/numpy/scipy with the published parameter tables; :func:`corruption_table` lists
    every parameter and each departure from the published procedure. Pixel-valued parameters scale
    with the image side, so the same corruption looks alike on 8×8 digits, MNIST and CIFAR images.

    Parameters
    ----------
    x : tensor (N, C, H, W), float, values in [0, 1]; NaN, inf or values outside [0, 1] raise
        :class:`~pruneviz.exceptions.DataError`.
    name : one of :data:`CORRUPTIONS`
    severity : int in 1..5
    seed : random corruptions draw from a generator seeded by ``(seed, name)``. The draw does not
        depend on the severity (common random numbers), so severity 5 is severity 1's noise, stronger.
        It depends on the batch: the same images in the same order give the same output.
    suite : which paper's table to use for a name both suites define (see :func:`corruption_spec`).

    Returns
    -------
    tensor (N, C, H, W), float32, clipped to [0, 1], on ``x``'s device.

    >>> x = torch.rand(2, 1, 8, 8)
    >>> y = corrupt_images(x, "gaussian_noise", severity=3, seed=0)
    >>> y.shape, y.dtype, bool(torch.equal(y, corrupt_images(x, "gaussian_noise", severity=3, seed=0)))
    (torch.Size([2, 1, 8, 8]), torch.float32, True)
    """
    where = "corrupt_images"
    x = _check_images(x, where)
    check_choice(name, "name", where, CORRUPTIONS)
    severity = check_int(severity, "severity", where, minimum=1, maximum=5)
    seed = check_int(seed, "seed", where, minimum=0)
    n, c, h, w = x.shape
    spec = corruption_spec(name, suite=suite, channels=c)
    if spec.channels is not None and c not in spec.channels:
        kinds = {(1, 3): "grayscale (1 channel) or RGB (3 channels) images", (3,): "RGB images (3 channels)"}
        fail(
            "x",
            where,
            f"{kinds[spec.channels]} for the corruption {name!r}",
            None,
            got=f"{c} channel(s)",
            fix=f"{name!r} needs colour channels; pick another corruption for these images."
            if spec.channels == (3,)
            else "convert the images to grayscale or RGB.",
        )
    if n == 0:
        return x.detach().to(torch.float32).clone()
    src = x.detach().to("cpu", torch.float32).contiguous()
    side = min(h, w)
    ctx = Context(
        rng=ops.rng_for(seed, name),
        scale=side / spec.ref,
        ref_hw=(max(1, round(spec.ref * h / side)), max(1, round(spec.ref * w / side))),
        table=spec.table,
    )
    out = spec.apply(src, spec.table[severity - 1], ctx)
    return out.to(torch.float32).clamp(0, 1).contiguous().to(x.device)


def corrupt(data: Dataset, name: str, *, severity: int, seed: int = 0, suite: str | None = None) -> Dataset:
    """``data`` with its images corrupted by :func:`corrupt_images` (same sample ids, labels, groups,
    subsets and info).

    >>> import numpy as np
    >>> ds = Dataset(np.random.rand(4, 1, 8, 8), np.array([0, 1, 0, 1]), modality="image")
    >>> bad = corrupt(ds, "fog", severity=2)
    >>> bad.x.shape == ds.x.shape, bool((bad.sample_id == ds.sample_id).all())
    (True, True)
    """
    where = "corrupt"
    if not isinstance(data, Dataset):
        fail(
            "data",
            where,
            "a pruneviz Dataset of images",
            type(data).__name__,
            "wrap the images with pruneviz.data.Dataset(x, y, modality='image').",
        )
    if data.info.modality != "image":
        fail(
            "data",
            where,
            "a Dataset of images (info.modality == 'image'); an image corruption was asked of "
            f"{data.info.modality} data",
            None,
            got=f"the {data.info.modality} dataset {data.info.name!r} of input shape {data.info.input_shape}",
            fix="corrupt image datasets only; for tabular or sequence data use a noise model of your own.",
        )
    x = corrupt_images(
        tensor_inputs(data.x, "data", "corrupt", "corruptions"),
        name,
        severity=severity,
        seed=seed,
        suite=suite,
    )
    out = data.take(np.arange(0))
    out.x = x
    out.y = data.y.clone()
    out.sample_id = data.sample_id.copy()
    out.groups = data.groups.copy()
    out.subset = None if data.subset is None else data.subset.copy()
    return out
