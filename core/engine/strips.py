"""Run an encoder's full-resolution stages in horizontal strips, to cut its memory peak.

A ResNet's stem and first stage work at half (or a quarter of) the input resolution with
few channels: on a 2312 x 2312 block their activations are ~80 MB each and three or four
are alive at once, the largest part of a block's memory. Their receptive field is small
(23 px for the small model), so they can run strip by strip, each strip read with a margin
that covers the receptive field and cropped back: the result is the same feature map as one
pass over the whole block (the same convolutions over the same pixels; zero padding only at
the block's own edges), assembled into one tensor that the later stages take as usual.

The input may also be a ``RowSource``, which makes each strip's rows when they are needed:
the engine's 16-bit optical block is then converted to normalised float32 strip by strip
and the float copy of the whole block (227 MB at 2176² x 12 bands) never exists.
"""
from __future__ import annotations

import math
from typing import Protocol, Union

import torch
from torch import nn


class RowSource(Protocol):
    """An encoder input [1, C, H, W] made on demand, a range of rows at a time."""

    shape: tuple[int, int, int, int]

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Rows [a, b) as the encoder takes them: [1, C, b - a, W]."""


Input = Union[torch.Tensor, RowSource]


def rows_of(x: Input, a: int, b: int) -> torch.Tensor:
    """Rows [a, b) of a tensor or a ``RowSource``."""
    return x[:, :, a:b] if isinstance(x, torch.Tensor) else x.rows(a, b)


def receptive_margin(modules: list[nn.Module]) -> tuple[int, int]:
    """(margin, stride) in input pixels of a chain of convolutions and poolings: every output
    row depends on input rows within ``margin`` of its centre; ``stride`` is their total
    stride. Shortcut branches (``downsample``) run beside the main path and see a subset of
    its input, so they are left out."""
    margin, stride = 0, 1
    for m in modules:
        for name, mod in m.named_modules():
            if "downsample" in name.split("."):
                continue
            if isinstance(mod, (nn.Conv2d, nn.MaxPool2d)):
                k = mod.kernel_size[0] if isinstance(mod.kernel_size, tuple) else mod.kernel_size
                s = mod.stride[0] if isinstance(mod.stride, tuple) else mod.stride
                d = mod.dilation[0] if isinstance(mod.dilation, tuple) else mod.dilation
                margin += (d * (k - 1) // 2) * stride
                stride *= s
    return margin, stride


class StripEncoder(nn.Module):
    """``head`` (the full-resolution stages) strip by strip, then ``tail`` over the whole map.

    Args:
        head: modules run in order on each strip (e.g. conv1, relu, maxpool, layer1).
        tail: modules run in order on the assembled map (layer2..layer4).
        strip_rows: input rows per strip (a multiple of the head's stride); inputs no taller
            than ~1.5 strips run in one pass.
    """

    def __init__(self, head: list[nn.Module], tail: list[nn.Module], strip_rows: int = 512) -> None:
        super().__init__()
        self.head, self.tail = nn.Sequential(*head), nn.Sequential(*tail)
        margin, self.head_stride = receptive_margin(head)
        self.margin = math.ceil(margin / self.head_stride) * self.head_stride  # whole output rows
        self.strip_rows = max(self.head_stride, strip_rows // self.head_stride * self.head_stride)

    def forward(self, x: Input) -> torch.Tensor:
        return self.tail(self.run_head(x))

    def forward_levels(self, x: Input, n: int = 4) -> list[torch.Tensor]:
        """The head's output, then each tail module's output (a ResNet's layer1..layer4): the
        first ``n`` of them (the later modules are not run)."""
        out = [self.run_head(x)]
        for module in list(self.tail)[: n - 1]:
            out.append(module(out[-1]))
        return out

    def run_head(self, x: Input) -> torch.Tensor:
        """The head's output map over the whole input, strip by strip."""
        h = x.shape[2]
        if h <= self.strip_rows * 3 // 2:
            return self.head(rows_of(x, 0, h))
        s, m = self.head_stride, self.margin
        out = None
        for r0 in range(0, h, self.strip_rows):
            r1 = min(h, r0 + self.strip_rows)
            a, b = max(0, r0 - m), min(h, r1 + m)
            xs = rows_of(x, a, b)
            if out is None:  # the assembled map takes the input's memory layout
                fmt = torch.channels_last if xs.is_contiguous(memory_format=torch.channels_last) \
                    else torch.contiguous_format
            y = self.head(xs)
            del xs  # a strip made by a RowSource is freed before the map grows
            top = (r0 - a) // s
            rows = -(-(r1 - r0) // s) if r1 == h else (r1 - r0) // s
            if out is None:
                out = torch.empty((y.shape[0], y.shape[1], -(-h // s), y.shape[3]), dtype=y.dtype,
                                  device=y.device, memory_format=fmt)
            out[:, :, r0 // s: r0 // s + rows] = y[:, :, top: top + rows]
            del y
        return out


def strip_encoder(encoder: nn.Module, strip_rows: int = 512) -> StripEncoder:
    """A ResNetEncoder (``conv1 bn1 relu maxpool layer1..4``) as a StripEncoder over its stem
    and first stage."""
    head = [encoder.conv1, encoder.bn1, encoder.relu, encoder.maxpool, encoder.layer1]
    tail = [encoder.layer2, encoder.layer3, encoder.layer4]
    return StripEncoder(head, tail, strip_rows)
