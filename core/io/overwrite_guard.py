"""Outputs never replace what a job reads.

An output is written to a temporary file and moved into place at the end, so an output path
equal to an input path would replace the input with the output (a 27 x 33 dominant-class raster
where a 512 x 512 x 13 scene was). Every job checks its outputs against every file it reads
before it starts: the rasters, the files a VRT or band list names (``rasterio``'s
``dataset.files``), the model's weights and card, the label file. Paths are compared after
resolving links, and by inode where both exist (a hard link is the same file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_outputs_spare_inputs(outputs: Mapping[str, str | Path], reads: Mapping[str, Sequence[str | Path]]) -> None:
    """ValueError when an output path is a file the job reads.

    Args:
        outputs: what each output is (e.g. "dominant output") -> its path.
        reads: what each input is (e.g. "optical raster") -> the files it reads, itself first.
    """
    for what, out in outputs.items():
        for source, files in reads.items():
            for i, f in enumerate(files):
                if _same(str(out), str(f)):
                    where = f"the {source}" if i == 0 else f"{f}, which the {source} {files[0]} reads"
                    raise ValueError(f"the {what} {out} is {where}: writing it would destroy an input of this run; "
                                     f"choose another output path")


def check_output_folder(folder: str | Path) -> None:
    """FileNotFoundError / ValueError when ``folder`` does not exist or cannot be written, before
    any work: a job would otherwise find out when it saves its first file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {folder} is not writable: choose another folder")


def raster_files(dataset) -> list[str]:
    """The files an open rasterio dataset reads: itself, and for a VRT the files it names."""
    files = [dataset.name]
    try:
        files += [f for f in dataset.files if f not in files]
    except Exception:  # noqa: BLE001 - some drivers list nothing; the dataset's own path is enough
        pass
    return files


def raster_path_files(path: str | Path) -> list[str]:
    """``raster_files`` of the raster at ``path`` (just ``path`` if it does not open: the job's own
    opening says why)."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return raster_files(ds)
    except Exception:  # noqa: BLE001
        return [str(path)]
