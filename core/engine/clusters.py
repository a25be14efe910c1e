"""The clusters pass: K-means fitted on the embedding sample the blocks collected, then every
block's embeddings labelled from the embedding raster the run wrote (its own or a temporary one)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .outputs import OutputSet
from .plan import ScenePlan
from .palette import cluster_colors
from .writer import OutputRaster


def fit_kmeans(sample: np.ndarray, k: int, seed: int):
    """MiniBatchKMeans on embedding vectors [n, D], as every clusters output is fitted."""
    from sklearn.cluster import MiniBatchKMeans

    return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=min(4096, len(sample))).fit(sample)


def cluster_pass(plan: ScenePlan, outputs: OutputSet, check: Callable[[], None],
                 advance: Callable[[], None]) -> None:
    """Fit MiniBatchKMeans on ``outputs.sample`` and write the clusters raster block by block."""
    req = plan.req
    sample = outputs.sample.vectors
    if len(sample) < req.clusters:
        raise ValueError(f"only {len(sample)} valid output cells: too few for {req.clusters} clusters "
                         f"(use a smaller stride or fewer clusters)")
    km = fit_kmeans(sample, req.clusters, req.seed)
    cl = OutputRaster(req.outputs["clusters"], "clusters", **plan.specs["clusters"], colors=cluster_colors(req.clusters),
                      tags={**plan.tags, "k": str(req.clusters), "fitted_on": str(len(sample))}, **plan.grid_args)
    outputs.add("clusters", cl)
    for blk in plan.blocks():
        check()
        e = outputs.embeddings.read(blk.row0, blk.col0, blk.rows, blk.cols)
        ok = np.isfinite(e).all(0)
        lab = np.full((blk.rows, blk.cols), 255, np.uint8)
        if ok.any():
            lab[ok] = km.predict(e[:, ok].T.astype(np.float32)).astype(np.uint8)
        cl.write(lab[None], blk.row0, blk.col0)
        advance()
