"""The one colour palette of cluster and class-combination rasters.

The engine writes it into the GeoTIFF's colour table and the plugin styles the layer with it,
so a cluster has the same colour in QGIS, in GDAL tools and in another GIS. Pure Python: the
plugin imports it before torch or rasterio are installed.
"""
from __future__ import annotations

import colorsys

# Kelly's colours of maximum contrast (white and black left out): distinct side by side on a map
BASE_COLORS: tuple[str, ...] = (
    "#f3c300", "#875692", "#f38400", "#a1caf1", "#be0032", "#c2b280", "#848482", "#008856",
    "#e68fac", "#0067a5", "#f99379", "#604e97", "#f6a600", "#b3446c", "#dcd300", "#882d17",
    "#8db600", "#654522", "#e25822", "#2b3d26",
)
_GOLDEN = 0.618033988749895


def cluster_colors(k: int) -> list[str]:
    """``k`` distinct colours as ``#rrggbb``: the fixed palette, then hues spaced by the golden ratio."""
    colors = list(BASE_COLORS[:k])
    hue = 0.0
    while len(colors) < k:
        hue = (hue + _GOLDEN) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
        colors.append(f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}")
    return colors


def hex_rgb(c: str) -> tuple[int, int, int, int]:
    """``#rrggbb`` as the (r, g, b, 255) entry of a GDAL colour table."""
    c = c.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255
