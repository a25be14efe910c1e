"""``run_scene``: classify and/or embed a whole scene, block by block.

The stages, each in its own module: the plan (``plan.make_plan``: inputs, grid, mode,
blocks, outputs, disk), the inputs decoded once where that pays (``scene_inputs``), then the
passes over the blocks (``dense``: encode, then pool; or ``sliding``), the clusters
(``clusters``), and the commit of every output (``outputs.OutputSet``). This function only
sequences them, reports progress, honours cancel and cleans up: on any error or cancel no
output and no temporary file is left behind. Memory is bounded by the block size, never by
the scene.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import torch

from ..device import resolve_device
from .clusters import cluster_pass
from .dense import FeatureStores, encode_pass, pool_pass
from .model_cache import engine_model
from .outputs import OutputSet
from .plan import make_plan
from .request import LABEL, Cancelled, SceneRequest, SceneResult, check_request
from .scene_inputs import input_readers, stage_inputs
from .sliding import sliding_pass
from .staging import remove_staged


def run_scene(request: SceneRequest, progress: Callable[[float], None] | None = None,
              is_cancelled: Callable[[], bool] | None = None) -> SceneResult:
    """Classify and/or embed a scene; writes the requested outputs.

    Args:
        request: inputs, outputs and options (``SceneRequest``).
        progress: called with the fraction done (0..1) after every block.
        is_cancelled: polled before every block; when it returns True the run stops,
            every temporary file is deleted and ``Cancelled`` is raised.

    Returns:
        ``SceneResult`` with the written paths, output grid and warnings.

    Raises:
        ValueError / FileNotFoundError: a problem the user can fix (message says how).
        Cancelled: the run was cancelled; nothing was written.
    """
    t0 = time.perf_counter()
    req = request
    check_request(req)
    progress = progress or (lambda f: None)
    is_cancelled = is_cancelled or (lambda: False)
    device = resolve_device(req.device)
    if req.threads:
        torch.set_num_threads(int(req.threads))
    em = engine_model(req.model, device, compile=req.compile)
    for m, p in (("s2", req.optical), ("s1", req.sar)):
        if p is not None and m not in em.modalities:
            raise ValueError(f"the model {req.model} has no {m} encoder (it takes {em.modalities}); "
                             f"leave the {LABEL[m]} input out")

    def check() -> None:
        if is_cancelled():
            raise Cancelled("cancelled")

    plan = make_plan(req, em)
    outputs = stores = None
    readers = []
    staged_files: list[str] = []  # inputs decoded once (staging.py), deleted when the run ends
    pool = ThreadPoolExecutor(1, thread_name_prefix="mosaic-read")
    try:
        outputs = OutputSet(plan, em)
        n = plan.nblocks
        passes = (1 + plan.windows if plan.mode == "dense" else 1) + ("clusters" in req.outputs) + len(plan.to_stage)
        steps = _Steps(n * passes, progress)
        staged = stage_inputs(plan, staged_files, lambda copies: steps.at(copies * n), is_cancelled)
        steps.at(n * len(staged_files))
        readers = input_readers(plan, em.stats)
        reads = pool if req.prefetch else None
        if plan.mode == "dense":
            stores = FeatureStores(plan, em) if plan.windows else None
            encode_pass(plan, em, readers, stores, outputs, reads, check, steps.advance)
            if stores is not None:
                pool_pass(plan, em, stores, outputs, check, steps.advance)
        else:
            sliding_pass(plan, em, readers, outputs, reads, check, steps.advance)
        if "clusters" in req.outputs:
            cluster_pass(plan, outputs, check, steps.advance)
        check()
        written = outputs.commit()
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # no read may be in flight when the files close
        if outputs is not None:
            outputs.drop_temporaries()
        if stores is not None:
            stores.close()
        for r in readers:
            r.reader.close()
        plan.close()
        for f in staged_files:
            remove_staged(f)
    progress(1.0)
    given = {k: (a, n) for k, (a, n) in outputs.given.items() if n}
    plan.warnings.extend(_coverage_warnings(given, em.patch))
    return SceneResult(written, plan.grid.crs.to_string(), plan.out_w, plan.out_h, plan.mode, plan.warnings,
                       time.perf_counter() - t0, plan.stride, plan.nblocks, staged, given)


def _coverage_warnings(given: dict[str, tuple[int, int]], patch: int) -> list[str]:
    """Say when outputs are all or mostly no data, and why that happens."""
    out = []
    for kind, (a, n) in given.items():
        what = "window output cells" if kind == "window" else "fine output pixels"
        if a == 0:
            why = (f"the inputs have no data there, or the scene is too small for a {patch} px window with "
                   f"enough data (window outputs need most of their window inside the scene)") if kind == "window" \
                else "the inputs have no data anywhere"
            out.append(f"no {what} were classified (all {n} are no data): {why}")
        elif a < 0.5 * n:
            out.append(f"only {a} of {n} {what} were classified; the rest are no data (no input data there"
                       + (", or windows reaching past the scene's edge)" if kind == "window" else ")"))
    return out


class _Steps:
    """Progress as steps done of a known total (a pass over the blocks is ``nblocks`` steps)."""

    def __init__(self, total: int, progress: Callable[[float], None]) -> None:
        self.total, self.done, self.progress = max(1, total), 0, progress

    def at(self, done: float) -> None:
        self.done = done
        self.progress(done / self.total)

    def advance(self) -> None:
        self.at(self.done + 1)
