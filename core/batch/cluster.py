"""The Dask cluster a batch job runs on: a LocalCluster sized for this machine, or the user's.

A scene run is one task that holds its worker for minutes and uses its threads through torch,
so a worker is a process of a few threads running one scene at a time, never many small tasks.
"""
from __future__ import annotations

import logging
import os

# a dense run at the default 2048 px blocks peaks at 0.8-1.1 GB whatever the scene's size
# (docs/engine/scene_inference.md); 2 GB per worker leaves room for staging and Dask itself
WORKER_MEMORY_GB = 2.0


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _memory_gb() -> float:
    import psutil  # a dependency of distributed

    return psutil.virtual_memory().total / 2**30


def local_size(workers: int | None = None, threads: int | None = None) -> tuple[int, int, int]:
    """(workers, threads per worker, GPUs) for a LocalCluster on this machine.

    With GPUs: one worker per GPU, the cores shared among them. Without: 1 thread per worker on
    up to 4 cores, else 2 (torch's speed-up per scene flattens beyond a few threads; scenes in
    parallel do not), as many workers as cores allow and memory holds (``WORKER_MEMORY_GB``)."""
    cores = os.cpu_count() or 1
    gpus = _gpu_count()
    if gpus:
        n = workers or gpus
        return n, threads or max(1, cores // n), gpus
    t = threads or (1 if cores <= 4 else 2)
    by_memory = max(1, int(_memory_gb() // WORKER_MEMORY_GB))
    return workers or max(1, min(cores // t, by_memory)), t, 0


def check_environment(client) -> None:
    """ValueError, before any scene is sent, when the scheduler or a worker cannot import the
    plugin's ``core`` (Dask would fail every task with a message about environments)."""

    def _has_plugin() -> bool:  # nested: sent by value, so that a process without the plugin can run it
        import importlib.util

        try:
            return importlib.util.find_spec("core.batch.scene_task") is not None
        except ImportError:  # no package core at all
            return False

    where = [f"worker {a}" for a, ok in client.run(_has_plugin).items() if not ok]
    where = (["the scheduler"] if not client.run_on_scheduler(_has_plugin) else []) + where
    if not client.scheduler_info()["workers"]:
        raise ValueError("the Dask cluster has no worker yet: start some (dask worker ADDRESS --nthreads 1)")
    if where:
        raise ValueError(f"{', '.join(where[:4])}{' ...' if len(where) > 4 else ''} cannot import the plugin: start "
                         f"the scheduler and the workers with PYTHONPATH set to the plugin folder (the one holding "
                         f"core/) and the packages of requirements/requirements.txt")


def open_client(scheduler: str | None, workers: int | None = None, threads: int | None = None,
                dashboard: bool = True):
    """(client, cluster, threads per worker): connected to ``scheduler`` (an address such as
    ``tcp://host:8786`` or a scheduler file path), else a new LocalCluster (``cluster`` is then
    to be closed by the caller)."""
    from distributed import Client, LocalCluster

    if scheduler:
        kw = {"scheduler_file": scheduler} if scheduler.endswith(".json") else {"address": scheduler}
        client = Client(**kw, timeout="30s")
        try:
            check_environment(client)
        except Exception:
            client.close()
            raise
        if threads:
            return client, None, threads
        # the workers' cores shared among the scenes each may run at once (its nthreads)
        cores = client.run(os.cpu_count)
        info = client.scheduler_info()["workers"]
        shares = [max(1, (cores.get(a) or 1) // max(1, w.get("nthreads", 1))) for a, w in info.items()]
        return client, None, min(shares) if shares else 1
    n, t, _ = local_size(workers, threads)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":8787" if dashboard else None, silence_logs=logging.CRITICAL)  # failures are reported per scene
    # one task per worker at a time (nthreads 1); the scene itself runs on t torch threads
    return Client(cluster), cluster, t
