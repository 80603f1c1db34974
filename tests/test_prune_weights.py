"""Pruning every weight a user has: Linear, Conv1d/2d/3d (grouped, depthwise), ConvTranspose, GPT-2
Conv1D, MultiheadAttention projections, and embeddings by opt-in."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz.analysis.curvature import HessianOperator
from pruneviz.analysis.perturb import parameter_masks
from pruneviz.data import Dataset
from pruneviz.exceptions import ValidationError
from pruneviz.prune import (
    Masks,
    compute_masks,
    count_macs,
    layer_input_blocks,
    layer_inputs,
    prunable_layers,
    prunable_weights,
    prune_,
    score,
    sparsity_by_layer,
)


class Conv1D(nn.Module):
    """GPT-2's Conv1D as transformers defines it: weight (in, out), forward ``x @ weight + bias``."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.reshape(-1, x.shape[-1]) @ self.weight + self.bias
        return out.reshape(*x.shape[:-1], self.nf)


class GPT2Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_fc = Conv1D(16, 8)
        self.c_proj = Conv1D(8, 16)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c_proj(torch.relu(self.c_fc(x))).mean(1))


class SelfAttention(nn.Module):
    """Tokens (T, 8) -> self-attention called with keyword arguments -> mean -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(query=x, key=x, value=x, need_weights=False)
        return self.head(out.mean(1))


class CrossAttention(nn.Module):
    """kdim and vdim differ from embed_dim: separate q/k/v projection weights."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(8, 4)
        self.attn = nn.MultiheadAttention(4, 2, kdim=8, vdim=6, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(self.query(x), x, x[..., :6])
        return self.head(out.mean(1))


class Embedder(nn.Module):
    def __init__(self, with_head: bool = True) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 3) if with_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.emb(x.long().clamp(0, 9)).mean(1)
        return self.head(e) if self.head is not None else e[:, :3]


def build(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)), (8,)
    if kind == "conv1d":
        return nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6, 3)), (
            2,
            6,
        )
    if kind == "conv3d":
        model = nn.Sequential(
            nn.Conv3d(2, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(8, 4, 2, stride=2),
            nn.Flatten(),
            nn.Linear(32, 3),
        )
        return model, (2, 4, 4, 4)
    if kind == "grouped":
        model = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
            nn.Flatten(),
            nn.Linear(8 * 16, 3),
        )
        return model, (4, 4, 4)
    if kind == "transpose":
        model = nn.Sequential(
            nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 3),
        )
        return model, (4, 4, 4)
    if kind == "transpose3d":
        return nn.Sequential(
            nn.ConvTranspose3d(2, 4, 2, stride=2, groups=2), nn.Flatten(), nn.Linear(4 * 4 * 4 * 4, 3)
        ), (2, 2, 2, 2)
    if kind == "gpt2":
        return GPT2Mlp(), (5, 8)
    if kind == "self_attention":
        return SelfAttention(), (5, 8)
    if kind == "cross_attention":
        return CrossAttention(), (5, 8)
    raise AssertionError(kind)


def make_data(shape: tuple[int, ...], n: int = 24, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 3, n))


KINDS = [
    "linear",
    "conv1d",
    "conv3d",
    "grouped",
    "transpose",
    "transpose3d",
    "gpt2",
    "self_attention",
    "cross_attention",
]
METHODS = ["magnitude", "random", "lamp", "snip", "wanda", "sparsegpt"]
EXPECTED_KEYS = {
    "linear": ["1", "3"],
    "conv1d": ["0", "3"],
    "conv3d": ["0", "2", "4"],
    "grouped": ["0", "2", "4"],
    "transpose": ["0", "3"],
    "transpose3d": ["0", "2"],
    "gpt2": ["c_fc", "c_proj", "head"],
    "self_attention": ["attn.in_proj_weight", "attn.out_proj", "head"],
    "cross_attention": [
        "query",
        "attn.q_proj_weight",
        "attn.k_proj_weight",
        "attn.v_proj_weight",
        "attn.out_proj",
        "head",
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_weight_is_found_with_stable_keys(kind):
    model, _ = build(kind)
    weights = prunable_weights(model)
    assert list(weights) == EXPECTED_KEYS[kind]
    params = dict(model.named_parameters())
    for key, w in weights.items():
        # the key names the module for a module's weight, the parameter otherwise
        assert params[w.parameter_name] is w.weight
        assert w.parameter_name == (f"{key}.weight" if w.param_name == "weight" else key)
        # (out, in) orientation is a permutation of the entries, inverted exactly
        t = torch.arange(w.weight.numel()).reshape(w.shape)
        assert torch.equal(w.from_matrix(w.matrix(t)), t)
        out = getattr(
            w.module, "out_channels", getattr(w.module, "out_features", getattr(w.module, "nf", None))
        )
        assert w.matrix(t).shape[0] == (out if out is not None else w.shape[0])
    assert list(prunable_layers(model)) == list(weights)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_pruning_every_layer_type_at_half_sparsity(kind, method):
    model, shape = build(kind)
    data = make_data(shape)
    before = copy.deepcopy(model.state_dict())
    masks = compute_masks(model, method=method, sparsity=0.5, data=data)
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )  # compute_masks changes nothing
    weights = prunable_weights(model)
    assert list(masks) == list(weights)
    total = sum(w.weight.numel() for w in weights.values())
    if method in ("lamp", "snip"):  # global: exact over the model
        assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    elif method == "wanda":  # per output row of the (out, in) matrix
        for key, w in weights.items():
            assert bool(
                (w.matrix(masks[key]).sum(1) == w.matrix().shape[1] - round(0.5 * w.matrix().shape[1])).all()
            )
    elif method != "sparsegpt":  # uniform: exact per layer
        for key, w in weights.items():
            assert int((~masks[key]).sum()) == round(0.5 * w.weight.numel())
    assert masks.sparsity() == pytest.approx(0.5, abs=0.02)

    pruned = copy.deepcopy(model)
    masks = prune_(pruned, method=method, sparsity=0.5, data=data)
    for key, w in prunable_weights(pruned).items():
        assert bool((w.weight[~masks[key]] == 0).all())
    # a training step with keep_zero holds them at zero
    keep = masks.keep_zero(pruned)
    opt = torch.optim.SGD(pruned.parameters(), lr=0.5)
    F.cross_entropy(pruned(data.x), data.y).backward()
    opt.step()
    keep(pruned)
    for key, w in prunable_weights(pruned).items():
        assert bool((w.weight[~masks[key]] == 0).all())
        assert bool((w.weight[masks[key]] != 0).any())
    # masks round-trip through flat tensors, and reapply to a fresh copy
    back = Masks.from_tensors(masks.to_tensors())
    assert list(back) == list(masks) and all(torch.equal(back[k], masks[k]) for k in masks)
    assert Masks.from_model(pruned).sparsity() >= masks.sparsity()
    fresh = back.apply_(copy.deepcopy(model))
    for key, w in prunable_weights(fresh).items():
        assert bool((w.weight[~masks[key]] == 0).all())


def test_old_style_models_keep_their_keys_and_results():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    masks = compute_masks(model, method="magnitude", sparsity=0.5)
    assert list(masks) == ["0", "3"]
    assert set(masks.to_tensors()) == {"0.weight", "3.weight"}
    for key in masks:  # layer-wise magnitude is the lowest half of |w| per layer, as before
        w = dict(model.named_modules())[key].weight.detach().abs().flatten()
        expected = torch.ones_like(w, dtype=torch.bool)
        expected[torch.argsort(w, stable=True)[: round(0.5 * w.numel())]] = False
        assert torch.equal(masks[key].flatten(), expected)


# -- reference checks of input columns ----------------------------------------------------------


def test_wanda_on_gpt2_conv1d_is_weight_times_input_norm_on_the_transposed_weight():
    model, shape = build("gpt2")
    data = make_data(shape)
    got = score(model, prunable_weights(model), "wanda", data=data)
    x = data.x.double().reshape(-1, 8)  # c_fc's inputs, one row per token
    norms = x.pow(2).sum(0).sqrt()  # ||X_j|| over all tokens
    w = model.c_fc.weight.detach().double()  # (in, out)
    expected = w.abs() * norms[:, None]  # entry (j, i) multiplies input j
    torch.testing.assert_close(got["c_fc"].double(), expected, rtol=1e-5, atol=1e-6)
    # per output (a column of the stored weight) half of the inputs survive
    masks = compute_masks(model, method="wanda", sparsity=0.5, data=data)
    assert bool((masks["c_fc"].sum(0) == 4).all())
    ref = torch.zeros_like(masks["c_fc"])
    for i in range(16):
        ref[torch.argsort(expected[:, i], stable=True)[4:], i] = True
    assert torch.equal(masks["c_fc"], ref)


def test_two_four_on_gpt2_conv1d_groups_along_the_input_dimension():
    model, _ = build("gpt2")
    masks = compute_masks(model, method="magnitude", structure="2:4", exclude=["head"])
    keep = masks["c_fc"]  # stored (in=8, out=16)
    assert bool((keep.T.reshape(16, 2, 4).sum(-1) == 2).all())
    w = model.c_fc.weight.detach().abs().T.reshape(16, 2, 4)
    kept = keep.T.reshape(16, 2, 4)
    assert bool((w[kept].reshape(16, 2, 2).min(-1).values >= w[~kept].reshape(16, 2, 2).max(-1).values).all())


def test_nm_and_blocks_on_conv_transpose_use_out_in_orientation():
    model, _ = build("transpose")
    masks = compute_masks(model, method="magnitude", structure="2:4")
    w = prunable_weights(model)["0"]
    oriented = w.oriented(masks["0"])  # (out, in, kh, kw): groups of 4 input channels at each position
    assert bool((oriented.movedim(1, -1).reshape(4, -1, 4).sum(-1) == 2).all())
    blocks = compute_masks(model, method="magnitude", sparsity=0.5, structure="block:2x4", exclude=["3"])
    mat = w.matrix(blocks["0"]).reshape(2, 2, 9, 4)
    assert bool((mat.all(dim=(1, 3)) | (~mat).all(dim=(1, 3))).all())


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv3d(2, 4, 3, padding=1),
        nn.Conv3d(2, 4, (3, 2, 1), stride=(2, 1, 1), dilation=(1, 2, 1), padding=(1, 0, 2)),
        nn.Conv3d(4, 6, 2, groups=2, padding="same", padding_mode="circular"),
        nn.Conv2d(2, 4, 3, padding=2, padding_mode="reflect"),
    ],
)
def test_conv_columns_reproduce_the_convolution(conv):
    conv = conv.double()
    d = conv.weight.ndim - 2
    x = torch.randn(3, conv.in_channels, *(5,) * d, dtype=torch.float64)
    model = nn.Sequential(conv)
    data = Dataset(x.numpy(), [0, 1, 0])
    data.x = data.x.double()
    blocks = layer_input_blocks(model, {"0": conv}, data)["0"]
    assert len(blocks) == conv.groups
    mat = conv.weight.detach().reshape(conv.out_channels, -1)
    rows = conv.out_channels // conv.groups
    out = torch.cat([mat[g * rows : (g + 1) * rows] @ blocks[g] for g in range(conv.groups)])
    ref = conv(x).detach() - conv.bias.detach().reshape(-1, *(1,) * d)
    torch.testing.assert_close(
        out.reshape(conv.out_channels, 3, -1).transpose(0, 1), ref.reshape(3, conv.out_channels, -1)
    )
    if conv.groups == 1:
        torch.testing.assert_close(layer_inputs(model, {"0": conv}, data)["0"], blocks[0])


@pytest.mark.parametrize(
    "conv",
    [
        nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.ConvTranspose1d(2, 3, 4, stride=3, dilation=2, padding=2),
        nn.ConvTranspose3d(2, 2, 2, stride=2),
    ],
)
def test_conv_transpose_columns_reproduce_the_layer(conv):
    conv = conv.double()
    d = conv.weight.ndim - 2
    x = torch.randn(2, conv.in_channels, *(4,) * d, dtype=torch.float64)
    data = Dataset(x.numpy(), [0, 1])
    data.x = data.x.double()
    w = prunable_weights(nn.Sequential(conv))["0"]
    blocks = layer_input_blocks(nn.Sequential(conv), {"0": w}, data)["0"]
    mat = w.matrix()
    rows = conv.out_channels // conv.groups
    out = torch.cat([mat[g * rows : (g + 1) * rows] @ blocks[g] for g in range(conv.groups)])
    ref = conv(x).detach() - conv.bias.detach().reshape(-1, *(1,) * d)
    torch.testing.assert_close(
        out.reshape(conv.out_channels, 2, -1).transpose(0, 1), ref.reshape(2, conv.out_channels, -1)
    )


def test_attention_columns_reproduce_the_projections():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x):  # different query, key and value inputs, keyword arguments
            return self.attn(query=x, key=2 * x + 1, value=x.flip(1), need_weights=False)[0].mean(1)

    model = Cross()
    data = Dataset(np.random.default_rng(0).normal(size=(3, 5, 8)), [0, 1, 2])
    data.x = data.x.double()
    x = data.x
    got = layer_input_blocks(model, prunable_weights(model), data)
    q_cols, k_cols, v_cols = got["attn.in_proj_weight"]
    w = mha.in_proj_weight.detach()
    for block, (cols, inp) in enumerate(
        zip((q_cols, k_cols, v_cols), (x, 2 * x + 1, x.flip(1)), strict=True)
    ):
        ref = F.linear(inp, w[block * 8 : (block + 1) * 8]).reshape(-1, 8).T
        torch.testing.assert_close(w[block * 8 : (block + 1) * 8] @ cols, ref)
    # out_proj's input is the attention output before the projection
    (o_cols,) = got["attn.out_proj"]
    out = (mha.out_proj.weight.detach() @ o_cols + mha.out_proj.bias.detach()[:, None]).T.reshape(3, 5, 8)
    ref = mha(x, 2 * x + 1, x.flip(1), need_weights=False)[0].detach()
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValidationError, match="layer_input_blocks"):
        layer_inputs(model, prunable_weights(model), data)


def test_separate_qkv_projection_columns():
    model, shape = build("cross_attention")
    model = model.double()
    data = make_data(shape, n=4)
    data.x = data.x.double()
    got = layer_input_blocks(model, prunable_weights(model), data)
    x = data.x
    q = model.query(x).detach()
    attn = model.attn
    for key, inp, w in [
        ("attn.q_proj_weight", q, attn.q_proj_weight),
        ("attn.k_proj_weight", x, attn.k_proj_weight),
        ("attn.v_proj_weight", x[..., :6], attn.v_proj_weight),
    ]:
        (cols,) = got[key]
        torch.testing.assert_close(w.detach() @ cols, F.linear(inp, w.detach()).reshape(-1, 4).T)


# -- embeddings --------------------------------------------------------------------------------


def test_embeddings_are_pruned_only_by_opt_in():
    model = Embedder()
    assert list(prunable_weights(model)) == ["head"]
    masks = compute_masks(model, method="magnitude", sparsity=0.5)
    assert list(masks) == ["head"]
    data = make_data((4,))
    data.x = data.x.abs().mul(3)
    for method in ("magnitude", "lamp", "snip"):
        pruned = copy.deepcopy(model)
        masks = prune_(pruned, method=method, sparsity=0.5, include_embeddings=True, data=data)
        assert list(masks) == ["emb", "head"]
        assert bool((pruned.emb.weight[~masks["emb"]] == 0).all())
    with pytest.raises(
        ValidationError, match=r"'model' parameter of compute_masks.*'emb', an embedding table.*exclude"
    ):
        compute_masks(model, method="wanda", sparsity=0.5, include_embeddings=True, data=data)


def test_a_model_of_embeddings_only_names_the_option():
    with pytest.raises(
        ValidationError,
        match=r"'include_embeddings' parameter of prune_.*Fix: pass include_embeddings=True",
    ):
        prune_(Embedder(with_head=False), method="magnitude", sparsity=0.5)
    with pytest.raises(
        ValidationError, match=r"'include_embeddings' parameter of compute_masks must be True or False"
    ):
        compute_masks(Embedder(), method="magnitude", sparsity=0.5, include_embeddings="yes")


def test_sparsegpt_on_attention_reconstructs_each_row_block():
    model, shape = build("self_attention")
    data = make_data(shape, n=32)
    pruned = copy.deepcopy(model)
    masks = prune_(pruned, method="sparsegpt", sparsity=0.5, data=data, exclude=["head", "attn.out_proj"])
    keep = masks["attn.in_proj_weight"]
    for block in range(3):  # each of the q, k, v blocks loses exactly half
        assert int((~keep[block * 8 : (block + 1) * 8]).sum()) == 32
    # reconstruction changed the kept weights of the pruned layer (the error was pushed onto them)
    assert not torch.equal(pruned.attn.in_proj_weight[keep], model.attn.in_proj_weight[keep])


# -- what reads masks and weights downstream -----------------------------------------------------


def test_macs_count_every_weight_once_per_position():
    model, shape = build("self_attention")  # 5 tokens of width 8
    model.attn.in_proj_weight.data[:4] = 0.0
    macs = count_macs(model, shape).set_index("layer")
    assert macs.loc["attn.in_proj_weight", "dense_macs"] == 3 * 5 * 8 * 8
    assert macs.loc["attn.in_proj_weight", "effective_macs"] == 3 * 5 * 8 * 8 - 5 * 4 * 8
    assert macs.loc["attn.out_proj", "dense_macs"] == 5 * 8 * 8
    model, shape = build("transpose")  # 4x4 input positions, weight 4*4*3*3
    assert count_macs(model, shape).set_index("layer").loc["0", "dense_macs"] == 16 * 144
    model, shape = build("gpt2")
    assert count_macs(model, shape).set_index("layer").loc["c_fc", "dense_macs"] == 5 * 8 * 16
    table = sparsity_by_layer(build("cross_attention")[0])
    assert list(table.layer) == [*EXPECTED_KEYS["cross_attention"], "total"]


def test_curvature_and_perturbations_respect_attention_masks():
    model, shape = build("self_attention")
    data = make_data(shape, n=8)
    masks = prune_(model, method="magnitude", sparsity=0.5)
    pmasks = parameter_masks(model, masks)
    assert set(pmasks) == {"attn.in_proj_weight", "attn.out_proj.weight", "head.weight"}
    op = HessianOperator(model, data, masks=dict(masks), params=["attn.in_proj_weight"])
    assert op.dim == int(masks["attn.in_proj_weight"].sum())


@pytest.mark.parametrize("method", ["taylor", "grasp", "synflow", "global_magnitude", "erk_magnitude"])
@pytest.mark.parametrize("kind", KINDS)
def test_gradient_and_data_free_methods_on_every_layer_type(kind, method):
    model, shape = build(kind)
    data = make_data(shape, n=12)
    kwargs = {"synflow_iterations": 3} if method == "synflow" else {}
    masks = compute_masks(model, method=method, sparsity=0.5, data=data, **kwargs)
    total = sum(w.weight.numel() for w in prunable_weights(model).values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    assert list(masks) == EXPECTED_KEYS[kind]
