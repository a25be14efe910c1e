"""Fine-tuning and a scene run beside other busy processes, by OpenMP wait setting (not a test).

torch's CPU threads (GNU OpenMP on Linux) spin after each parallel region before they sleep.
This measures what that costs when the machine is not ours alone: each workload runs in a
fresh process with GOMP_SPINCOUNT at libgomp's default (300000), at the plugin's 10000
(core/openmp.py), and with OMP_WAIT_POLICY=PASSIVE (no spinning), once on an idle machine and
once beside as many busy processes as there are cores (a stand-in for QGIS drawing, another
run or a training job). Settings alternate within each round; compare ratios of medians, not
seconds (these machines are shared and noisy).

    .venv/bin/python benchmarks/openmp_waits.py [--rounds 2] [--out docs/engine/openmp_waits.txt]

Workloads: ``finetune`` = ``python -m core train --epochs 2`` on the bundled reBEN sample (the
training loop fine-tuning uses); ``classify`` = the bundled Spain S1+S2 scene, dense, stride 16,
three times in one process (the first run includes the model's preparation).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPAIN = ROOT / "resources" / "sample" / "spain"
SETTINGS = {  # name -> environment
    "default (300000 spins)": {"GOMP_SPINCOUNT": "300000"},
    "plugin (10000 spins)": {"GOMP_SPINCOUNT": "10000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def _busy() -> None:
    while True:
        pass


def _command(workload: str, tmp: str) -> list[str]:
    if workload == "finetune":
        return [sys.executable, "-m", "core", "train", "--epochs", "2", "--quiet", "--eval-splits", "--out", tmp]
    return [sys.executable, __file__, "--classify-in-process", tmp]


def _classify_in_process(tmp: str) -> None:
    sys.path.insert(0, str(ROOT))
    from core.engine import SceneRequest, run_scene

    for i in range(3):
        run_scene(SceneRequest(model=str(ROOT / "resources" / "models" / "mosaic-small-ben19"),
                               optical=str(SPAIN / "Spain_7370579_S2Hand.tif"), sar=str(SPAIN / "Spain_7370579_S1Hand.tif"),
                               stride=16, mode="dense", outputs={"probabilities": f"{tmp}/p{i}.tif"}))


def _time(workload: str, env: dict[str, str]) -> float:
    full = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(_command(workload, tmp), cwd=ROOT, env={**full, **env}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workloads", nargs="+", default=["finetune", "classify"], choices=["finetune", "classify"])
    p.add_argument("--out", help="also write the table to this file")
    p.add_argument("--classify-in-process", metavar="TMP", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.classify_in_process:
        _classify_in_process(a.classify_in_process)
        return
    cores = os.cpu_count() or 1
    times: dict[tuple[str, str, str], list[float]] = {}
    for r in range(a.rounds):
        for load in ("idle", f"beside {cores} busy processes"):
            hogs = [mp.Process(target=_busy, daemon=True) for _ in range(cores if load != "idle" else 0)]
            for h in hogs:
                h.start()
            try:
                for w in a.workloads:
                    for name, env in SETTINGS.items():
                        t = _time(w, env)
                        times.setdefault((w, load, name), []).append(t)
                        print(f"round {r + 1}: {w}, {load}, {name}: {t:.1f} s", flush=True)
            finally:
                for h in hogs:
                    h.terminate()
                    h.join()
    lines = [f"{cores} cores; median of {a.rounds} rounds; ratio = the setting's time / default's time on the same load",
             "", "| workload | load | setting | median s | ratio to default |", "|---|---|---|---|---|"]
    for (w, load, name), ts in times.items():
        base = statistics.median(times[(w, load, next(iter(SETTINGS)))])
        lines.append(f"| {w} | {load} | {name} | {statistics.median(ts):.1f} | {statistics.median(ts) / base:.2f} |")
    print("\n".join(lines))
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
