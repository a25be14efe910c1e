"""The pixel head: the engine's coarse-to-fine evaluation on whole maps equals the head applied
to hypercolumns sampled at single pixels (what it is trained on), for both stem strides."""
from __future__ import annotations

import pytest
import torch

from core.models.pixel_head import PixelHead, hypercolumns
from core.models.resnet import ResNetEncoder


@pytest.mark.parametrize("stem_stride", [2, 4])
def test_maps_and_hypercolumns_give_the_same_logits(stem_stride):
    torch.manual_seed(0)
    encs = {"s2": ResNetEncoder(12, 18, 8, stem_stride).eval(), "s1": ResNetEncoder(2, 18, 8, stem_stride).eval()}
    H, W = 96, 160  # a read window, a multiple of the coarsest stride
    bands = {m: torch.randn(e.in_channels, H, W) for m, e in encs.items()}
    with torch.no_grad():
        levels = {m: [x[0] for x in e.forward_levels(bands[m][None])] for m, e in encs.items()}
    strides = encs["s2"].level_strides
    head = PixelHead({m: (e.in_channels, *e.level_channels) for m, e in encs.items()}, strides, 16, 5)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    present = {"s2": torch.ones(H, W, dtype=torch.bool), "s1": torch.rand(H, W) > 0.3}
    rows, cols = (21, 77), (5, 150)  # not aligned to any stride
    crop = {m: b[:, rows[0]:rows[1], cols[0]:cols[1]] for m, b in bands.items()}
    pres = {m: p[rows[0]:rows[1], cols[0]:cols[1]] for m, p in present.items()}
    maps = head.logits_from_maps(crop, levels, pres, rows, cols)
    assert maps.shape == (5, 56, 145)
    rr, cc = torch.meshgrid(torch.arange(*rows), torch.arange(*cols), indexing="ij")
    rr, cc = rr.reshape(-1), cc.reshape(-1)
    feats = {m: hypercolumns(bands[m], levels[m], strides, rr, cc) for m in encs}
    with torch.no_grad():
        vec = head(feats, {m: present[m][rr, cc].float() for m in encs})
    torch.testing.assert_close(maps.reshape(5, -1).T, vec, rtol=1e-4, atol=1e-3)
    # every modality present everywhere (the summed fast path)
    full = {m: torch.ones_like(v) for m, v in pres.items()}
    both = head.logits_from_maps(crop, levels, full, rows, cols)
    with torch.no_grad():
        vec_full = head(feats, {m: torch.ones(len(rr)) for m in encs})
    torch.testing.assert_close(both.reshape(5, -1).T, vec_full, rtol=1e-4, atol=1e-3)
    # one modality missing everywhere: the other's answer alone
    only = head.logits_from_maps(crop, levels, {"s2": pres["s2"], "s1": torch.zeros_like(pres["s1"])}, rows, cols)
    with torch.no_grad():
        alone = head({"s2": feats["s2"]})
    torch.testing.assert_close(only.reshape(5, -1).T, alone, rtol=1e-4, atol=1e-3)
