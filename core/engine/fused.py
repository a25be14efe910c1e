"""Convolution, residual sum and ReLU as one oneDNN operation, for the CPU encoders.

In a ResNet block the ReLU after a convolution and the residual sum before the last ReLU
are passes of their own over activations of tens of MB (16 channels at 1088² are 76 MB),
bound by memory, not by arithmetic (with the strips' copies, 0.4 s of the encoders' 2.1 s
on a 2176² block on the 2-core machine, outside the convolutions). oneDNN applies them to the
convolution's output while it is computed (post-ops): 5-7 % faster encoders,
with the same arithmetic, so the feature maps are the same. torch reaches these fused
convolutions only through private operators (``torch.ops.mkldnn._convolution_pointwise``,
what ``torch.compile`` emits on CPU), so ``fuse_pointwise`` checks them on a small input
against the plain modules and keeps the plain modules where the operators are missing or
differ.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.resnet import BasicBlock, Bottleneck


def _conv(conv: nn.Conv2d, x: torch.Tensor, unary: str) -> torch.Tensor:
    """``conv`` then ``unary`` ('relu' or 'none') in one operation."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, unary, [], "")


def _conv_add_relu_into(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """relu(conv(x) + other) in one operation, written into ``other`` and returned."""
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        other, x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
        conv.groups, "add", 1.0, "relu", [], "")


def _residual(block: nn.Module, out: torch.Tensor, x: torch.Tensor, last: nn.Conv2d) -> torch.Tensor:
    """relu(last(out) + shortcut(x)), written into the shortcut's output, which is ``x``
    itself where the block has no shortcut module, as the plain block sums into its last
    convolution's output: no more activations alive at once than there (a new tensor for the
    sum took 70-140 MB more at the engine's blocks). The engine's encoders never use a block's
    input again: it is always the stem's or the previous block's output, never the caller's."""
    shortcut = x if block.downsample is None else block.downsample(x)
    return _conv_add_relu_into(last, out, shortcut)


class ConvReLU(nn.Module):
    """relu(conv(x)); ``conv`` stays a submodule, so receptive-field walks still find it."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv(self.conv, x, "relu")


class FusedBasicBlock(nn.Module):
    """A BatchNorm-folded ``BasicBlock`` in two fused operations (overwrites its input where it
    has no shortcut module: ``_residual``)."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1, self.conv2, self.downsample = block.conv1, block.conv2, block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _residual(self, _conv(self.conv1, x, "relu"), x, self.conv2)


class FusedBottleneck(nn.Module):
    """A BatchNorm-folded ``Bottleneck`` in three fused operations (overwrites its input where
    it has no shortcut module: ``_residual``)."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = block.conv1, block.conv2, block.conv3
        self.downsample = block.downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _residual(self, _conv(self.conv2, _conv(self.conv1, x, "relu"), "relu"), x, self.conv3)


def _fused_copy(encoder: nn.Module) -> nn.Module:
    """A copy of a BatchNorm-folded ResNetEncoder with fused stem and blocks."""
    enc = copy.deepcopy(encoder)
    enc.conv1, enc.relu = ConvReLU(enc.conv1), nn.Identity()
    for stage in (enc.layer1, enc.layer2, enc.layer3, enc.layer4):
        for i, block in enumerate(stage):
            stage[i] = FusedBasicBlock(block) if isinstance(block, BasicBlock) else FusedBottleneck(block)
    return enc


def fuse_pointwise(encoder: nn.Module) -> tuple[nn.Module, bool]:
    """(encoder with fused operations, True), or (``encoder``, False) where torch has no fused
    CPU convolutions or they do not give the plain encoder's result on a test input.

    ``encoder``: a BatchNorm-folded ResNetEncoder (``engine_model.fold_batchnorm``) on the CPU, in
    eval mode, in float32."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return encoder, False
    try:
        fused = _fused_copy(encoder)
        x = torch.randn(1, encoder.in_channels, 48, 40, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            kept = x.clone()
            got = fused(x)
            if not torch.equal(x, kept):  # the stem must leave the caller's input alone
                return encoder, False
            want = encoder(x)
        # the same arithmetic, up to float32 rounding of a different summation order
        ok = got.shape == want.shape and float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))
    except (RuntimeError, AttributeError, TypeError):  # operator missing or changed in this torch
        return encoder, False
    return (fused, True) if ok else (encoder, False)
