"""Sparse weight formats of pruneviz.kernels: exact round trips, layouts against references, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pruneviz.exceptions import ValidationError
from pruneviz.kernels.formats import Bitmap, BlockSparse, NMSparse, from_mask, pack_indices
from pruneviz.prune.allocation import nm_mask


def sparse(shape, density, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=dtype)
    return w * (torch.rand(shape, generator=g) < density)


def block_sparse(shape, block, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    bo, bi = block
    keep = torch.rand(shape[0] // bo, shape[1] // bi, generator=g) < density
    full = keep.repeat_interleave(bo, 0).repeat_interleave(bi, 1)
    return torch.randn(shape, generator=g) * full


# --- round trips -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "block"), [((96, 144), (32, 48)), ((48, 80), (16, 16)), ((128, 64), (128, 64))]
)
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_bsr_round_trip_exact(shape, block, density):
    w = block_sparse(shape, block, density)
    bsr = BlockSparse.from_dense(w, block=block)
    assert bsr.to_dense().equal(w)
    blocks = (shape[0] // block[0]) * (shape[1] // block[1])
    assert bsr.values.shape == (bsr.nnz_blocks, *block)
    assert bsr.crow.dtype == bsr.col.dtype == torch.int32
    assert bsr.crow.shape == (shape[0] // block[0] + 1,)
    kept = (w.reshape(shape[0] // block[0], block[0], -1, block[1]) != 0).any(dim=(1, 3))
    assert bsr.nnz_blocks == int(kept.sum())
    assert bsr.density == pytest.approx(int(kept.sum()) / blocks)


def test_bsr_keeps_block_with_one_nonzero_and_counts_density():
    w = torch.zeros(64, 64)
    w[40, 3] = 2.0  # block row 1, block column 0 with 32x32 blocks
    bsr = BlockSparse.from_dense(w, block=32)
    assert bsr.crow.tolist() == [0, 0, 1]
    assert bsr.col.tolist() == [0]
    assert bsr.density == 0.25
    assert bsr.to_dense().equal(w)


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:Sparse BSR tensor support is in beta")
def test_bsr_layout_matches_torch_sparse_bsr():
    w = block_sparse((96, 128), (32, 64), 0.5, seed=3)
    ours = BlockSparse.from_dense(w, block=(32, 64))
    ref = w.to_sparse_bsr((32, 64))
    assert ours.crow.tolist() == ref.crow_indices().tolist()
    assert ours.col.tolist() == ref.col_indices().tolist()
    assert ours.values.equal(ref.values())


@pytest.mark.parametrize(("n", "m", "shape"), [(2, 4, (5, 12)), (4, 8, (7, 24)), (1, 4, (3, 4))])
def test_nm_round_trip_exact(n, m, shape):
    w = torch.randn(shape) * nm_mask(torch.rand(shape), n, m)
    nm = NMSparse.from_dense(w, n=n, m=m)
    assert nm.values.shape == nm.indices.shape == (shape[0], shape[1] * n // m)
    assert nm.indices.dtype == torch.uint8
    assert nm.to_dense().equal(w)
    assert nm.density == n / m


@pytest.mark.reference
def test_nm_exact_small_case():
    w = torch.tensor([[0.0, 1.5, 0.0, -2.0, 3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0]])
    nm = NMSparse.from_dense(w)
    # values in column order; a group with fewer than 2 non-zeros is padded with a stored zero
    assert nm.values.tolist() == [[1.5, -2.0, 3.0, 0.0], [0.0, 0.0, 1.0, 2.0]]
    assert nm.indices.tolist() == [[1, 3, 0, 1], [0, 1, 0, 1]]


@pytest.mark.reference
@pytest.mark.parametrize(("n", "m", "bits"), [(2, 4, 2), (1, 8, 4), (1, 2, 1), (4, 16, 4), (1, 32, 8)])
def test_nm_meta_packs_positions(n, m, bits):
    w = torch.randn(3, 5 * m) * nm_mask(torch.rand(3, 5 * m), n, m)
    nm = NMSparse.from_dense(w, n=n, m=m)
    assert nm.meta_bits == bits and nm.meta.dtype == torch.int32
    per_word = 32 // bits
    k = nm.indices.shape[1]
    assert nm.meta.shape == (3, -(-k // per_word))  # each row starts a new word
    words = nm.meta.numpy().astype(np.int64) & 0xFFFFFFFF
    for r in range(3):
        for e in range(k):
            got = (words[r, e // per_word] >> ((e % per_word) * bits)) & (2**bits - 1)
            assert got == nm.indices[r, e].item()
    assert pack_indices(nm.indices, m).equal(nm.meta)
    assert nm.to("cpu").meta.equal(nm.meta)


@pytest.mark.parametrize("shape", [(37, 45), (3, 32), (1, 1), (5, 100)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_bitmap_round_trip_exact(shape, density):
    w = sparse(shape, density, seed=shape[1])
    if density == 1.0:
        w = torch.randn(shape).abs() + 0.1
    bm = Bitmap.from_dense(w)
    assert bm.to_dense().equal(w)
    assert bm.keep().equal(w != 0)
    assert bm.bits.shape == (shape[0], -(-shape[1] // 32))
    assert bm.nnz == int((w != 0).sum())
    assert bm.density == pytest.approx(bm.nnz / w.numel())


@pytest.mark.reference
def test_bitmap_bits_and_offsets_match_numpy():
    w = sparse((9, 70), 0.4, seed=7)
    bm = Bitmap.from_dense(w)
    keep = (w != 0).numpy()
    padded = np.zeros((9, 96), dtype=bool)
    padded[:, :70] = keep
    ref = np.packbits(padded, axis=1, bitorder="little").view("<u4").view(np.int32)
    assert np.array_equal(bm.bits.numpy(), ref)
    assert np.array_equal(bm.values.numpy(), w.numpy()[keep])  # row-major kept values
    row_counts = keep.sum(1)
    assert bm.row_ptr.tolist() == [0, *np.cumsum(row_counts).tolist()]
    for r in range(9):
        for word in range(3):
            expected = bm.row_ptr[r].item() + keep[r, : 32 * word].sum()
            assert bm.word_ptr[r, word].item() == expected


def test_bitmap_all_kept_sets_every_bit():
    bm = Bitmap.from_dense(torch.ones(2, 64))
    assert bm.bits.tolist() == [[-1, -1], [-1, -1]]  # 0xFFFFFFFF as int32
    assert bm.density == 1.0


def test_all_zero_weight_stores_nothing():
    w = torch.zeros(32, 64)
    bsr = BlockSparse.from_dense(w, block=16)
    assert bsr.nnz_blocks == 0 and bsr.density == 0.0 and bsr.crow.tolist() == [0, 0, 0]
    assert bsr.to_dense().equal(w)
    bm = Bitmap.from_dense(w)
    assert bm.nnz == 0 and bm.to_dense().equal(w)
    nm = NMSparse.from_dense(w)
    assert nm.to_dense().equal(w) and not bool(nm.values.any())


# --- convolution weights -------------------------------------------------------------------------------


def test_conv_weight_bsr_and_bitmap_use_unfold_columns():
    conv = torch.nn.Conv2d(4, 16, 3, bias=False)
    w = conv.weight.detach() * (torch.rand(16, 4, 3, 3) < 0.5)
    x = torch.randn(2, 4, 6, 6)
    cols = torch.nn.functional.unfold(x, 3).transpose(1, 2)  # (batch, positions, in * kh * kw)
    ref = torch.nn.functional.conv2d(x, w).flatten(2).transpose(1, 2)
    bsr = BlockSparse.from_dense(w, block=(16, 36))
    bm = Bitmap.from_dense(w)
    for fmt in (bsr, bm):
        assert fmt.shape == (16, 36)
        assert fmt.to_weight().equal(w)
        torch.testing.assert_close(cols @ fmt.to_dense().T, ref, rtol=1e-5, atol=1e-5)


def test_conv_weight_nm_groups_run_along_input_channels():
    w = torch.randn(8, 8, 3, 3)
    mask = nm_mask(w.abs(), 2, 4)  # groups of 4 input channels at each kernel position
    nm = from_mask(w, mask, "nm")
    assert nm.shape == (8, 72)
    assert nm.to_weight().equal(w * mask)
    # the matrix has the input channel fastest: (out, kh, kw, in)
    assert nm.to_dense().equal((w * mask).permute(0, 2, 3, 1).reshape(8, 72))


# --- from_mask and to ------------------------------------------------------------------------------------


def test_from_mask_equals_from_dense_of_masked_weight_and_ignores_pruned_nan():
    w = torch.randn(64, 96)
    mask = torch.rand(64, 96) < 0.3
    w[~mask] = float("nan")  # whatever sits under a pruned weight must not leak
    clean = torch.where(mask, w, 0.0)
    assert from_mask(w, mask, "bitmap").to_dense().equal(clean)
    assert from_mask(w, mask, "bsr", block=32).to_dense().equal(clean)
    nm_keep = nm_mask(torch.rand(64, 96), 2, 4)
    assert (
        from_mask(w.nan_to_num(), nm_keep, "nm").to_dense().equal(torch.where(nm_keep, w.nan_to_num(), 0.0))
    )


def test_to_changes_value_dtype_only():
    w = block_sparse((64, 64), (32, 32), 0.5)
    for fmt in (
        BlockSparse.from_dense(w, block=32),
        NMSparse.from_dense(w * nm_mask(w.abs(), 2, 4)),
        Bitmap.from_dense(w),
    ):
        half = fmt.to(dtype=torch.float16)
        assert half.values.dtype == torch.float16
        assert type(half) is type(fmt)
        torch.testing.assert_close(half.to_dense().float(), fmt.to_dense(), rtol=1e-3, atol=1e-3)
        for name in ("crow", "col", "indices", "bits", "row_ptr", "word_ptr"):
            if hasattr(fmt, name):
                assert getattr(half, name).dtype == getattr(fmt, name).dtype


# --- bad input ----------------------------------------------------------------------------------------------


def test_nm_weight_not_two_four_names_count_and_place():
    w = torch.zeros(3, 8)
    w[2, 4:7] = 1.0  # 3 non-zeros in row 2, group 1
    with pytest.raises(
        ValidationError,
        match=r"'weight' parameter of NMSparse.from_dense must be 2:4 "
        r"sparse.*Got 1 groups with more than 2 non-zeros; the first is row 2, columns 4..7, "
        r"with 3.*Fix: prune with structure='2:4'",
    ):
        NMSparse.from_dense(w)


def test_nm_mask_not_two_four_is_refused_even_if_weights_are():
    mask = torch.ones(4, 8, dtype=torch.bool)
    with pytest.raises(ValidationError, match=r"'mask' parameter of from_mask must be 2:4 sparse.*8 groups"):
        from_mask(torch.zeros(4, 8), mask, "nm")


def test_nm_input_not_divisible_by_m():
    with pytest.raises(ValidationError, match=r"input dimension divisible by m=4.*10 inputs"):
        NMSparse.from_dense(torch.zeros(2, 10))


@pytest.mark.parametrize(("n", "m", "param"), [(4, 4, "n"), (0, 4, "n"), (1, 1, "m"), (2.0, 4, "n")])
def test_nm_bad_n_m(n, m, param):
    with pytest.raises(
        ValidationError, match=rf"'{param}' parameter of NMSparse.from_dense must be an integer"
    ):
        NMSparse.from_dense(torch.zeros(2, 8), n=n, m=m)


def test_block_not_dividing_weight():
    with pytest.raises(
        ValidationError,
        match=r"'block' parameter of BlockSparse.from_dense must be a block "
        r"size dividing the weight matrix \(40, 64\).*Got 32",
    ):
        BlockSparse.from_dense(torch.randn(40, 64), block=32)
    with pytest.raises(ValidationError, match=r"dividing the weight matrix \(16, 36\)"):
        BlockSparse.from_dense(torch.randn(16, 4, 3, 3), block=(16, 32))


@pytest.mark.parametrize("block", [8, 256, (16, 8), (16, 16, 16), "32", True])
def test_block_outside_range(block):
    with pytest.raises(ValidationError, match=r"'block' parameter .* each in \[16, 128\]"):
        BlockSparse.from_dense(torch.randn(256, 256), block=block)


def test_from_mask_bad_inputs():
    w = torch.randn(32, 32)
    keep = torch.ones(32, 32, dtype=torch.bool)
    with pytest.raises(
        ValidationError, match=r"'fmt' parameter of from_mask must be one of.*did you mean 'bsr'"
    ):
        from_mask(w, keep, "bsrr")
    with pytest.raises(
        ValidationError,
        match=r"'mask' parameter of from_mask must be a bool tensor of the "
        r"weight's shape \(32, 32\). Got dtype torch.float32",
    ):
        from_mask(w, keep.float(), "bitmap")
    with pytest.raises(ValidationError, match=r"'mask' .*Got dtype torch.bool, shape \(32, 16\)"):
        from_mask(w, keep[:, :16], "bitmap")
    with pytest.raises(ValidationError, match=r"'block' parameter of from_mask must be given for fmt='bsr'"):
        from_mask(w, keep, "bsr")
    with pytest.raises(
        ValidationError,
        match=r"'block' parameter of from_mask must be one of the options of "
        r"the 'bitmap' format",
    ):
        from_mask(w, keep, "bitmap", block=16)


@pytest.mark.parametrize(
    ("weight", "match"),
    [
        ([[1.0]], r"must be a torch.Tensor. Got list"),
        (torch.ones(8), r"non-empty weight of shape \(out, in\).*Got shape \(8,\)"),
        (torch.ones(0, 8), r"Got shape \(0, 8\)"),
        (torch.ones(4, 8, dtype=torch.int64), r"floating-point tensor. Got dtype torch.int64"),
    ],
)
def test_bad_weight(weight, match):
    with pytest.raises(ValidationError, match=match):
        Bitmap.from_dense(weight)
