"""Scenes from a local STAC catalog, collection or ItemCollection (read with pystac).

Each item is a scene, named by its id. Its Sentinel-2 assets are its band files, found by asset
key or ``eo:bands`` name (``B04``, ``B8A``; Earth Search's ``red``, ``nir08``, ``swir16``) or
one multi-band asset keyed ``optical``; its Sentinel-1 assets are keyed ``vv`` / ``vh`` (or one
``sar`` asset). Sentinel-1 and Sentinel-2 often come as separate items: items that share a
``mosaic:scene`` property are joined into one scene of that name. Other assets (previews, masks,
metadata) are ignored. Asset files must be local: download remote assets first.
"""
from __future__ import annotations

from pathlib import Path

from ..engine.band_mapping import canonical_band
from .scene_list import SceneEntry

# Earth Search (element84) asset keys for Sentinel-2 L2A / L1C
COMMON_NAMES = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
                "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
                "cirrus": "B10", "swir16": "B11", "swir22": "B12"}
SCENE_KEY = "mosaic:scene"


def _band_of(key: str, asset) -> str | None:
    names = [key] + [b.get("name", "") for b in asset.extra_fields.get("eo:bands", [])[:1]]
    for n in names:
        low = n.lower()
        if low in COMMON_NAMES:
            return COMMON_NAMES[low]
        # a bare key only: 'B04', 'vv'; not 'B04_preview' or 'visual'
        band = canonical_band(n) if low.replace("_", "").isalnum() and len(low) <= 4 else None
        if band:
            return band
    return None


def _local(href: str, item_id: str, key: str) -> str:
    if "://" in href and not href.startswith("file://"):
        raise ValueError(f"STAC item {item_id}, asset {key}: {href} is not a local file; download the assets "
                         f"first (e.g. with stac-asset or rio-stac) and point the catalog at the copies")
    return str(Path(href.removeprefix("file://")).resolve())


def item_inputs(item) -> tuple[dict[str, str], dict[str, str]]:
    """(optical band -> file, SAR band -> file) of one item; a whole-input asset under ``*``."""
    optical: dict[str, str] = {}
    sar: dict[str, str] = {}
    for key, asset in item.assets.items():
        href = _local(asset.get_absolute_href() or asset.href, item.id, key)
        if key.lower() in ("optical", "s2"):
            optical["*"] = href
        elif key.lower() in ("sar", "s1"):
            sar["*"] = href
        else:
            band = _band_of(key, asset)
            if band in ("VV", "VH", "HH", "HV"):
                sar[band] = href
            elif band:
                optical[band] = href
    return optical, sar


def _files(bands: dict[str, str], where: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """The files of one input and, for band assets, their band names in the same order (the
    asset says the band; the file name need not)."""
    if "*" in bands:
        if len(bands) > 1:
            raise ValueError(f"{where}: both a whole-input asset and band assets; keep one")
        return (bands["*"],), None
    names = tuple(sorted(bands))
    return tuple(bands[b] for b in names), (names or None)


def stac_scenes(path: str | Path) -> list[SceneEntry]:
    """The scenes of a STAC file (see the module docstring)."""
    import json

    import pystac

    with open(path) as f:
        kind = json.load(f).get("type")
    obj = pystac.ItemCollection.from_file(str(path)) if kind == "FeatureCollection" else pystac.read_file(str(path))
    if isinstance(obj, pystac.Item):
        items = [obj]
    elif isinstance(obj, pystac.ItemCollection):
        items = list(obj)
    elif isinstance(obj, pystac.Catalog):  # a Collection is a Catalog
        items = list(obj.get_items(recursive=True))
    else:
        raise ValueError(f"{path} is a STAC {type(obj).__name__}; give a catalog, a collection or an ItemCollection")
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(str(it.properties.get(SCENE_KEY) or it.id), []).append(it)
    scenes = []
    for name, members in groups.items():
        optical: dict[str, str] = {}
        sar: dict[str, str] = {}
        when = None
        for it in members:
            o, s = item_inputs(it)
            optical.update(o)
            sar.update(s)
            if o and it.datetime is not None:
                when = it.datetime.isoformat()
            when = when or (it.datetime.isoformat() if it.datetime else None)
        where = f"{path}, scene {name}"
        (o_files, o_bands), (s_files, s_bands) = _files(optical, where), _files(sar, where)
        scenes.append(SceneEntry(name, o_files, s_files, when, o_bands, s_bands,
                                 {"stac_items": [it.id for it in members]}))
    return scenes
