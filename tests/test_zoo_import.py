"""Bringing your own model: factory references, Zoo.add_model, `pruneviz zoo import`."""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pruneviz.cli import main
from pruneviz.data import Dataset, Inputs
from pruneviz.exceptions import CheckpointError, ValidationError
from pruneviz.models import (
    TRUSTED_ENV,
    ModelSpec,
    build_factory,
    build_from_spec,
    is_adapted,
    resolve_factory,
    trust_modules,
    trusted_modules,
    trusting,
)
from pruneviz.prune.masks import prunable_layers
from pruneviz.testing.models import TinyEncoder, token_dataset
from pruneviz.train import TrainConfig, fit
from pruneviz.zoo import Zoo, prune_population

LAB = Path(__file__).parent / "byo_models"
RESNET = "lab_nets:TinyResNet"
ENCODER = "pruneviz.testing.models:TinyEncoder"
ONE_EPOCH = TrainConfig(epochs=1, batch_size=32, lr=3e-3)


@pytest.fixture
def lab(monkeypatch):
    """The user's own model code (tests/byo_models/lab_nets.py) importable as ``lab_nets``; gone after."""
    monkeypatch.syspath_prepend(str(LAB))
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    yield importlib.import_module("lab_nets")
    sys.modules.pop("lab_nets", None)


def images(n: int = 96, k: int = 3, seed: int = 0) -> Dataset:
    """Small float images 3×16×16 whose class shifts the mean of one channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(size=(n, 3, 16, 16)).astype(np.float32)
    x[np.arange(n), y % 3] += 1.5
    return Dataset(x, y, name="blobs-img", class_names=[f"c{i}" for i in range(k)])


def zero_fraction(model: torch.nn.Module) -> float:
    layers = prunable_layers(model)
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    return zeros / sum(m.weight.numel() for m in layers.values())


def stored_logits(zoo: Zoo, run: str, subset: str) -> torch.Tensor:
    frame = zoo.outputs(run, split="clean", subset=subset).sort_values("sample_id")
    cols = [c for c in frame.columns if c.startswith("logit_")]
    return torch.tensor(frame[cols].to_numpy(), dtype=torch.float32), frame["sample_id"].to_numpy()


def check_import_then_prune(zoo: Zoo, run: str, model: torch.nn.Module, call) -> None:
    """load_model reproduces the model's logits exactly, its stored outputs are the model's, and pruned
    children (magnitude, lamp at 0.5) rebuild through the same factory with the target sparsity."""
    record = zoo.run(run)
    assert record.kind == "dense" and record.parent is None
    splits = zoo.splits(record.dataset)
    loaded = zoo.load_model(run)
    assert type(loaded) is type(model) and is_adapted(loaded)
    model.eval()
    with torch.no_grad():
        expected = call(model, splits.test.x)
        assert torch.equal(loaded(splits.test.x), expected)
    logits, ids = stored_logits(zoo, run, "test")
    order = np.argsort(splits.test.sample_id)
    assert np.array_equal(ids, splits.test.sample_id[order])
    assert torch.allclose(logits, expected[torch.from_numpy(order)], atol=1e-6)
    assert 0.0 <= record.metrics["test_accuracy"] <= 1.0

    table = prune_population(
        zoo, methods=["magnitude", "lamp"], sparsities=[0.5], finetune=ONE_EPOCH, progress=False
    )
    assert sorted(table["method"]) == ["lamp", "magnitude"]
    for child in table["run"]:
        rec = zoo.run(child)
        assert rec.parent == run and rec.arch == record.arch
        pruned = zoo.load_model(child)
        assert type(pruned) is type(model)
        assert abs(zero_fraction(pruned) - 0.5) < 0.01
        assert abs(rec.sparsity - 0.5) < 0.01
        assert len(zoo.outputs(child, subset="val")) == len(splits.val)


def test_torchvision_style_resnet_imports_reloads_exactly_and_prunes(tmp_path, lab):
    data = images()
    model = lab.TinyResNet(num_classes=3, widths=(8, 16))
    fit(model, data, config=ONE_EPOCH, seed=0, progress=False)
    zoo = Zoo.create(tmp_path / "zoo")
    options = {"num_classes": 3, "widths": [8, 16]}
    run = zoo.add_model(model, data, factory=RESNET, options=options, train_config=ONE_EPOCH)
    assert run.startswith("TinyResNet-s0-")
    record = zoo.run(run)
    assert record.model_spec == ModelSpec(RESNET, (3, 16, 16), 3, options)
    assert record.train_config["source"] == "imported" and record.train_config["epochs"] == 1
    # the same import again is the same run, not a second one
    assert zoo.add_model(model, data, factory=RESNET, options=options, train_config=ONE_EPOCH) == run
    assert len(zoo.runs(kind="dense")) == 1
    # BatchNorm running statistics travel with the weights
    assert torch.equal(zoo.load_model(run).bn1.running_mean, model.bn1.running_mean)
    check_import_then_prune(zoo, run, model, lambda m, x: m(x))


def test_text_encoder_imports_with_its_token_data_and_prunes(tmp_path):
    data = token_dataset(n=120, length=10, vocab=24)
    model = TinyEncoder(vocab=24, dim=16, layers=1, max_length=10, seed=3)
    fit(model, data, config=ONE_EPOCH, seed=0, progress=False)
    assert not is_adapted(model)  # fit adapts for its scope only
    zoo = Zoo.create(tmp_path / "zoo")
    options = {"vocab": 24, "dim": 16, "layers": 1, "max_length": 10}
    run = zoo.add_model(model, data, factory=ENCODER, options=options)
    assert not is_adapted(model)  # importing leaves the user's model as it was
    stored = zoo.dataset(zoo.run(run).dataset)
    assert isinstance(stored.x, Inputs) and list(stored.x.keys()) == ["input_ids", "attention_mask"]
    assert stored.info.vocabulary == data.info.vocabulary and stored.info.modality == "text"
    check_import_then_prune(zoo, run, model, lambda m, x: m(**x.as_dict()).logits)


def test_text_datasets_round_trip_with_their_dtypes_and_old_zoos_keep_loading(tmp_path):
    zoo = Zoo.create(tmp_path / "zoo")
    con = sqlite3.connect(zoo.path / "zoo.sqlite")  # a zoo written before named inputs existed
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    old = Zoo(zoo.path)
    assert old.schema_version == 1
    img = images(n=30)
    key = old.add_dataset(img)
    assert Zoo(zoo.path).schema_version == 1  # nothing new written: still readable by older pruneviz
    assert torch.equal(old.dataset(key).x, img.x)

    ids = torch.tensor([[1, 5, 6, 0], [1, 7, 0, 0], [1, 2, 3, 4]] * 10)
    text = Dataset(
        Inputs({"input_ids": ids, "attention_mask": (ids != 0).to(torch.int32), "scale": torch.rand(30)}),
        np.arange(30) % 2,
        name="toks",
        vocabulary=[f"t{i}" for i in range(8)],
    )
    tkey = old.add_dataset(text)
    assert Zoo(zoo.path).schema_version == 2
    back = Zoo(zoo.path).dataset(tkey)
    assert list(back.x.keys()) == ["input_ids", "attention_mask", "scale"]
    for name, tensor in text.x.items():
        assert back.x[name].dtype == tensor.dtype and torch.equal(back.x[name], tensor)
    assert back.info.vocabulary == text.info.vocabulary
    assert back.x.shape == text.x.shape
    parts = Zoo(zoo.path).splits(tkey)
    assert sum(len(p) for p in parts) == 30 and isinstance(parts.val.x, Inputs)


def test_factory_references_resolve_only_when_safe(lab, monkeypatch):
    assert resolve_factory(RESNET) is lab.TinyResNet  # an nn.Module subclass needs no trust
    # a function of an untrusted package is refused, naming the reference and both ways to trust it
    with pytest.raises(ValidationError) as info:
        resolve_factory("lab_nets:tiny_resnet")
    text = str(info.value)
    assert "'factory' parameter" in text and "lab_nets:tiny_resnet" in text
    assert "trust_modules('lab_nets')" in text and f"{TRUSTED_ENV}=lab_nets" in text
    # a trusted package's module that re-exports a foreign function does not launder it
    with pytest.raises(ValidationError, match="defined in 'shutil'"):
        resolve_factory("pruneviz.zoo.store:shutil.rmtree")
    with pytest.raises(ValidationError, match="'factory' parameter"):
        resolve_factory("os:system")
    with trusting("lab_nets") as now:
        assert "lab_nets" in now
        assert resolve_factory("lab_nets:tiny_resnet") is lab.tiny_resnet
    assert "lab_nets" not in trusted_modules()
    monkeypatch.setenv(TRUSTED_ENV, "other, lab_nets")
    model = build_factory("lab_nets:tiny_resnet", {"num_classes": 4})
    assert isinstance(model, lab.TinyResNet) and model.fc.out_features == 4 and is_adapted(model)
    # the spec's seed draws the same weights every time
    spec = ModelSpec("lab_nets:tiny_resnet", (3, 16, 16), 4, {"num_classes": 4})
    a, b = build_from_spec(spec, seed=1), build_from_spec(spec, seed=1)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(ValidationError, match="returned a dict"):
        build_factory("lab_nets:make_config")
    with pytest.raises(ValidationError, match="names of importable packages"):
        trust_modules("../evil")


def test_trust_modules_lasts_until_removed(lab, monkeypatch):
    from pruneviz.models import registry

    monkeypatch.setattr(registry, "_TRUSTED", [])
    assert "lab_nets" in trust_modules("lab_nets")
    assert resolve_factory("lab_nets:tiny_resnet") is lab.tiny_resnet


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("no_such_package.nets:Net", "install the package that provides 'no_such_package.nets'"),
        ("lab_nets:NoSuchNet", "'lab_nets' has no attribute 'NoSuchNet'"),
        ("lab_nets.TinyResNet", "pass e.g. factory='lab_nets:TinyResNet'"),
        ("lab_nets:Tiny ResNet", "separate the importable module from the class"),
        ("lab_nets:tiny_resnet", "trust_modules('lab_nets')"),
    ],
)
def test_bad_factories_are_named_with_the_fix(tmp_path, lab, factory, needle):
    zoo = Zoo.create(tmp_path / "zoo")
    model = lab.TinyResNet(num_classes=3)
    with pytest.raises(ValidationError) as info:
        zoo.add_model(model, images(n=30), factory=factory, options={"num_classes": 3})
    text = str(info.value)
    assert "'factory' parameter of Zoo.add_model" in text and needle in text and "Fix:" in text
    assert zoo.runs().empty


def test_a_state_dict_the_factory_does_not_rebuild_is_refused_with_its_keys(tmp_path, lab):
    zoo = Zoo.create(tmp_path / "zoo")
    model = lab.TinyResNet(num_classes=3, widths=(8, 16))
    with pytest.raises(ValidationError) as info:  # wrong widths: every shape differs
        zoo.add_model(model, images(n=30), factory=RESNET, options={"num_classes": 3, "widths": [4, 16]})
    text = str(info.value)
    assert "'options' parameter of Zoo.add_model" in text and "mis-shaped" in text
    assert "conv1.weight (8, 3, 3, 3) float32 vs (4, 3, 3, 3) float32" in text
    assert "Pass the options that rebuild the architecture" in text
    with pytest.raises(ValidationError) as info:  # a block fewer: keys missing
        zoo.add_model(model, images(n=30), factory=RESNET, options={"num_classes": 3, "widths": [8]})
    assert "unexpected" in str(info.value) and "layer2.0.conv1.weight" in str(info.value)
    # same weights, different computation: the logits give it away
    scaled = lab.ScaledNet(num_classes=3, features=768, scale=2.0)
    with pytest.raises(ValidationError, match="logits that differ"):
        zoo.add_model(scaled, images(n=30), factory="lab_nets:ScaledNet", options={"features": 768})
    assert zoo.runs().empty


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_cli_imports_safetensors_and_refuses_pickles(tmp_path, lab, capsys):
    model = lab.TinyResNet(num_classes=10, in_channels=1, widths=(4, 8))
    weights = save_weights(model, tmp_path / "model.safetensors")
    options = json.dumps({"num_classes": 10, "in_channels": 1, "widths": [4, 8]})
    zoo_dir = tmp_path / "zoo"
    args = ["zoo", "import", "--zoo", str(zoo_dir), "--factory", RESNET, "--options", options]
    assert main([*args, "--weights", str(weights), "--data", "digits"]) == 0
    out = capsys.readouterr().out
    zoo = Zoo(zoo_dir)
    (run,) = zoo.run_ids()
    assert f"imported as run {run}" in out and zoo.run(run).arch == RESNET
    with torch.no_grad():
        x = zoo.splits(zoo.run(run).dataset).test.x
        assert torch.equal(zoo.load_model(run)(x), model.eval()(x))

    # a pickle is never read: this one is not even a valid pickle, and the message is the refusal
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"not read")
    assert main([*args, "--weights", str(pickled), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "'weights' parameter of import_weights" in err and "pickle" in err
    assert "save_file(torch.load('model.pt', weights_only=True), 'model.safetensors')" in err

    assert main([*args[:-1], "{num_classes: 10", "--weights", str(weights), "--data", "digits"]) == 2
    assert "'--options' parameter of pruneviz zoo import must be a JSON object" in capsys.readouterr().err
    assert main([*args, "--weights", str(weights), "--data", "no-such-data"]) == 2
    assert "'data' parameter of pruneviz zoo import" in capsys.readouterr().err
    wrong = json.dumps({"num_classes": 10, "in_channels": 1, "widths": [8, 8]})
    assert main([*args[:-1], wrong, "--weights", str(weights), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "'options' parameter of import_weights" in err and "mis-shaped" in err
    assert zoo.run_ids() == [run]


def test_import_weights_refuses_a_pickle_without_reading_it(tmp_path, lab):
    from pruneviz.zoo import import_weights

    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x04not read")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        import_weights(Zoo.create(tmp_path / "z"), path, images(n=30), factory=RESNET)


def test_an_import_without_evaluation_stores_no_outputs_but_the_columns(tmp_path, lab):
    zoo = Zoo.create(tmp_path / "zoo")
    model = lab.TinyResNet(num_classes=3)
    run = zoo.add_model(model, images(n=30), factory=RESNET, options={"num_classes": 3}, evaluate=False)
    assert zoo.outputs(run).empty and "logit_2" in zoo.outputs(run).columns
    assert set(zoo.run(run).metrics) == {"params"}
    assert zoo.run(run).timing.keys() == {"latency_b1"}  # trained elsewhere: no training time


@pytest.mark.parametrize(
    "factory, methods",
    [
        # depthwise convolutions, squeeze-and-excite: mask methods, data-driven ones and real channel removal
        ("pruneviz.testing.models:MobileNetLike", ["lamp", "wanda", "sparsegpt", "channel_l1"]),
        # nn.MultiheadAttention's in_proj_weight and out_proj pruned like any weight, calibrated per block
        ("pruneviz.testing.models:VisionTransformerLike", ["lamp", "wanda", "sparsegpt", "snip"]),
    ],
)
def test_torchvision_style_mobilenet_and_vit_import_and_prune_with_every_kind_of_method(
    tmp_path, factory, methods
):
    from pruneviz.models import build_factory
    from pruneviz.prune.weights import prunable_weights
    from pruneviz.study import run_cka, run_spectrum

    data = Dataset(
        np.clip(images(n=90, k=3).x.numpy().repeat(2, 2).repeat(2, 3) * 0.2 + 0.5, 0, 1),
        np.arange(90) % 3,
        name="img32",
    )
    options = {"num_classes": 3}
    model = build_factory(factory, options, seed=0)
    fit(model, data.split(seed=0).train, config=ONE_EPOCH, seed=0, progress=False)
    zoo = Zoo.create(tmp_path / "zoo")
    run = zoo.add_model(model, data, factory=factory, options=options)
    table = prune_population(zoo, methods=methods, sparsities=[0.5], finetune=ONE_EPOCH, progress=False)
    assert sorted(table["method"]) == sorted(methods)
    for child in table["run"]:
        rec = zoo.run(child)
        pruned = zoo.load_model(child)
        if rec.method == "channel_l1":
            assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
            continue
        weights = prunable_weights(pruned)
        zeros = sum(int((w.weight == 0).sum()) for w in weights.values())
        assert abs(zeros / sum(w.weight.numel() for w in weights.values()) - 0.5) < 0.02, rec.method
        if "VisionTransformer" in factory:
            assert any(k.endswith("in_proj_weight") for k in zoo.masks(child)), "attention projections pruned"
        assert len(zoo.outputs(child, subset="test")) == len(zoo.splits(rec.dataset).test)
    child = table[table.method == "lamp"].run.iloc[0]
    assert run_cka(zoo, run, child, samples=32)["value"].notna().all()
    assert not run_spectrum(zoo, child).empty
