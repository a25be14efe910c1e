"""``python -m core finetune``: few-shot fine-tuning from a polygon file, as ``mosaic:finetune`` does
in QGIS: the same core call, the same model file, card and report.

Wired into core/cli.py by ``add_command(sub)``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..cli import positive_int
from ..engine.cli import DEFAULT_MODEL, stack_inputs
from ..io.temporaries import job_folder

_EPILOG = """\
The label file is any vector file GDAL reads (GeoPackage, GeoJSON, Shapefile, ...), in any CRS:
each polygon's --label-field names one or more classes separated by --separator. Classes the base
model does not know become new outputs. A class scheme beside a GeoPackage (NAME.classes.json,
written by the QGIS panel) gives the new classes their colours.

The new model (OUT.safetensors + OUT.json) has the base model's window head, trained further on
windows under the polygons, and a pixel head: per-pixel classes on the 10 m grid from the bands
and the encoders' 20 m stage, trained on the polygons' pixels. Its quality is measured by
cross-validation over whole polygons; OUT.report.html and OUT.report.png show it per class.

examples:
  python -m core finetune --optical S2.tif --sar S1.tif --labels fields.gpkg --out models/my-area
  python -m core finetune --optical T33UUU_*_B*.jp2 --labels labels.geojson --label-field class \\
      --separator "" --epochs 20 --out models/brandenburg
  python -m core classify --model models/my-area --optical S2.tif --sar S1.tif --fine-classes map.tif
"""


def add_command(subparsers) -> None:
    """Add ``finetune`` to the ``python -m core`` sub-commands."""
    p = subparsers.add_parser("finetune", help="fine-tune a model from labelled polygons (new classes, a pixel head)",
                              description="Few-shot fine-tuning from labelled polygons drawn on a scene.",
                              epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("inputs")
    g.add_argument("--model", default=str(DEFAULT_MODEL),
                   help=f"base model NAME(.json/.safetensors) (default: the bundled {DEFAULT_MODEL.name})")
    g.add_argument("--optical", nargs="+", metavar="RASTER",
                   help="Sentinel-2 raster the polygons were drawn on (a stack or VRT, or one file per band)")
    g.add_argument("--optical-bands", help="comma-separated band names in file order ('-' = ignore) or the preset "
                                           "S2-13 / S2-12 (default: from band descriptions)")
    g.add_argument("--sar", nargs="+", metavar="RASTER", help="Sentinel-1 raster (VV, VH), or one file per band")
    g.add_argument("--sar-bands", help="comma-separated SAR band names in file order, e.g. VV,VH")
    g.add_argument("--optical-offset", type=float, metavar="DN",
                   help="digital numbers to subtract from the optical bands before /10000: 1000 for Sentinel-2 "
                        "products of processing baseline 04.00 or later (January 2022 on), 0 for older ones "
                        "(default: from the product metadata or name, else 0 with a warning where the values "
                        "look offset)")
    g.add_argument("--sar-units", default="auto", choices=["auto", "db", "linear"],
                   help="units of the SAR values; linear power is converted to dB (default: auto)")
    g.add_argument("--labels", required=True, metavar="VECTOR", help="polygons with class names (any OGR format)")
    g.add_argument("--layer", help="layer of --labels to read, where the file holds several")
    g.add_argument("--label-field", default="labels", help="field holding each polygon's class name(s) "
                                                           "(default: labels)")
    g.add_argument("--separator", default=";", help="separates several class names in one field value; '' for "
                                                    "one name per polygon (default: ;)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=10, help="passes over the training windows (default: 10)")
    g.add_argument("--train-parts", default="head", choices=["head", "head+1", "head+2"],
                   help="what learns: head (frozen encoders: fastest, safest with few polygons) or the head and "
                        "the last 1 or 2 encoder stages (default: head)")
    g.add_argument("--val-share", type=float, default=0.2,
                   help="share of the polygons held out to validate the window head (default: 0.2)")
    g.add_argument("--windows-per-polygon", type=positive_int, default=8, help="training windows per polygon (default: 8)")
    g.add_argument("--unlabelled", type=int, default=64,
                   help="unlabelled windows of the scene for the contrastive terms (default: 64)")
    g.add_argument("--folds", type=int, default=5,
                   help="cross-validation folds over polygons that measure the pixel head (default: 5)")
    g.add_argument("--seed", type=int, default=0, help="seed of windows, splits and training (default: 0)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    g.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--out", required=True, metavar="DIR/NAME", help="the new model, without extension")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_finetune)


def _scheme(labels: str) -> dict[str, str]:
    """Class colours from the QGIS panel's scheme file beside a label file (NAME.classes.json), if any."""
    path = Path(labels)
    scheme = path.with_name(path.stem + ".classes.json")
    if not scheme.is_file():
        return {}
    try:
        data = json.loads(scheme.read_text())
        return {c["name"]: c.get("color") for c in data.get("classes", []) if c.get("name")}
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def cmd_finetune(a: argparse.Namespace) -> int:
    from . import FinetuneConfig, finetune_from_polygons
    from .label_file import read_label_file

    if not a.optical and not a.sar:
        raise ValueError("give the raster(s) the polygons were drawn on: --optical and/or --sar")
    polygons, crs = read_label_file(a.labels, a.label_field, a.separator, a.layer)
    colors = _scheme(a.labels)
    cfg = FinetuneConfig(epochs=a.epochs, train_parts=a.train_parts, val_share=a.val_share,
                         windows_per_polygon=a.windows_per_polygon, unlabelled=a.unlabelled, folds=a.folds,
                         seed=a.seed, device=a.device, threads=a.threads)
    out = Path(a.out)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    bar = None
    if not a.quiet:
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", desc="finetune", bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}]")

    def progress(f: float) -> None:
        if bar is not None:
            bar.update(100 * f - bar.n)

    def log(s: str) -> None:
        (bar.write if bar is not None else print)(s)

    t0 = time.perf_counter()
    with job_folder("finetune") as tmp:
        optical, sar = stack_inputs(a.optical, tmp, "optical"), stack_inputs(a.sar, tmp, "sar")
        try:
            res = finetune_from_polygons(
                a.model, polygons, crs, optical, sar, out, cfg, optical_bands=a.optical_bands, sar_bands=a.sar_bands,
                sar_units=a.sar_units, optical_offset=a.optical_offset, colors={k: v for k, v in colors.items() if v}, scheme=list(colors),
                label_source={"layer": Path(a.labels).name, "source": str(a.labels), "field": a.label_field,
                              "separator": a.separator},
                progress=progress, log=log)
        finally:
            if bar is not None:
                bar.close()
    print(res.summary())
    print(f"model written: {res.card_path} ({time.perf_counter() - t0:.1f} s)")
    print(f"report: {res.report_html}")
    return 0
