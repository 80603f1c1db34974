"""Models and data shaped like the ones users bring, built locally from random weights (no downloads).

:class:`VisionResNet` has torchvision's ResNet layout and module names (``conv1``, ``bn1``, ``layer1``…,
``downsample``, ``fc``), with fewer and narrower stages; :func:`resnet18` and :class:`MobileNetV2` are
torchvision's ``resnet18`` and ``mobilenet_v2`` at full size (same layer shapes, module names and
initialisation; random weights). :class:`TabularNet` is a batch-normalised MLP that returns a dict.
:class:`TinyEncoder` is a Hugging Face–style BERT encoder for sequence classification: it takes
``input_ids``, ``attention_mask`` and optional ``token_type_ids`` by keyword, has separate query/key/value
projections per layer, a tanh pooler over the first token and a classifier head, and returns an object
with ``.logits`` (like ``SequenceClassifierOutput``). :func:`token_dataset` makes a padded token task it
can learn. Tests and benchmarks use them as stand-ins for models pruneviz did not write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pruneviz._seed import seeded
from pruneviz.data.dataset import Dataset
from pruneviz.data.inputs import Inputs


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class VisionResNet(nn.Module):
    """torchvision's ResNet layout (BasicBlocks, BatchNorm, 1×1 downsample shortcuts, adaptive average
    pooling, ``fc``) with ``widths`` channels per stage and ``blocks`` blocks each; weights drawn from
    ``seed``. The stem is a 3×3 convolution and a 2×2 max-pool, or with ``imagenet_stem`` torchvision's
    7×7 stride-2 convolution and 3×3 stride-2 max-pool (:func:`resnet18` is the full-size network).

    >>> VisionResNet(num_classes=3)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: tuple[int, ...] = (8, 16),
        blocks: int = 1,
        imagenet_stem: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with seeded(seed):
            if imagenet_stem:
                self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            else:
                self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet_stem else nn.MaxPool2d(2)
            stages: list[nn.Sequential] = []
            cin = widths[0]
            for i, w in enumerate(widths):
                layer: list[nn.Module] = []
                for j in range(blocks):
                    layer.append(_BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1))
                    cin = w
                stages.append(nn.Sequential(*layer))
            for i, seq in enumerate(stages, start=1):
                self.add_module(f"layer{i}", seq)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(cin, num_classes)
        self.stages = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),  # depthwise
            nn.BatchNorm2d(hidden),
            nn.Hardswish(),
            _SqueezeExcite(hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class MobileNetLike(nn.Module):
    """torchvision's MobileNetV3 building blocks (inverted residuals with depthwise convolutions,
    squeeze-and-excite, hard-swish) in a small network named as torchvision names it (``features``,
    ``classifier``); weights drawn from ``seed``.

    >>> MobileNetLike(num_classes=3)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            self.features = nn.Sequential(
                nn.Sequential(
                    nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.Hardswish()
                ),
                _InvertedResidual(width, width, 1),
                _InvertedResidual(width, 2 * width, 2),
                _InvertedResidual(2 * width, 2 * width, 1),
            )
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(2 * width, 32), nn.Hardswish(), nn.Linear(32, num_classes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _conv_norm_act(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` as MobileNetV2 uses it: conv (no bias), BatchNorm, ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class _MobileV2Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_norm_act(cin, hidden, 1)]
        layers += [
            _conv_norm_act(hidden, hidden, 3, stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) at width 1.0, with torchvision's ``mobilenet_v2`` layer shapes,
    module names and initialisation (``features``: a stride-2 stem, 17 inverted residuals with depthwise
    convolutions and ReLU6, a 1×1 conv to 1280; ``classifier``: dropout and a linear layer); 3,504,872
    parameters for 1000 classes, as torchvision's. Weights drawn from ``seed``; nothing is downloaded.

    >>> MobileNetV2(num_classes=3)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 3])
    """

    #: (expansion t, output channels c, repeats n, first stride s), the paper's Table 2
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, *, num_classes: int = 1000, seed: int = 0) -> None:
        super().__init__()
        with seeded(seed):
            layers: list[nn.Module] = [_conv_norm_act(3, 32, 3, 2)]
            cin = 32
            for t, c, n, s in self.SETTINGS:
                for i in range(n):
                    layers.append(_MobileV2Block(cin, c, s if i == 0 else 1, t))
                    cin = c
            layers.append(_conv_norm_act(cin, 1280, 1))
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def resnet18(*, num_classes: int = 1000, seed: int = 0) -> VisionResNet:
    """ResNet-18 (He et al. 2016) with torchvision's ``resnet18`` layer shapes, module names and
    initialisation: a 7×7 stride-2 stem and a 3×3 stride-2 max-pool, four stages of two basic blocks at
    64, 128, 256, 512 channels, ``fc``; 11,689,512 parameters for 1000 classes, as torchvision's.
    Weights drawn from ``seed``; nothing is downloaded.

    >>> resnet18(num_classes=3)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 3])
    """
    model = VisionResNet(
        num_classes=num_classes, widths=(64, 128, 256, 512), blocks=2, imagenet_stem=True, seed=seed
    )
    with seeded(seed), torch.no_grad():  # torchvision's initialisation of the convolutions
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


class _EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.self_attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisionTransformerLike(nn.Module):
    """torchvision's ``VisionTransformer`` layout: a patch-embedding convolution ``conv_proj``, a class
    token, learned positions, encoder blocks with ``nn.MultiheadAttention`` and a ``heads`` head; small.

    >>> VisionTransformerLike(num_classes=3)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        image_size: int = 32,
        patch_size: int = 8,
        in_channels: int = 3,
        dim: int = 32,
        heads: int = 2,
        layers: int = 2,
        num_classes: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self.conv_proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)
            self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embedding = nn.Parameter(torch.randn(1, (image_size // patch_size) ** 2 + 1, dim) * 0.02)
            self.encoder = nn.Sequential(*(_EncoderBlock(dim, heads) for _ in range(layers)))
            self.ln = nn.LayerNorm(dim)
            self.heads = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(len(x), -1, -1), x], 1) + self.pos_embedding
        return self.heads(self.ln(self.encoder(x))[:, 0])


class TabularNet(nn.Module):
    """A tabular classifier as people write one: Linear → BatchNorm → ReLU → Dropout blocks and a head
    named ``head``; returns a dict with ``"logits"`` (as some training frameworks expect).

    >>> TabularNet(features=5, num_classes=2)(torch.zeros(4, 5))["logits"].shape
    torch.Size([4, 2])
    """

    def __init__(
        self, *, features: int, num_classes: int = 2, hidden: tuple[int, ...] = (32, 16), seed: int = 0
    ) -> None:
        super().__init__()
        with seeded(seed):
            layers: list[nn.Module] = []
            cin = features
            for h in hidden:
                layers += [nn.Linear(cin, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(0.1)]
                cin = h
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.body(x))}


@dataclass
class ClassifierOutput:
    """What a Hugging Face sequence classifier returns: logits and, optionally, hidden states."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, length, dim = h.shape
        d = dim // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, length, dim)
        return self.output(ctx)


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = _SelfAttention(dim, heads)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.intermediate, self.out = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + self.attention(h, keep))
        return self.norm2(h + self.out(F.gelu(self.intermediate(h))))


class TinyEncoder(nn.Module):
    """A BERT-style encoder with a classification head; weights drawn from ``seed``.

    >>> m = TinyEncoder(vocab=20, dim=8, num_classes=2)
    >>> ids = torch.tensor([[2, 5, 7, 0]])
    >>> m(input_ids=ids, attention_mask=(ids != 0).long()).logits.shape
    torch.Size([1, 2])
    """

    def __init__(
        self,
        *,
        vocab: int = 30,
        dim: int = 16,
        heads: int = 2,
        layers: int = 2,
        max_length: int = 64,
        num_classes: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        with seeded(seed):
            self.word_embeddings = nn.Embedding(vocab, dim, padding_idx=0)
            self.position_embeddings = nn.Embedding(max_length, dim)
            self.token_type_embeddings = nn.Embedding(2, dim)
            self.embedding_norm = nn.LayerNorm(dim)
            self.layers = nn.ModuleList(_Layer(dim, heads) for _ in range(layers))
            self.pooler = nn.Linear(dim, dim)
            self.classifier = nn.Linear(dim, num_classes)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        keep = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings(types)
        )
        h = self.embedding_norm(h)
        states = [h]
        for layer in self.layers:
            h = layer(h, keep)
            states.append(h)
        pooled = torch.tanh(self.pooler(h[:, 0]))
        return ClassifierOutput(self.classifier(pooled), tuple(states))


def token_dataset(
    *, n: int = 200, length: int = 12, vocab: int = 30, seed: int = 0, name: str = "tokens"
) -> Dataset:
    """A padded two-class token task: is the sequence mostly made of the lower half of the vocabulary?

    Id 0 is padding and id 1 a leading ``[CLS]`` token; each sequence has a random length from 3 to
    ``length`` and is padded with 0, marked in ``attention_mask``. A ``length_group`` column (short /
    long) gives a subgroup to audit.
    """
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, length), dtype=np.int64)
    labels = np.zeros(n, dtype=np.int64)
    lengths = rng.integers(3, length + 1, size=n)
    half = vocab // 2
    for i, ell in enumerate(lengths):
        labels[i] = i % 2
        low = rng.random() < (0.8 if labels[i] == 0 else 0.2)
        body = rng.integers(2, half, ell - 1) if low else rng.integers(half, vocab, ell - 1)
        noise = rng.random(ell - 1) < 0.2
        body[noise] = rng.integers(2, vocab, int(noise.sum()))
        ids[i, 0] = 1
        ids[i, 1:ell] = body
        # the label is what the tokens say, noise included
        labels[i] = int(np.mean(body < half) < 0.5)
    ids_t = torch.from_numpy(ids)
    vocabulary = ["[PAD]", "[CLS]", *(f"w{i}" for i in range(2, vocab))]
    return Dataset(
        Inputs({"input_ids": ids_t, "attention_mask": (ids_t != 0).long()}),
        labels,
        groups={"length_group": np.where(lengths > length // 2, "long", "short")},
        class_names=["low", "high"],
        name=name,
        vocabulary=vocabulary,
        source={"kind": "token_dataset", "n": n, "length": length, "vocab": vocab, "seed": seed},
    )


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with every BatchNorm2d's statistics and affine parameters moved away from
    their identity initialisation (as after training, drawn from ``seed``), so that folding them or
    comparing pruned and masked models is not trivially exact. Changes ``model`` in place; returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
    return model.eval()
