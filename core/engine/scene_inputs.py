"""The inputs of a run: opening them, deciding which are decoded once into a temporary copy
before the blocks (``staging``) and whether the disk has room for it, making those copies,
and the per-modality readers on the reference grid that the passes read blocks from."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import rasterio
from rasterio.errors import RasterioIOError

from .align import Grid
from .band_reader import DAMAGED, BandReader
from .open_raster import gdal_reason
from .block_reads import InputReader
from .disk_space import MB, check_free_space, room_left
from .reflectance_offset import shifted_mean
from .request import LABEL, Cancelled, SceneRequest
from .staging import CopyTooLarge, slow_to_decode, source_window, stage, staged_bytes, staged_size, why_not_exact

# modality -> (source window, staged file, its uncompressed bytes, why it is staged)
StagingPlan = dict[str, tuple[Any, str, int, str]]


def open_input(path: str, what: str):
    """The rasterio dataset of an input; FileNotFoundError / ValueError name the file."""
    if not Path(path).exists() and not str(path).startswith("/vsi"):
        raise FileNotFoundError(f"{what} raster {path} not found")
    try:
        return rasterio.open(path)
    except RasterioIOError as e:
        raise ValueError(f"{what} raster {path} cannot be read by GDAL: {gdal_reason(e)}") from None


def staging_plan(req: SceneRequest, srcs: dict[str, Any], maps: dict[str, Any], grid: Grid,
                 direct: dict[str, bool], tag: str, warns: list[str]) -> StagingPlan:
    """modality -> (source window, staged file, its bytes, why) of the inputs a run decodes
    once before its blocks (``staging``): JPEG 2000 and band files in large compressed tiles
    (``slow_to_decode``) with ``auto``, every input with ``always``;
    an input a copy would not read the same as is read as it is (with a warning for ``always``)."""
    plan = {}
    for m, src in srcs.items():
        why = None if req.stage == "never" else slow_to_decode(src)
        if req.stage == "always":
            why = why or "asked for"
        problem = why_not_exact(src, maps[m].indexes, direct[m]) if why else None
        if problem:
            why = None
            if req.stage == "always":
                warns.append(f"the {LABEL[m]} input is read as it is: a temporary copy "
                             f"would not keep its {problem}")
        win = source_window(src, grid, direct[m]) if why else None
        if win is not None:
            plan[m] = (win, f"{tag}.{m}.staged.tif", staged_bytes(src, maps[m].indexes, win), why)
    return plan


def fit_staging(to_stage: StagingPlan, needs: list[tuple[str, int]], what: str,
                mode: str, warns: list[str]) -> int | None:
    """Where the disk lacks room for the uncompressed copies of ``to_stage`` beside ``needs``:
    the bytes that compressed copies may share, when that is at least a third of their size
    (real Sentinel-2 bands compress 2-2.5x: with less, the copy would outgrow it near its end
    and the time spent on it be lost); else, with ``auto``, the inputs are read as they are
    (``to_stage`` emptied) and with ``always`` the disk-space error is raised. None: room enough
    for uncompressed copies."""
    if not to_stage:
        return None
    copies = [(p, n) for _, p, n, _ in to_stage.values()]  # all beside the outputs, on one disk
    full = sum(n for _, n in copies)
    room = room_left(needs, copies[0][0])
    if room >= full:
        return None
    if room >= full // 3:
        warns.append(f"not enough free disk space for an uncompressed temporary copy of the input(s) decoded once "
                     f"({full / MB:.0f} MB): it is compressed into the {room / MB:.0f} MB left, which makes it "
                     f"a little slower to read")
        return room
    if mode == "always":
        check_free_space(needs + copies, what)  # raises, with the figures
    warns.append("not enough free disk space to decode the input(s) once into a temporary copy "
                 f"({full / MB:.0f} MB, or a third of that compressed): read as they are, which is several "
                 "times slower")
    to_stage.clear()
    return None


def stage_inputs(plan, staged_files: list[str], progress: Callable[[float], None],
                 is_cancelled: Callable[[], bool]) -> dict[str, str]:
    """Decode the inputs of ``plan.to_stage`` into their temporary copies (each weighed as one
    pass over the blocks in ``progress``, a fraction of that pass); a copy that outgrows its room
    drops the input from ``plan.to_stage`` (read as it is, with a warning) or, with ``always``,
    is a disk-space error. Returns input label -> why it was decoded once. Every copy started
    is listed in ``staged_files`` for the caller to delete."""
    req, room = plan.req, plan.room
    staged: dict[str, str] = {}
    still = sum(n for _, _, n, _ in plan.to_stage.values())  # uncompressed bytes of the copies still to make
    for k, (m, (win, path, nbytes, why)) in enumerate(list(plan.to_stage.items())):
        staged_files.append(path)
        # compressed copies share the room: each its share of what the ones before it left
        budget = None if room is None else room * nbytes // still
        still -= nbytes
        try:
            if not stage(plan.srcs[m].name, plan.maps[m].indexes, win, path, lambda f, k=k: progress(k + f),
                         is_cancelled, compress=room is not None, max_bytes=budget):
                raise Cancelled("cancelled")
            if room is not None:
                room -= staged_size(path)
        except CopyTooLarge as e:
            if req.stage == "always":
                raise ValueError(f"not enough free disk space: {e}. Free some space or write the outputs "
                                 f"to another disk") from None
            plan.warnings.append(f"{e}: the {LABEL[m]} input is read as it is, which is several times slower")
            del plan.to_stage[m]
            continue
        staged[LABEL[m]] = why
    return staged


def input_readers(plan, stats: dict[str, tuple[Any, Any]]) -> list[InputReader]:
    """A reader per input on the reference grid: the staged copy where there is one (holding the
    model's bands in its order), else the input itself. ``stats``: modality -> (mean, std)."""
    readers: list[InputReader] = []
    try:
        for m, src in plan.srcs.items():
            mean, std = stats[m]
            if m == "s2":
                mean = shifted_mean(mean, len(plan.maps[m].indexes), plan.optical_offset)
            name, hint = f"the {LABEL[m]} raster {src.name}", DAMAGED
            if m in plan.to_stage:  # the staged copy holds the model's bands, in its order
                path, idx = plan.to_stage[m][1], list(range(1, len(plan.maps[m].indexes) + 1))
                name = f"the temporary copy of {name} ({path})"
                hint = ("The disk beside the outputs may have failed; write the outputs to another disk, or read "
                        "the input as it is (stage 'never')")
            else:
                path, idx = src.name, plan.maps[m].indexes
            readers.append(InputReader(m, path, BandReader(path, idx, plan.grid, plan.direct[m],
                                                           to_db=plan.to_db and m == "s1", name=name, hint=hint),
                                       mean, std))
    except BaseException:
        for r in readers:
            r.reader.close()
        raise
    return readers
