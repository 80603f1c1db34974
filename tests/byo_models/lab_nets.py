"""A user's own model code, as tests import it: a torchvision-style ResNet and a few factories.

Not a test module: tests put this folder on ``sys.path`` (``monkeypatch.syspath_prepend``) and name its
objects by factory reference, ``lab_nets:TinyResNet``, as a user names code of their own package.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3×3 convolutions with BatchNorm, a 1×1 downsample shortcut."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    """torchvision's ``ResNet`` layout (conv1, bn1, layer1.., avgpool, fc), small enough for tests."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3, widths: tuple = (8, 16)) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(BasicBlock(cin, w, stride=1 if i == 0 else 2))
            cin = w
        self.layer1 = layers[0]
        self.layer2 = nn.Sequential(*layers[1:])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """A builder function (like ``torchvision.models.resnet18``): callable only where trusted."""
    return TinyResNet(num_classes=num_classes, in_channels=in_channels)


def make_config(num_classes: int = 10) -> dict:
    """A function that returns something other than a model."""
    return {"num_classes": num_classes}


class ScaledNet(nn.Module):
    """Its ``scale`` changes the logits without changing the state dict."""

    def __init__(self, *, num_classes: int = 3, features: int = 48, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.fc = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * self.scale
