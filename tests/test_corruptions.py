"""Image corruptions (MNIST-C, CIFAR-10-C) and the mean corruption error."""

from __future__ import annotations

import colorsys
import io
import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from pruneviz.analysis.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    SUITES,
    corrupt,
    corrupt_images,
    corruption_names,
    corruption_spec,
    corruption_split_name,
    corruption_table,
    mean_corruption_error,
    parse_corruption_split,
)
from pruneviz.analysis.corruptions import _ops as ops
from pruneviz.analysis.corruptions._catalogue import _defocus_kernel, _poisson_quantile
from pruneviz.data import Dataset
from pruneviz.exceptions import DataError, ValidationError


# -- test images -----------------------------------------------------------------------------------------
def glyph(side: int) -> torch.Tensor:
    """An asymmetric digit-like glyph (a '7' with a dot) drawn at 112 px and area-averaged to ``side``."""
    big = 112
    yy, xx = np.mgrid[0:big, 0:big] / big
    img = np.zeros((big, big))
    img[(yy > 0.18) & (yy < 0.28) & (xx > 0.25) & (xx < 0.75)] = 1
    img[(np.abs((xx - 0.75) + 0.55 * (yy - 0.23)) < 0.05) & (yy > 0.2) & (yy < 0.85)] = 1
    img[((xx - 0.3) ** 2 + (yy - 0.7) ** 2) < 0.008] = 0.7
    t = torch.tensor(img, dtype=torch.float32)[None, None]
    return F.interpolate(t, size=(side, side), mode="area")


def colour_image(side: int = 32) -> torch.Tensor:
    """An asymmetric RGB image: colour ramps, a disc and a red patch."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = np.stack(
        [
            0.2 + 0.6 * xx,
            0.3 + 0.4 * np.sin(6 * yy) ** 2,
            0.5 + 0.3 * ((xx - 0.3) ** 2 + (yy - 0.6) ** 2 < 0.05),
        ]
    )
    img[:, 5:12, 18:28] = np.array([0.9, 0.2, 0.1])[:, None, None]
    return torch.tensor(img, dtype=torch.float32)[None].clamp(0, 1)


def strength(y: torch.Tensor, x: torch.Tensor) -> float:
    """Distance of corrupted images from clean ones: the RMS difference averaged over three scales (as
    they are, and both blurred by side/16 and side/8 px), so that pixel noise and geometric changes both
    count; averaged over the batch."""
    side = min(x.shape[-2:])
    total = 0.0
    for sigma in (0.0, side / 16, side / 8):
        d = ops.blur(y, sigma).double() - ops.blur(x, sigma).double()
        total += float(d.pow(2).mean(dim=(1, 2, 3)).sqrt().mean())
    return total / 3


ALL = [(suite, name) for suite, names in SUITES.items() for name in names]


# -- catalogue ---------------------------------------------------------------------------------------------
def test_suites_hold_the_published_corruptions():
    assert corruption_names("mnist_c") == [
        "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
        "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges",
    ]  # fmt: skip
    assert corruption_names("cifar10_c") == [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
        "jpeg_compression",
    ]  # fmt: skip
    assert corruption_names("cifar10_c_extra") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert corruption_names() == list(CORRUPTIONS)
    assert len(CORRUPTIONS) == len(set(CORRUPTIONS)) == 27


def test_shared_names_pick_the_table_by_channels_unless_told():
    assert corruption_spec("shot_noise", channels=1).suite == "mnist_c"
    assert corruption_spec("shot_noise", channels=3).suite == "cifar10_c"
    assert corruption_spec("spatter", channels=3).suite == "cifar10_c_extra"
    assert corruption_spec("shot_noise", suite="cifar10_c", channels=1).table[0] == (500.0,)
    assert corruption_spec("gaussian_noise", channels=1).suite == "cifar10_c"
    with pytest.raises(
        ValidationError,
        match=r"'suite' parameter of corruption_spec must be a suite that defines 'gaussian_noise'",
    ):
        corruption_spec("gaussian_noise", suite="mnist_c")


def test_corruption_table_lists_every_parameter_and_the_departures():
    table = corruption_table()
    expected = sum(
        len(spec_fields) * 5 for spec_fields in (corruption_spec(n, suite=s).fields for s, n in ALL)
    )
    assert len(table) == expected
    row = table[(table.suite == "cifar10_c") & (table.corruption == "contrast") & (table.severity == 5)]
    assert row.value.item() == 0.15 and row.reference_size.item() == 32
    motion = table[(table.suite == "cifar10_c") & (table.corruption == "motion_blur")]
    assert "2.25" in motion.note.iloc[0]
    assert set(corruption_table("mnist_c").suite) == {"mnist_c"}


def test_split_names_round_trip():
    assert corruption_split_name("fog", 3) == "fog@3"
    assert parse_corruption_split("jpeg_compression@5") == ("jpeg_compression", 5)
    for name in CORRUPTIONS:
        assert parse_corruption_split(corruption_split_name(name, 2)) == (name, 2)
    with pytest.raises(ValidationError, match=r"corruption split label '<corruption>@<severity 1-5>'"):
        parse_corruption_split("fog@7")
    with pytest.raises(ValidationError, match="did you mean 'snow'"):
        corruption_split_name("snwo", 1)


# -- contract: every corruption at every severity ----------------------------------------------------------
@pytest.fixture(scope="module")
def batches() -> dict[str, torch.Tensor]:
    rng = torch.Generator().manual_seed(0)
    return {
        "mnist_c": torch.rand(3, 1, 12, 12, generator=rng),
        "cifar10_c": torch.rand(3, 3, 12, 14, generator=rng),
        "cifar10_c_extra": torch.rand(3, 3, 12, 14, generator=rng),
    }


@pytest.mark.parametrize(("suite", "name"), ALL)
def test_contract_shape_dtype_range_determinism(batches, suite, name):
    x = batches[suite]
    spec = corruption_spec(name, suite=suite)
    outs = []
    for severity in SEVERITIES:
        y = corrupt_images(x, name, severity=severity, seed=3, suite=suite)
        assert y.shape == x.shape and y.dtype == torch.float32
        assert float(y.min()) >= 0 and float(y.max()) <= 1 and bool(torch.isfinite(y).all())
        assert torch.equal(y, corrupt_images(x, name, severity=severity, seed=3, suite=suite))
        assert not torch.equal(y, x)
        outs.append(y)
    others = [corrupt_images(x, name, severity=3, seed=s, suite=suite) for s in range(4, 9)]
    if spec.random:
        assert any(not torch.equal(o, outs[2]) for o in others), "different seeds should differ"
    else:
        assert all(torch.equal(o, outs[2]) for o in others), "a deterministic corruption ignores the seed"
    assert torch.equal(x, batches[suite])  # input untouched


def test_empty_batch_and_float64_input():
    x = torch.rand(0, 1, 8, 8)
    assert corrupt_images(x, "fog", severity=1).shape == (0, 1, 8, 8)
    y = corrupt_images(torch.rand(2, 1, 8, 8, dtype=torch.float64), "rotate", severity=2)
    assert y.dtype == torch.float32


# -- strength grows with severity ---------------------------------------------------------------------------
MONOTONE = (
    [("mnist_c", name, "glyph28") for name in SUITES["mnist_c"]]
    + [("mnist_c", name, "glyph8") for name in SUITES["mnist_c"]]
    + [(suite, name, "rgb32") for suite in ("cifar10_c", "cifar10_c_extra") for name in SUITES[suite]]
    # the CIFAR-10-C tables that grayscale digits get by default (names MNIST-C does not define)
    + [
        (suite, name, "glyph8")
        for suite in ("cifar10_c", "cifar10_c_extra")
        for name in SUITES[suite]
        if name not in SUITES["mnist_c"] and name != "saturate"
    ]
)


@pytest.fixture(scope="module")
def test_images() -> dict[str, torch.Tensor]:
    # copies of one image, each with its own random draw; the strength is their mean
    return {
        "glyph28": glyph(28).repeat(32, 1, 1, 1),
        "glyph8": glyph(8).repeat(64, 1, 1, 1),
        "rgb32": colour_image().repeat(64, 1, 1, 1),
    }


@pytest.mark.parametrize(("suite", "name", "image"), MONOTONE)
def test_strength_grows_with_severity(test_images, suite, name, image):
    x = test_images[image]
    d = [strength(corrupt_images(x, name, severity=s, seed=0, suite=suite), x) for s in SEVERITIES]
    assert d[0] > 0
    assert all(b > a for a, b in itertools.pairwise(d)), [round(v, 5) for v in d]


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3"])
def test_severity_must_be_an_int_in_1_to_5(severity):
    with pytest.raises(
        ValidationError, match=r"'severity' parameter of corrupt_images must be an integer in \[1, 5\]"
    ):
        corrupt_images(torch.rand(1, 1, 8, 8), "fog", severity=severity)


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(
        ValidationError, match=r"'name' parameter of corrupt_images .* did you mean 'zoom_blur'"
    ):
        corrupt_images(torch.rand(1, 1, 8, 8), "zoom_blurr", severity=1)


def test_rgb_only_corruption_on_grayscale_names_both():
    with pytest.raises(
        ValidationError, match=r"RGB images \(3 channels\) for the corruption 'saturate'. Got 1 channel"
    ):
        corrupt_images(torch.rand(2, 1, 8, 8), "saturate", severity=1)
    with pytest.raises(ValidationError, match=r"grayscale \(1 channel\) or RGB .* 'frost'. Got 2 channel"):
        corrupt_images(torch.rand(2, 2, 8, 8), "frost", severity=1)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((1, 1, 8, 8)), "must be a float tensor of images of shape"),
        (torch.zeros(1, 8, 8), r"Got a torch.float32 tensor of shape \(1, 8, 8\)"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), "float tensor"),
        (torch.zeros(1, 1, 3, 8), "images at least 4×4 pixels"),
    ],
)
def test_bad_images(x, match):
    with pytest.raises(ValidationError, match=match) as info:
        corrupt_images(x, "gaussian_noise", severity=1)
    assert not isinstance(info.value, DataError)  # a wrong argument, not bad data


def _with_nan_in_second_image() -> torch.Tensor:
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 2, 3] = float("nan")
    return x


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (
            torch.full((1, 1, 8, 8), 2.0),
            r"pixel values in \[0, 1\]. Got values in \[2, 2\] instead. Fix: scale",
        ),
        (torch.full((1, 1, 8, 8), -0.5), r"pixel values in \[0, 1\]. Got values in \[-0.5, -0.5\]"),
        (_with_nan_in_second_image(), r"finite pixel values. Got NaN or inf values in 1 image\(s\)"),
        (torch.full((2, 1, 8, 8), float("inf")), r"finite pixel values. Got NaN or inf values in 2 image"),
    ],
)
def test_bad_pixel_values_are_data_errors(x, match, digits):
    with pytest.raises(DataError, match=r"'x' parameter of corrupt_images must be " + match):
        corrupt_images(x, "gaussian_noise", severity=1)
    # the same through corrupt: a dataset whose images hold such values
    data = digits.take(np.arange(x.shape[0]))
    data.x = x
    with pytest.raises(DataError, match="finite pixel values|pixel values in"):
        corrupt(data, "fog", severity=1)


def test_seed_must_be_non_negative():
    with pytest.raises(ValidationError, match="'seed' parameter of corrupt_images"):
        corrupt_images(torch.rand(1, 1, 8, 8), "fog", severity=1, seed=-1)


# -- datasets ---------------------------------------------------------------------------------------------------
def test_corrupt_dataset_keeps_ids_labels_groups_info(digits):
    part = digits.take(np.arange(40))
    bad = corrupt(part, "motion_blur", severity=2, seed=1)
    assert bad.x.shape == part.x.shape and not torch.equal(bad.x, part.x)
    assert torch.equal(bad.x, corrupt_images(part.x, "motion_blur", severity=2, seed=1))
    assert np.array_equal(bad.sample_id, part.sample_id) and torch.equal(bad.y, part.y)
    pd.testing.assert_frame_equal(bad.groups, part.groups)
    assert bad.info == part.info
    assert torch.equal(part.x, digits.x[:40])  # source untouched


@pytest.mark.parametrize(("shape", "modality"), [((6, 4), "tabular"), ((6, 1, 10), "sequence")])
def test_corrupt_refuses_tabular_and_sequence_data(shape, modality):
    ds = Dataset(np.random.rand(*shape), np.arange(6) % 2, modality=modality)
    with pytest.raises(ValidationError, match=f"an image corruption was asked of {modality} data"):
        corrupt(ds, "fog", severity=1)
    with pytest.raises(ValidationError, match="'data' parameter of corrupt must be a pruneviz Dataset"):
        corrupt(ds.x, "fog", severity=1)


# -- references ----------------------------------------------------------------------------------------------------
@pytest.mark.reference
def test_brightness_on_constant_images_matches_hsv():
    for suite, value in (("mnist_c", 0.3), ("cifar10_c", 0.15)):
        x = torch.full((1, 1, 8, 8), 0.6)
        y = corrupt_images(x, "brightness", severity=3, suite=suite)
        assert torch.allclose(y, torch.full_like(x, min(0.6 + value, 1.0)), atol=1e-6)
    rgb = (0.2, 0.5, 0.7)
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    expected = colorsys.hsv_to_rgb(h, s, min(v + 0.2, 1))  # CIFAR-10-C severity 4
    x = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, 6, 6).contiguous()
    y = corrupt_images(x, "brightness", severity=4, suite="cifar10_c")
    assert np.allclose(y[0, :, 0, 0].numpy(), expected, atol=1e-6)
    assert torch.allclose(
        corrupt_images(torch.zeros(1, 3, 6, 6), "brightness", severity=5), torch.full((1, 3, 6, 6), 0.3)
    )


@pytest.mark.reference
def test_saturate_matches_hsv_on_random_pixels():
    pixels = np.random.default_rng(0).random((25, 3))
    x = torch.tensor(pixels.T.reshape(1, 3, 5, 5), dtype=torch.float32)
    for severity, (factor, offset) in zip(SEVERITIES, corruption_spec("saturate").table, strict=True):
        y = corrupt_images(x, "saturate", severity=severity)[0].reshape(3, -1).T.numpy()
        for got, rgb in zip(y, pixels, strict=True):
            h, s, v = colorsys.rgb_to_hsv(*rgb)
            assert np.allclose(got, colorsys.hsv_to_rgb(h, min(max(s * factor + offset, 0), 1), v), atol=1e-5)


@pytest.mark.reference
def test_contrast_formula():
    x = torch.zeros(1, 1, 4, 4)
    x[..., :2] = 1.0  # mean 0.5
    y = corrupt_images(x, "contrast", severity=5)  # factor 0.15
    assert torch.allclose(y, 0.5 + (x - 0.5) * 0.15, atol=1e-6)
    c = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(corrupt_images(c, "contrast", severity=3), c)


@pytest.mark.reference
def test_gaussian_and_speckle_noise_std_match_the_published_constants():
    x = torch.full((16, 3, 32, 32), 0.5)
    for severity, std in zip(SEVERITIES, [0.04, 0.06, 0.08, 0.09, 0.10], strict=True):
        d = corrupt_images(x, "gaussian_noise", severity=severity) - x
        assert abs(float(d.std()) - std) < 0.03 * std and abs(float(d.mean())) < 0.003
        e = (corrupt_images(x, "speckle_noise", severity=severity) - x) / x
        speckle = corruption_spec("speckle_noise").table[severity - 1][0]
        assert abs(float(e.std()) - speckle) < 0.03 * speckle


@pytest.mark.reference
def test_impulse_noise_replaces_the_amount_half_salt_half_pepper():
    x = torch.full((8, 3, 32, 32), 0.5)
    for suite in ("mnist_c", "cifar10_c"):
        for severity, (amount,) in zip(
            SEVERITIES, corruption_spec("impulse_noise", suite=suite).table, strict=True
        ):
            y = corrupt_images(x, "impulse_noise", severity=severity, suite=suite)
            hit = (y != 0.5).double().mean().item()
            sd = (amount * (1 - amount) / x.numel()) ** 0.5
            assert abs(hit - amount) < 5 * sd
            salt = (y == 1).double().sum() / (y != 0.5).double().sum()
            assert abs(float(salt) - 0.5) < 0.06
        nested = [corrupt_images(x, "impulse_noise", severity=s, suite=suite) != 0.5 for s in SEVERITIES]
        assert all(bool((a <= b).all()) for a, b in itertools.pairwise(nested))


@pytest.mark.reference
def test_shot_noise_is_poisson():
    from scipy import stats

    u = np.random.default_rng(1).random(5000)
    lam = np.random.default_rng(2).random(5000) * 19.9
    assert np.array_equal(_poisson_quantile(u, lam), stats.poisson.ppf(u, lam))
    big = np.full(5000, 300.0)
    assert np.abs(_poisson_quantile(u, big) - stats.poisson.ppf(u, big)).max() <= 1
    x = torch.full((8, 1, 32, 32), 0.5)
    for suite, rate in (("mnist_c", 60), ("cifar10_c", 500)):
        y = corrupt_images(x, "shot_noise", severity=1, suite=suite)
        assert abs(float(y.mean()) - 0.5) < 0.01
        assert abs(float(y.var()) - 0.5 / rate) < 0.1 * 0.5 / rate


@pytest.mark.reference
def test_jpeg_quality_100_is_nearly_identity_and_matches_pillow():
    Image = pytest.importorskip("PIL.Image")
    g = F.interpolate(
        torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), size=(32, 32), mode="bicubic"
    )
    g = (g.clamp(0, 1) * 255).round() / 255
    gray = g[:, :1]
    assert float((ops.jpeg(gray, 100) - gray).abs().max()) <= 2 / 255
    for x, mode in ((gray, "L"), (g, "RGB")):
        arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for quality in (80, 50):
            buf = io.BytesIO()
            Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, "JPEG", quality=quality)
            ref = np.asarray(Image.open(buf), dtype=np.float64).reshape(32, 32, -1) / 255
            mine = ops.jpeg(x, quality)[0].permute(1, 2, 0).numpy()
            clean = arr.reshape(32, 32, -1) / 255
            # libjpeg's integer DCT and chroma rounding flip a few coefficients: within 2.5 levels on
            # average, and far closer to Pillow's output than either is to the clean image
            assert np.abs(ref - mine).mean() < 2.5 / 255
            assert np.abs(ref - mine).mean() < 0.35 * np.abs(ref - clean).mean()


@pytest.mark.reference
def test_pixelate_constant_is_identity_and_whole_cells_match_pillow_box():
    Image = pytest.importorskip("PIL.Image")
    c = torch.full((3, 3, 20, 20), 0.42)
    for severity in SEVERITIES:
        assert torch.allclose(corrupt_images(c, "pixelate", severity=severity), c, atol=1e-6)
    x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    for factor in (0.5, 0.25):
        n = int(32 * factor)
        ref = np.asarray(Image.fromarray(x, mode="F").resize((n, n), Image.BOX).resize((32, 32), Image.BOX))
        p = ops.box_pixelate_matrix(32, factor, np.zeros(1))[0]
        assert np.allclose(p @ x @ p.T, ref, atol=1e-5)


@pytest.mark.reference
def test_rotate_matches_scipy_on_the_interior():
    from scipy import ndimage

    x = glyph(28)
    for severity, (angle,) in zip(SEVERITIES, corruption_spec("rotate").table, strict=True):
        sign = ops.rng_for(0, "rotate").integers(0, 2, size=1)[0] * 2 - 1  # the draw rotate makes
        y = corrupt_images(x, "rotate", severity=severity, seed=0)[0, 0].numpy()
        ref = ndimage.rotate(
            x[0, 0].numpy(), np.rad2deg(sign * angle), reshape=False, order=1, mode="constant"
        )
        other = ndimage.rotate(
            x[0, 0].numpy(), -np.rad2deg(sign * angle), reshape=False, order=1, mode="constant"
        )
        assert np.abs(y - ref)[4:24, 4:24].max() < 1e-4
        assert np.abs(y - other)[4:24, 4:24].max() > 0.1


@pytest.mark.reference
def test_translate_by_whole_pixels_is_a_shift_and_stripe_inverts_mnist_c_columns():
    x = glyph(28)
    y = corrupt_images(x, "translate", severity=2, seed=5)  # 2 px along each axis, random signs
    sx, sy = ops.rng_for(5, "translate").integers(0, 2, size=(1, 2))[0] * 2 - 1
    ref = torch.zeros_like(x)
    src = x[0, 0]
    ys, xs = np.arange(28), np.arange(28)
    for i in ys:
        for j in xs:
            if 0 <= i + 2 * sy < 28 and 0 <= j + 2 * sx < 28:
                ref[0, 0, i, j] = src[i + 2 * sy, j + 2 * sx]
    assert torch.allclose(y, ref, atol=1e-6)
    s = corrupt_images(x, "stripe", severity=5)
    flipped = x.clone()
    flipped[..., :7] = 1 - flipped[..., :7]
    flipped[..., 21:] = 1 - flipped[..., 21:]
    assert torch.allclose(s, flipped, atol=1e-6)


@pytest.mark.reference
def test_blur_kernels_have_their_published_spread():
    delta = torch.zeros(1, 1, 33, 33)
    delta[..., 16, 16] = 1.0
    offsets = torch.arange(33.0) - 16
    for sigma in (0.1, 0.4, 1.0, 2.5):
        k = ops.blur(delta, sigma)[0, 0]
        assert abs(float(k.sum()) - 1) < 1e-5
        assert abs(float((k.sum(0) * offsets**2).sum()) - sigma**2) < 1e-4  # variance σ² exactly
    # defocus on the 32-px grid is ImageNet-C's kernel: disk on integer offsets ⊗ 3-tap Gaussian
    from scipy import ndimage

    for radius, alias in corruption_spec("defocus_blur").table:
        yy, xx = np.mgrid[-8:9, -8:9]
        disk = (xx**2 + yy**2 <= radius**2).astype(float)
        g = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * alias**2))
        ref = ndimage.convolve(np.pad(disk / disk.sum(), 1), np.outer(g, g) / g.sum() ** 2, mode="constant")
        assert np.allclose(_defocus_kernel(radius, alias), ref, atol=1e-12)
        at_ref = ops.rescale_kernel(ref, 1.0)  # at the reference size the kernel is unchanged
        r, c = at_ref.shape[0] // 2, ref.shape[0] // 2
        inner = ref[c - r : c + r + 1, c - r : c + r + 1]
        assert np.allclose(at_ref, inner, atol=1e-12) and inner.sum() == pytest.approx(1)


@pytest.mark.reference
def test_blurs_of_a_constant_image_are_identity():
    c = torch.full((2, 3, 16, 16), 0.37)
    for name in ("gaussian_blur", "defocus_blur", "zoom_blur", "motion_blur", "glass_blur"):
        for severity in (1, 5):
            assert torch.allclose(corrupt_images(c, name, severity=severity), c, atol=1e-5), name


def test_scale_consistency_across_image_sizes():
    """The corruption of an image shown at twice the size (pixels doubled), averaged back over 2×2
    blocks, is close to the corruption of the image itself: parameters scale with the side."""
    small = colour_image(32)
    big = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    for name in ("gaussian_blur", "defocus_blur", "rotate", "zoom_blur", "motion_blur", "fog"):
        a = corrupt_images(small, name, severity=5)
        b = F.avg_pool2d(corrupt_images(big, name, severity=5), 2)
        change = float((a - small).abs().mean())
        assert float((a - b).abs().mean()) < 0.3 * change, name


def test_canny_marks_the_outline_of_a_square():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 8:20, 8:20] = 1.0
    edges = ops.canny(x, 1.0)[0, 0]
    ring = torch.zeros(28, 28, dtype=torch.bool)
    ring[6:22, 6:22] = True
    ring[10:18, 10:18] = False
    assert bool(edges[~ring].eq(0).all()) and int(edges.sum()) >= 40
    assert bool(edges[6:22, 6:22].any(dim=1)[2:14].all())  # every row through the square has an edge


# -- mean corruption error ---------------------------------------------------------------------------------
@pytest.fixture()
def errors() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run": "r1",
            "corruption": ["fog"] * 3 + ["snow"] * 3,
            "severity": [1, 2, 3] * 2,
            "error": [0.10, 0.20, 0.30, 0.20, 0.30, 0.40],
        }
    )


@pytest.mark.reference
def test_mce_unnormalised_is_the_mean_error(errors):
    out = mean_corruption_error(errors, relative_to_clean=0.05)
    got = {(r.corruption, r.metric): r.value for r in out.itertuples()}
    assert got[("fog", "ce")] == pytest.approx(0.2) and got[("snow", "ce")] == pytest.approx(0.3)
    assert got[("all", "mce")] == pytest.approx(0.25)
    assert got[("fog", "relative_ce")] == pytest.approx(0.15) and got[
        ("all", "relative_mce")
    ] == pytest.approx(0.2)
    assert list(out.columns) == ["run", "corruption", "metric", "value", "normalised", "corruptions", "note"]
    assert not out.normalised.any() and set(out.run) == {"r1"}
    counts = out.set_index(["corruption", "metric"])["corruptions"]
    assert counts[("all", "mce")] == 2 and counts[("fog", "ce")] == 1 and (out.note == "").all()


@pytest.mark.reference
def test_mce_normalised_and_relative_by_hand(errors):
    # baseline (AlexNet in the paper): fog 0.2, 0.4, 0.6 (sum 1.2); snow 0.3, 0.5, 0.7 (sum 1.5); clean 0.1
    frame = pd.DataFrame(
        {
            "corruption": ["fog"] * 3 + ["snow"] * 3,
            "severity": [1, 2, 3] * 2,
            "error": [0.2, 0.4, 0.6, 0.3, 0.5, 0.7],
        }
    )
    as_sums = {"fog": 1.2, "snow": 1.5}
    as_lists = {"fog": [0.2, 0.4, 0.6, 0.8, 0.9], "snow": [0.3, 0.5, 0.7, 0.8, 0.9]}
    for normalisers in (frame, as_sums, as_lists):
        out = mean_corruption_error(
            errors, normalisers=normalisers, relative_to_clean=0.05, baseline_clean=0.1
        )
        got = {(r.corruption, r.metric): r.value for r in out.itertuples()}
        assert got[("fog", "ce")] == pytest.approx(0.6 / 1.2)
        assert got[("snow", "ce")] == pytest.approx(0.9 / 1.5)
        assert got[("all", "mce")] == pytest.approx((0.5 + 0.6) / 2)
        # relative: Σ(E - E_clean) / Σ(B - B_clean) = (0.6 - 0.15) / (1.2 - 0.3), (0.9 - 0.15) / (1.5 - 0.3)
        assert got[("fog", "relative_ce")] == pytest.approx(0.45 / 0.9)
        assert got[("snow", "relative_ce")] == pytest.approx(0.75 / 1.2)
        assert got[("all", "relative_mce")] == pytest.approx((0.5 + 0.625) / 2)
        assert out.normalised.all()


@pytest.mark.reference
def test_mce_undefined_ratios_are_nan_and_the_means_skip_them():
    # fog: the model 0.3, 0.5; a dense parent 0.2, 0.4, clean 0.1 -> CE 0.8/0.6, relative (0.8-0.2)/(0.6-0.2)
    # brightness: the parent's errors equal its clean error -> relative CE undefined (0 / 0-gap)
    # contrast: the parent errs *less* than clean (mild contrast) -> relative CE undefined (gap < 0)
    # snow: the parent never errs -> CE undefined too
    model = pd.DataFrame(
        {
            "run": "child",
            "corruption": ["fog"] * 2 + ["brightness"] * 2 + ["contrast"] * 2 + ["snow"] * 2,
            "severity": [1, 2] * 4,
            "error": [0.3, 0.5, 0.12, 0.14, 0.11, 0.13, 0.05, 0.07],
        }
    )
    parent = model.drop(columns="run").assign(error=[0.2, 0.4, 0.1, 0.1, 0.09, 0.1, 0.0, 0.0])
    out = mean_corruption_error(model, normalisers=parent, relative_to_clean=0.1, baseline_clean=0.1)
    got = out.set_index(["corruption", "metric"])
    ce, rel = got.xs("ce", level="metric")["value"], got.xs("relative_ce", level="metric")["value"]
    assert ce["fog"] == pytest.approx(0.8 / 0.6) and ce["brightness"] == pytest.approx(0.26 / 0.2)
    assert ce["contrast"] == pytest.approx(0.24 / 0.19) and np.isnan(ce["snow"])
    assert rel["fog"] == pytest.approx(0.6 / 0.4)
    assert np.isnan(rel["brightness"]) and np.isnan(rel["contrast"]) and np.isnan(rel["snow"])
    assert got.loc[("all", "mce"), "value"] == pytest.approx(np.mean([0.8 / 0.6, 1.3, 0.24 / 0.19]))
    assert got.loc[("all", "relative_mce"), "value"] == pytest.approx(1.5)
    assert (
        got.loc[("all", "mce"), "corruptions"] == 3 and got.loc[("all", "relative_mce"), "corruptions"] == 1
    )
    assert got.loc[("snow", "ce"), "corruptions"] == 0 and got.loc[("fog", "ce"), "corruptions"] == 1
    assert "baseline's error sum under 'snow' is 0" in got.loc[("snow", "ce"), "note"]
    assert "do not exceed its clean error" in got.loc[("contrast", "relative_ce"), "note"]
    assert got.loc[("all", "mce"), "note"] == "mean over 3 of 4 corruptions; undefined for ['snow']"
    assert got.loc[("all", "relative_mce"), "note"].startswith("mean over 1 of 4 corruptions")
    assert got.loc[("fog", "ce"), "note"] == "" and out["corruptions"].dtype == np.int64
    # the same with the baseline given as sums (relative CE then uses Σ B - n·B_clean)
    sums = {"fog": 0.6, "brightness": 0.2, "contrast": 0.19, "snow": 0.0}
    again = mean_corruption_error(model, normalisers=sums, relative_to_clean=0.1, baseline_clean=0.1)
    np.testing.assert_allclose(again["value"], out["value"], rtol=1e-12)
    # nothing defined: NaN means over 0 corruptions, not an error
    none = mean_corruption_error(
        model[model.corruption == "snow"],
        normalisers=parent,
        relative_to_clean=0.1,
        baseline_clean=0.1,
    ).set_index("metric")
    assert np.isnan(none.loc["mce", "value"]) and none.loc["mce", "corruptions"] == 0
    assert none.loc["relative_mce", "note"] == "undefined for every corruption (['snow'])"


def test_mce_bad_input(errors):
    with pytest.raises(ValidationError, match=r"no baseline for 'snow' instead. Fix: did you mean 'snoww'"):
        mean_corruption_error(errors, normalisers={"fog": 1.0, "snoww": 1.0})
    with pytest.raises(ValidationError, match="'baseline_clean' parameter .* the baseline's clean error"):
        mean_corruption_error(errors, normalisers={"fog": 1.0, "snow": 1.0}, relative_to_clean=0.1)
    with pytest.raises(ValidationError, match="one row per \\(corruption, severity\\)"):
        mean_corruption_error(pd.concat([errors, errors]))
    with pytest.raises(ValidationError, match=r"errors of one model .* several values in \['run'\]"):
        mean_corruption_error(errors.assign(run=["a", "b"] * 3))
    with pytest.raises(ValidationError, match="integer severities in 1..5"):
        mean_corruption_error(errors.assign(severity=[0, 1, 2] * 2))
    with pytest.raises(ValidationError, match="'errors' parameter .* column"):
        mean_corruption_error(errors.drop(columns="error"))
    with pytest.raises(ValidationError, match="at every severity in errors"):
        mean_corruption_error(errors, normalisers=errors[errors.severity < 3].drop(columns="run"))
    with pytest.raises(ValidationError, match="its 5 errors at severities 1-5"):
        mean_corruption_error(errors, normalisers={"fog": [0.1, 0.2], "snow": 1.0})
    bad = errors.drop(columns="run")
    with pytest.raises(ValidationError, match="'normalisers' parameter .* finite, non-negative errors"):
        mean_corruption_error(errors, normalisers=bad.assign(error=[0.1, -0.2, 0.3, 0.1, 0.1, 0.1]))
    with pytest.raises(ValidationError, match="'normalisers' parameter .* finite, non-negative errors"):
        mean_corruption_error(errors, normalisers=bad.assign(error=[0.1, np.nan, 0.3, 0.1, 0.1, 0.1]))
    with pytest.raises(ValidationError, match="'errors' parameter .* finite, non-negative errors"):
        mean_corruption_error(errors.assign(error=[0.1, 0.2, -0.3, 0.1, 0.1, 0.1]))
    with pytest.raises(ValidationError, match="'normalisers' parameter .* a finite, non-negative error rate"):
        mean_corruption_error(errors, normalisers={"fog": -1.0, "snow": 1.0})
    with pytest.raises(ValidationError, match="'baseline_clean' parameter .* a finite, non-negative error"):
        mean_corruption_error(errors, normalisers=bad, relative_to_clean=0.1, baseline_clean=float("nan"))
