"""Render docs/engine/spain-quicklook.png from engine outputs of the Spain demo scene.

usage: PYTHONPATH=. .venv/bin/python docs/engine/make_quicklook.py DOMINANT.tif CLUSTERS.tif
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from rasterio.vrt import WarpedVRT  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
S2 = ROOT / "resources" / "sample" / "spain" / "Spain_7370579_S2Hand.tif"


def show_cat(ax, path, title):
    with rasterio.open(path) as ds:
        a = ds.read(1)
        cmap = ds.colormap(1)
        names = {int(k.split("_")[1]): v for k, v in ds.tags().items() if k.startswith("class_")}
    rgb = np.zeros(a.shape + (3,), np.uint8)
    for v in np.unique(a):
        rgb[a == v] = cmap[int(v)][:3] if int(v) != 255 else (255, 255, 255)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    vals = [int(v) for v in np.unique(a) if v != 255]
    ax.legend(handles=[Patch(color=np.array(cmap[v][:3]) / 255, label=names.get(v, f"cluster {v}")[:32])
                       for v in vals], loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, ncol=2)
    return a


def main(dom, clu):
    fig, axes = plt.subplots(1, 3, figsize=(14, 6))
    with rasterio.open(dom) as d, rasterio.open(S2) as s:
        with WarpedVRT(s, crs=d.crs, transform=rasterio.Affine(10, 0, d.transform.c, 0, -10, d.transform.f),
                       width=d.width * 16, height=d.height * 16, nodata=0) as v:
            rgb = v.read([4, 3, 2]).astype(float)
    rgb = np.clip(rgb.transpose(1, 2, 0) / 2500, 0, 1)
    axes[0].imshow(rgb)
    axes[0].set_title("Sentinel-2 L1C (B4,B3,B2), UTM 30N 10 m")
    axes[0].axis("off")
    show_cat(axes[1], dom, "dominant class (dense, 160 m cells)")
    show_cat(axes[2], clu, "K-means clusters of embeddings (k=6)")
    fig.tight_layout()
    out = Path(__file__).resolve().parent / "spain-quicklook.png"
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
