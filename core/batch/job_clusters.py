"""Clusters that mean the same in every scene of a job.

A single run fits K-means on its own scene, so cluster 3 of one scene is not cluster 3 of the
next, and a mosaic of them would be a patchwork. A batch job asking for clusters therefore
writes each scene's embeddings (kept: a later rerun that adds scenes refits from them), draws a
sample of each scene's valid cells, fits one K-means on the pooled sample (the same
MiniBatchKMeans settings as the engine's), and labels every scene with those centroids. The
centroids are kept in ``OUT/clusters.json``; a scene's clusters are rewritten only when the
centroids change.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

CENTROIDS = "clusters.json"
ROWS = 64  # output rows per read while sampling and labelling (64 x 686 cells x 256 bands: 45 MB)


def sample_path(out: str | Path, name: str) -> Path:
    return Path(out) / name / f"{name}_embedding_sample.npy"


def sample_embeddings(path: str | Path, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` valid cells of an embeddings raster, [n, D] float32, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    parts, seen = [], 0
    with rasterio.open(path) as src:
        for r in range(0, src.height, ROWS):
            e = src.read(window=Window(0, r, src.width, min(ROWS, src.height - r)))
            v = e.reshape(e.shape[0], -1).T
            v = v[np.isfinite(v).all(1)]
            seen += len(v)
            parts.append(v)
    cells = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if len(cells) > n:
        cells = cells[np.sort(rng.choice(len(cells), n, replace=False))]
    return cells.astype(np.float32)


def fit_centroids(samples: list[np.ndarray], k: int, seed: int) -> np.ndarray:
    """One K-means over every scene's sample; [k, D] centroids."""
    from ..engine.clusters import fit_kmeans

    pooled = np.concatenate([s for s in samples if len(s)])
    if len(pooled) < k:
        raise ValueError(f"only {len(pooled)} valid output cells in the job's scenes: too few for {k} clusters "
                         f"(use a smaller stride or fewer clusters)")
    km = fit_kmeans(pooled, k, seed)
    # rounded: a refit on the same sample can differ in the last bits (BLAS threads), and the labels
    # and the digest that decides whether scenes are relabelled must not
    return np.round(km.cluster_centers_, 4).astype(np.float32)


def centroids_digest(centroids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(centroids, np.float32).tobytes()).hexdigest()


def save_centroids(out: str | Path, centroids: np.ndarray, info: dict[str, Any]) -> str:
    """``OUT/clusters.json`` (atomic); the centroids' digest."""
    digest = centroids_digest(centroids)
    path = Path(out) / CENTROIDS
    tmp = path.with_name(f".{CENTROIDS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**info, "sha256": digest, "centroids": centroids.tolist()}))
    os.replace(tmp, path)
    return digest


def assign_clusters(embeddings: str, centroids: np.ndarray, out_path: str, tags: dict[str, str]) -> dict:
    """Label every cell of ``embeddings`` with its nearest centroid into ``out_path`` (uint8, colour
    table, 255 = no data; written whole or not at all); its manifest entry."""
    from ..engine.palette import cluster_colors
    from ..engine.writer import OutputRaster
    from ..io.hashing import sha256_file

    k = len(centroids)
    c = centroids.astype(np.float32)
    c2 = (c * c).sum(1)
    with rasterio.open(embeddings) as src:
        raster = OutputRaster(out_path, "clusters", src.crs, src.transform, src.width, src.height, 1, "uint8", 255,
                              descriptions=["cluster"], colors=cluster_colors(k),
                              categorical=True, tags={**tags, "k": str(k)})
        try:
            for r in range(0, src.height, ROWS):
                rows = min(ROWS, src.height - r)
                e = src.read(window=Window(0, r, src.width, rows))
                v = e.reshape(e.shape[0], -1).T
                ok = np.isfinite(v).all(1)
                lab = np.full(len(v), 255, np.uint8)
                if ok.any():  # nearest centroid: argmin |v|^2 - 2 v.c + |c|^2, |v|^2 constant per cell
                    lab[ok] = np.argmin(c2[None] - 2.0 * v[ok] @ c.T, axis=1).astype(np.uint8)
                raster.write(lab.reshape(1, rows, src.width), r, 0)
            raster.finish()
            raster.commit()
        except BaseException:
            raster.abort()
            raise
    return {"sha256": sha256_file(out_path), "bytes": os.path.getsize(out_path)}
