"""Sparse matmul per format, shape, batch and sparsity — pruneviz's paths and dispatcher against dense.

On CPU (fp32): weights of real layer shapes (4096x4096, 4096x14336, 14336x4096) pruned in 32x32 blocks
and unstructured at 50-95 %, batch 1-4096: dense ``F.linear`` (the baseline, what ``nn.Linear`` runs),
dense computed as ``(W @ x.T).T`` (a reference: MKL's small-batch GEMM is much faster that way round on
some CPUs), torch CSR, torch BSR (the peers), pruneviz's block kernel ``block_ell`` and the dispatcher's
choice (timed again beside dense). Then the demo models (the LeNet-style CNN on 8x8 digits the demo zoo
is built from, pruned as the demo prunes): the dispatcher's per-layer table and end-to-end latency of
the pruned model, dense vs ``sparsify``-ed. Then a transformer encoder (``nn.TransformerEncoder``, 6
layers, d_model 384, 6 heads, FFN 1536, batch first, random weights) pruned by layer-wise magnitude
(50 / 70 / 90 % unstructured and 2:4), end to end at batch 1, 8, 32 and sequence 128, dense vs
``sparsify(model, input_shape=(128, 384))``, in two regimes: ``fused`` (torch's default inference path,
in which the encoder layer never calls its Linear modules, so sparsify leaves them) and ``unfused``
(``torch.backends.mha.set_fastpath_enabled(False)``: the Linears are called on ``(batch, seq, hidden)``,
as in BERT-style encoders), with the paths each Linear runs and the dispatcher's per-layer picks before
sparsify's whole-model check. ``--only transformer`` (or ``matmul`` / ``demo``) runs one section and,
with ``--json``, merges its figures into the existing file.

On CUDA (fp16) the same script runs the GPU rows instead: 2:4 decode (batch 1-16) with the Triton
``nm_linear`` and torch's semi-structured path vs cuBLAS; unstructured 70 % decode with ``bitmap_linear``;
BSR block 64, 8192², M=4096 at 50/80/90 % with ``bsr_linear`` vs cuBLAS and vs torch's
``torch.sparse._triton_ops.bsr_dense_addmm``; the dispatcher on the same layers.

Targets (BENCHMARKS.md, `kernels`): dispatcher >= 0.98x dense everywhere; CPU block-sparse (batch <= 16)
>= 1.5x at 70 %, >= 2.5x at 80 %, >= 4x at 90 %; GPU (H100, fp16): 2:4 decode >= 1.3x cuBLAS,
unstructured 70 % decode >= 1.8x, BSR >= 1.6x / 3.2x / 6x at 50 / 80 / 90 % and >= 1.2x over torch's
bsr_dense_addmm; sparsify on the transformer >= 0.98x dense at every point. Timings are medians of
interleaved runs (every path once per round), so a dense call evicts the caches between sparse calls as
the other layers of a model would.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_medians, markdown, parse_args, write_json

from pruneviz.kernels import dispatch
from pruneviz.kernels.cpu import BlockELL, block_ell_linear, to_torch_bsr, to_torch_csr
from pruneviz.kernels.dispatch import batch_bucket
from pruneviz.kernels.modules import SparseLinear, sparsify, speedup_table
from pruneviz.models import build_model
from pruneviz.prune import mask_channels_, prune_, prune_channels

BLOCK = 32
DEMO_SHAPE = (1, 8, 8)
TARGETS = {0.7: 1.5, 0.8: 2.5, 0.9: 4.0}
SECTIONS = ("matmul", "demo", "transformer")


def block_mask(out: int, inp: int, sparsity: float, block: int, gen: torch.Generator) -> torch.Tensor:
    """Keep round((1 - sparsity) * blocks) random blocks, spread evenly over the block rows."""
    rows, cols = out // block, inp // block
    kept = round((1 - sparsity) * rows * cols)
    order = torch.randperm(rows * cols, generator=gen)[:kept]
    keep = torch.zeros(rows * cols, dtype=torch.bool)
    keep[order] = True
    return keep.reshape(rows, cols).repeat_interleave(block, 0).repeat_interleave(block, 1)


def timed_group(
    fns: dict[str, Callable[[], object]], repeats: int, drop_above: float = 2.5
) -> dict[str, float]:
    """Interleaved medians; a path slower than ``drop_above`` x dense on its warm-up call is timed once."""
    single: dict[str, float] = {}
    with torch.no_grad():
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            single[k] = time.perf_counter() - t0
        live = {k: fn for k, fn in fns.items() if k == "dense" or single[k] <= drop_above * single["dense"]}
        out = interleaved_medians(live, repeats, warmup=1)
    return {**single, **out}


def cpu_rows(quick: bool, cache_dir: str) -> tuple[list[dict], dict[str, object]]:
    shapes = [(4096, 4096), (4096, 14336), (14336, 4096)]
    sparsities = [0.5, 0.7, 0.8, 0.9, 0.95]
    batches = [1, 4, 16, 64, 256, 1024, 4096]
    gen = torch.Generator().manual_seed(0)
    rows: list[dict] = []
    figures: dict[str, object] = {}
    for shape in shapes[:2] if quick else shapes:
        out, inp = shape
        dense_w = torch.randn(out, inp, generator=gen)
        for sparsity in sparsities:
            if not any(_wanted(shape, sparsity, m, quick, shapes[0]) for m in batches):
                continue
            wb = dense_w * block_mask(out, inp, sparsity, BLOCK, gen)
            wu = dense_w * (torch.rand(out, inp, generator=gen) >= sparsity)
            ell = BlockELL.from_dense(wb, block=BLOCK)
            bsr = to_torch_bsr(wb, block=BLOCK)
            csr = to_torch_csr(wu)
            preps = {"block": dispatch.reusing_prepare(), "unstructured": dispatch.reusing_prepare()}
            for m in batches:
                if not _wanted(shape, sparsity, m, quick, shapes[0]):
                    continue
                x = torch.randn(m, inp, generator=gen)
                fns: dict[str, Callable[[], object]] = {
                    "dense": lambda x=x, w=wb: F.linear(x, w),
                    "dense_t": lambda x=x, w=wb: (w @ x.t()).t(),
                    "torch_bsr": lambda x=x, bsr=bsr: torch.sparse.mm(bsr, x.t()).t(),
                    "block_ell": lambda x=x, ell=ell: block_ell_linear(x, ell),
                }
                if m < 1024:  # torch CSR is 10x+ slower than dense at large batch; not worth minutes
                    fns["torch_csr"] = lambda x=x, csr=csr: torch.sparse.mm(csr, x.t()).t()
                picks = {}
                for name, w in (("block", wb), ("unstructured", wu)):
                    sel = dispatch.select_path(w, batch_size=m, cache_dir=cache_dir, prepare_fn=preps[name])
                    picks[name] = sel.path
                    key = _path_key(sel.path, name)
                    if sel.path != "dense" and key not in fns:
                        packed = preps[name](sel.path, w, sel.block)
                        fns[key] = lambda x=x, p=sel.path, packed=packed: dispatch.run(p, x, packed)
                repeats = 3 if m >= 1024 else (5 if m >= 256 else (9 if quick else 15))
                t = timed_group(fns, repeats)
                speed = {k: t["dense"] / v for k, v in t.items()}
                row = {
                    "shape": f"{out}x{inp}",
                    "sparsity": sparsity,
                    "batch": m,
                    "dense ms": t["dense"] * 1e3,
                    "dense_t x": speed["dense_t"],
                    "torch_csr x": speed.get("torch_csr", math.nan),
                    "torch_bsr x": speed["torch_bsr"],
                    "block_ell x": speed["block_ell"],
                }
                for name in ("block", "unstructured"):
                    path = picks[name]
                    row[f"dispatch {name}"] = path
                    row[f"dispatch {name} x"] = 1.0 if path == "dense" else speed[_path_key(path, name)]
                rows.append(row)
                tag = f"cpu.{out}x{inp}.s{round(sparsity * 100)}.m{m}"
                for k in ("torch_csr", "torch_bsr", "block_ell", "dense_t"):
                    if k in speed:
                        figures[f"{tag}.{k}"] = speed[k]
                for name in ("block", "unstructured"):
                    figures[f"{tag}.dispatch_{name}"] = row[f"dispatch {name} x"]
                    figures[f"{tag}.dispatch_{name}_path"] = picks[name]
                print(_progress(row), file=sys.stderr, flush=True)
    return rows, figures


def _wanted(shape: tuple[int, int], sparsity: float, m: int, quick: bool, main: tuple[int, int]) -> bool:
    """Which (shape, sparsity, batch) points run: the full grid on 4096² up to batch 256, fewer batches
    on the 3.5x larger shapes, and the compute-bound batches 1024 / 4096 at 50 and 90 % only."""
    if quick:
        if shape != main:
            return m == 1 and sparsity == 0.9
        return (m in (1, 16) and sparsity < 0.95) or (m == 256 and sparsity == 0.9)
    if shape == main:
        return m <= 256 or sparsity in (0.5, 0.9)
    return m in (1, 16, 256) or (m == 1024 and sparsity == 0.9)


def _path_key(path: str, structure: str) -> str:
    """The column of ``path`` in the timed group (the formats were built from the block weight)."""
    if path == "torch_csr" and structure == "unstructured":
        return "torch_csr"
    if path in ("torch_bsr", "block_ell", "dense") and structure == "block":
        return path
    return f"{path}@{structure}"


def _progress(row: dict) -> str:
    return (
        f"{row['shape']} s={row['sparsity']:.2f} M={row['batch']}: dense {row['dense ms']:.2f} ms, "
        f"block_ell {row['block_ell x']:.2f}x, bsr {row['torch_bsr x']:.2f}x, csr {row['torch_csr x']:.2f}x, "
        f"dispatch {row['dispatch block']} {row['dispatch block x']:.2f}x / "
        f"{row['dispatch unstructured']} {row['dispatch unstructured x']:.2f}x"
    )


def target_rows(rows: list[dict], figures: dict[str, object]) -> list[dict]:
    main = [r for r in rows if r["shape"] == "4096x4096" and r["batch"] <= 16]
    out = []
    for sparsity, target in TARGETS.items():
        sel = [r for r in main if r["sparsity"] == sparsity]
        if not sel:
            continue
        ours = min(r["block_ell x"] for r in sel)
        peer = min(r["torch_bsr x"] for r in sel)
        figures[f"cpu_block_ell_min_speedup_s{round(sparsity * 100)}"] = ours
        figures[f"cpu_torch_bsr_min_speedup_s{round(sparsity * 100)}"] = peer
        figures[f"target_cpu_block_s{round(sparsity * 100)}_met"] = ours >= target
        out.append(
            {
                "task": f"4096² block 32, {round(sparsity * 100)} %, batch <= 16 (min)",
                "pruneviz block_ell x": ours,
                "torch BSR x": peer,
                "ratio": ours / peer,
                "target": f">= {target}x",
            }
        )
    worst = min(min(r["dispatch block x"], r["dispatch unstructured x"]) for r in rows)
    figures["cpu_dispatch_min_speedup"] = worst
    figures["target_cpu_dispatch_met"] = worst >= 0.98
    out.append(
        {
            "task": f"dispatcher, all {len(rows)} CPU points x 2 structures (min)",
            "pruneviz block_ell x": worst,
            "torch BSR x": "n/a",
            "ratio": "n/a",
            "target": ">= 0.98x",
        }
    )
    return out


def demo_models(quick: bool, cache_dir: str) -> tuple[list[dict], list[dict], dict[str, object]]:
    """The demo zoo's CNN (untrained weights: latency does not depend on their values), pruned as the
    demo prunes (global magnitude and LAMP unstructured, channel L1), dense vs sparsified."""
    figures: dict[str, object] = {}
    base = build_model("cnn", input_shape=DEMO_SHAPE, num_classes=10, seed=0).eval()
    variants = {}
    for method, sparsity in (
        (("global_magnitude", 0.9),) if quick else (("global_magnitude", 0.9), ("lamp", 0.95))
    ):
        model = copy.deepcopy(base)
        prune_(model, method=method, sparsity=sparsity)
        variants[f"{method} {round(sparsity * 100)} %"] = model
    chan = copy.deepcopy(base)
    plan = prune_channels(base, sparsity=0.5, input_shape=DEMO_SHAPE).plan
    variants["channel_l1 50 % (masked)"] = mask_channels_(chan, plan, input_shape=DEMO_SHAPE)
    batches = (1, 256) if quick else (1, 16, 256)
    layer_rows: list[dict] = []
    e2e: list[dict] = []
    for name, model in variants.items():
        table = speedup_table(model, batch_sizes=batches, input_shape=DEMO_SHAPE, cache_dir=cache_dir)
        for r in table.to_dict("records"):
            layer_rows.append(
                {"model": name, **{k: r[k] for k in ("layer", "batch_size", "path", "structure")}}
            )
            layer_rows[-1].update(
                {
                    k: r[k]
                    for k in ("density", "theoretical_speedup", "measured_speedup", "dense_ms", "chosen_ms")
                }
            )
        fast = sparsify(model, batch_size=list(batches), input_shape=DEMO_SHAPE, cache_dir=cache_dir).eval()
        for b in batches:
            x = torch.randn(b, *DEMO_SHAPE)
            with torch.no_grad():
                assert torch.allclose(fast(x), model(x), atol=1e-4, rtol=1e-4), "sparsified model differs"
                t = interleaved_medians(
                    {"dense": lambda x=x, f=model: f(x), "sparse": lambda x=x, f=fast: f(x)}, 30
                )
            e2e.append(
                {
                    "model": name,
                    "batch": b,
                    "dense ms": t["dense"] * 1e3,
                    "sparsified ms": t["sparse"] * 1e3,
                    "speedup": t["dense"] / t["sparse"],
                }
            )
            figures[f"e2e.{name.split()[0]}.b{b}.speedup"] = t["dense"] / t["sparse"]
    figures["e2e_min_speedup"] = min(r["speedup"] for r in e2e)
    return layer_rows, e2e, figures


# ---------------------------------------------------------------------------------------- transformer

SEQ = 128
PRUNINGS = {  # name -> (method, sparsity, structure): layer-wise magnitude, as a user would prune
    "u50": ("magnitude", 0.5, "unstructured"),
    "u70": ("magnitude", 0.7, "unstructured"),
    "u90": ("magnitude", 0.9, "unstructured"),
    "nm24": ("magnitude", 0.5, "2:4"),
}
REGIMES = {
    # torch's default inference path: nn.TransformerEncoderLayer runs fused, never calling its Linears
    "fused": True,
    # the fast path off: the Linear modules are called on (batch, seq, hidden), as in BERT-style encoders
    "unfused": False,
}


def encoder(seed: int = 0) -> nn.TransformerEncoder:
    """6 layers, d_model 384, 6 heads, FFN 1536, batch first, random weights (latency does not depend
    on their values)."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(384, 6, 1536, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).eval()


@contextlib.contextmanager
def mha_fastpath(enabled: bool):
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def paired_medians(
    dense: nn.Module, sparse: nn.Module, x: torch.Tensor, rounds: int, runs: int = 5
) -> dict[str, float]:
    """Dense and sparsified forward passes interleaved (ABBA order) in ``runs`` runs of ``rounds``
    pairs, each after a warm-up pair. ``speedup`` is the median over the runs of each run's median
    per-pair ratio (a ratio of two adjacent calls, so a burst of load from other processes hits both);
    ``dense_ms`` and ``sparsified_ms`` are the medians of all calls."""
    dense_s: list[float] = []
    sparse_s: list[float] = []
    run_ratios: list[float] = []
    with torch.no_grad():
        for _ in range(runs):
            dense(x)
            sparse(x)
            ratios = []
            for r in range(rounds):
                pair = {}
                for name in ("dense", "sparse") if r % 2 == 0 else ("sparse", "dense"):
                    t0 = time.perf_counter()
                    (dense if name == "dense" else sparse)(x)
                    pair[name] = time.perf_counter() - t0
                dense_s.append(pair["dense"])
                sparse_s.append(pair["sparse"])
                ratios.append(pair["dense"] / pair["sparse"])
            run_ratios.append(statistics.median(ratios))
    return {
        "dense_ms": statistics.median(dense_s) * 1e3,
        "sparsified_ms": statistics.median(sparse_s) * 1e3,
        "speedup": statistics.median(run_ratios),
    }


def _summary(paths: dict[str, str]) -> str:
    """{layer name: path} as 'linear1=torch_csr x6, linear2=dense x6' (layers grouped by their role)."""
    counts = Counter((name.rsplit(".", 1)[-1], path) for name, path in paths.items())
    return ", ".join(f"{role}={path} x{n}" for (role, path), n in sorted(counts.items()))


def transformer_rows(quick: bool, cache_dir: str) -> tuple[list[dict], dict[str, object]]:
    """A pruned nn.TransformerEncoder end to end, dense vs sparsify at batch 1, 8, 32 and sequence 128,
    in torch's fused inference path and with it off; the paths each Linear runs, and the dispatcher's
    per-layer picks before sparsify's whole-model check."""
    batches = (1, 8) if quick else (1, 8, 32)
    prunings = {k: PRUNINGS[k] for k in (("u90", "nm24") if quick else PRUNINGS)}
    rounds = {1: 21, 8: 7, 32: 3}  # pairs per run; 5 runs
    base = encoder()
    rows: list[dict] = []
    figures: dict[str, object] = {}
    for pname, (method, sparsity, structure) in prunings.items():
        model = copy.deepcopy(base)
        prune_(model, method=method, sparsity=sparsity, structure=structure)
        for regime, fastpath in REGIMES.items():
            with mha_fastpath(fastpath):
                t0 = time.perf_counter()
                fast = sparsify(
                    model, batch_size=list(batches), input_shape=(SEQ, 384), cache_dir=cache_dir
                ).eval()
                sparsify_s = time.perf_counter() - t0
                table = speedup_table(model, batch_sizes=batches, input_shape=(SEQ, 384), cache_dir=cache_dir)
                for b in batches:
                    x = torch.randn(b, SEQ, 384)
                    with torch.no_grad():
                        assert torch.allclose(fast(x), model(x), atol=1e-4, rtol=1e-4), "sparsified differs"
                    t = paired_medians(model, fast, x, rounds[b])
                    picks = {r["layer"]: r["path"] for r in table.to_dict("records") if r["batch_size"] == b}
                    runs = {}
                    for name in picks:
                        m = fast.get_submodule(name)
                        runs[name] = (
                            m.paths[batch_bucket(b * SEQ)] if isinstance(m, SparseLinear) else "dense"
                        )
                    row = {
                        "regime": regime,
                        "pruning": pname,
                        "batch": b,
                        "dense ms": t["dense_ms"],
                        "sparsified ms": t["sparsified_ms"],
                        "speedup": t["speedup"],
                        "paths run": _summary(runs) or "no Linear called (fused)",
                        "layer picks": _summary(picks) or "-",
                    }
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
                    key = f"transformer.{regime}.{pname}.b{b}"
                    figures[f"{key}.speedup"] = t["speedup"]
                    figures[f"{key}.dense_ms"] = t["dense_ms"]
                    figures[f"{key}.sparsified_ms"] = t["sparsified_ms"]
                    figures[f"{key}.paths"] = row["paths run"]
                    figures[f"{key}.layer_picks"] = row["layer picks"]
                figures[f"transformer.{regime}.{pname}.sparsify_s"] = sparsify_s
    for regime in REGIMES:
        figures[f"transformer.{regime}_min_speedup"] = min(
            r["speedup"] for r in rows if r["regime"] == regime
        )
    figures["transformer_min_speedup"] = worst = min(r["speedup"] for r in rows)
    figures["target_transformer_met"] = worst >= 0.98
    return rows, figures


# ------------------------------------------------------------------------------------------------- GPU


def cuda_median(fns: dict[str, Callable[[], object]], repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median seconds per callable with CUDA events, interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[k].append(start.elapsed_time(end) / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def gpu_rows(quick: bool, cache_dir: str) -> tuple[list[dict], dict[str, object]]:
    from pruneviz.kernels import triton_ops
    from pruneviz.kernels.formats import Bitmap, BlockSparse, NMSparse

    dev, dt = torch.device("cuda"), torch.float16
    gen = torch.Generator(device=dev).manual_seed(0)
    rows: list[dict] = []
    figures: dict[str, object] = {}
    shapes = [(4096, 4096)] if quick else [(4096, 4096), (4096, 14336), (14336, 4096)]
    decode = (1, 16) if quick else (1, 2, 4, 8, 16)

    def record(task: str, key: str, fns: dict, ours: str, peer: str, sel: dispatch.Selection, **kw) -> None:
        t = cuda_median(fns, **kw)
        speed = {k: t["dense"] / v for k, v in t.items()}
        row = {
            "task": task,
            "cuBLAS ms": t["dense"] * 1e3,
            "pruneviz kernel": ours,
            "pruneviz x": speed[ours],
            "peer": peer if peer in t else "n/a",
            "peer x": speed.get(peer, math.nan),
            "dispatcher path": sel.path,
            "dispatcher x": speed["dispatcher"],
        }
        rows.append(row)
        for k, v in speed.items():
            if k != "dense":
                figures[f"{key}.{k}"] = v
        figures[f"{key}.dispatcher_path"] = sel.path
        print(row, file=sys.stderr, flush=True)

    for out, inp in shapes:
        w = torch.randn(out, inp, device=dev, dtype=dt, generator=gen)
        groups = w.reshape(out, inp // 4, 4)
        top2 = groups.abs().topk(2, dim=-1).indices
        w24 = torch.zeros_like(groups).scatter_(-1, top2, groups.gather(-1, top2)).reshape(out, inp)
        nm = NMSparse.from_dense(w24, n=2, m=4)
        semi = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                semi = torch.sparse.to_sparse_semi_structured(w24)
            except Exception as exc:  # not every GPU / build has it
                print(f"semi-structured unavailable: {exc}", file=sys.stderr)
        w70 = w * (torch.rand(out, inp, device=dev, generator=gen) >= 0.7)
        bm = Bitmap.from_dense(w70)
        for m in decode:
            x = torch.randn(m, inp, device=dev, dtype=dt, generator=gen)
            fns = {
                "dense": lambda x=x, w=w24: F.linear(x, w),
                "triton_nm": lambda x=x, nm=nm: triton_ops.nm_linear(x, nm),
            }
            if semi is not None:
                fns["semi_structured"] = lambda x=x, semi=semi: F.linear(x, semi)
            sel = dispatch.select_path(w24, batch_size=m, cache_dir=cache_dir)
            fns["dispatcher"] = _gpu_dispatch_fn(sel, w24, x)
            key = f"gpu.nm.{out}x{inp}.m{m}"
            record(f"2:4 decode {out}x{inp} M={m}", key, fns, "triton_nm", "semi_structured", sel)
            fns = {
                "dense": lambda x=x, w=w70: F.linear(x, w),
                "triton_bitmap": lambda x=x, bm=bm: triton_ops.bitmap_linear(x, bm),
            }
            sel = dispatch.select_path(w70, batch_size=m, cache_dir=cache_dir)
            fns["dispatcher"] = _gpu_dispatch_fn(sel, w70, x)
            key = f"gpu.bitmap.{out}x{inp}.m{m}"
            record(f"unstructured 70 % decode {out}x{inp} M={m}", key, fns, "triton_bitmap", "-", sel)

    n, m = 8192, 4096
    peer = _torch_bsr_addmm()
    x = torch.randn(m, n, device=dev, dtype=dt, generator=gen)
    base = torch.randn(n, n, device=dev, dtype=dt, generator=gen)
    for sparsity in (0.5, 0.8, 0.9):
        keep = torch.rand(n // 64, n // 64, device=dev, generator=gen) >= sparsity
        wb = base * keep.repeat_interleave(64, 0).repeat_interleave(64, 1)
        bs = BlockSparse.from_dense(wb, block=64)
        fns = {"dense": lambda w=wb: F.linear(x, w), "triton_bsr": lambda bs=bs: triton_ops.bsr_linear(x, bs)}
        if peer is not None:
            tbsr = wb.to_sparse_bsr((64, 64))
            xt = x.t().contiguous()
            try:
                peer(tbsr, xt)
                fns["torch_bsr_dense_addmm"] = lambda tbsr=tbsr, xt=xt, f=peer: f(tbsr, xt)
            except Exception as exc:  # torch's Triton BSR needs a CUDA build with triton
                print(f"torch bsr_dense_addmm failed, left out: {type(exc).__name__}: {exc}", file=sys.stderr)
                peer = None
        sel = dispatch.select_path(wb, batch_size=m, cache_dir=cache_dir)
        fns["dispatcher"] = _gpu_dispatch_fn(sel, wb, x)
        key = f"gpu.bsr.s{round(sparsity * 100)}"
        task = f"BSR 64, 8192², M=4096, {round(sparsity * 100)} %"
        record(task, key, fns, "triton_bsr", "torch_bsr_dense_addmm", sel, repeats=10 if quick else 20)
        if f"{key}.torch_bsr_dense_addmm" in figures:
            figures[f"{key}.over_torch"] = (
                figures[f"{key}.triton_bsr"] / figures[f"{key}.torch_bsr_dense_addmm"]
            )
    _gpu_targets(figures)
    return rows, figures


def _gpu_targets(figures: dict[str, object]) -> None:
    def worst(prefix: str, suffix: str) -> float:
        values = [float(v) for k, v in figures.items() if k.startswith(prefix) and k.endswith(suffix)]
        return min(values) if values else math.nan

    figures["gpu_nm_decode_min_speedup"] = nm = worst("gpu.nm.", ".triton_nm")
    figures["target_gpu_nm_decode_met"] = nm >= 1.3
    figures["gpu_bitmap_decode_min_speedup"] = bm = worst("gpu.bitmap.", ".triton_bitmap")
    figures["target_gpu_bitmap_decode_met"] = bm >= 1.8
    for s, target in ((50, 1.6), (80, 3.2), (90, 6.0)):
        value = float(figures.get(f"gpu.bsr.s{s}.triton_bsr", math.nan))
        figures[f"target_gpu_bsr_s{s}_met"] = value >= target
    over = [float(v) for k, v in figures.items() if k.endswith(".over_torch")]
    figures["target_gpu_bsr_over_torch_met"] = bool(over) and min(over) >= 1.2
    dispatch_all = [
        float(v) for k, v in figures.items() if k.startswith("gpu.") and k.endswith(".dispatcher")
    ]
    figures["gpu_dispatch_min_speedup"] = min(dispatch_all) if dispatch_all else math.nan
    figures["target_gpu_dispatch_met"] = bool(dispatch_all) and min(dispatch_all) >= 0.98


def _gpu_dispatch_fn(sel: dispatch.Selection, w: torch.Tensor, x: torch.Tensor) -> Callable[[], object]:
    packed = dispatch.prepare(sel.path, w, block=sel.block)
    return lambda: dispatch.run(sel.path, x, packed)


def _torch_bsr_addmm() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    try:
        from torch.sparse import _triton_ops as tops
    except Exception:
        return None
    fn = getattr(tops, "bsr_dense_mm", None)
    if fn is not None:
        return fn
    addmm = getattr(tops, "bsr_dense_addmm", None)
    if addmm is None:
        return None

    def mm(bsr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        out = dense.new_empty(bsr.shape[0], dense.shape[1])
        return addmm(out, bsr, dense, beta=0, out=out)

    return mm


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], sections=SECTIONS)
    warnings.simplefilter("ignore", UserWarning)  # torch's "sparse CSR/BSR support is in beta"
    start = time.perf_counter()
    figures: dict[str, object] = {}
    wanted = SECTIONS if args.only is None else (args.only,)
    with tempfile.TemporaryDirectory() as cache_dir:  # a cold dispatcher cache: it measures every layer
        if torch.cuda.is_available() and "matmul" in wanted:
            rows, gpu_figures = gpu_rows(args.quick, cache_dir)
            figures.update(gpu_figures)
            print(f"## Sparse kernels on {torch.cuda.get_device_name(0)}, fp16 (speedup vs cuBLAS)\n")
            print(markdown(rows))
            wanted = ()
        if "matmul" in wanted:
            rows, cpu_figures = cpu_rows(args.quick, cache_dir)
            figures.update(cpu_figures)
            targets = target_rows(rows, figures)
            print(f"## Sparse matmul on CPU, fp32, {torch.get_num_threads()} threads (speedup vs F.linear)\n")
            print(markdown(rows))
            print("\n## Targets (block-sparse: pruneviz block_ell vs torch BSR)\n")
            print(markdown(targets))
            figures["cpu_rows_s"] = time.perf_counter() - start
        if "demo" in wanted:
            layers, e2e, demo_figures = demo_models(args.quick, cache_dir)
            figures.update(demo_figures)
            print("\n## Demo CNN: the dispatcher per layer\n")
            print(markdown(layers))
            print("\n## Demo CNN end to end (dense vs sparsify)\n")
            print(markdown(e2e))
        if "transformer" in wanted:
            t0 = time.perf_counter()
            load = os.getloadavg()[0]  # the machine is shared: the load beside the figures
            rows, tr_figures = transformer_rows(args.quick, cache_dir)
            figures.update(tr_figures)
            figures["transformer.wall_s"] = time.perf_counter() - t0
            figures["transformer.load_avg_start"] = load
            figures["transformer.load_avg_end"] = os.getloadavg()[0]
            print(
                f"\n## Transformer encoder (6 x 384, 6 heads, FFN 1536), sequence {SEQ}, end to end "
                "(dense vs sparsify; speedup = median of paired ratios)\n"
            )
            print(markdown(rows))
    wall = time.perf_counter() - start
    print(f"\nwall time {wall:.0f} s")
    if args.only is None:
        figures["wall_s"] = wall
    write_json(args.json, figures, args.quick, section=args.only)


if __name__ == "__main__":
    main()
