"""Keep freed memory in the process heap while the engine streams blocks (glibc only).

Every block allocates the same large tensors again (input, activations of hundreds of MB).
glibc serves allocations over 32 MB with fresh ``mmap`` pages and unmaps them on free, so
each block pays the kernel to zero and fault in its memory again: on a 2-core machine that
was 40 % of the encoder time (``benchmarks/scene_benchmark.py`` shows the ratio). Inside
``retained_heap()`` large allocations come from the heap and freed memory stays there for
the next block; on exit the defaults come back and the heap is trimmed, so the memory goes
back to the system (QGIS keeps running after a run). Elsewhere (macOS, Windows, musl) it
does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_lock = threading.Lock()
_depth = 0


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


@contextmanager
def retained_heap() -> Iterator[bool]:
    """Within: freed large blocks are reused, not unmapped. Yields whether it is active."""
    global _depth
    if _LIBC is None:
        yield False
        return
    with _lock:
        if _depth == 0:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM)
                _LIBC.malloc_trim(0)


def release_freed() -> None:
    """Give the heap's free pages back to the system now, inside ``retained_heap`` too.

    The engine calls it when a block's read ahead starts, after the optical encoder: the pages
    that encoder freed would otherwise stay resident, and the read ahead's buffers and the SAR
    encoder's activations would come on top of them (8192² scene: peak RSS 1.22-1.34 GB
    instead of 1.08 GB). The SAR encoder then faults its pages in again (~0.1 s a block)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
