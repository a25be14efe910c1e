"""The engine's blocks: every output cell in exactly one block, blocks of about the asked size
and no sliver block at a scene's edge (it would read and encode a whole context halo again)."""
from __future__ import annotations

import numpy as np
import pytest

from core.engine import windows as W


@pytest.mark.parametrize("size,stride,block", [(2048, 30, 2048), (2048, 60, 2048), (2048, 16, 2048),
                                               (10980, 16, 2048), (10980, 30, 2048), (5000, 7, 512),
                                               (300, 16, 2048), (4097, 16, 1024), (1933, 40, 256),
                                               (2000, 40, 256)])
def test_blocks_cover_each_cell_once_in_near_equal_parts(size, stride, block):
    h, w = size, size * 3 // 4 + 5
    blocks = list(W.iter_blocks(h, w, stride, block, 64, 16))
    out_h, out_w = W.output_shape(h, w, stride)
    hits = np.zeros((out_h, out_w), int)
    for b in blocks:
        hits[b.row0: b.row0 + b.rows, b.col0: b.col0 + b.cols] += 1
    assert (hits == 1).all()
    assert len(blocks) == W.count_blocks(h, w, stride, block)
    cells = max(1, block // stride)
    for axis in ("rows", "cols"):
        sizes = [getattr(b, axis) for b in blocks]
        assert max(sizes) <= cells * 9 // 8 + 1  # about the asked size
        assert max(sizes) - min(sizes) <= 1  # equal parts: no sliver at the end


def test_a_scene_a_little_over_the_block_size_is_one_block():
    # 2048 px at a 30 px stride is 69 cells; 68 fit in 2048 px: one block of 69, not 68 + 1
    assert W.count_blocks(2048, 2048, 30, 2048) == 1
    assert W.count_blocks(2048, 2048, 16, 2048) == 1
    assert W.count_blocks(10980, 10980, 16, 2048) == 25  # 5 x 5 blocks of 2192-2208 px, was 6 x 6
