"""The bundled architectures: an MLP, a LeNet-style CNN and a CIFAR-style ResNet-20.

Each works on images ``(C, H, W)`` and on sequences ``(C, L)`` (1-D convolutions), so the same name
serves digits, MNIST and MNIST-1D. Any other ``nn.Module`` is accepted everywhere else in pruneviz.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from pruneviz._validation import check_int, fail


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv1d


def _bn(dims: int) -> type[nn.Module]:
    return nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d


def _spatial_dims(input_shape: Sequence[int], where: str) -> int:
    if len(input_shape) not in (2, 3):
        fail(
            "input_shape",
            where,
            "(C, H, W) for images or (C, L) for sequences",
            tuple(input_shape),
            "use the 'mlp' architecture for tabular data.",
        )
    return len(input_shape) - 1


class MLP(nn.Module):
    """A multilayer perceptron on flattened inputs: ``Linear -> ReLU`` per hidden width, then a classifier.

    >>> MLP((1, 8, 8), 10, hidden=(32,))(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        widths = [int(math.prod(input_shape)), *[int(h) for h in hidden]]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet-5-style CNN (LeCun et al. 1998): two ``conv5 -> ReLU -> maxpool2`` stages, two hidden
    fully connected layers, a classifier. Padding keeps small inputs (8×8 digits) usable.

    >>> LeNet((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        channels: Sequence[int] = (16, 32),
        hidden: Sequence[int] = (120, 84),
    ):
        super().__init__()
        dims = _spatial_dims(input_shape, "LeNet")
        conv, pool = _conv(dims), (nn.MaxPool2d if dims == 2 else nn.MaxPool1d)
        c_in, layers = int(input_shape[0]), []
        size = list(input_shape[1:])
        for c_out in channels:
            layers += [conv(c_in, int(c_out), kernel_size=5, padding=2), nn.ReLU(), pool(2)]
            c_in, size = int(c_out), [s // 2 for s in size]
        if min(size) < 1:
            fail(
                "input_shape",
                "LeNet",
                f"spatial size of at least {2 ** len(channels)} for {len(channels)} pooling stages",
                tuple(input_shape),
                "use fewer channel stages or the 'mlp' architecture.",
            )
        self.features = nn.Sequential(*layers, nn.Flatten())
        widths = [c_in * math.prod(size), *[int(h) for h in hidden]]
        head: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            head += [nn.Linear(a, b), nn.ReLU()]
        self.head = nn.Sequential(*head)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut (He et al. 2016)."""

    def __init__(self, dims: int, c_in: int, c_out: int, stride: int):
        super().__init__()
        conv, bn = _conv(dims), _bn(dims)
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(c_out)
        self.conv2 = conv(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = bn(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride=stride, bias=False), bn(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class _StagedResNet(nn.Module):
    """A 3×3 conv-BN-ReLU stem, stages of basic blocks (the first block of every stage after the first
    halves the resolution), global average pooling and a linear classifier (He et al. 2016)."""

    def __init__(
        self, dims: int, in_channels: int, num_classes: int, widths: Sequence[int], blocks_per_stage: int
    ) -> None:
        super().__init__()
        conv, bn = _conv(dims), _bn(dims)
        self.stem = nn.Sequential(
            conv(in_channels, widths[0], 3, padding=1, bias=False), bn(widths[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for stage, c_out in enumerate(widths):
            for i in range(blocks_per_stage):
                blocks.append(BasicBlock(dims, c_in, c_out, 2 if (stage > 0 and i == 0) else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1), nn.Flatten()
        )
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))))


class ResNet18(_StagedResNet):
    """ResNet-18 (He et al. 2016, Table 1: four stages of two basic blocks at widths 64, 128, 256, 512,
    strides 1, 2, 2, 2) with the 3×3 stem of the CIFAR variants, so small inputs keep their resolution.
    ``width`` multiplies every stage width. 11.2M parameters at width 1 for 10 classes.

    >>> ResNet18((3, 32, 32), 10)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, width: int = 1):
        dims = _spatial_dims(input_shape, "ResNet18")
        width = check_int(width, "width", "ResNet18", minimum=1)
        super().__init__(
            dims, int(input_shape[0]), num_classes, [64 * width, 128 * width, 256 * width, 512 * width], 2
        )


class ResNet(_StagedResNet):
    """CIFAR-style ResNet (He et al. 2016, §4.2): a 3×3 stem, three stages of ``n`` basic blocks at
    widths ``16w, 32w, 64w`` (strides 1, 2, 2), global average pooling and a classifier.
    ``depth = 6n + 2``; ResNet-20 is ``n = 3``.

    >>> ResNet((3, 32, 32), 10, depth=20, width=1)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, depth: int = 20, width: int = 1):
        dims = _spatial_dims(input_shape, "ResNet")
        depth = check_int(depth, "depth", "ResNet", minimum=8)
        width = check_int(width, "width", "ResNet", minimum=1)
        if (depth - 2) % 6:
            fail(
                "depth", "ResNet", "of the form 6n + 2 (8, 14, 20, 32, 44, 56, 110)", depth, "e.g. depth=20."
            )
        super().__init__(
            dims, int(input_shape[0]), num_classes, [16 * width, 32 * width, 64 * width], (depth - 2) // 6
        )
