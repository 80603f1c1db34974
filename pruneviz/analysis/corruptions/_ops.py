"""Batched image operations the corruptions are built from.

Every function takes and returns float tensors of shape ``(N, C, H, W)`` (or ``(N, H, W)`` layers) and
works on the whole batch at once. Coordinates are in pixels with pixel ``i`` centred at ``i``;
``(x, y)`` is (column, row). Kernels given in pixels of a *reference* image size are carried to the
actual size by :func:`rescale_kernel`, so a corruption looks the same at 8×8 as at 32×32.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch.nn import functional as F

# ITU-T T.81 (JPEG) Annex K, tables K.1 and K.2: the example luminance and chrominance quantisation tables
# that libjpeg scales by the quality setting.
JPEG_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
JPEG_CHROMA = np.full((8, 8), 99.0)
JPEG_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights, as JFIF uses


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the corruption's ``name`` (stable across runs and
    Python processes: CRC-32 of the name, never ``hash``), shared by all five severities."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


# -- kernels and filtering ---------------------------------------------------------------------------
def discrete_gaussian(sigma: float) -> np.ndarray:
    """The discrete analogue of the Gaussian kernel, ``e^{-t} I_n(t)`` with ``t = σ²`` (Lindeberg 1990).

    Its variance is exactly ``σ²`` for every ``σ >= 0``, also below one pixel where a sampled Gaussian
    collapses to the identity, so blur strength stays continuous and monotone in ``σ``.
    """
    from scipy.special import ive

    if sigma <= 0:
        return np.ones(1)
    radius = math.ceil(6 * sigma) + 1  # the tail beyond holds < 1e-8 of the variance
    n = np.arange(-radius, radius + 1)
    k = ive(np.abs(n), sigma * sigma)
    return k / k.sum()


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with one 2-D ``kernel`` (replicated borders)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.pad(flat, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
    out = F.conv2d(flat, kernel.to(x.dtype)[None, None])
    return out.reshape(n, c, h, w)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (discrete Gaussian, separable)."""
    k = torch.as_tensor(discrete_gaussian(sigma), dtype=x.dtype)
    if k.numel() == 1:
        return x.clone()
    return _depthwise(_depthwise(x, k[:, None]), k[None, :])


def convolve(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve every channel with a 2-D ``kernel`` of odd sides (flipped, so a true convolution)."""
    k = torch.as_tensor(np.ascontiguousarray(kernel[::-1, ::-1]), dtype=x.dtype)
    return _depthwise(x, k)


def rescale_kernel(kernel: np.ndarray, scale: float) -> np.ndarray:
    """Carry a 2-D kernel given on a reference pixel grid to a grid ``scale`` times as fine.

    Each tap at offset ``(a, b)`` moves to ``(a·scale, b·scale)`` and is spread onto the integer grid
    with a tent of half-width ``max(1, scale)`` (bilinear splatting when shrinking). At ``scale == 1``
    the kernel is returned unchanged; the result sums to 1.
    """
    kh, kw = kernel.shape
    ys, xs = np.nonzero(kernel)
    weights = kernel[ys, xs]
    pos_y = (ys - kh // 2) * scale
    pos_x = (xs - kw // 2) * scale
    half = max(1.0, scale)
    r = math.ceil(max(np.abs(pos_y).max(initial=0), np.abs(pos_x).max(initial=0)) + half)
    grid = np.arange(-r, r + 1)
    ty = np.clip(1 - np.abs(grid[None, :] - pos_y[:, None]) / half, 0, None)  # (taps, 2r+1)
    tx = np.clip(1 - np.abs(grid[None, :] - pos_x[:, None]) / half, 0, None)
    out = np.einsum("t,ti,tj->ij", weights, ty, tx)
    return out / out.sum()


# -- geometry ----------------------------------------------------------------------------------------
def sample(x: torch.Tensor, px: torch.Tensor, py: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Bilinear sample of ``x`` at pixel coordinates ``(px, py)`` of shape (N, H', W')."""
    _, _, h, w = x.shape
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def centred_coords(h: int, w: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets from the image centre, ``(x, y)`` each of shape (H, W)."""
    ys = torch.arange(h, dtype=dtype) - (h - 1) / 2
    xs = torch.arange(w, dtype=dtype) - (w - 1) / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return xx, yy


def affine(x: torch.Tensor, matrix: np.ndarray, shift: np.ndarray, padding: str = "zeros") -> torch.Tensor:
    """Warp with the inverse map ``input = matrix @ (p - centre) + centre + shift`` for each output pixel
    ``p`` (``matrix`` (N, 2, 2) on ``(x, y)``, ``shift`` (N, 2) in pixels), as ``skimage.transform.warp``
    with an inverse map about the centre."""
    _, _, h, w = x.shape
    m = torch.tensor(np.asarray(matrix), dtype=torch.float32)
    t = torch.tensor(np.asarray(shift), dtype=torch.float32)
    xx, yy = centred_coords(h, w)
    px = m[:, 0, 0, None, None] * xx + m[:, 0, 1, None, None] * yy + (w - 1) / 2 + t[:, 0, None, None]
    py = m[:, 1, 0, None, None] * xx + m[:, 1, 1, None, None] * yy + (h - 1) / 2 + t[:, 1, None, None]
    return sample(x, px, py, padding)


def translate(x: torch.Tensor, dx: np.ndarray, dy: np.ndarray, padding: str = "zeros") -> torch.Tensor:
    """``out(p) = x(p + (dx, dy))`` per image (sub-pixel shifts are bilinear)."""
    n = x.shape[0]
    eye = np.broadcast_to(np.eye(2), (n, 2, 2))
    return affine(x, eye, np.stack([dx, dy], axis=1), padding)


def zoom(x: torch.Tensor, factor: float, padding: str = "border") -> torch.Tensor:
    """Enlarge about the centre by ``factor`` (``> 1`` zooms in), keeping the size."""
    n = x.shape[0]
    return affine(x, np.broadcast_to(np.eye(2) / factor, (n, 2, 2)), np.zeros((n, 2)), padding)


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear resize, antialiased when shrinking (identity when the size already matches)."""
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def motion_blur(
    x: torch.Tensor, radius: float, sigma: float, angles: np.ndarray, scale: float, padding: str = "border"
) -> torch.Tensor:
    """One-sided Gaussian motion blur along ``angles`` (degrees, one per image), as ImageMagick's
    ``MotionBlurImage``: ``2·ceil(radius) + 1`` taps ``i`` at ``i·scale`` pixels in the direction of
    motion with weights ``∝ exp(-i² / 2σ²)`` (``radius``, ``sigma`` in reference pixels)."""
    taps = np.arange(2 * math.ceil(radius) + 1, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    keep = weights > 1e-9
    theta = np.deg2rad(angles)
    out = torch.zeros_like(x)
    for i, wt in zip(taps[keep], weights[keep], strict=True):
        if i == 0:
            out += float(wt) * x
        else:
            out += float(wt) * translate(x, i * scale * np.cos(theta), i * scale * np.sin(theta), padding)
    return out


# -- resampling, compression, edges -------------------------------------------------------------------
def box_pixelate_matrix(n: int, factor: float, phase: np.ndarray) -> np.ndarray:
    """Matrices (len(phase), n, n) of a box-filter shrink by ``factor`` and a box-filter enlarge back.

    Cells are ``1/factor`` pixels wide, the grid shifted by ``phase`` (in [0, 1), a fraction of a cell)
    from the top-left corner; cells are cut at the borders. The shrink gives each cell the
    overlap-weighted mean of its pixels, the enlarge each pixel the overlap-weighted mean of its cells
    (area weights, so the result is continuous in ``factor`` and ``phase``). With ``phase == 0`` and a
    whole number of pixels per cell this is PIL's ``Image.resize(..., BOX)`` down and up again.
    """
    width = 1.0 / factor
    cells = math.ceil(n * factor - 1e-9) + 1
    edges = phase[:, None] * width + (np.arange(cells + 1)[None, :] - 1) * width  # (m, cells + 1)
    edges = np.clip(edges, 0, n)
    lo, hi = edges[:, :-1, None], edges[:, 1:, None]
    pix = np.arange(n, dtype=np.float64)[None, None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0, None)  # (m, cells, n)
    down = overlap / np.maximum(overlap.sum(axis=2, keepdims=True), 1e-12)
    return np.einsum("mci,mcj->mij", overlap, down)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Baseline JPEG round trip at ``quality`` (1–100), in numpy/scipy.

    8-bit samples; for 3 channels JFIF YCbCr with 4:2:0 chroma (2×2 averages, bilinear ("fancy")
    upsampling), for 1 channel luminance only; edge-replicated padding to whole blocks; orthonormal 8×8
    DCT-II; the ITU-T T.81 Annex K tables scaled as libjpeg does (``5000/q`` below 50, ``200 - 2q``
    from 50, rounded, clamped to [1, 255]); rounding quantisation.
    """
    from scipy.fft import dctn, idctn

    q = int(quality)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    tables = [np.clip(np.floor((t * scale + 50) / 100), 1, 255) for t in (JPEG_LUMA, JPEG_CHROMA)]
    _, c, h, w = x.shape
    img = np.round(x.detach().cpu().numpy().astype(np.float64) * 255)
    sub = 2 if c == 3 else 1
    ph, pw = -h % (8 * sub), -w % (8 * sub)
    img = np.pad(img, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
    if c == 3:
        r, g, b = img[:, 0], img[:, 1], img[:, 2]
        y = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
        cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
        cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
        planes = [
            (np.clip(np.round(p), 0, 255), t, f)
            for p, t, f in ((y, tables[0], 1), (cb, tables[1], 2), (cr, tables[1], 2))
        ]
    else:
        planes = [(img[:, 0], tables[0], 1)]

    def code(plane: np.ndarray, table: np.ndarray) -> np.ndarray:
        m, ah, aw = plane.shape
        blocks = (plane - 128).reshape(m, ah // 8, 8, aw // 8, 8).transpose(0, 1, 3, 2, 4)
        coef = np.round(dctn(blocks, type=2, norm="ortho", axes=(-2, -1)) / table) * table
        back = idctn(coef, type=2, norm="ortho", axes=(-2, -1)) + 128
        return np.clip(np.round(back), 0, 255).transpose(0, 1, 3, 2, 4).reshape(m, ah, aw)

    decoded = []
    for plane, table, factor in planes:
        if factor == 1:
            decoded.append(code(plane, table))
            continue
        m, ah, aw = plane.shape
        small = plane.reshape(m, ah // 2, 2, aw // 2, 2).mean(axis=(2, 4))
        small = torch.from_numpy(code(small, table))[:, None]
        big = F.interpolate(small, size=(ah, aw), mode="bilinear", align_corners=False)[:, 0]
        decoded.append(big.numpy())
    if c == 3:
        y, cb, cr = decoded
        rgb = np.stack(
            [
                y + 1.402 * (cr - 128),
                y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                y + 1.772 * (cb - 128),
            ],
            axis=1,
        )
    else:
        rgb = decoded[0][:, None]
    out = np.clip(np.round(rgb[:, :, :h, :w]), 0, 255) / 255
    return torch.from_numpy(out.astype(np.float32))


def canny(x: torch.Tensor, sigma: float, low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """Canny edge map (Canny 1986) of every channel: discrete-Gaussian smoothing by ``sigma`` pixels,
    Sobel gradients, non-maximum suppression across the gradient direction (quantised to 4 directions)
    and hysteresis: pixels with magnitude ``>= low`` kept when 8-connected to one ``>= high`` (the
    thresholds on the Sobel magnitude, as ``skimage.feature.canny``'s defaults for float images)."""
    from scipy import ndimage

    n, c, h, w = x.shape
    smooth = blur(x, sigma).reshape(n * c, 1, h, w)
    sob = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sob[None, None])[:, 0].numpy()
    gy = F.conv2d(padded, sob.T.contiguous()[None, None])[:, 0].numpy()
    mag = np.hypot(gx, gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180) % 180
    sector = np.round(angle / 45).astype(int) % 4  # 0: along x, 1: diagonal, 2: along y, 3: anti-diagonal
    steps = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    pad = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    keep = np.zeros_like(mag, dtype=bool)
    for s, (dy, dx) in steps.items():
        ahead = pad[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = pad[:, 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        keep |= (sector == s) & (mag >= ahead) & (mag >= behind)
    weak = keep & (mag >= low)
    strong = keep & (mag >= high)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across images
    labels, count = ndimage.label(weak, structure=structure)
    good = np.zeros(count + 1, dtype=bool)
    good[np.unique(labels[strong])] = True
    good[0] = False
    edges = good[labels].astype(np.float32)
    return torch.from_numpy(edges).reshape(n, c, h, w)


# -- procedural layers -------------------------------------------------------------------------------
def fractal(
    rng: np.random.Generator, n: int, map_size: int, height: int, width: int, decay: float
) -> torch.Tensor:
    """Fractal (plasma) noise in [0, 1] of shape (n, height, width): the top-left window of a periodic
    ``map_size`` map, normalised by the whole map's range, as the diamond-square maps of ImageNet-C.

    The map is a sum of value-noise octaves with ``2^j`` nodes per side (``j = 1 .. log2 map_size``),
    node values uniform in [-1, 1], bilinear between nodes, octave ``j`` weighted ``decay^(-2(j-1))``
    (diamond-square divides its displacement amplitude ``wibble`` by ``decay`` at every level and draws
    within ``±wibble²``). The map's range is taken over a grid of at most 64×64 points plus the window.
    The node values do not depend on ``decay``, so maps of different decays share their randomness.
    """
    levels = round(math.log2(map_size))
    coarse_step = max(1, map_size // 64)
    grid = np.arange(0, map_size, coarse_step, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)
    cols = np.arange(width, dtype=np.float64)
    window = torch.zeros(n, height, width)
    whole = torch.zeros(n, grid.size, grid.size)
    for j in range(1, levels + 1):
        nodes = 2**j
        spacing = map_size / nodes
        amp = decay ** (-2.0 * (j - 1))
        if spacing >= coarse_step:  # all nodes: the octave reaches the whole-map grid
            values = torch.from_numpy(rng.uniform(-1, 1, size=(n, nodes, nodes)).astype(np.float32))
            g = _interpolation_matrix(grid / spacing, nodes, periodic=True)
            whole += amp * (g @ values @ g.T)
            ry = _interpolation_matrix(rows / spacing, nodes, periodic=True)
            rx = _interpolation_matrix(cols / spacing, nodes, periodic=True)
        else:  # fine octave: only the nodes under the window
            ny = math.floor((height - 1) / spacing) + 2
            nx = math.floor((width - 1) / spacing) + 2
            values = torch.from_numpy(rng.uniform(-1, 1, size=(n, ny, nx)).astype(np.float32))
            ry = _interpolation_matrix(rows / spacing, ny, periodic=False)
            rx = _interpolation_matrix(cols / spacing, nx, periodic=False)
        window += amp * (ry @ values @ rx.T)
    lo = torch.minimum(whole.amin(dim=(1, 2)), window.amin(dim=(1, 2)))[:, None, None]
    hi = torch.maximum(whole.amax(dim=(1, 2)), window.amax(dim=(1, 2)))[:, None, None]
    return ((window - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)


def _interpolation_matrix(positions: np.ndarray, nodes: int, *, periodic: bool) -> torch.Tensor:
    """The (len(positions), nodes) matrix of linear interpolation between nodes at fractional node
    coordinates (wrapping around when ``periodic``)."""
    lo = np.floor(positions).astype(int)
    t = positions - lo
    hi = lo + 1
    if periodic:
        lo, hi = lo % nodes, hi % nodes
    m = np.zeros((positions.size, nodes), dtype=np.float32)
    idx = np.arange(positions.size)
    np.add.at(m, (idx, lo), 1 - t)
    np.add.at(m, (idx, hi), t)
    return torch.from_numpy(m)


def segment_layer(
    x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, h: int, w: int, width: float = 2.3
) -> torch.Tensor:
    """Bright anti-aliased segments from ``(x0, y0)`` to ``(x1, y1)`` (arrays of shape (n, k)), drawn on
    an ``h × w`` grid, (n, h, w): intensity ``clip(1 + ln(1 - d / width), 0, 1)`` at distance ``d`` from
    the nearest segment (MNIST-C's line profile: about 1.5 px of full ink fading to nothing at ``width``)."""
    py = torch.arange(h, dtype=torch.float32)[None, :, None, None]
    px = torch.arange(w, dtype=torch.float32)[None, None, :, None]
    ends = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (x0, y0, x1, y1)]
    out = torch.zeros(x0.shape[0], h, w)
    chunk = max(1, 4_000_000 // max(1, h * w * x0.shape[1]))
    for start in range(0, x0.shape[0], chunk):  # bounded memory: (chunk, h, w, segments) at a time
        ax, ay, bx, by = (e[start : start + chunk, None, None, :] for e in ends)
        dx, dy = bx - ax, by - ay
        length2 = (dx * dx + dy * dy).clamp_min(1e-12)
        t = (((px - ax) * dx + (py - ay) * dy) / length2).clamp(0, 1)
        d = torch.hypot(px - (ax + t * dx), py - (ay + t * dy)).amin(dim=-1)
        out[start : start + chunk] = (1 + torch.log((1 - d / width).clamp_min(1e-12))).clamp(0, 1)
    return out
