"""The cluster palette: distinct colours for any k, the same list in files and in QGIS."""
from __future__ import annotations

import pytest

from core.engine.palette import BASE_COLORS, cluster_colors, hex_rgb


@pytest.mark.parametrize("k", [1, 5, 20, 64])
def test_colours_are_distinct_and_stable(k: int) -> None:
    colors = cluster_colors(k)
    assert len(colors) == k and len(set(colors)) == k
    assert colors[: len(BASE_COLORS)] == list(BASE_COLORS[:k])
    assert cluster_colors(k) == colors  # no randomness: reruns and other scenes get the same table
    assert all(len(c) == 7 and c.startswith("#") for c in colors)


def test_hex_rgb() -> None:
    assert hex_rgb("#f3c300") == (243, 195, 0, 255)
    assert hex_rgb(cluster_colors(25)[24])[3] == 255
