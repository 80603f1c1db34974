"""Calibration from any iterable of model inputs, padding left out, block by block (issue 14).

The references below run a Hugging Face–style encoder block by block themselves, with plain forward
hooks and the attention mask, and compute Wanda's metric and SparseGPT's column-sequential problem by
hand, without pruneviz's calibration code.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from pruneviz.data import Dataset, Inputs
from pruneviz.exceptions import ValidationError
from pruneviz.models import is_adapted
from pruneviz.prune import Masks, compute_masks, one_shot, prunable_layers, prune_
from pruneviz.prune.calibration import calibration_blocks
from pruneviz.prune.criteria import layer_input_norms
from pruneviz.testing import sequential_obs_reference
from pruneviz.testing.models import TinyEncoder, token_dataset
from pruneviz.zoo.populations import PruneSettings, pruned_run_id

BATCH = 16
LAYER = ["attention.query", "attention.key", "attention.value", "attention.output", "intermediate", "out"]
BLOCKS = [[f"layers.{i}.{n}" for n in LAYER] for i in range(2)] + [["pooler"], ["classifier"]]


@pytest.fixture(scope="module")
def tokens() -> Dataset:
    return token_dataset(n=48, length=10, vocab=30, seed=3)


@pytest.fixture(scope="module")
def encoder() -> TinyEncoder:
    return TinyEncoder(vocab=30, dim=16, heads=2, num_classes=2, seed=1).eval()


def batches_of(data: Dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    ids, mask = data.x["input_ids"], data.x["attention_mask"]
    return [(ids[i : i + BATCH], mask[i : i + BATCH]) for i in range(0, len(ids), BATCH)]


def collect_inputs(
    model: nn.Module, names: list[str], data: Dataset, *, drop_padding: bool = True
) -> dict[str, np.ndarray]:
    """Each named Linear's inputs over the data as ``(tokens, features)`` float64, padded positions
    dropped with the attention mask wherever the input is ``(batch, length, features)``."""
    modules = dict(model.named_modules())
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    current: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_m, inputs, _o):
            x = inputs[0].detach()
            mask = current["mask"].bool()
            if drop_padding and x.ndim == 3 and x.shape[:2] == mask.shape:
                x = x[mask]
            seen[name].append(x.reshape(-1, x.shape[-1]).double().numpy())

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        with torch.no_grad():
            for ids, mask in batches_of(data):
                current["mask"] = mask
                model(input_ids=ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    return {n: np.concatenate(v) for n, v in seen.items()}


def per_row_keep(metric: np.ndarray, sparsity: float) -> np.ndarray:
    """Drop the ``round(sparsity * columns)`` smallest entries of every row."""
    k = round(sparsity * metric.shape[1])
    keep = np.ones(metric.shape, dtype=bool)
    for r in range(metric.shape[0]):
        keep[r, np.argsort(metric[r], kind="stable")[:k]] = False
    return keep


def wanda_block_reference(
    model: nn.Module, data: Dataset, blocks: list[list[str]], sparsity: float, *, sequential: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Keep-masks and metrics of Wanda computed block by block (``sequential``: earlier blocks pruned
    with these masks before the next one is calibrated)."""
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    keeps, metrics = {}, {}
    for block in blocks:
        xs = collect_inputs(work, block, data)
        for name in block:
            w = modules[name].weight.detach().double().numpy()
            metrics[name] = np.abs(w) * np.sqrt((xs[name] ** 2).sum(axis=0))[None, :]
            keeps[name] = per_row_keep(metrics[name], sparsity)
        if sequential:
            with torch.no_grad():
                for name in block:
                    modules[name].weight.mul_(torch.from_numpy(keeps[name]).float())
    return keeps, metrics


def assert_masks_match_up_to_ties(got, keeps, metrics, sparsity):
    """Equal masks, except where the metric ties (to 1e-9, relative) with a row's pruning threshold."""
    for name, keep in keeps.items():
        diff = np.argwhere(got[name].numpy() != keep)
        metric = metrics[name]
        k = round(sparsity * metric.shape[1])
        for r, c in diff:
            threshold = np.sort(metric[r])[k - 1 : k + 1]
            assert np.isclose(metric[r, c], threshold, rtol=1e-9, atol=0).any(), (
                f"{name}[{r}, {c}] differs and is not a tie"
            )


def dict_loader(data: Dataset, *, labels: bool = True) -> DataLoader:
    ids, mask = data.x["input_ids"], data.x["attention_mask"]
    items = []
    for i in range(len(ids)):
        item = {"input_ids": ids[i], "attention_mask": mask[i]}
        if labels:
            item["labels"] = int(data.y[i])
        items.append(item)
    return DataLoader(items, batch_size=BATCH)


# -- blocks -----------------------------------------------------------------------------------------
def test_default_blocks_are_the_encoder_layers_then_the_head(encoder, tokens):
    layers = prunable_layers(encoder)
    order = [n for block in BLOCKS for n in block]
    assert set(order) == set(layers)
    assert calibration_blocks(encoder, order) == BLOCKS
    assert calibration_blocks(encoder, order, blocks=["layers.1", "layers.0"]) == BLOCKS
    assert calibration_blocks(encoder, order, blocks=["layers"]) == [
        BLOCKS[0] + BLOCKS[1],
        ["pooler"],
        ["classifier"],
    ]
    from pruneviz.models import build_model

    resnet = build_model("resnet20", input_shape=(3, 8, 8), num_classes=3)
    names = list(prunable_layers(resnet))
    groups = calibration_blocks(resnet, names)
    assert groups[0] == ["stem.0"] and groups[-1] == ["classifier"] and len(groups) == 2 + 9
    assert all(n.startswith("blocks.0.") for n in groups[1])


# -- Wanda ------------------------------------------------------------------------------------------
@pytest.mark.reference
@pytest.mark.parametrize("blocks", [None, ["layers"]])
def test_wanda_block_by_block_equals_an_independent_reference(encoder, tokens, blocks):
    groups = BLOCKS if blocks is None else [BLOCKS[0] + BLOCKS[1], ["pooler"], ["classifier"]]
    keeps, metrics = wanda_block_reference(encoder, tokens, groups, 0.5, sequential=True)
    before = copy.deepcopy(encoder.state_dict())
    got = compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH, blocks=blocks)
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items()), "model left alone"
    assert list(got) == list(prunable_layers(encoder))
    assert_masks_match_up_to_ties(got, keeps, metrics, 0.5)
    # the dense pass is a different computation: later blocks see unpruned inputs there
    dense_keeps, _ = wanda_block_reference(encoder, tokens, groups, 0.5, sequential=False)
    assert any(not np.array_equal(keeps[n], dense_keeps[n]) for n in keeps)


@pytest.mark.reference
def test_wanda_dense_pass_equals_the_dense_reference(encoder, tokens):
    keeps, metrics = wanda_block_reference(encoder, tokens, BLOCKS, 0.5, sequential=False)
    got = compute_masks(
        encoder, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH, calibration="dense"
    )
    assert_masks_match_up_to_ties(got, keeps, metrics, 0.5)


def test_prune_in_place_equals_compute_masks(encoder, tokens):
    masks = compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH)
    work = copy.deepcopy(encoder)
    again = prune_(work, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH)
    assert all(torch.equal(masks[n], again[n]) for n in masks)
    for name, m in prunable_layers(work).items():
        assert torch.equal(m.weight != 0, masks[name] & (prunable_layers(encoder)[name].weight != 0))
    assert not is_adapted(work) and not work._forward_hooks and not work._forward_pre_hooks


def test_a_model_with_one_block_gives_the_same_masks_either_way():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    x = torch.randn(40, 6)
    dense = compute_masks(model, method="wanda", sparsity=0.5, data=[x], calibration="dense")
    seq = compute_masks(model, method="wanda", sparsity=0.5, data=[x], calibration="sequential")
    assert torch.equal(dense["0"], seq["0"])
    g_dense = prune_(copy.deepcopy(model), method="sparsegpt", sparsity=0.5, data=[x], calibration="dense")
    g_seq = prune_(copy.deepcopy(model), method="sparsegpt", sparsity=0.5, data=[x])
    assert torch.equal(g_dense["0"], g_seq["0"])


# -- SparseGPT --------------------------------------------------------------------------------------
@pytest.mark.reference
@pytest.mark.parametrize("grouping", ["blocks", "layers", "dense"])
def test_sparsegpt_block_by_block_reconstructs_as_the_sequential_obs_reference(encoder, tokens, grouping):
    """Each layer's reconstructed weights equal the column-sequential OBS solve on that layer's inputs,
    collected after the earlier groups were reconstructed: groups are the encoder's blocks (default),
    single layers (``blocks=`` every layer: the layer-by-layer procedure pruneviz used before), or all
    layers at once from the dense model (``calibration="dense"``)."""
    names = [n for block in BLOCKS for n in block]
    options, groups = {}, BLOCKS
    if grouping == "layers":
        options, groups = {"blocks": names}, [[n] for n in names]
    elif grouping == "dense":
        options, groups = {"calibration": "dense"}, [names]
    work = copy.deepcopy(encoder)
    masks = prune_(work, method="sparsegpt", sparsity=0.5, data=tokens, batch_size=BATCH, **options)
    pruned = dict(work.named_modules())
    ref_model = copy.deepcopy(encoder)
    ref_modules = dict(ref_model.named_modules())
    for group in groups:
        xs = collect_inputs(ref_model, group, tokens)  # after the earlier groups were reconstructed
        new = {}
        for name in group:
            keep = masks[name]
            assert int((~keep).sum()) == round(0.5 * keep.numel())
            w_pruned = pruned[name].weight.detach()
            assert bool((w_pruned[~keep] == 0).all())
            ref = sequential_obs_reference(
                ref_modules[name].weight.detach(), torch.from_numpy(xs[name]).T, keep
            )
            # float64 solves stored as float32 weights: differences of float32 rounding (~1e-8 here)
            torch.testing.assert_close(w_pruned.double(), ref, rtol=1e-5, atol=1e-6, msg=name)
            new[name] = ref
        with torch.no_grad():
            for name, ref in new.items():
                ref_modules[name].weight.copy_(ref.float())


# -- padding -----------------------------------------------------------------------------------------
def with_extra_padding(data: Dataset, extra: int) -> Dataset:
    ids, mask = data.x["input_ids"], data.x["attention_mask"]
    pad = torch.zeros(len(ids), extra, dtype=ids.dtype)
    x = Inputs({"input_ids": torch.cat([ids, pad], 1), "attention_mask": torch.cat([mask, pad], 1)})
    return Dataset(x, data.y.numpy(), class_names=data.info.class_names, modality="text")


def test_padded_positions_do_not_change_the_statistics_or_the_masks(encoder, tokens):
    longer = with_extra_padding(tokens, 7)
    layers = prunable_layers(encoder)
    norms = layer_input_norms(encoder, layers, tokens, batch_size=BATCH)
    norms_long = layer_input_norms(encoder, layers, longer, batch_size=BATCH)
    for n in layers:
        torch.testing.assert_close(norms_long[n], norms[n], rtol=1e-6, atol=1e-9, msg=n)
    # counting the padded positions would change them (by hand, over every position)
    name = "layers.1.intermediate"
    every = collect_inputs(encoder, [name], longer, drop_padding=False)[name]
    assert every.shape[0] == 48 * 17
    [block] = norms[name]  # one row block: every row of a Linear reads the same input
    assert not np.allclose(np.sqrt((every**2).sum(0)), block.numpy(), rtol=1e-3)
    for method in ("wanda", "sparsegpt"):
        a = compute_masks(encoder, method=method, sparsity=0.5, data=tokens, batch_size=BATCH)
        b = compute_masks(encoder, method=method, sparsity=0.5, data=longer, batch_size=BATCH)
        assert all(torch.equal(a[n], b[n]) for n in a), method


def test_without_a_named_mask_padding_counts(encoder, tokens):
    # positional tuples carry no named attention mask (documented): padded positions are included
    layers = {"layers.0.attention.query": prunable_layers(encoder)["layers.0.attention.query"]}
    named = layer_input_norms(encoder, layers, tokens, batch_size=BATCH)
    positional = layer_input_norms(encoder, layers, batches_of(tokens))
    name = "layers.0.attention.query"
    assert bool((positional[name][0] > named[name][0] * (1 + 1e-6)).any())


# -- data given as an iterable -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_dataloader_of_dicts_calibrates_like_the_dataset(encoder, tokens, method):
    a, b = copy.deepcopy(encoder), copy.deepcopy(encoder)
    from_data = prune_(a, method=method, sparsity=0.5, data=tokens, batch_size=BATCH)
    from_loader = prune_(b, method=method, sparsity=0.5, data=dict_loader(tokens))
    assert all(torch.equal(from_data[n], from_loader[n]) for n in from_data)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    gen = (tokens.x[i : i + BATCH] for i in range(0, len(tokens), BATCH))  # Inputs batches, one pass
    from_gen = compute_masks(encoder, method=method, sparsity=0.5, data=gen)
    assert all(torch.equal(from_data[n], from_gen[n]) for n in from_data)


def test_float_inputs_as_tensors_and_tuples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(30, 4)
    data = Dataset(x.numpy(), np.arange(30) % 3)
    ref = compute_masks(model, method="wanda", sparsity=0.5, data=data, batch_size=10)
    for batches in ([x[:10], x[10:20], x[20:]], [(x[:15],), (x[15:],)]):
        got = compute_masks(model, method="wanda", sparsity=0.5, data=batches)
        assert all(torch.equal(ref[n], got[n]) for n in ref)


def test_one_shot_and_settings_carry_the_calibration(tokens, encoder):
    dense = one_shot(encoder, tokens, method="wanda", sparsity=0.5, calibration="dense", calibration_size=32)
    direct = compute_masks(
        encoder,
        method="wanda",
        sparsity=0.5,
        data=tokens.take(np.sort(np.random.default_rng(0).permutation(48)[:32])),
        calibration="dense",
    )
    assert all(torch.equal(dense.masks[n], direct[n]) for n in direct)
    seq, den = PruneSettings(finetune=None), PruneSettings(finetune=None, calibration="dense")
    # the default is not written, so the run ids of zoos named before the option stay the same
    assert "calibration" not in seq.to_json() and den.to_json()["calibration"] == "dense"
    assert seq.to_json() == {k: v for k, v in den.to_json().items() if k != "calibration"}
    assert pruned_run_id("p", "wanda", "unstructured", 0.5, seq.to_json()) != pruned_run_id(
        "p", "wanda", "unstructured", 0.5, den.to_json()
    )


# -- bad input --------------------------------------------------------------------------------------
def test_bad_calibration_data_is_explained(encoder, tokens):
    before = copy.deepcopy(encoder.state_dict())
    with pytest.raises(
        ValidationError,
        match=r"'data' parameter of compute_masks must be an iterable that yields "
        r"at least one batch.*Got a list that yielded nothing",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=[])
    spent = iter(dict_loader(tokens))
    list(spent)
    with pytest.raises(ValidationError, match=r"yielded nothing.*exhausted generator"):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=spent)
    pairs = [(tokens.x["input_ids"][:8], tokens.y[:8])]  # (x, y): the labels land in attention_mask
    with pytest.raises(
        ValidationError,
        match=r"'data' parameter of prune_ must be batches of inputs the model "
        r"takes.*Got batch 0: a tuple of 2 items \(tensor \(8, 10\), tensor \(8,\)\), which "
        r"TinyEncoder refused with \w+Error: .*data=\(x for x, _ in loader\)",
    ):
        prune_(encoder, method="sparsegpt", sparsity=0.5, data=pairs)
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())
    assert not is_adapted(encoder)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in encoder.modules()), "no hook left"
    with pytest.raises(
        ValidationError, match=r"items are batches of model inputs.*Got batch 0: an item of type str"
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=["some text"])
    with pytest.raises(
        ValidationError,
        match=r"'data' parameter.*Got a dict with keys \['input_ids', "
        r"'attention_mask'\] instead.*data=\[x\] for one batch",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens.x.as_dict())
    with pytest.raises(ValidationError, match=r"'data' parameter.*Got a tensor of shape \(48, 10\)"):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens.x["input_ids"])
    with pytest.raises(ValidationError, match=r"besides labels.*Got batch 0: a dict with keys \['labels'\]"):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=[{"labels": tokens.y[:4]}])


def test_snip_needs_a_labelled_dataset(encoder, tokens):
    with pytest.raises(
        ValidationError,
        match=r"'data' parameter of compute_masks must be a pruneviz Dataset with "
        r"labels for method 'snip' \(it differentiates the loss; only sparsegpt and wanda "
        r"calibrate from an iterable of unlabeled model inputs\)\. Got DataLoader",
    ):
        compute_masks(encoder, method="snip", sparsity=0.5, data=dict_loader(tokens))


def test_bad_block_options_are_explained(encoder, tokens):
    with pytest.raises(
        ValidationError,
        match=r"'blocks' parameter of compute_masks must be prefixes of the names "
        r"of the layers being pruned.*Got 'encoder.layer.0'",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, blocks=["encoder.layer.0"])
    with pytest.raises(
        ValidationError,
        match=r"do not overlap.*'layers.0', which shares layer "
        r"'layers.0.attention.query' with 'layers'",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, blocks=["layers", "layers.0"])
    with pytest.raises(ValidationError, match=r"'blocks' parameter.*None unless calibration='sequential'"):
        compute_masks(
            encoder, method="wanda", sparsity=0.5, data=tokens, blocks=["layers"], calibration="dense"
        )
    with pytest.raises(ValidationError, match=r"'blocks' parameter.*a non-empty list.*Got 'layers'"):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, blocks="layers")
    with pytest.raises(
        ValidationError,
        match=r"'calibration' parameter of compute_masks must be one of "
        r"\['dense', 'sequential'\]",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, calibration="blockwise")
    with pytest.raises(
        ValidationError,
        match=r"'allocation' parameter.*'per_row' or 'uniform' for Wanda with "
        r"calibration='sequential'.*Got 'global'.*calibration='dense'",
    ):
        compute_masks(encoder, method="wanda", sparsity=0.5, data=tokens, allocation="global")
    global_dense = compute_masks(
        encoder, method="wanda", sparsity=0.5, data=tokens, allocation="global", calibration="dense"
    )
    assert global_dense.sparsity() == pytest.approx(0.5, abs=1e-3)


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used, self.spare = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x):
        return self.used(x)


@pytest.mark.parametrize("calibration", ["sequential", "dense"])
def test_a_layer_the_data_never_reaches_is_named_before_any_weight_changes(calibration):
    model = _Unused()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(
        ValidationError, match=r"reaches every prunable layer.*\['spare'\].*exclude=\['spare'\]"
    ):
        prune_(model, method="sparsegpt", sparsity=0.5, data=[torch.randn(8, 4)], calibration=calibration)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    masks = prune_(model, method="sparsegpt", sparsity=0.5, data=[torch.randn(8, 4)], exclude=["spare"])
    assert list(masks) == ["used"]


class _FailsOnCall(nn.Module):
    """A two-block MLP whose forward raises on its ``n``-th call (after the first pass succeeded); the
    count is kept on the class, so that it is shared with the copy compute_masks prunes."""

    calls = 0

    def __init__(self, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
        self.n = n

    def forward(self, x):
        type(self).calls += 1
        if type(self).calls == self.n:
            raise RuntimeError("midway")
        return self.body(x)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_no_hook_is_left_behind_when_the_model_raises_midway(method):
    _FailsOnCall.calls = 0
    model = _FailsOnCall(n=3)  # call 1: the execution-order pass; 2: block one; 3: block two
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValidationError, match=r"refused with RuntimeError: midway"):
        compute_masks(model, method=method, sparsity=0.5, data=[torch.randn(8, 4)])
    assert _FailsOnCall.calls == 3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not is_adapted(model)
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, m


# -- nn.MultiheadAttention and every prunable weight kind --------------------------------------------
class TorchEncoder(nn.Module):
    """Token ids and an attention mask in, logits out, through two ``nn.TransformerEncoderLayer`` blocks
    whose ``nn.MultiheadAttention`` gets the padding as ``src_key_padding_mask``. ``layout``:
    ``"batch_first"``, ``"sequence_first"`` (``(tokens, batch, features)`` inputs) or ``"nested"`` (an
    ``nn.TransformerEncoder``, which packs the padding out into nested tensors in eval mode)."""

    def __init__(self, layout: str = "batch_first", *, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layout = layout
        batch_first = layout != "sequence_first"

        def layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(
                dim, 2, dim_feedforward=32, dropout=0.0, batch_first=batch_first
            )

        self.embed = nn.Embedding(30, dim)
        if layout == "nested":
            self.encoder = nn.TransformerEncoder(layer(), 2, enable_nested_tensor=True)
        else:
            self.layers = nn.ModuleList([layer(), layer()])
        self.head = nn.Linear(dim, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x, pad = self.embed(input_ids), ~attention_mask.bool()
        if self.layout == "nested":
            x = self.encoder(x, src_key_padding_mask=pad)
            if x.is_nested:
                x = x.to_padded_tensor(0.0, (*pad.shape, x.size(-1)))
        else:
            x = x if self.layout == "batch_first" else x.transpose(0, 1)
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
            x = x if self.layout == "batch_first" else x.transpose(0, 1)
        m = attention_mask[..., None].to(x.dtype)
        return self.head((x * m).sum(1) / m.sum(1))


def attention_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{i}.{n}" for i in range(2) for n in ATTENTION_LAYER]


ATTENTION_LAYER = ["self_attn.in_proj_weight", "self_attn.out_proj", "linear1", "linear2"]


@pytest.mark.parametrize("calibration", ["sequential", "dense"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("layout", ["batch_first", "sequence_first", "nested"])
def test_attention_projections_calibrate_without_padding(tokens, layout, method, calibration):
    """Masks of every weight of an nn.TransformerEncoderLayer stack (in_proj's q/k/v row blocks, the
    functionally used out_proj, the feed-forward Linears) do not change when padding is appended."""
    model = TorchEncoder(layout).eval()
    options = {"method": method, "sparsity": 0.5, "batch_size": BATCH, "calibration": calibration}
    masks = compute_masks(model, data=tokens, **options)
    prefix = "encoder.layers" if layout == "nested" else "layers"
    assert list(masks) == [*attention_keys(prefix), "head"]
    longer = compute_masks(model, data=with_extra_padding(tokens, 7), **options)  # 17 tokens, 16 a batch
    assert all(torch.equal(masks[n], longer[n]) for n in masks), [
        n for n in masks if not torch.equal(masks[n], longer[n])
    ]
    loader = compute_masks(model, data=dict_loader(tokens), **options)
    assert all(torch.equal(masks[n], loader[n]) for n in masks)


def real_inputs(model: nn.Module, module: nn.Module, data: Dataset) -> np.ndarray:
    """The first positional input of ``module`` over ``data``, padded positions dropped, as
    ``(tokens, features)`` float64 (a batch-first reference without pruneviz's hooks)."""
    seen: list[np.ndarray] = []
    current: dict[str, torch.Tensor] = {}

    def hook(_m, args):
        seen.append(args[0].detach()[current["mask"].bool()].double().numpy())

    handle = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for ids, mask in batches_of(data):
                current["mask"] = mask
                model(ids, mask)
    finally:
        handle.remove()
    return np.concatenate(seen)


@pytest.mark.reference
def test_wanda_sequential_reads_the_in_proj_inputs_of_real_tokens_only(tokens):
    """Wanda block by block on nn.MultiheadAttention: in_proj's statistics (one norm vector per q/k/v
    row block) are those of the real tokens' inputs, the second block's taken after the first block was
    pruned; padding counted (positional batches, no named mask) would change them."""
    model = TorchEncoder("batch_first").eval()
    layers = prunable_layers(model)
    masks = compute_masks(model, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH)

    key0 = "layers.0.self_attn.in_proj_weight"
    x0 = real_inputs(model, model.layers[0], tokens)  # q = k = v = the layer's input
    ref0 = np.sqrt((x0**2).sum(0))
    norms = layer_input_norms(model, {key0: layers[key0]}, tokens, batch_size=BATCH)[key0]
    assert len(norms) == 3
    for block in norms:
        np.testing.assert_allclose(block.numpy(), ref0, rtol=1e-6)
    counted = layer_input_norms(model, {key0: layers[key0]}, batches_of(tokens))[key0]
    assert bool((counted[0] > torch.from_numpy(ref0) * (1 + 1e-6)).any()), "padding would count"

    # the first block pruned, the second block's in_proj reads the pruned block's outputs
    pruned = copy.deepcopy(model)
    Masks({n: masks[n] for n in attention_keys("layers")[:4]}).apply_(pruned)
    key1 = "layers.1.self_attn.in_proj_weight"
    x1 = real_inputs(pruned, pruned.layers[1], tokens)
    ref1 = np.sqrt((x1**2).sum(0))
    for key, ref in ((key0, ref0), (key1, ref1)):
        w = layers[key].weight.detach().double().numpy()
        metric = np.abs(w) * ref[None, :]
        assert_masks_match_up_to_ties({key: masks[key]}, {key: per_row_keep(metric, 0.5)}, {key: metric}, 0.5)
    dense = compute_masks(
        model, method="wanda", sparsity=0.5, data=tokens, batch_size=BATCH, calibration="dense"
    )
    assert not torch.equal(dense[key1], masks[key1]), "the dense pass reads the unpruned first block"
    assert torch.equal(dense[key0], masks[key0])
    longer = compute_masks(model, method="wanda", sparsity=0.5, data=with_extra_padding(tokens, 7))
    assert all(torch.equal(masks[n], longer[n]) for n in masks)


def test_include_embeddings_goes_with_calibration_and_blocks(tokens):
    model = TorchEncoder("batch_first").eval()
    # magnitude ignores the calibration options and prunes the table when asked
    with_table = compute_masks(model, method="magnitude", sparsity=0.5, include_embeddings=True)
    assert "embed" in with_table and with_table.sparsity() == pytest.approx(0.5, abs=1e-3)
    # Wanda needs input columns: the table is named, then left out by exclude, blocks given by prefix
    with pytest.raises(ValidationError, match=r"'embed', an embedding table.*exclude"):
        compute_masks(model, method="wanda", sparsity=0.5, data=tokens, include_embeddings=True)
    options = {"method": "wanda", "sparsity": 0.5, "data": tokens, "batch_size": BATCH}
    default = compute_masks(model, **options)
    given = compute_masks(
        model, include_embeddings=True, exclude=["embed"], blocks=["layers.0", "layers.1"], **options
    )
    assert list(given) == list(default) and all(torch.equal(default[n], given[n]) for n in default)
    dense = compute_masks(model, include_embeddings=True, exclude=["embed"], calibration="dense", **options)
    assert "embed" not in dense
    with pytest.raises(ValidationError, match=r"'blocks' parameter.*prefixes of the names"):
        compute_masks(model, include_embeddings=True, exclude=["embed"], blocks=["embed"], **options)


class Conv1D(nn.Module):
    """GPT-2's Conv1D as transformers defines it: weight (in, out), forward ``x @ weight + bias``
    (recognised by its class name ``Conv1D`` and ``nf``)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(-1, x.shape[-1]) @ self.weight + self.bias).reshape(*x.shape[:-1], self.nf)


class _GPT2Blocks(nn.Module):
    """Token ids and an attention mask in; two GPT-2 MLP blocks of Conv1D (transposed weights), a
    masked mean and a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.wte = nn.Embedding(30, 8)
        self.h = nn.ModuleList([nn.Sequential(Conv1D(16, 8), nn.GELU(), Conv1D(8, 16)) for _ in range(2)])
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.wte(input_ids)
        for block in self.h:
            x = x + block(x)
        m = attention_mask[..., None].to(x.dtype)
        return self.head((x * m).sum(1) / m.sum(1))


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_gpt2_conv1d_calibrates_without_padding(tokens, method):
    model = _GPT2Blocks().eval()
    masks = compute_masks(model, method=method, sparsity=0.5, data=tokens, batch_size=BATCH)
    assert list(masks) == ["h.0.0", "h.0.2", "h.1.0", "h.1.2", "head"]
    assert masks["h.0.0"].shape == (8, 16)  # the weight's own (in, out) layout
    longer = compute_masks(model, method=method, sparsity=0.5, data=with_extra_padding(tokens, 7))
    assert all(torch.equal(masks[n], longer[n]) for n in masks)
    assert compute_masks(model, method=method, sparsity=0.5, data=tokens).sparsity() == pytest.approx(0.5)
