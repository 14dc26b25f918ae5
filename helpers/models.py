"""The course CNN, built from a small config so that every pruned shape can be rebuilt.

Three conv-BN-ReLU-maxpool blocks (32/64/128 channels by default) and three fully connected
layers (1152 -> 1000 -> 120 -> 10): about 1.37M parameters, close to the Fashion-MNIST seed.
The model takes images in [0, 1] (``ToTensor()`` output) and normalises inside.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530


@dataclass(frozen=True)
class CNNConfig:
    """Channel and feature counts: all a pruned model needs to be rebuilt at its shape."""

    conv_channels: tuple[int, ...] = (32, 64, 128)
    fc_features: tuple[int, ...] = (1000, 120)
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    dropout: float = 0.3

    def __post_init__(self):
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "fc_features", tuple(int(f) for f in self.fc_features))
        if any(c < 1 for c in self.conv_channels + self.fc_features):
            raise ValueError(f"every layer needs at least one channel/unit: {self}")

    @property
    def feature_map_size(self) -> int:
        """Side of the last feature map (each block halves it, rounding down)."""
        size = self.image_size
        for _ in self.conv_channels:
            size //= 2
        return size

    @property
    def flat_features(self) -> int:
        return self.conv_channels[-1] * self.feature_map_size ** 2

    @property
    def parameter_count(self) -> int:
        """Parameters of a model of this config, computed without building it (conv, BN, Linear)."""
        channels = (self.in_channels,) + self.conv_channels
        convs = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out in zip(channels[:-1], channels[1:]))
        widths = (self.flat_features,) + self.fc_features + (self.num_classes,)
        return convs + sum((f_in + 1) * f_out for f_in, f_out in zip(widths[:-1], widths[1:]))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "CNNConfig":
        return cls(**data)


class Normalize(nn.Module):
    """(x - mean) / std with fixed buffers, so a saved model needs nothing but ``ToTensor()``."""

    def __init__(self, mean: float = FASHION_MNIST_MEAN, std: float = FASHION_MNIST_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))

    def forward(self, x):
        return (x - self.mean) / self.std


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(inplace=True),
        pool=nn.MaxPool2d(2),
    ))


class FashionCNN(nn.Module):
    """``normalize -> features (conv blocks) -> flatten -> classifier (Linear/ReLU/Dropout)``."""

    def __init__(self, config: CNNConfig = CNNConfig()):
        super().__init__()
        self.config = config
        self.normalize = Normalize()
        channels = (config.in_channels,) + config.conv_channels
        self.features = nn.Sequential(OrderedDict(
            (f"block{i + 1}", conv_block(c_in, c_out))
            for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]))
        ))
        self.flatten = nn.Flatten()
        widths = (config.flat_features,) + config.fc_features + (config.num_classes,)
        layers: list[tuple[str, nn.Module]] = []
        for i, (f_in, f_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append((f"fc{i + 1}", nn.Linear(f_in, f_out)))
            if i < len(widths) - 2:
                layers += [(f"relu{i + 1}", nn.ReLU(inplace=True)),
                           (f"drop{i + 1}", nn.Dropout(config.dropout))]
        self.classifier = nn.Sequential(OrderedDict(layers))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(self.normalize(x))))

    def conv_layers(self) -> list[nn.Conv2d]:
        return [block.conv for block in self.features]

    def bn_layers(self) -> list[nn.BatchNorm2d]:
        return [block.bn for block in self.features]

    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.classifier if isinstance(m, nn.Linear)]


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> every Conv2d and Linear layer: the layers whose weights pruning counts."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def build_model(config: CNNConfig | dict | None = None) -> FashionCNN:
    """A fresh ``FashionCNN`` from a config (a ``CNNConfig``, its dict, or the default)."""
    if config is None:
        config = CNNConfig()
    elif isinstance(config, dict):
        config = CNNConfig.from_dict(config)
    return FashionCNN(config)
