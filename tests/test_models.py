from __future__ import annotations

import pytest
import torch

from pruneviz.exceptions import ValidationError
from pruneviz.models import (
    ModelSpec,
    ResNet,
    architecture_names,
    build_from_spec,
    build_model,
    count_parameters,
)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet20"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40), (3, 32, 32)])
def test_every_architecture_runs_on_images_and_sequences(arch, shape):
    model = build_model(arch, input_shape=shape, num_classes=7, seed=0)
    assert model(torch.zeros(3, *shape)).shape == (3, 7)


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    b = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    c = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.state_dict()["classifier.weight"], c.state_dict()["classifier.weight"])


@pytest.mark.reference
def test_resnet20_has_the_published_size():
    # He et al. 2016, Table 6: ResNet-20 on CIFAR-10 has 0.27M parameters.
    model = ResNet((3, 32, 32), 10, depth=20)
    assert 0.26e6 < count_parameters(model) < 0.28e6
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convs + the classifier
    assert count_parameters(ResNet((3, 32, 32), 10, depth=20, width=2)) > 3.5 * count_parameters(model)


@pytest.mark.reference
def test_resnet18_has_the_published_size():
    # He et al. 2016: ResNet-18 has 11.7M parameters with the 7x7 ImageNet stem and 1000 classes; with a
    # 3x3 stem and 10 classes (the CIFAR variant) it has 11.17M.
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)
    assert 11.1e6 < count_parameters(model) < 11.2e6
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_spec_round_trip():
    spec = ModelSpec("mlp", (1, 8, 8), 10, {"hidden": (16,)})
    again = ModelSpec.from_json(spec.to_json())
    model = build_from_spec(again, seed=0)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert again.arch == "mlp" and again.input_shape == (1, 8, 8)


def test_bad_model_requests_are_explained():
    with pytest.raises(
        ValidationError, match=r"'arch' parameter of build_model must be one of .*Got 'lenet5'"
    ):
        build_model("lenet5", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValidationError, match=r"'depth' parameter of ResNet must be of the form 6n \+ 2"):
        build_model("resnet", input_shape=(1, 8, 8), num_classes=10, depth=21)
    with pytest.raises(
        ValidationError, match=r"'num_classes' parameter of build_model must be an integer >= 2"
    ):
        build_model("mlp", input_shape=(4,), num_classes=1)
    with pytest.raises(
        ValidationError, match=r"'input_shape' parameter of LeNet.*use the 'mlp' architecture"
    ):
        build_model("cnn", input_shape=(4,), num_classes=3)
    with pytest.raises(ValidationError, match="keyword options of the 'mlp' architecture"):
        build_model("mlp", input_shape=(4,), num_classes=3, channels=(2,))
    assert "resnet20" in architecture_names()
