"""Check, before a run starts, that the output folders can hold what the run will write.

A full Sentinel-2 tile in dense mode keeps ~500 MB of feature maps in temporary files beside
the outputs, and an embeddings raster can be as large again. Without a check a full disk is
found out after minutes of computing (the run then fails cleanly, but the time is lost).
The estimate is an upper bound: rasters uncompressed, with a third more for overviews.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

MB = 1024 * 1024


def _volume(folder: Path) -> Path:
    """The folder itself when it exists (``disk_usage`` needs an existing path), else its
    nearest existing parent."""
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_free_space(needs: list[tuple[str, int]], what: str = "this run") -> None:
    """Raise ``ValueError`` when a file system lacks the bytes that ``needs`` puts on it.

    Args:
        needs: (path of a file to be written, its size in bytes at most); paths on the same
            file system add up.
        what: names the run in the message.
    """
    per_device: dict[int, tuple[Path, int]] = {}
    for path, size in needs:
        folder = _volume(Path(path).parent)
        dev = os.stat(folder).st_dev
        first, total = per_device.get(dev, (folder, 0))
        per_device[dev] = (first, total + int(size))
    for folder, need in per_device.values():
        free = shutil.disk_usage(folder).free
        if free < need:
            raise ValueError(
                f"not enough free disk space in {folder}: {what} writes up to {need / MB:.0f} MB there "
                f"(outputs and temporary files), {free / MB:.0f} MB are free. Free some space, write the "
                f"outputs to another disk, or choose a larger output stride or fewer outputs")


def room_left(needs: list[tuple[str, int]], path: str) -> int:
    """Bytes still free on the file system of ``path`` once the files of ``needs`` that go on
    it are written (negative when they do not fit): the room a file of unknown size beside
    them, such as a compressed copy, may take."""
    dev = os.stat(_volume(Path(path).parent)).st_dev
    taken = sum(int(n) for p, n in needs if os.stat(_volume(Path(p).parent)).st_dev == dev)
    return shutil.disk_usage(_volume(Path(path).parent)).free - taken
