"""Every temporary a job makes carries the id of the process that made it, so that the next job
can tell what a killed one (SIGKILL, a crash, a power cut) left behind and delete it:

- beside an output ``DIR/NAME``: ``DIR/.NAME.<pid>.*`` (the output while it is written, dense
  mode's feature stores, staged input copies, a model file being saved);
- in the system's temporary folder: ``mosaic-<job>-<pid>-*`` folders (band-list VRTs, a
  fine-tuning's scratch files).

A temporary whose process is gone is deleted by the next job that writes beside the same output
(or, for the folders, by any job). POSIX only: elsewhere nothing is deleted (a process cannot be
probed there without side effects).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

_FOLDER = re.compile(r"^mosaic-[a-z]+-(\d+)-")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (under any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def beside_tag(path: str | Path, pid: int | None = None) -> str:
    """``DIR/.NAME.<pid>``: the prefix of every temporary this process makes beside ``path``."""
    p = Path(path)
    return str(p.parent / f".{p.name}.{os.getpid() if pid is None else pid}")


def remove_stale_beside(path: str | Path) -> list[tuple[str, int]]:
    """Delete ``DIR/.NAME.<pid>.*`` beside ``path`` whose process is gone; (path, bytes) of each."""
    if os.name != "posix":
        return []
    p = Path(path)
    prefix = f".{p.name}."
    removed = []
    for f in p.parent.glob(glob.escape(prefix) + "*"):
        pid = f.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        try:
            size = f.stat().st_size
            f.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to delete
        removed.append((str(f), size))
    return removed


def job_folder(job: str) -> tempfile.TemporaryDirectory:
    """A scratch folder ``mosaic-<job>-<pid>-*`` in the system's temporary folder, deleted when the
    ``with`` ends; those of dead processes are deleted first."""
    remove_stale_folders()
    return tempfile.TemporaryDirectory(prefix=f"mosaic-{job}-{os.getpid()}-")


def remove_stale_folders(parent: str | Path | None = None) -> list[str]:
    """Delete ``mosaic-<job>-<pid>-*`` folders of dead processes in ``parent`` (the system's
    temporary folder by default)."""
    if os.name != "posix":
        return []
    removed = []
    for f in Path(parent or tempfile.gettempdir()).glob("mosaic-*-*-*"):
        m = _FOLDER.match(f.name)
        if m and f.is_dir() and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(f, ignore_errors=True)
            removed.append(str(f))
    return removed
