"""One scene on one worker: the scene engine's run, then the hashes the manifest keeps.

Runs inside a Dask worker (or in the driver's process for a sequential run); everything it
needs travels in its arguments. Progress goes to the driver as Dask events on ``PROGRESS_TOPIC``.
"""
from __future__ import annotations

import socket
import zlib
from pathlib import Path
from typing import Any, Callable

from .manifest import file_sha256
from .scene_list import SceneEntry

PROGRESS_TOPIC = "mosaic-scene-progress"


class SceneFailed(Exception):
    """A scene's error as plain text: the engine's exceptions may hold what cannot travel back
    from a worker (a GDAL error chained to them), and Dask would then hide their message."""


def output_paths(out: str | Path, name: str, kinds) -> dict[str, str]:
    """Where a scene's outputs go: ``OUT/NAME/NAME_KIND.tif``."""
    return {k: str(Path(out) / name / f"{name}_{k}.tif") for k in kinds}


def _worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # not inside a Dask worker
        return None


def worker_device(requested: str) -> str:
    """``auto`` on a machine with GPUs: a LocalCluster's worker N (its workers are named 0, 1, ...)
    takes GPU N modulo the count, so N workers on N GPUs never share one; a worker of another
    cluster takes ``cuda:0``, the GPU its launcher made visible to it (``dask cuda worker`` gives
    each worker its own; so does CUDA_VISIBLE_DEVICES per worker)."""
    if requested != "auto":
        return requested
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    w = _worker()
    index = w.name if w is not None and isinstance(w.name, int) else 0
    return f"cuda:{index % torch.cuda.device_count()}"


def _reporter(name: str) -> Callable[[float], None]:
    w = _worker()
    last = [-1.0]

    def report(f: float) -> None:
        if w is not None and (f - last[0] >= 0.02 or f >= 1.0):
            last[0] = f
            w.log_event(PROGRESS_TOPIC, {"scene": name, "done": float(f)})

    return report


def _input(files: tuple[str, ...], bands, tmp: str, label: str) -> tuple[str | None, list[str] | None]:
    """The raster of one input and its band names (given by a STAC list, else from the files)."""
    if not files:
        return None, None
    if bands is not None:  # the list says each file's band: stack them in exactly this order
        from ..engine.align import build_band_vrt

        path = files[0] if len(files) == 1 else build_band_vrt(list(files), str(Path(tmp) / f"{label}.vrt"))
        return path, list(bands)
    from ..engine.cli import stack_inputs

    return stack_inputs(list(files), tmp, label), None


def _save_sample(job: dict[str, Any], name: str, embeddings: str) -> dict[str, Any]:
    import os

    import numpy as np

    from .job_clusters import sample_embeddings, sample_path

    cells = sample_embeddings(embeddings, job["sample_size"], job["request"].get("seed", 0) + zlib.crc32(name.encode()))
    path = sample_path(job["out"], name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(tmp, cells)
    os.replace(tmp, path)
    return {"path": str(path.relative_to(Path(job["out"]))), "sha256": file_sha256(path), "cells": int(len(cells))}


def process_scene(entry: SceneEntry, job: dict[str, Any]) -> dict[str, Any]:
    """Classify or embed one scene as ``job`` asks; the manifest's record of it.

    ``job``: out (folder), model, kinds (output kinds), device, request (the other
    ``SceneRequest`` fields). Raises what the engine raises; the outputs are written atomically
    by the engine, so a failure leaves none half-written."""
    import rasterio

    from ..engine import SceneRequest, run_scene
    from ..io.gdal_messages import quiet_gdal_printing
    from ..io.temporaries import job_folder

    quiet_gdal_printing()  # a worker's failure reaches the driver as one message with GDAL's reason
    outputs = output_paths(job["out"], entry.name, job["kinds"])
    Path(next(iter(outputs.values()))).parent.mkdir(parents=True, exist_ok=True)
    device = worker_device(job["device"])
    request = dict(job["request"])
    with job_folder("many") as tmp:
        optical, optical_bands = _input(entry.optical, entry.optical_bands, tmp, "optical")
        sar, sar_bands = _input(entry.sar, entry.sar_bands, tmp, "sar")
        req = SceneRequest(model=job["model"], optical=optical, sar=sar, outputs=outputs, device=device,
                           **{**request, "optical_bands": optical_bands or request.get("optical_bands"),
                              "sar_bands": sar_bands or request.get("sar_bands")})
        failure = None
        try:
            res = run_scene(req, progress=_reporter(entry.name))
        except Exception as e:  # noqa: BLE001 (raised again as text; KeyboardInterrupt passes)
            failure = f"{type(e).__name__}: {e}"
    if failure is not None:  # raised outside the handler: no chained context to pickle
        raise SceneFailed(failure)
    written = {}
    for kind, path in res.outputs.items():
        p = Path(path)
        written[kind] = {"path": str(p.relative_to(Path(job["out"]))), "sha256": file_sha256(p),
                         "bytes": p.stat().st_size}
    with rasterio.open(next(iter(res.outputs.values()))) as src:
        bounds, crs = list(src.bounds), src.crs.to_string()
    extra = {}
    if job.get("sample_size"):  # the job fits its clusters over every scene: this scene's share of the sample
        extra["sample"] = _save_sample(job, entry.name, res.outputs["embeddings"])
    w = _worker()
    return {**extra, "status": "done", "outputs": written, "seconds": round(res.seconds, 2), "mode": res.mode,
            "stride": res.stride, "crs": crs, "bounds": bounds, "warnings": list(res.warnings),
            "device": device, "worker": f"{socket.gethostname()}/{w.name if w is not None else 'local'}",
            "datetime": entry.datetime}
