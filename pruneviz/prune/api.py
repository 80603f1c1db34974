"""The pruning API: named methods, mask computation, and in-place pruning.

A *method* names a criterion with the allocation its paper uses; the structure and allocation can be
overridden. ``compute_masks`` never changes the model; ``prune_`` applies the masks (and, for SparseGPT,
the reconstructed weights) in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import torch
from torch import nn

from pruneviz._validation import check_choice, check_fraction, check_int, check_model, fail
from pruneviz.data.dataset import Dataset
from pruneviz.prune.allocation import ALLOCATIONS, Structure, allocate, check_nm_divisible, parse_structure
from pruneviz.prune.calibration import (
    CALIBRATIONS,
    Batch,
    calibration_batches,
    calibration_blocks,
    describe,
    execution_order,
)
from pruneviz.prune.criteria import (
    DATA_FREE,
    check_input_columns,
    input_grams,
    input_module,
    input_norms,
    score,
    wanda_scores,
)
from pruneviz.prune.masks import Masks
from pruneviz.prune.sparsegpt import sparsegpt_layer
from pruneviz.prune.weights import PrunableWeight, prunable_weights, weights_of


@dataclass(frozen=True)
class Method:
    """A pruning method: the criterion that scores weights and the allocation its authors use."""

    criterion: str
    allocation: str
    reference: str


METHODS: dict[str, Method] = {
    "magnitude": Method("magnitude", "uniform", "Han et al. 2015 (layer-wise)"),
    "global_magnitude": Method("magnitude", "global", "Han et al. 2015; Frankle & Carbin 2019 (global)"),
    "random": Method("random", "uniform", "random baseline"),
    "lamp": Method("lamp", "global", "Lee et al. 2021"),
    "erk_magnitude": Method("magnitude", "erk", "Evci et al. 2020 (ERK allocation)"),
    "snip": Method("snip", "global", "Lee et al. 2019"),
    "grasp": Method("grasp", "global", "Wang et al. 2020"),
    "synflow": Method("synflow", "global", "Tanaka et al. 2020 (iterative, data-free)"),
    "taylor": Method("taylor", "global", "Molchanov et al. 2019"),
    "wanda": Method("wanda", "per_row", "Sun et al. 2023"),
    "sparsegpt": Method("sparsegpt", "uniform", "Frantar & Alistarh 2023 (reconstructs weights)"),
}
NEEDS_DATA = frozenset(m for m, spec in METHODS.items() if spec.criterion not in DATA_FREE)
#: methods that calibrate from any iterable of model inputs, block by block or in one dense pass
CALIBRATED = frozenset({"wanda", "sparsegpt"})
#: channel methods of populations and sweeps, by the criterion that ranks channels (channel_l1 is the
#: L1 norm of filters, Li et al. 2017); they remove channels physically
CHANNEL_METHODS = {"channel_l1": "magnitude", "channel_random": "random", "channel_taylor": "taylor"}


def method_names() -> list[str]:
    """Names accepted by ``method=`` (movement pruning lives in :func:`pruneviz.prune.movement_prune`)."""
    return sorted(METHODS)


def population_method_names() -> list[str]:
    """Every method a population or a sweep prunes with: the mask methods and the channel methods."""
    return sorted({*METHODS, *CHANNEL_METHODS})


def _check_sparsity(sparsity: float | None, structure: Structure, where: str) -> float:
    fixed = structure.fixed_sparsity  # N:M only
    if fixed is not None:
        if sparsity is not None and abs(float(sparsity) - fixed) > 1e-9:
            fail(
                "sparsity",
                where,
                f"None or {fixed:g} for structure {structure.name!r} (N:M fixes it at 1 - N/M)",
                sparsity,
                "omit sparsity for N:M structures.",
            )
        return fixed
    if sparsity is None:
        fail("sparsity", where, "a float in [0, 1)", None, "pass e.g. sparsity=0.9.")
    return check_fraction(sparsity, "sparsity", where)


def compute_masks(
    model: nn.Module,
    *,
    method: str,
    sparsity: float | None = None,
    structure: str | Structure = "unstructured",
    allocation: str | None = None,
    data: Any = None,
    exclude: Iterable[str] = (),
    seed: int = 0,
    floor: float = 0.01,
    synflow_iterations: int = 100,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 256,
    include_embeddings: bool = False,
    calibration: str = "sequential",
    blocks: Sequence[str] | None = None,
) -> Masks:
    """Keep-masks for ``model``'s prunable layers; the model itself is not changed.

    Parameters
    ----------
    method : one of :func:`method_names` (for ``sparsegpt`` the masks come from reconstructing a copy;
        :func:`prune_` also keeps the reconstructed weights).
    sparsity : fraction of prunable weights removed, in [0, 1). Omit for N:M (fixed at 1 - N/M).
    structure : ``"unstructured"``, ``"N:M"``, ``"block:HxW"`` (channels: :func:`prune_channels`).
    allocation : ``uniform``, ``global``, ``global_floor``, ``erk`` or ``per_row``; default the method's.
    data : calibration samples, needed by data-driven criteria. SNIP, GraSP and Taylor differentiate the
        loss, so they need a :class:`~pruneviz.data.Dataset` (with labels). Wanda and SparseGPT take a
        Dataset (its ``x`` in batches of ``batch_size``) or any iterable of batches of model inputs, e.g.
        a DataLoader of dicts with ``input_ids`` and ``attention_mask``: a tensor is one positional
        argument, a tuple positional arguments, a dict or Inputs keyword arguments (``labels``/``label``
        keys dropped); padded positions (``attention_mask`` 0) are left out of the statistics of every
        weight whose input has a token axis. See :mod:`pruneviz.prune.calibration`.
    exclude : keys of prunable weights to leave dense (e.g. the first conv or the classifier); see
        :func:`~pruneviz.prune.prunable_weights` for the keys (a module's name for its ``weight``,
        ``"<attention>.in_proj_weight"`` for attention input projections).
    seed : fixes every random choice.
    include_embeddings : also prune ``nn.Embedding`` tables (off by default: they are left dense).
        Wanda and SparseGPT need input columns, so with them exclude the tables again (or use another
        method for them).
    calibration : Wanda and SparseGPT only. ``"sequential"`` (default): block by block as the papers do,
        each block calibrated on the outputs of the blocks before it *after* they were pruned (and, for
        SparseGPT, reconstructed); one forward pass over the data per block, plus one to learn the
        execution order. Needs an allocation that decides layer by layer (``per_row``, ``uniform``, or
        N:M). ``"dense"``: every layer's statistics from the dense model in one pass.
    blocks : with ``calibration="sequential"``, prefixes of the keys of the blocks (e.g.
        ``["encoder.layer.0", "encoder.layer.1"]``); default: the children of the model's repeated
        ``ModuleList``/``Sequential``, every other weight a block of its own
        (:func:`pruneviz.prune.calibration.calibration_blocks`).

    Every prunable weight is pruned: Linear, Conv1d/2d/3d (grouped, depthwise), ConvTranspose1d/2d/3d,
    GPT-2 ``Conv1D``, ``nn.MultiheadAttention`` input projections and ``out_proj``; row-wise criteria,
    N:M groups and blocks use each weight's ``(out, in)`` orientation.

    >>> from pruneviz.models import build_model
    >>> model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=(8,))
    >>> compute_masks(model, method="global_magnitude", sparsity=0.5).sparsity()
    0.5
    """
    return _compute_masks(
        model,
        where="compute_masks",
        method=method,
        sparsity=sparsity,
        structure=structure,
        allocation=allocation,
        data=data,
        exclude=exclude,
        seed=seed,
        floor=floor,
        synflow_iterations=synflow_iterations,
        input_shape=input_shape,
        batch_size=batch_size,
        include_embeddings=include_embeddings,
        calibration=calibration,
        blocks=blocks,
    )


class _Options(TypedDict):
    """The options of :func:`compute_masks` and :func:`prune_` as given, before :func:`_checked`."""

    method: str
    sparsity: float | None
    structure: str | Structure
    allocation: str | None
    data: Any
    exclude: Iterable[str]
    seed: int
    floor: float
    synflow_iterations: int
    input_shape: tuple[int, ...] | None
    batch_size: int
    include_embeddings: bool
    calibration: str
    blocks: Sequence[str] | None


def _compute_masks(model: nn.Module, *, where: str, **options: Unpack[_Options]) -> Masks:
    """:func:`compute_masks`, its errors naming ``where``."""
    checked = _checked(model, where=where, **options)
    method, data, seed = options["method"], options["data"], options["seed"]
    floor, batch_size = options["floor"], options["batch_size"]
    input_shape = options["input_shape"]
    layers = checked.layers
    if method == "sparsegpt":
        work = _copy_model(model)
        return _sparsegpt_(work, weights_of(work, layers), checked=checked)
    if method == "wanda":
        if checked.calibration == "dense":
            return _wanda_(model, layers, checked=checked, apply=False)
        work = _copy_model(model)
        return _wanda_(work, weights_of(work, layers), checked=checked, apply=True)
    if method == "synflow":
        return _synflow_masks(
            model,
            layers,
            checked.sparsity,
            checked.structure,
            checked.allocation,
            options["synflow_iterations"],
            input_shape or _shape_of(data),
            floor,
        )
    scores = score(model, layers, METHODS[method].criterion, data=data, seed=seed, batch_size=batch_size)
    return allocate(
        scores,
        sparsity=checked.sparsity,
        structure=checked.structure,
        allocation=checked.allocation,
        layers=layers,
        floor=floor,
        where=where,
    )


def prune_(
    model: nn.Module,
    *,
    method: str,
    sparsity: float | None = None,
    structure: str | Structure = "unstructured",
    allocation: str | None = None,
    data: Any = None,
    exclude: Iterable[str] = (),
    seed: int = 0,
    floor: float = 0.01,
    synflow_iterations: int = 100,
    input_shape: tuple[int, ...] | None = None,
    batch_size: int = 256,
    include_embeddings: bool = False,
    calibration: str = "sequential",
    blocks: Sequence[str] | None = None,
) -> Masks:
    """Compute masks as :func:`compute_masks` does (same options) and apply them to ``model`` in place.

    For ``sparsegpt`` the kept weights are also reconstructed (Frantar & Alistarh 2023). Wanda and
    SparseGPT prune the model in place block by block (``calibration="sequential"``); every check, and
    one pass over the calibration data that checks the model takes every batch, is done before the first
    weight changes. Returns the masks.
    """
    options: _Options = {
        "method": method,
        "sparsity": sparsity,
        "structure": structure,
        "allocation": allocation,
        "data": data,
        "exclude": exclude,
        "seed": seed,
        "floor": floor,
        "synflow_iterations": synflow_iterations,
        "input_shape": input_shape,
        "batch_size": batch_size,
        "include_embeddings": include_embeddings,
        "calibration": calibration,
        "blocks": blocks,
    }
    if method in CALIBRATED:
        checked = _checked(model, where="prune_", **options)
        if method == "wanda":
            return _wanda_(model, checked.layers, checked=checked, apply=True)
        return _sparsegpt_(model, checked.layers, checked=checked)
    masks = _compute_masks(model, where="prune_", **options)
    masks.apply_(model)
    return masks


@dataclass(frozen=True)
class _Checked:
    method: str
    sparsity: float
    structure: Structure
    allocation: str
    layers: dict[str, PrunableWeight]
    data: Any
    batch_size: int
    calibration: str = "dense"
    blocks: tuple[str, ...] | None = None
    batches: tuple[Batch, ...] = ()
    floor: float = 0.01
    where: str = "prune"


def _checked(
    model: nn.Module,
    *,
    where: str,
    method: str,
    sparsity: float | None,
    structure: str | Structure,
    allocation: str | None,
    data: Any,
    exclude: Iterable[str],
    seed: int,
    floor: float,
    synflow_iterations: int,
    input_shape: tuple[int, ...] | None,
    batch_size: int,
    include_embeddings: bool = False,
    calibration: str = "sequential",
    blocks: Sequence[str] | None = None,
) -> _Checked:
    """Validate every pruning option once, before anything is computed or changed."""
    check_choice(method, "method", where, METHODS)
    # magnitude-style criteria read the weights only; the others run float32 data through the model
    check_model(model, "model", where, half=METHODS[method].criterion in ("magnitude", "random", "lamp"))
    spec = METHODS[method]
    struct = parse_structure(structure, where=where)
    if struct.kind == "channel":
        fail(
            "structure",
            where,
            "a mask structure",
            "channel",
            "use pruneviz.prune.prune_channels for channels.",
        )
    sparsity = _check_sparsity(sparsity, struct, where)
    allocation = (
        spec.allocation if allocation is None else check_choice(allocation, "allocation", where, ALLOCATIONS)
    )
    check_int(seed, "seed", where, minimum=0)
    check_fraction(floor, "floor", where)
    check_int(synflow_iterations, "synflow_iterations", where, minimum=1)
    batch_size = check_int(batch_size, "batch_size", where, minimum=1)
    if not isinstance(include_embeddings, bool):
        fail(
            "include_embeddings", where, "True or False", include_embeddings, "pass include_embeddings=True."
        )
    layers = prunable_weights(
        model, exclude=tuple(exclude), include_embeddings=include_embeddings, where=where
    )
    if METHODS[method].criterion in ("wanda", "sparsegpt"):
        check_input_columns(layers, where)
    calibration = check_choice(calibration, "calibration", where, CALIBRATIONS)
    batches: tuple[Batch, ...] = ()
    if method in NEEDS_DATA:
        if data is None:
            fail(
                "data",
                where,
                f"a calibration Dataset for method {method!r}",
                None,
                "pass data=<training samples>; data-free methods are "
                + ", ".join(sorted(set(METHODS) - NEEDS_DATA)),
            )
        if method in CALIBRATED:
            batches = tuple(calibration_batches(data, batch_size=batch_size, where=where))
        elif not isinstance(data, Dataset):
            fail(
                "data",
                where,
                f"a pruneviz Dataset with labels for method {method!r} (it differentiates the loss; only "
                f"{' and '.join(sorted(CALIBRATED))} calibrate from an iterable of unlabeled model inputs)",
                None,
                "wrap the samples and their labels in pruneviz.data.Dataset.",
                got=describe(data) if isinstance(data, torch.Tensor | Mapping) else type(data).__name__,
            )
        elif len(data) == 0:
            fail("data", where, "a non-empty calibration Dataset", "0 samples")
    if blocks is not None:
        if method not in CALIBRATED or calibration != "sequential":
            fail(
                "blocks",
                where,
                f"None unless calibration='sequential' with method {' or '.join(sorted(CALIBRATED))}",
                blocks,
                "omit blocks, or pass calibration='sequential' with wanda or sparsegpt.",
            )
        calibration_blocks(model, list(layers), blocks=blocks, where=where)  # checks the prefixes
        blocks = tuple(blocks)
    if (
        method == "wanda"
        and calibration == "sequential"
        and struct.kind != "nm"
        and allocation not in ("per_row", "uniform")
    ):
        fail(
            "allocation",
            where,
            "'per_row' or 'uniform' for Wanda with calibration='sequential' (blocks are pruned one after "
            "another, so no ranking spans every layer)",
            allocation,
            "pass calibration='dense' to rank all layers at once, or allocation='per_row'.",
        )
    if method == "sparsegpt":
        if struct.kind not in ("unstructured", "nm"):
            fail("structure", where, "'unstructured' or 'N:M' for SparseGPT", struct.name)
        if allocation != "uniform":
            fail("allocation", where, "'uniform' for SparseGPT (it prunes layer by layer)", allocation)
        if struct.kind == "nm":
            for name, w in layers.items():
                check_nm_divisible(w.oriented().shape[1], struct, name, where)
    if method == "synflow" and input_shape is None and not isinstance(data, Dataset):
        fail(
            "input_shape",
            where,
            "the per-sample input shape for SynFlow, e.g. (1, 8, 8)",
            None,
            "pass input_shape=... or data=<a Dataset> (its input shape is used).",
        )
    return _Checked(
        method,
        sparsity,
        struct,
        allocation,
        layers,
        data,
        batch_size,
        calibration=calibration,
        blocks=blocks,
        batches=batches,
        floor=floor,
        where=where,
    )


def _shape_of(data: Any) -> tuple[int, ...] | None:
    return data.info.input_shape if isinstance(data, Dataset) else None


def _copy_model(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def _synflow_masks(
    model: nn.Module,
    layers: dict[str, PrunableWeight],
    sparsity: float,
    struct: Structure,
    allocation: str,
    iterations: int,
    input_shape: tuple[int, ...] | None,
    floor: float,
) -> Masks:
    """SynFlow's iterative schedule: re-score and prune ``iterations`` times, the kept fraction
    shrinking exponentially to ``1 - sparsity`` (Tanaka et al. 2020, Algorithm 1)."""
    iterations = check_int(iterations, "synflow_iterations", "compute_masks", minimum=1)
    masks: Masks | None = None
    for k in range(1, iterations + 1):
        kept = (1.0 - sparsity) ** (k / iterations)
        scores = score(model, layers, "synflow", input_shape=input_shape, masks=masks)
        if masks is not None:  # pruned weights stay pruned
            scores = {n: torch.where(masks[n], s, torch.full_like(s, -1.0)) for n, s in scores.items()}
        step_sparsity = sparsity if k == iterations else 1.0 - kept
        masks = allocate(
            scores,
            sparsity=step_sparsity,
            structure=struct,
            allocation=allocation,
            layers=layers,
            floor=floor,
        )
    assert masks is not None  # iterations >= 1, so the loop ran
    return masks


def _groups(model: nn.Module, layers: dict[str, PrunableWeight], checked: _Checked) -> list[list[str]]:
    """The groups of weights calibrated together: all of them (dense), or the blocks in execution order
    (sequential; one pass over the data learns the order and checks every batch). A weight runs when
    the module that receives its input does (for an attention ``out_proj``, its attention module)."""
    if checked.calibration == "dense":
        return [list(layers)]
    hooked = {n: input_module(model, w) for n, w in layers.items()}
    order = execution_order(model, hooked, checked.batches, where=checked.where)
    return calibration_blocks(model, order, blocks=checked.blocks, where=checked.where)


@torch.no_grad()
def _wanda_(model: nn.Module, layers: dict[str, PrunableWeight], *, checked: _Checked, apply: bool) -> Masks:
    """Wanda (Sun et al. 2023) group by group: score a group's weights on the inputs the model gives them
    now, allocate, and (``apply``) zero the pruned weights before the next group is calibrated."""
    masks: dict[str, torch.Tensor] = {}
    for group in _groups(model, layers, checked):
        sub = {n: layers[n] for n in group}
        norms = input_norms(model, sub, checked.batches, where=checked.where)
        found = allocate(
            wanda_scores(sub, norms),
            sparsity=checked.sparsity,
            structure=checked.structure,
            allocation=checked.allocation,
            layers=sub,
            floor=checked.floor,
            where=checked.where,
        )
        if apply:
            found.apply_(model)
        masks.update(found)
    return Masks({n: masks[n] for n in layers})


@torch.no_grad()
def _sparsegpt_(model: nn.Module, layers: dict[str, PrunableWeight], *, checked: _Checked) -> Masks:
    """SparseGPT (Frantar & Alistarh 2023) group by group: the ``X Xᵀ`` of a group's weights from the
    inputs the (partly pruned) model gives them now, then each weight pruned and its kept weights
    reconstructed, before the next group is calibrated.

    Each weight is reconstructed as its ``(out, in)`` matrix; a weight whose row blocks read different
    inputs (grouped convolutions, attention ``in_proj_weight``) is reconstructed block by block, each
    block losing ``round(sparsity * block size)`` weights."""
    structure = checked.structure
    masks = {}
    for group in _groups(model, layers, checked):
        grams = input_grams(model, {n: layers[n] for n in group}, checked.batches, where=checked.where)
        for name in group:
            w = layers[name]
            oriented = w.oriented()
            mat = w.matrix()
            order = None
            if structure.kind == "nm" and oriented.ndim > 2:  # (C, k...) columns -> input channel fastest
                order = torch.arange(mat.shape[1]).reshape(oriented.shape[1], -1).T.flatten()
            rows = mat.shape[0] // len(grams[name])
            new_rows, keep_rows = [], []
            for b, gram in enumerate(grams[name]):
                new, keep = sparsegpt_layer(
                    mat[b * rows : (b + 1) * rows],
                    gram=gram,
                    sparsity=checked.sparsity,
                    structure=structure,
                    column_order=order,
                )
                new_rows.append(new)
                keep_rows.append(keep)
            w.weight.copy_(w.from_matrix(torch.cat(new_rows)))
            masks[name] = w.from_matrix(torch.cat(keep_rows))
    return Masks({n: masks[n] for n in layers})
