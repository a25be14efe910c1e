"""OpenMP threads that sleep soon after a parallel region instead of spinning for long.

torch's CPU kernels on Linux run on GNU OpenMP (libgomp), whose idle threads busy-wait for
300,000 spins before they sleep. On an idle machine that costs nothing; beside another busy
process (QGIS drawing the canvas, a second run, a training job) each spinning thread holds a
core the other process needs, and fine-tuning or a scene run slows down 2-4 times
(``benchmarks/openmp_waits.py``, docs/engine/openmp_waits.md). 10,000 spins keep the idle
speed and remove the cliff. libgomp reads the setting once, when torch loads it, so it is set
when ``core`` is imported, before torch (processes started from this one inherit it); a value
the user chose is kept.
"""
from __future__ import annotations

import os

SPIN_COUNT = "10000"


def set_openmp_waits() -> bool:
    """Set GOMP_SPINCOUNT unless the user set it or OMP_WAIT_POLICY; True when this call set it."""
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
