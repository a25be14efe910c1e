"""What a batch job writes beside the scenes' own outputs: a VRT mosaic per output kind, and a
STAC collection of every finished scene (its outputs as assets, the model and options in its
properties), so a GIS or a STAC browser opens the whole job at once."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..io.gdal_messages import gdal_exceptions

MOSAIC_DIR = "mosaic"
STAC_DIR = "stac"


def _crs_token(crs: str) -> str:
    return crs.replace(":", "").replace(" ", "").replace("+", "")[:40]


def _relative_sources(vrt: Path) -> None:
    """Source paths relative to the VRT, so the output folder can be moved or shared as a whole."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(vrt)
    for el in tree.iter("SourceFilename"):
        if el.get("relativeToVRT") == "0" and el.text:
            el.text = os.path.relpath(el.text, vrt.parent)
            el.set("relativeToVRT", "1")
    tree.write(vrt)


def build_mosaics(out: str | Path, done: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``OUT/mosaic/KIND.vrt`` over every finished scene's output of that kind; scenes in several
    CRSs (UTM zones) get one VRT per CRS, ``KIND_EPSG32630.vrt`` (a VRT has one grid)."""
    out = Path(out)
    groups: dict[tuple[str, str], list[str]] = {}
    for rec in done.values():
        for kind, o in rec["outputs"].items():
            groups.setdefault((kind, rec["crs"]), []).append(str((out / o["path"]).resolve()))
    folder = out / MOSAIC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    per_kind: dict[str, int] = {}
    for kind, _ in groups:
        per_kind[kind] = per_kind.get(kind, 0) + 1
    written = {}
    for (kind, crs), files in sorted(groups.items()):
        name = kind if per_kind[kind] == 1 else f"{kind}_{_crs_token(crs)}"
        path = folder / f"{name}.vrt"
        tmp = folder / f".{name}.{os.getpid()}.vrt"
        with gdal_exceptions() as gdal:  # errors raised, not returned as None
            vrt = gdal.BuildVRT(str(tmp), sorted(files))
            if vrt is None:
                raise RuntimeError(f"GDAL could not build the {kind} mosaic: {gdal.GetLastErrorMsg()}")
            vrt = None  # closes and writes the file
        _relative_sources(tmp)
        os.replace(tmp, path)
        written[name] = str(path)
    return written


def _item(name: str, rec: dict[str, Any], out: Path, info: dict[str, Any]):
    import pystac
    from rasterio.warp import transform_bounds

    w, s, e, n = transform_bounds(rec["crs"], "EPSG:4326", *rec["bounds"])
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    when = rec.get("datetime")
    props = {"mosaic:model": info["model"], "mosaic:model_sha256": info["model_sha256"],
             "mosaic:classes": info["classes"], "mosaic:stride": rec["stride"], "mosaic:mode": rec["mode"],
             "mosaic:cell_size_m": 10 * rec["stride"], "proj:code": rec["crs"], "created": rec.get("finished")}
    if when is None:  # STAC needs a time: the processing time, said as such
        props["mosaic:datetime_is_processing_time"] = True
    dt = datetime.fromisoformat((when or rec.get("finished") or datetime.now(timezone.utc).isoformat())
                                .replace("Z", "+00:00"))
    item = pystac.Item(name, geometry, [w, s, e, n], dt, props)
    for kind, o in rec["outputs"].items():
        item.add_asset(kind, pystac.Asset(str((out / o["path"]).resolve()), media_type=pystac.MediaType.GEOTIFF,
                                          roles=["data"], extra_fields={"file:size": o["bytes"],
                                                                        "mosaic:sha256": o["sha256"]}))
    return item


def write_catalog(out: str | Path, done: dict[str, dict[str, Any]], info: dict[str, Any],
                  mosaics: dict[str, str]) -> str | None:
    """``OUT/stac/collection.json``: one item per finished scene; the mosaics as collection
    assets. Written into a temporary folder and swapped in whole."""
    import pystac

    if not done:
        return None
    out = Path(out)
    items = [_item(n, r, out, info) for n, r in sorted(done.items())]
    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items),
            max(i.bbox[2] for i in items), max(i.bbox[3] for i in items)]
    times = sorted(i.datetime for i in items)
    coll = pystac.Collection(
        "mosaic-outputs", f"MoSAiC {info['command']} outputs of {len(items)} scenes (model {info['model']})",
        pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[times[0], times[-1]]])),
        license="other", extra_fields={"mosaic:classes": info["classes"]})
    for k, p in mosaics.items():
        coll.add_asset(f"mosaic_{k}", pystac.Asset(str(Path(p).resolve()), media_type="application/xml",
                                                   roles=["data", "mosaic"], title=f"{k} mosaic (GDAL VRT)"))
    coll.add_items(items)
    final, tmp, old = out / STAC_DIR, out / f".{STAC_DIR}.{os.getpid()}", out / f".{STAC_DIR}.old.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    coll.normalize_hrefs(f"{final}/")  # hrefs as they will be after the swap (a folder: the trailing /)
    coll.make_all_asset_hrefs_relative()
    coll.normalize_hrefs(f"{tmp}/")
    coll.save(pystac.CatalogType.SELF_CONTAINED)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return str(final / "collection.json")
