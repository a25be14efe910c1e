"""ResNet encoders written here, with the parameter names of the common implementation.

``conv1``, ``bn1``, ``layer1..4.N.conv1/bn1/conv2/bn2(/conv3/bn3)``, ``downsample.0/1``:
a ResNet-18/50 state dict pretrained elsewhere (e.g. SSL4EO-S12, with 12 or 2 input
channels) loads by name when ``width=64``. Width and depth are configurable so the
default model trains on 2 CPU cores; there is no ``fc``: the encoder returns feature maps.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one tensor less
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetEncoder(nn.Module):
    """ResNet trunk (stem + 4 stages) for ``in_channels`` bands.

    Args:
        in_channels: input bands (12 for Sentinel-2, 2 for Sentinel-1).
        depth: 18, 34, 50 or 101.
        width: channels of the first stage (64 in the standard ResNet).
        stem_stride: 4 in the standard ResNet (stride-2 conv + max-pool); 2 drops the
            max-pool, which suits 120 px patches. Output stride is ``stem_stride * 8``.
    """

    def __init__(self, in_channels: int, depth: int = 18, width: int = 64, stem_stride: int = 4) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        if stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 or 4, got {stem_stride}")
        kind, blocks = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.in_channels, self.depth, self.width, self.stem_stride = in_channels, depth, width, stem_stride
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_stride == 4 else nn.Identity()
        cin = width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            layers = []
            for j in range(n):
                layers.append(block(cin, planes, stride=2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_channels = cin
        self.output_stride = stem_stride * 8
        # channels and strides of the four stages' outputs (the multi-scale maps a pixel head reads)
        self.level_channels = tuple(width * 2**i * block.expansion for i in range(4))
        self.level_strides = tuple(stem_stride * 2**i for i in range(4))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block: blocks start as identity
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.bn2.weight if isinstance(m, BasicBlock) else m.bn3.weight)

    def stages(self) -> Sequence[nn.Module]:
        """Stem + stages in order, so callers can freeze or fine-tune the last ones."""
        return (nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3, self.layer4)

    def forward_levels(self, x: torch.Tensor, n: int = 4) -> list[torch.Tensor]:
        """[B, C, H, W] -> the outputs of layer1..layer<n> (``level_strides``: 2, 4, 8, 16 for the
        small model); cell j of a level of stride s is centred on input pixel s * j. The later
        stages are not run."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[:n]:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> feature map [B, out_channels, H/stride, W/stride]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
