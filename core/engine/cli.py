"""``python -m core classify`` and ``python -m core embed``: the scene engine on the command line.

Wired into core/cli.py by ``add_commands(sub)`` after its own sub-commands.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import positive_int
from ..io.temporaries import job_folder
from ..paths import RESOURCES

DEFAULT_MODEL = RESOURCES / "models" / "mosaic-small-ben19"

_EPILOG = """\
Inputs: any raster GDAL reads (GeoTIFF, JPEG 2000, VRT, ...), any CRS and resolution.
Several files after --optical (or --sar) are stacked one band per file, named from the file
names (s2_B8A.jp2 -> B8A) and put in Sentinel-2 band order when every name carries a band
(else in the order given), e.g. the JPEG 2000 bands of a Sentinel-2 product.
Band names come from the band descriptions (B2, B02, "B2 (blue)", VV, VH) unless
--optical-bands / --sar-bands list them in file order; '-' marks a band to ignore;
the preset S2-13 is the 13-band Sentinel-2 order (B01..B8A, B09, B10, B11, B12; B10 ignored).

Output encodings: probabilities uint8 = round(p * 250) (255 = no data) or float32;
dominant = class index (colour table); multihot = bit k set when class k has p >= its threshold (card, else 0.5)
(all bits set = no data); uncertainty = mean binary entropy in bits (0..1);
embeddings = one float32 band per dimension; clusters = K-means index (colour table).
Window outputs are --stride reference pixels wide (10 m x stride), each the model's answer for
the 1.2 km window centred there; fine outputs (--fine-*) have one value per 10 m pixel, from the
pixel head of a model fine-tuned from polygons (python -m core finetune), with the same
encodings (--probability-dtype applies to fine probabilities and uncertainty too).

examples:
  python -m core classify --optical S2.tif --sar S1.tif --dominant dom.tif --probabilities p.tif
  python -m core classify --optical T30_B*.jp2 --optical-bands S2-13 --dominant dom.tif
  python -m core embed --optical S2.tif --sar S1.tif --clusters clusters.tif --k 8
  python -m core classify --model models/my-area --optical S2.tif --sar S1.tif --fine-classes map.tif
"""


def add_common(p: argparse.ArgumentParser, scene_inputs: bool = True) -> None:
    """The engine's input and inference options; ``scene_inputs`` False leaves out --optical and
    --sar (a batch job reads them from its scene list)."""
    g = p.add_argument_group("inputs")
    if scene_inputs:
        g.add_argument("--optical", nargs="+", metavar="RASTER",
                       help="Sentinel-2 raster (multi-band stack or VRT), or one file per band")
        g.add_argument("--sar", nargs="+", metavar="RASTER", help="Sentinel-1 raster (VV, VH), or one file per band")
    g.add_argument("--optical-bands", help="comma-separated band names in file order ('-' = ignore) "
                                           "or the preset S2-13 / S2-12 (default: from band descriptions)")
    g.add_argument("--sar-bands", help="comma-separated SAR band names in file order, e.g. VV,VH "
                                       "(default: from band descriptions)")
    g.add_argument("--sar-units", default="auto", choices=["auto", "db", "linear"],
                   help="units of the SAR values; linear power is converted to dB; auto decides from the values "
                        "(default: auto)")
    g.add_argument("--optical-level", default="auto", choices=["auto", "L1C", "L2A"],
                   help="processing level of the optical input; a mismatch with the model gives a warning "
                        "(default: auto, from the file name and metadata)")
    g.add_argument("--optical-offset", type=float, metavar="DN",
                   help="digital numbers to subtract from the optical bands before /10000: 1000 for Sentinel-2 "
                        "products of processing baseline 04.00 or later (January 2022 on), 0 for older ones "
                        "(default: from the product metadata or name, else 0 with a warning where the values "
                        "look offset)")
    g.add_argument("--model", default=str(DEFAULT_MODEL),
                   help=f"model file NAME(.json/.safetensors) (default: the bundled {DEFAULT_MODEL.name})")
    g.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="process only this extent (default: the whole overlap of the inputs)")
    g.add_argument("--extent-crs", help="CRS of --extent, e.g. EPSG:4326 (default: the reference grid's CRS)")
    g = p.add_argument_group("inference")
    g.add_argument("--mode", default="auto", choices=["auto", "dense", "sliding"],
                   help="dense: encoders run once over blocks and features are pooled per window (fast); "
                        "sliding: every window run as a patch (the exact reference, slow); auto: dense (it gives "
                        "sliding's class on >= 95 %% of the cells sliding decides, measured at strides 16-120), "
                        "sliding from a stride of a whole window up (no more work there) (default: auto)")
    g.add_argument("--stride", type=int, help="output pixel size in reference pixels (default: the encoder's "
                                              "stride, 16, in dense mode; 60 in sliding mode)")
    g.add_argument("--block-size", type=int, default=2048,
                   help="block edge in reference pixels; memory grows with its square (default: 2048)")
    g.add_argument("--halo", type=int, help="context read around each block, in pixels (dense: receptive field "
                                              "around the block's own feature cells, default 64; sliding: around its "
                                              "windows, default 128)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")
    g.add_argument("--batch-size", type=positive_int, default=64, help="windows per batch in sliding mode (default: 64)")
    g.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--compile", action="store_true", help="torch.compile the encoders (pays on large scenes)")
    g.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="read blocks one at a time instead of one block ahead on a second thread: "
                        "about 0.5 GB less peak memory at 2048 px blocks, 5-25%% slower")
    g.add_argument("--stage", default="auto", choices=["auto", "always", "never"],
                   help="decode an input once into a temporary GeoTIFF beside the outputs before the run, "
                        "instead of block by block with halos: auto does it for JPEG 2000 (4x faster on "
                        "Sentinel-2 band files) and for band files compressed in tiles of 1024 px or more (1.4x), "
                        "compressed where the disk is short (default: auto)")
    g.add_argument("--window-valid-min", type=float, default=0.9,
                   help="a window output is given only where this share of its 1.2 km window has data "
                        "(windows reaching past the scene or into no-data are unreliable: measured, cells "
                        "1-2 cells from the edge agreed with the full-context answer on 55-75 %%) (default: 0.9)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_output_options(p: argparse.ArgumentParser, classify: bool) -> argparse._ArgumentGroup:
    """The options of the outputs (not their paths); the group, for the paths."""
    g = p.add_argument_group("outputs (at least one)")
    if classify:
        g.add_argument("--probability-dtype", default="uint8", choices=["uint8", "float32"],
                       help="uint8 = round(p * 250), 255 = no data; float32 = p (default: uint8)")
    g.add_argument("--k", type=int, default=8, help="number of clusters (default: 8)")
    g.add_argument("--cluster-sample", type=int, default=20000,
                   help="embeddings sampled to fit MiniBatchKMeans (default: 20000)")
    g.add_argument("--seed", type=int, default=0, help="seed of the sample and of K-means (default: 0)")
    return g


def _add_outputs(p: argparse.ArgumentParser, classify: bool) -> None:
    g = add_output_options(p, classify)
    if classify:
        g.add_argument("--probabilities", metavar="TIF", help="class probabilities, one band per class")
        g.add_argument("--dominant", metavar="TIF", help="most probable class, with a colour table")
        g.add_argument("--multihot", metavar="TIF", help="bit k set when class k has p >= its threshold "
                                                          "(the model card's decision_thresholds, else 0.5)")
        g.add_argument("--uncertainty", metavar="TIF", help="mean binary entropy of the class probabilities")
        f = p.add_argument_group("fine outputs (per 10 m pixel; a model fine-tuned from polygons: python -m core "
                                 "finetune)")
        f.add_argument("--fine-classes", metavar="TIF", help="the pixel head's class of every pixel, with a colour table")
        f.add_argument("--fine-probabilities", metavar="TIF",
                       help="the pixel head's class probabilities (softmax), one band per class")
        f.add_argument("--fine-uncertainty", metavar="TIF",
                       help="entropy of the pixel head's probabilities over log(classes): 0 sure, 1 undecided")
    g.add_argument("--embeddings", metavar="TIF", help="embeddings, one float32 band per dimension")
    g.add_argument("--clusters", metavar="TIF", help="K-means clusters of the embeddings, with a colour table")


def stack_inputs(files: list[str] | None, tmpdir: str, name: str) -> str | None:
    """The raster of one input: the file itself, or a VRT stacking one file per band (in Sentinel-2
    band order when every file name carries a band), written into ``tmpdir``."""
    if not files:
        return None
    if len(files) == 1:
        return files[0]
    from .align import build_band_vrt
    from .band_mapping import S2_13, canonical_band

    order = {b: i for i, b in enumerate(S2_13 + ("VV", "VH", "HH", "HV"))}
    names = [canonical_band(Path(f).stem) for f in files]
    if all(n in order for n in names) and len(set(names)) == len(names):
        files = [f for _, f in sorted(zip([order[n] for n in names], files))]  # band order, not glob order
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise FileNotFoundError(f"input file(s) not found: {', '.join(missing)}")
    return build_band_vrt([str(Path(f).resolve()) for f in files], str(Path(tmpdir) / f"{name}.vrt"))


def request_options(a: argparse.Namespace) -> dict:
    """The ``SceneRequest`` fields the options give, except model, inputs, outputs and device."""
    return dict(optical_bands=a.optical_bands, sar_bands=a.sar_bands, sar_units=a.sar_units,
                extent=tuple(a.extent) if a.extent else None, extent_crs=a.extent_crs, mode=a.mode,
                stride=a.stride, batch_size=a.batch_size, threads=a.threads,
                probability_dtype=getattr(a, "probability_dtype", "uint8"), clusters=a.k,
                cluster_sample=a.cluster_sample, seed=a.seed, block_size=a.block_size, halo=a.halo,
                optical_level=a.optical_level, optical_offset=a.optical_offset, compile=a.compile,
                prefetch=a.prefetch, stage=a.stage, window_valid_min=a.window_valid_min)


def cmd_scene(a: argparse.Namespace) -> int:
    from . import SceneRequest, run_scene

    from .request import OUTPUT_KINDS

    outputs = {k: getattr(a, k) for k in OUTPUT_KINDS if getattr(a, k, None)}
    if not outputs:
        raise ValueError("ask for at least one output, e.g. --dominant out.tif (see --help)")
    with job_folder("scene") as tmp:
        req = SceneRequest(model=a.model, optical=stack_inputs(a.optical, tmp, "optical"),
                           sar=stack_inputs(a.sar, tmp, "sar"), outputs=outputs, device=a.device,
                           **request_options(a))
        bar = None
        if not a.quiet:
            from tqdm import tqdm

            bar = tqdm(total=100, unit="%", desc=a.command, bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}]")

        def progress(f: float) -> None:
            if bar is not None:
                bar.update(100 * f - bar.n)

        try:
            res = run_scene(req, progress=progress)
        finally:
            if bar is not None:
                bar.close()
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for layer, why in res.staged.items():
        print(f"the {layer} input ({why}) was decoded once into a temporary copy before the run")
    print(f"{res.mode} inference, {res.width} x {res.height} cells of {res.stride} px, {res.crs}, "
          f"{res.seconds:.1f} s")
    for kind, (a, n) in res.given.items():
        print(f"{'window cells' if kind == 'window' else 'fine pixels'} classified: {a} of {n}")
    for k, p in res.outputs.items():
        print(f"  {k}: {p}")
    return 0


def add_commands(subparsers) -> None:
    """Add ``classify`` and ``embed`` to the ``python -m core`` sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    c = subparsers.add_parser("classify", help="classify a Sentinel-2 and/or Sentinel-1 scene into class rasters",
                              description="Multi-label land-cover probabilities and derived rasters for a whole "
                                          "scene, streamed block by block.", epilog=_EPILOG, formatter_class=fmt)
    add_common(c)
    _add_outputs(c, classify=True)
    c.set_defaults(func=cmd_scene)
    e = subparsers.add_parser("embed", help="embed a scene and cluster the embeddings",
                              description="Per-window embeddings and their K-means clusters for a whole scene.",
                              epilog=_EPILOG, formatter_class=fmt)
    add_common(e)
    _add_outputs(e, classify=False)
    e.set_defaults(func=cmd_scene)
