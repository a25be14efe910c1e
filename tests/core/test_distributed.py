"""DDP over 2 CPU processes (gloo) trains the same model as 1 process on the same global batch.

This holds only because contrastive candidates are gathered with gradients across ranks,
losses are normalised by global counts, and BatchNorm uses whole-batch statistics.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("ddp_train_worker.py")


def _run(out: Path, nproc: int, bn: str = "global") -> tuple[dict, list]:
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        r = subprocess.run([sys.executable, str(WORKER), str(out), bn], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    else:
        # the ranks started as torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR/PORT; env:// in the
        # worker), without torchrun's own store: that one always asks for libuv, which Debian's torch 2.6
        # (Debian 13) is built without; USE_LIBUV=0 makes the env:// store go without it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), bn], stderr=subprocess.PIPE, text=True,
                                  env={**env, "USE_LIBUV": "0", "RANK": str(k), "LOCAL_RANK": str(k),
                                       "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
                                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
                 for k in range(nproc)]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for e in errors)
    # each rank logs its share of the global loss; their mean is the global loss
    per_rank = [json.loads((out / f"steps{r}.json").read_text()) for r in range(nproc)]
    steps = [{k: sum(s[i][k] for s in per_rank) / nproc for k in per_rank[0][i]} for i in range(len(per_rank[0]))]
    return load_file(str(out / "weights.safetensors")), steps


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("ddp") / "one", 1)


def test_two_processes_train_the_same_model_as_one(single, tmp_path):
    w1, s1 = single
    w2, s2 = _run(tmp_path / "two", 2)
    assert len(s1) == len(s2) == 4
    for a, b in zip(s1, s2):
        for term in ("intra", "inter", "supcon", "bce", "total"):
            assert a[term] == pytest.approx(b[term], rel=1e-4, abs=1e-6), (a["step"], term)
    assert s1[-1]["total"] != pytest.approx(s1[0]["total"], rel=1e-3)  # training moved
    diffs = {k: (w1[k].float() - w2[k].float()).abs().max().item() for k in w1 if w1[k].is_floating_point()}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 2e-4, f"{worst} differs by {diffs[worst]}"
    moved = max((w1[k].float() - w0).abs().max().item() for k, w0 in _init_weights().items() if k in w1)
    assert moved > 1e-3  # the comparison is not trivially passing on untrained weights


def test_per_rank_batchnorm_is_a_different_model(single, tmp_path):
    """The deliberate choice matters: per-process BN statistics change the result."""
    w1, _ = single
    w2, _ = _run(tmp_path / "local", 2, "local")
    worst = max((w1[k].float() - w2[k].float()).abs().max().item() for k in w1 if w1[k].is_floating_point())
    assert worst > 1e-3


def _init_weights() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from core.models.mosaic import ModelConfig, MosaicModel

    torch.manual_seed(3)
    return {k: v.float() for k, v in MosaicModel(ModelConfig.preset("small")).state_dict().items() if v.is_floating_point()}
