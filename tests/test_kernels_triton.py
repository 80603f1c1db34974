"""Triton kernels of pruneviz.kernels against plain torch (``x @ W.T + b``).

Triton fixes its mode (interpreted or compiled) when it is first imported, and pruneviz imports it on
the first kernel call. Without CUDA this module sets TRITON_INTERPRET=1 at its top, so the kernels run in
Triton's interpreter on CPU (fp32/fp16, small odd shapes); an earlier import of pruneviz.kernels does not
matter, since it does not import triton. With CUDA the variable is left alone and the ``gpu`` tests run the
same checks compiled, in fp16/bf16/fp32. ``test_kernels_compile_for_hopper`` compiles every kernel for
sm_90 in a subprocess, which needs no GPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from pruneviz.exceptions import ValidationError
from pruneviz.kernels import triton_ops
from pruneviz.kernels.formats import Bitmap, BlockSparse, NMSparse
from pruneviz.kernels.triton_ops import available, bitmap_linear, bsr_linear, nm_linear
from pruneviz.prune.allocation import nm_mask

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported (on the first kernel call)
if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}
KERNELS = {"bsr": bsr_linear, "nm": nm_linear, "bitmap": bitmap_linear}
SHAPES = {"bsr": (192, 320), "nm": (200, 136), "bitmap": (200, 136)}  # (out, in): not multiples of a tile


@pytest.fixture()
def interpreted():
    """Skip unless the kernels run in Triton's interpreter here (no CUDA)."""
    if CUDA:
        pytest.skip("CUDA is present: the same checks run compiled in the gpu tests")
    if not triton_ops._kernels().interpret:
        pytest.skip("triton was imported in compiled mode before this module set TRITON_INTERPRET=1")


@pytest.fixture()
def compiled():
    """Skip unless the kernels run compiled on CUDA."""
    if not CUDA:
        pytest.skip("needs CUDA")
    if triton_ops._kernels().interpret:
        pytest.skip("TRITON_INTERPRET=1 is set: kernels are interpreted, not compiled")


def block_weight(shape, block, density, gen):
    bo, bi = block
    keep = torch.rand(shape[0] // bo, shape[1] // bi, generator=gen) < density
    keep[0, 0] = True  # at least one block
    keep[-1] = False  # an all-empty block row
    return torch.randn(shape, generator=gen) * keep.repeat_interleave(bo, 0).repeat_interleave(bi, 1)


def nm_weight(shape, n, m, gen):
    return torch.randn(shape, generator=gen) * nm_mask(torch.rand(shape, generator=gen), n, m)


def build(kind, shape, sparsity, gen):
    """(format, dense matrix) of a random weight for one kernel."""
    if kind == "bsr":
        block = (64, 64) if shape[1] % 64 == 0 else (64, 48)
        w = block_weight(shape, block, 1 - sparsity, gen)
        return BlockSparse.from_dense(w, block=block), w
    if kind == "nm":
        n, m = (2, 4) if sparsity == 0.5 else (1, 8)
        w = nm_weight(shape, n, m, gen)
        return NMSparse.from_dense(w, n=n, m=m), w
    w = torch.randn(shape, generator=gen) * (torch.rand(shape, generator=gen) < 1 - sparsity)
    w[3] = 0.0  # an empty row
    return Bitmap.from_dense(w), w


def check(kind, m, dtype, sparsity, with_bias, device="cpu", shape=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    fmt, w = build(kind, shape or SHAPES[kind], sparsity, gen)
    x = torch.randn(m, w.shape[1], generator=gen)
    b = torch.randn(w.shape[0], generator=gen) if with_bias else None
    xq, wq = x.to(dtype), w.to(dtype)  # the reference sees the same rounded inputs, in float64
    ref = xq.double() @ wq.double().T + (b.double() if with_bias else 0)
    y = KERNELS[kind](xq.to(device), fmt.to(device, dtype), None if b is None else b.to(device))
    assert y.dtype == dtype and y.shape == (m, w.shape[0]) and y.device.type == device
    scale = max(1.0, ref.abs().max().item())
    torch.testing.assert_close(y.cpu().double(), ref, rtol=TOL[dtype], atol=TOL[dtype] * scale)


# --- CPU, interpreted -----------------------------------------------------------------------------------


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["bsr", "nm", "bitmap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("m", [1, 3, 37])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_kernel_matches_torch(interpreted, kind, dtype, m, sparsity):
    check(kind, m, dtype, sparsity, with_bias=m != 3)


@pytest.mark.reference
@pytest.mark.parametrize("kind", ["bsr", "nm", "bitmap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_split_k_adds_partial_tiles(interpreted, kind, dtype, monkeypatch):
    # on CUDA a small launch splits K across programs that add into fp32 atomically; force it here
    monkeypatch.setattr(triton_ops, "_split", lambda *args: 3)
    check(kind, 5, dtype, 0.5, with_bias=True, seed=1)


def test_bsr_block_not_power_of_two_and_all_zero_weight(interpreted):
    check("bsr", 7, torch.float32, 0.5, with_bias=False, shape=(64, 144))  # 64 x 48 blocks, padded on chip
    b = torch.arange(128.0)
    y = bsr_linear(torch.randn(4, 128), BlockSparse.from_dense(torch.zeros(128, 128), block=64), b)
    assert y.equal(b.expand(4, 128))


@pytest.mark.reference
@pytest.mark.parametrize(("n", "m"), [(1, 4), (4, 8), (1, 2)])
def test_nm_other_patterns(interpreted, n, m):
    gen = torch.Generator().manual_seed(n * 10 + m)
    w = nm_weight((48, 96), n, m, gen)
    x = torch.randn(6, 96, generator=gen)
    torch.testing.assert_close(nm_linear(x, NMSparse.from_dense(w, n=n, m=m)), x @ w.T, rtol=1e-4, atol=1e-4)


def test_empty_batch_and_strided_input(interpreted):
    fmt, w = build("bitmap", (64, 100), 0.7, torch.Generator().manual_seed(2))
    assert bitmap_linear(torch.zeros(0, 100), fmt).shape == (0, 64)
    x = torch.randn(5, 130)[:, 10:110]  # row stride 130
    torch.testing.assert_close(bitmap_linear(x, fmt), x @ w.T, rtol=1e-4, atol=1e-4)


def test_available_follows_triton_mode(monkeypatch):
    monkeypatch.setattr(triton_ops, "_STATE", None)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert available() is CUDA
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert available()
    monkeypatch.setattr(triton_ops, "_STATE", SimpleNamespace(interpret=False))
    assert available() is CUDA


def test_kernels_are_defined_on_first_call_not_at_import():
    # a fresh process: importing the kernels must not import triton, and TRITON_INTERPRET set after that
    # import (before the first call) must give interpreted kernels
    code = (
        "import os, sys, torch\n"
        "import pruneviz.kernels.formats as F, pruneviz.kernels.triton_ops as T\n"
        "assert 'triton' not in sys.modules, 'triton imported too early'\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "y = T.bsr_linear(torch.ones(2, 32), F.BlockSparse.from_dense(torch.eye(32), block=16))\n"
        "assert y.equal(torch.ones(2, 32)) and T._STATE.interpret, y\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- bad input ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bitmap_weight():
    return build("bitmap", (64, 96), 0.5, torch.Generator().manual_seed(3))[0]


def test_weight_on_another_device(bitmap_weight):
    with pytest.raises(
        ValidationError,
        match=r"'w' parameter of bitmap_linear must be on the input's device \(cpu\). Got a weight on meta"
        r".*Fix: move the weight with w.to\(x.device\)",
    ):
        bitmap_linear(torch.randn(2, 96), bitmap_weight.to("meta"))


def test_bf16_refused_under_interpreter(interpreted, bitmap_weight):
    with pytest.raises(
        ValidationError,
        match=r"'x' parameter of bitmap_linear must be float16 or float32 under TRITON_INTERPRET=1 .*"
        r"Got dtype torch.bfloat16",
    ):
        bitmap_linear(torch.randn(2, 96, dtype=torch.bfloat16), bitmap_weight.to(dtype=torch.bfloat16))


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (
            torch.randn(2, 95),
            r"'x' parameter of bitmap_linear must be a 2-D tensor \(batch, 96\).*shape \(2, 95\)",
        ),
        (torch.randn(96), r"Got shape \(96,\)"),
        ([[1.0] * 96], r"Got list"),
        (
            torch.ones(2, 96, dtype=torch.int64),
            r"must be float16, bfloat16 or float32. Got dtype torch.int64",
        ),
        (
            torch.randn(2, 96, dtype=torch.float16),
            r"'w' .* must be values of the input's dtype \(torch.float16\)",
        ),
    ],
)
def test_bad_x(bitmap_weight, x, match):
    with pytest.raises(ValidationError, match=match):
        bitmap_linear(x, bitmap_weight)


def test_bad_bias_and_wrong_format(bitmap_weight):
    x = torch.randn(2, 96)
    with pytest.raises(ValidationError, match=r"'bias' .* shape \(64,\) on cpu. Got shape \(96,\)"):
        bitmap_linear(x, bitmap_weight, torch.zeros(96))
    with pytest.raises(
        ValidationError, match=r"'w' parameter of bsr_linear must be a .*BlockSparse. Got Bitmap"
    ):
        bsr_linear(x, bitmap_weight)


def test_nm_pattern_the_kernel_cannot_expand():
    w = torch.randn(8, 12) * nm_mask(torch.rand(8, 12), 3, 4)
    with pytest.raises(
        ValidationError, match=r"'w' parameter of nm_linear must be N:M with N and M powers of two"
    ):
        nm_linear(torch.randn(2, 12), NMSparse.from_dense(w, n=3, m=4))


def test_cpu_without_interpreter_says_how(bitmap_weight, monkeypatch):
    x = torch.randn(2, 96)
    monkeypatch.setattr(triton_ops, "_STATE", None)  # triton not imported yet, variable unset
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(
        ValidationError, match=r"Got a CPU tensor without TRITON_INTERPRET=1.*set TRITON_INTERPRET=1"
    ):
        bitmap_linear(x, bitmap_weight)
    assert triton_ops._STATE is None  # refused before importing triton
    monkeypatch.setattr(triton_ops, "_STATE", SimpleNamespace(interpret=False))  # imported in compiled mode
    with pytest.raises(ValidationError, match=r"triton was imported without TRITON_INTERPRET=1"):
        bitmap_linear(x, bitmap_weight)


# --- compiled for Hopper, no GPU needed -----------------------------------------------------------------

_COMPILE_SCRIPT = r"""
import json, subprocess, sys, tempfile
from pathlib import Path
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from pruneviz.kernels import triton_ops as T

k = T._kernels()
assert not k.interpret
cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"

def compile_one(fn, consts, opts, split, tname):
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            continue
        if name == "y_ptr":
            sig[name] = "*fp32" if split > 1 else f"*{tname}"
        elif name.endswith("_ptr"):
            sig[name] = f"*{tname}" if name in ("x_ptr", "w_ptr", "v_ptr", "b_ptr") else "*i32"
        else:
            sig[name] = "i32"
        if name.endswith("_ptr") or name.startswith("stride") or name in ("N", "K", "K_SPLIT", "n_words"):
            attrs[(i,)] = [["tt.divisibility", 16]]  # as triton.jit specialises aligned arguments
    out = triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", 90, 32), options=opts)
    usage = ""
    if cuobjdump.exists():
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(out.asm["cubin"]); f.flush()
            usage = subprocess.run([str(cuobjdump), "-res-usage", f.name], capture_output=True, text=True).stdout
    ttgir = out.asm["ttgir"]
    return {"kernel": fn.__name__, "split": split, "wgmma": "warp_group_dot" in ttgir,
            "mma": "mma" in ttgir, "atomic": "atomic_rmw" in ttgir, "usage": usage}

rows = []
for dtype in (torch.float16, torch.float32):
    tname = {torch.float16: "fp16", torch.float32: "fp32"}[dtype]
    for m in (1, 4096):
        split = 4 if m == 1 else 1
        common = {"SPLIT": split, "HAS_BIAS": True, "PRECISION": T._precision(dtype)}
        consts, opts = T._launch_options(T._bsr_config(m, dtype, False))
        bsr = {**consts, **common, "BO": 64, "BI": 64, "PO": 64, "PI": 64}
        rows.append({"dtype": tname, "m": m, **compile_one(k.bsr, bsr, opts, split, tname)})
        consts, opts = T._launch_options(T._dense_tile_config(m, 4096, dtype, False))
        groups = consts["BLOCK_K"] // 4
        nm = {"NN": 2, "MM": 4, "BITS": 2, "GROUPS": groups, "WORDS": groups * 2 // 16, "PER_WORD": 16}
        rows.append({"dtype": tname, "m": m, **compile_one(k.nm, {**consts, **common, **nm}, opts, split, tname)})
        bitmap = {**consts, **common, "WORDS": consts["BLOCK_K"] // 32}
        rows.append({"dtype": tname, "m": m, **compile_one(k.bitmap, bitmap, opts, split, tname)})
print(json.dumps(rows))
"""


def test_kernels_compile_for_hopper():
    """Every kernel compiles for sm_90 (fp16 and fp32; bf16 takes the fp16 code path) in its decode
    (split K, atomic adds) and large-batch configurations, on tensor cores (wgmma for large fp16
    batches), without register spills."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    if done.returncode and "ptxas" in done.stderr and "not found" in done.stderr.lower():
        pytest.skip("this triton has no ptxas to compile for NVIDIA GPUs")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(rows) == 12
    for row in rows:
        assert row["wgmma"] if row["m"] > 64 and row["dtype"] == "fp16" else row["mma"], row
        assert row["atomic"] == (row["split"] > 1), row
        if row["usage"]:
            assert "STACK:0 " in row["usage"], row  # no spills to local memory


# --- CUDA -----------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.reference
@pytest.mark.parametrize("kind", ["bsr", "nm", "bitmap"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("m", [1, 3, 37, 300])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_kernel_matches_torch_cuda(compiled, kind, dtype, m, sparsity):
    check(kind, m, dtype, sparsity, with_bias=m != 3, device="cuda")


@pytest.mark.gpu
@pytest.mark.reference
@pytest.mark.parametrize("kind", ["bsr", "nm", "bitmap"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("m", [1, 16, 256])
def test_kernel_matches_torch_cuda_large_layer(compiled, kind, dtype, m):
    # a 4096 x 4096 layer: decode sizes split K (atomic adds); M = 256 takes the large-tile configuration
    check(kind, m, dtype, 0.5, with_bias=True, device="cuda", shape=(4096, 4096))


@pytest.mark.gpu
def test_weight_on_cpu_input_on_cuda(compiled, bitmap_weight):
    with pytest.raises(
        ValidationError, match=r"must be on the input's device \(cuda:0\). Got a weight on cpu"
    ):
        bitmap_linear(torch.randn(2, 96, device="cuda"), bitmap_weight)
