"""Fused convolution + residual sum + ReLU (core/engine/fused.py): the same feature maps."""
from __future__ import annotations

import pytest
import torch

from core.engine import fused
from core.engine.engine_model import fold_batchnorm
from core.engine.strips import receptive_margin, strip_encoder
from core.models.resnet import ResNetEncoder


def _encoder(depth: int, stem: int, channels: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    enc = ResNetEncoder(channels, depth=depth, width=8, stem_stride=stem)
    for m in enc.modules():  # non-trivial BatchNorm: the folded biases matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            m.running_mean.uniform_(-0.2, 0.2)
    return fold_batchnorm(enc.eval())


@pytest.mark.parametrize("depth,stem", [(18, 2), (50, 4)])
def test_fused_encoder_gives_the_same_feature_map(depth, stem):
    enc = _encoder(depth, stem)
    f, ok = fused.fuse_pointwise(enc)
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build: the plain encoder is kept")
    assert ok and f is not enc
    assert sum(isinstance(m, torch.nn.ReLU) for m in f.modules()) == 0  # every ReLU went into a convolution
    x = torch.randn(2, 5, 96, 80).contiguous(memory_format=torch.channels_last)
    kept = x.clone()
    with torch.inference_mode():
        want = enc(x)
        tol = 1e-5 * float(want.abs().max())  # float32 rounding of another summation order
        torch.testing.assert_close(f(x), want, rtol=0, atol=tol)
        assert torch.equal(x, kept)  # blocks sum into their own inputs, never into the caller's
        # as the engine runs it: strip by strip, with the same receptive margin
        head = [enc.conv1, enc.bn1, enc.relu, enc.maxpool, enc.layer1]
        fhead = [f.conv1, f.bn1, f.relu, f.maxpool, f.layer1]
        assert receptive_margin(fhead) == receptive_margin(head)
        torch.testing.assert_close(strip_encoder(f, strip_rows=32)(x), want, rtol=0, atol=tol)


def test_fusion_is_dropped_where_it_would_change_the_result(monkeypatch):
    """An operator that gives other values (or is missing) leaves the plain encoder in place."""
    enc = _encoder(18, 2)
    monkeypatch.setattr(fused, "_conv_add_relu_into", lambda conv, x, other: torch.relu(conv(x)))  # no sum
    f, ok = fused.fuse_pointwise(enc)
    assert f is enc and not ok

    def missing(*a, **k):
        raise RuntimeError("operator not found")
    monkeypatch.setattr(fused, "_conv", missing)
    assert fused.fuse_pointwise(enc) == (enc, False)


def test_the_engine_runs_the_bundled_model_fused_on_cpu():
    """Both CPU encoders of the bundled model pass the start-up check: a torch where they
    would not (the private operators changed) shows here, not as a silent 5-7 % slowdown."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this torch build")
    from core.engine.engine_model import EngineModel
    from core.io.model_file import load_model

    from .test_engine_edges import MODEL
    model, card = load_model(MODEL)
    assert EngineModel(model, card, torch.device("cpu")).fused == {"s2": True, "s1": True}
