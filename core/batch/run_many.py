"""The driver of a batch job: skip what the manifest shows finished, run the rest as one Dask
task per scene (or one after another without Dask), record each scene as it ends, then the
mosaics and the STAC collection, and a table of done / skipped / failed scenes."""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..io.hashing import sha256_file
from .job_outputs import build_mosaics, write_catalog
from .manifest import Manifest, fingerprint
from .scene_list import SceneEntry
from .scene_task import PROGRESS_TOPIC, SceneFailed, process_scene

# SceneRequest fields that change how fast a scene runs, not what it writes
RUNTIME_OPTIONS = ("device", "threads", "batch_size", "prefetch", "compile", "stage")


@dataclass
class ManyResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    mosaics: dict[str, str] = field(default_factory=dict)
    catalog: str | None = None
    relabelled: list[str] = field(default_factory=list)  # scenes whose job-wide clusters were (re)written
    seconds: float = 0.0

    def table(self) -> str:
        """The job's end: one line per scene that did not simply finish, and the counts."""
        lines = [f"{'scene':<40} status   message", "-" * 72]
        lines += [f"{n:<40} done" for n in self.done]
        lines += [f"{n:<40} skipped  finished before, outputs unchanged" for n in self.skipped]
        lines += [f"{n:<40} FAILED   {m}" for n, m in self.failed.items()]
        lines.append(f"{len(self.done)} done, {len(self.skipped)} skipped, {len(self.failed)} failed "
                     f"in {self.seconds:.0f} s")
        return "\n".join(lines)


def _message(exc: BaseException, keep: int = 400) -> str:
    """One line; a long one keeps its start (what failed) and its end (what to do)."""
    text = " ".join(str(exc).split())
    text = text if isinstance(exc, SceneFailed) else f"{type(exc).__name__}: {text}"
    return text if len(text) <= keep else f"{text[:keep // 2]} [...] {text[-keep // 2:]}"


class _Progress:
    """Scenes finished plus the running scenes' block fractions, on one bar."""

    def __init__(self, total: int, show: bool) -> None:
        self.running: dict[str, float] = {}
        self.finished = 0
        self.lock = threading.Lock()
        self.bar = None
        if show and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="scene", bar_format="{l_bar}{bar}| {n:.1f}/{total} scenes "
                                                                  "[{elapsed}<{remaining}] {postfix}")

    def event(self, event) -> None:  # Dask topic handler: (time, message)
        msg = event[1] if isinstance(event, tuple) else event
        with self.lock:
            self.running[msg["scene"]] = msg["done"]
            self._draw()

    def scene_ended(self, name: str, line: str) -> None:
        with self.lock:
            self.running.pop(name, None)
            self.finished += 1
            if self.bar is not None:
                self.bar.write(line)
            else:
                print(line, flush=True)
            self._draw()

    def _draw(self) -> None:
        if self.bar is not None:
            self.bar.n = self.finished + sum(self.running.values())
            self.bar.set_postfix_str(f"{len(self.running)} running", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def model_info(model: str, command: str) -> dict[str, Any]:
    from ..io.model_file import model_paths, read_card

    weights, card_path = model_paths(model)
    if not weights.is_file() or not card_path.is_file():
        raise FileNotFoundError(f"model not found: {weights} and {card_path} are both needed")
    card = read_card(model)
    classes = card.get("architecture", {}).get("classes") or card.get("classes") or []
    return {"model": weights.stem, "model_sha256": sha256_file(weights), "card_sha256": sha256_file(card_path),
            "classes": list(classes), "command": command}


def _check_same_inputs(scenes: list[SceneEntry]) -> None:
    """Job-wide clusters compare embeddings across scenes: they must come from the same inputs."""
    kinds = {}
    for e in scenes:
        kinds.setdefault(" + ".join(m for m, f in (("optical", e.optical), ("SAR", e.sar)) if f), []).append(e.name)
    if len(kinds) > 1:
        said = "; ".join(f"{k}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for k, v in kinds.items())
        raise ValueError(f"clusters are fitted over all the job's scenes, so every scene needs the same inputs "
                         f"(embeddings of other inputs are not comparable); this list mixes {said}. Run one job "
                         f"per input set, or leave clusters out")


def _job_clusters(out: Path, manifest: Manifest, job: dict[str, Any], client, info: dict[str, Any],
                  log: Callable[[str], None]) -> list[str]:
    """Fit one K-means over every finished scene's sample, then (re)label the scenes whose
    clusters were made with other centroids; the names of those scenes."""
    import numpy as np

    from .job_clusters import assign_clusters, fit_centroids, save_centroids
    from .scene_task import output_paths

    req = job["request"]
    done = {n: r for n, r in manifest.done().items() if "sample" in r}
    k, seed = int(req.get("clusters", 8)), int(req.get("seed", 0))
    centroids = fit_centroids([np.load(out / r["sample"]["path"]) for r in done.values()], k, seed)
    fitted_on = sum(r["sample"]["cells"] for r in done.values())
    digest = save_centroids(out, centroids, {"k": k, "seed": seed, "fitted_on": fitted_on, "scenes": sorted(done),
                                             "model": info["model"], "model_sha256": info["model_sha256"]})
    stale = []
    for name, rec in sorted(done.items()):
        have = rec["outputs"].get("clusters")
        if not (rec.get("clusters_centroids") == digest and have and (out / have["path"]).is_file()
                and sha256_file(out / have["path"]) == have["sha256"]):
            stale.append(name)
    tags = {"clusters": "job-wide", "fitted_on": str(fitted_on), "centroids_sha256": digest, "model": info["model"]}
    args = {n: (str(out / done[n]["outputs"]["embeddings"]["path"]), centroids,
                output_paths(out, n, ["clusters"])["clusters"], tags) for n in stale}
    if client is not None and stale:
        futures = {n: client.submit(assign_clusters, *a, pure=False, retries=1) for n, a in args.items()}
        results = {n: f.result() for n, f in futures.items()}
    else:
        results = {n: assign_clusters(*a) for n, a in args.items()}
    for n, r in results.items():
        rec = done[n]
        rec["outputs"]["clusters"] = {"path": str(Path(args[n][2]).relative_to(out)), **r}
        manifest.record(n, {**rec, "clusters_centroids": digest})
    log(f"clusters: one K-means (k={k}) over {fitted_on} cells of {len(done)} scenes; "
        f"{len(stale)} scenes labelled, {len(done) - len(stale)} unchanged")
    return stale


def run_many(scenes: list[SceneEntry], job: dict[str, Any], client=None, retries: int = 2,
             show_progress: bool = True, log: Callable[[str], None] = print) -> ManyResult:
    """Process ``scenes`` as ``job`` asks (see ``scene_task.process_scene``) on the Dask
    ``client`` (None: one after another in this process); returns what happened to each."""
    t0 = time.perf_counter()
    out = Path(job["out"])
    manifest = Manifest(out)
    wanted = job
    if "clusters" in job["kinds"]:
        _check_same_inputs(scenes)  # job-wide clusters (job_clusters.py): embeddings and a sample per scene first
        kinds = [k for k in job["kinds"] if k != "clusters"]
        job = {**job, "kinds": kinds + ["embeddings"] * ("embeddings" not in kinds),
               "sample_size": max(500, int(job["request"].get("cluster_sample", 20000)) // max(1, len(scenes)))}
    info = model_info(job["model"], job["command"])
    options = {"kinds": sorted(job["kinds"]), "card": info["card_sha256"],
               **{k: v for k, v in job["request"].items() if k not in RUNTIME_OPTIONS}}
    res = ManyResult()
    todo: list[tuple[SceneEntry, str]] = []
    for e in scenes:
        try:
            fp = fingerprint(e.input_files(), options, info["model_sha256"])
        except OSError as exc:
            res.failed[e.name] = f"input not readable: {exc}"
            manifest.record(e.name, {"status": "failed", "error": res.failed[e.name], "attempts": 0})
            continue
        if manifest.is_complete(e.name, fp):
            res.skipped.append(e.name)
        else:
            todo.append((e, fp))
    log(f"{len(scenes)} scenes: {len(res.skipped)} finished before (skipped), {len(todo)} to run"
        + (f", {len(res.failed)} with unreadable inputs" if res.failed else ""))
    bar = _Progress(len(todo), show_progress)

    def finish(e: SceneEntry, fp: str, rec: dict | None, exc: BaseException | None, attempts: int | None) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if exc is None:
            manifest.record(e.name, {**rec, "fingerprint": fp, "finished": now, "attempts": attempts})
            res.done.append(e.name)
            bar.scene_ended(e.name, f"done    {e.name} ({rec['seconds']:.1f} s on {rec['worker']}, {rec['device']})")
        else:
            msg = _message(exc)
            manifest.record(e.name, {"status": "failed", "error": msg, "fingerprint": fp, "finished": now,
                                     "attempts": attempts})
            res.failed[e.name] = msg
            bar.scene_ended(e.name, f"FAILED  {e.name}: {msg}")

    try:
        if client is None:
            for e, fp in todo:
                for attempt in range(1, retries + 2):
                    try:
                        rec = process_scene(e, job)
                        finish(e, fp, rec, None, attempt)
                        break
                    except Exception as exc:  # noqa: BLE001 (one scene's failure never stops the others)
                        if attempt == retries + 1:
                            finish(e, fp, None, exc, attempt)
        elif todo:
            from distributed import as_completed

            client.subscribe_topic(PROGRESS_TOPIC, bar.event)
            tag = uuid.uuid4().hex[:8]
            futures = {client.submit(process_scene, e, job, key=f"scene-{e.name}-{tag}", pure=False,
                                     retries=retries): (e, fp) for e, fp in todo}
            for fut in as_completed(futures):
                e, fp = futures[fut]
                if fut.status == "finished":
                    finish(e, fp, fut.result(), None, None)  # Dask does not say after how many tries
                else:
                    finish(e, fp, None, fut.exception(), retries + 1)
                fut.release()
            client.unsubscribe_topic(PROGRESS_TOPIC)
    finally:
        bar.close()
    if "clusters" in wanted["kinds"] and manifest.done():
        res.relabelled = _job_clusters(out, manifest, wanted, client, info, log)
    done = manifest.done()
    if done:
        try:
            res.mosaics = build_mosaics(out, done)
            res.catalog = write_catalog(out, done, info, res.mosaics)
        except Exception as exc:  # noqa: BLE001 (the scenes are done and recorded; say what is missing)
            log(f"warning: the mosaics or the STAC collection could not be written: {_message(exc)}")
            log(traceback.format_exc(limit=3))
    res.seconds = time.perf_counter() - t0
    return res
