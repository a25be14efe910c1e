"""``python -m core classify-many`` and ``embed-many``: many scenes, one Dask task each.

Wired into core/cli.py by ``add_many_commands(sub)``.
"""
from __future__ import annotations

import argparse

from ..cli import positive_int

CLASSIFY_KINDS = ("probabilities", "dominant", "multihot", "uncertainty", "fine_classes", "fine_probabilities",
                  "fine_uncertainty", "embeddings", "clusters")
EMBED_KINDS = ("embeddings", "clusters")

_EPILOG = """\
Scene list: a CSV file with a header naming the columns optical, sar and name (datetime optional),
one scene per line; an input is a raster, a folder of one file per band, or empty. Or a local STAC
catalog, collection or ItemCollection (.json): one scene per item (items sharing a "mosaic:scene"
property are joined, e.g. a Sentinel-2 item and its Sentinel-1 item).

Writes OUT/NAME/NAME_KIND.tif per scene (as `classify` writes them), OUT/manifest.json (finished
scenes with their output hashes: a rerun of the same command skips them and redoes the rest),
OUT/mosaic/KIND.vrt and OUT/stac/collection.json.

Where it runs: a LocalCluster on this machine by default (one worker per GPU, else workers of 1-2
threads as cores and memory allow); --scheduler tcp://HOST:8786 (or a scheduler file) for a
cluster you started (dask scheduler / dask worker --nthreads 1, dask-jobqueue, Kubernetes); the
plugin folder must be importable on the workers (PYTHONPATH). --scheduler sequential runs the
scenes one after another in this process, without Dask.

examples:
  python -m core classify-many --scenes scenes.csv --out run1 --outputs dominant probabilities
  python -m core classify-many --scenes catalog.json --out run1 --outputs dominant --workers 4 --threads 2
  python -m core embed-many --scenes scenes.csv --out emb --outputs clusters --scheduler tcp://10.0.0.5:8786
"""


def cmd_many(a: argparse.Namespace) -> int:
    from ..engine.cli import request_options
    from .run_many import run_many
    from .scene_list import read_scenes

    scenes = read_scenes(a.scenes)
    kinds = list(dict.fromkeys(a.outputs))
    if a.command == "embed-many" and set(kinds) - set(EMBED_KINDS):
        raise ValueError(f"embed-many writes {', '.join(EMBED_KINDS)}; use classify-many for the others")
    request = request_options(a)
    client = cluster = None
    if a.scheduler != "sequential":
        from .cluster import open_client

        client, cluster, threads = open_client(a.scheduler, a.workers, a.threads, dashboard=not a.no_dashboard)
        request["threads"] = threads
        n = len(client.scheduler_info()["workers"])
        where = f"the cluster at {a.scheduler}" if a.scheduler else "a local cluster"
        print(f"{where}: {n} workers, {threads} torch threads per scene; dashboard: {client.dashboard_link}")
    job = {"out": a.out, "model": a.model, "kinds": kinds, "device": a.device, "request": request,
           "command": a.command}
    try:
        res = run_many(scenes, job, client, retries=a.retries, show_progress=not a.quiet)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    print(res.table())
    for k, p in res.mosaics.items():
        print(f"  mosaic {k}: {p}")
    if res.catalog:
        print(f"  STAC collection: {res.catalog}")
    return 1 if res.failed else 0


def add_many_commands(subparsers) -> None:
    """Add ``classify-many`` and ``embed-many`` to the ``python -m core`` sub-commands."""
    from ..engine.cli import add_common, add_output_options

    fmt = argparse.RawDescriptionHelpFormatter
    for name, kinds, default, what in (
            ("classify-many", CLASSIFY_KINDS, ["dominant", "probabilities"], "classify"),
            ("embed-many", EMBED_KINDS, ["embeddings"], "embed")):
        p = subparsers.add_parser(name, help=f"{what} many scenes (a CSV list or a STAC catalog) on a Dask cluster",
                                  description=f"`{what}` over many scenes, one Dask task per scene, resumable.",
                                  epilog=_EPILOG, formatter_class=fmt)
        g = p.add_argument_group("job")
        g.add_argument("--scenes", required=True, help="scene list: CSV (optical,sar,name) or STAC JSON")
        g.add_argument("--out", required=True, help="output folder (per-scene folders, manifest, mosaics, STAC)")
        g.add_argument("--outputs", nargs="+", default=default, choices=kinds, metavar="KIND",
                       help=f"what to write per scene: {', '.join(kinds)} (default: {' '.join(default)})")
        g.add_argument("--scheduler", help="Dask scheduler address or scheduler file; 'sequential' for no Dask "
                                           "(default: a LocalCluster on this machine)")
        g.add_argument("--workers", type=positive_int, help="LocalCluster workers (default: one per GPU, else as "
                                                            "cores and memory allow)")
        g.add_argument("--retries", type=int, default=2, help="times a failed scene is tried again (default: 2)")
        g.add_argument("--no-dashboard", action="store_true", help="no Dask dashboard on the local cluster")
        add_common(p, scene_inputs=False)
        add_output_options(p, classify=name == "classify-many")
        p.set_defaults(func=cmd_many)
