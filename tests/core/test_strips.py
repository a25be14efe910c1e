"""Strip-wise stem + first stage: the same feature map as one pass, for both ResNet stems."""
from __future__ import annotations

import pytest
import torch

from core.engine.engine_model import fold_batchnorm
from core.engine.strips import receptive_margin, strip_encoder
from core.models.resnet import ResNetEncoder


def test_receptive_margin_of_the_small_stem_and_first_stage():
    enc = ResNetEncoder(12, depth=18, width=16, stem_stride=2)
    margin, stride = receptive_margin([enc.conv1, enc.bn1, enc.relu, enc.maxpool, enc.layer1])
    assert (margin, stride) == (3 + 4 * 2, 2)  # 7x7 conv, then four 3x3 convs at stride 2


@pytest.mark.parametrize("depth,width,stem,h,w,strip", [
    (18, 16, 2, 176, 48, 32),    # many strips, last one shorter
    (18, 16, 2, 160, 64, 64),
    (50, 8, 4, 224, 32, 48),     # max-pool stem, bottleneck blocks
    (18, 16, 2, 64, 64, 512),    # one pass
])
def test_strips_equal_one_pass(depth, width, stem, h, w, strip):
    torch.manual_seed(0)
    enc = ResNetEncoder(5, depth=depth, width=width, stem_stride=stem)
    for m in enc.modules():  # non-trivial BatchNorm, so folding and every block matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.running_mean.uniform_(-0.2, 0.2)
    enc = fold_batchnorm(enc).eval().double()  # float64: what is left is the algorithm, not rounding
    x = torch.randn(1, 5, h, w, dtype=torch.float64)
    with torch.inference_mode():
        ref = enc(x)
        for layout in (torch.contiguous_format, torch.channels_last):
            se = strip_encoder(enc, strip_rows=strip)
            got = se(x.contiguous(memory_format=layout))
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_strips_through_a_strided_stage_with_a_shortcut():
    """A head that includes layer2 (stride 2 and a 1x1 downsample shortcut beside it): the
    shortcut does not count twice in the stride, and the strips still equal one pass."""
    from core.engine.strips import StripEncoder

    torch.manual_seed(1)
    enc = fold_batchnorm(ResNetEncoder(3, depth=18, width=8, stem_stride=2)).eval().double()
    head = [enc.conv1, enc.bn1, enc.relu, enc.maxpool, enc.layer1, enc.layer2]
    assert receptive_margin(head) == (11 + 2 + 4 + 2 * 4, 4)  # stem+layer1, then 3x3 s2, 3 x 3x3 at stride 4
    se = StripEncoder(head, [enc.layer3, enc.layer4], strip_rows=40)
    x = torch.randn(1, 3, 200, 48, dtype=torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(se(x), enc(x), rtol=1e-10, atol=1e-10)


def test_a_row_source_is_asked_for_strips_only():
    """An input given as a RowSource (the engine's 16-bit block, normalised on demand) gives the
    same map as the whole tensor, and the encoder never asks it for more than one strip with
    its margins: the float copy of the whole block never exists."""
    torch.manual_seed(2)
    enc = fold_batchnorm(ResNetEncoder(4, depth=18, width=8, stem_stride=2)).eval().double()
    x = torch.randn(1, 4, 200, 40, dtype=torch.float64)

    class Rows:
        shape = tuple(x.shape)
        asked: list[tuple[int, int]] = []

        def rows(self, a, b):
            self.asked.append((a, b))
            return x[:, :, a:b].clone()

    se = strip_encoder(enc, strip_rows=48)
    src = Rows()
    with torch.inference_mode():
        torch.testing.assert_close(se(src), enc(x), rtol=1e-10, atol=1e-10)
    assert src.asked[0][0] == 0 and src.asked[-1][1] == 200 and len(src.asked) == 5
    assert max(b - a for a, b in src.asked) <= 48 + 2 * se.margin < 200
