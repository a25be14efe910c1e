"""core sets OpenMP's spin count before torch loads, and keeps what the user chose."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import core, torch, os; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def _probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**base, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_core_sets_the_spin_count() -> None:
    from core.openmp import SPIN_COUNT

    assert _probe() == f"{SPIN_COUNT} None"


def test_the_users_choice_is_kept() -> None:
    assert _probe(GOMP_SPINCOUNT="123") == "123 None"
    assert _probe(OMP_WAIT_POLICY="ACTIVE") == "None ACTIVE"
