"""Eight real scenes, one after another in one process vs. on a Dask LocalCluster (not a test).

The scenes are every real scene of ../shared/data that the engine reads (Spain S1+S2, the
SSL4EO-S12 India site at L2A with S1 and at L1C, the USA and Germany L1C JPEG 2000 crops, the
two Major-TOM L2A cells), classified with the bundled model (dominant class + probabilities).
Each mode runs `python -m core classify-many` in a fresh output folder, alternated over the
rounds; the whole process tree's resident memory is sampled every 0.1 s for the peak. Each run
is followed by the same command again, which finds every scene finished (manifest hashes) and
skips it: that second run is the job's fixed cost (start-up, cluster, checks, mosaics, STAC),
and the difference is the scenes' own time. These machines are shared and noisy: compare the
ratio of the medians, not the seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/many_scenes.py [--rounds 2] [--workers N --threads T]

Modes: sequential (``--scheduler sequential``: the scenes one after another, each on all the
cores' torch threads), and a LocalCluster (its default sizing unless --workers/--threads say).
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
SSL = DATA / "unlabelled" / "ssl4eo-s12"
MT = DATA / "unlabelled" / "major-tom" / "S2L2A"


def scene_rows() -> list[tuple[str, str, str]]:
    one = lambda pattern: str(sorted(DATA.glob(pattern))[0])  # noqa: E731
    return [
        ("spain", str(ROOT / "resources/sample/spain/Spain_7370579_S2Hand.tif"),
         str(ROOT / "resources/sample/spain/Spain_7370579_S1Hand.tif")),
        ("india-l2a-june", one("unlabelled/ssl4eo-s12/s2a/0000200/20200604*"),
         one("unlabelled/ssl4eo-s12/s1/0000200/S1A_*20200607*")),
        ("india-l2a-august", one("unlabelled/ssl4eo-s12/s2a/0000200/20200813*"),
         one("unlabelled/ssl4eo-s12/s1/0000200/S1A_*20200903*")),
        ("india-l1c-june", one("unlabelled/ssl4eo-s12/s2c/0000200/20200604*"), ""),
        ("usa-l1c", str(DATA / "s2-l1c-usa"), ""),
        ("germany-l1c", str(DATA / "s2-l1c-germany"), ""),
        ("congo-l2a", one("unlabelled/major-tom/S2L2A/0U/0U_199R/S2A_*"), ""),
        ("vietnam-l2a", one("unlabelled/major-tom/S2L2A/199U/199U_1099R/S2B_*"), ""),
    ]


def run(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak resident GiB of the process and all its children)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]
    root = psutil.Process(proc.pid)

    def sample() -> None:
        while proc.poll() is None:
            try:
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak[0] = max(peak[0], total)
            except psutil.Error:
                pass
            time.sleep(0.1)

    t0 = time.perf_counter()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    secs = time.perf_counter() - t0
    th.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return secs, peak[0] / 2**30


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, help="LocalCluster workers (default: its own sizing)")
    p.add_argument("--threads", type=int, help="torch threads per scene on the cluster (default: its own sizing)")
    a = p.parse_args()
    from core.batch.cluster import local_size

    rows = scene_rows()
    cores = os.cpu_count()
    n, t, gpus = local_size(a.workers, a.threads)
    with tempfile.TemporaryDirectory(prefix="many-bench-") as tmp:
        listing = Path(tmp) / "scenes.csv"
        with open(listing, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "optical", "sar"])
            w.writerows(rows)
        base = [sys.executable, "-m", "core", "classify-many", "--scenes", str(listing), "--quiet",
                "--outputs", "dominant", "probabilities", "--device", "cpu"]
        modes = {"sequential": ["--scheduler", "sequential", "--threads", str(cores)],
                 "local cluster": ["--workers", str(n), "--threads", str(t), "--no-dashboard"]}
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        fixed: dict[str, list[float]] = {m: [] for m in modes}
        for r in range(a.rounds):
            for mode, extra in modes.items():
                out = Path(tmp) / f"{mode.replace(' ', '-')}-{r}"
                results[mode].append(run(base + ["--out", str(out)] + extra))
                fixed[mode].append(run(base + ["--out", str(out)] + extra)[0])
                print(f"round {r + 1} {mode}: {results[mode][-1][0]:.1f} s, peak {results[mode][-1][1]:.2f} GiB; "
                      f"rerun with every scene finished: {fixed[mode][-1]:.1f} s", flush=True)
    med = {m: (statistics.median(s for s, _ in v), max(g for _, g in v)) for m, v in results.items()}
    work = {m: statistics.median(s - f for (s, _), f in zip(results[m], fixed[m])) for m in modes}
    print(f"\n{len(rows)} scenes, {cores} cores, {a.rounds} rounds; cluster: {n} workers x {t} torch threads"
          f"{f', {gpus} GPUs' if gpus else ''}; sequential: one process, {cores} torch threads")
    for m, (s, g) in med.items():
        print(f"  {m:<14} median {s:6.1f} s (fixed cost {statistics.median(fixed[m]):4.1f} s, scenes "
              f"{work[m]:5.1f} s)   peak memory {g:5.2f} GiB")
    print(f"  sequential / cluster time: whole job {med['sequential'][0] / med['local cluster'][0]:.2f}x, "
          f"scenes only {work['sequential'] / work['local cluster']:.2f}x; cluster memory "
          f"{med['local cluster'][1] / med['sequential'][1]:.2f}x sequential's")


if __name__ == "__main__":
    main()
