"""A temporary on-disk array [rows, cols, depth] written and read by windows.

Dense mode keeps the scene's feature maps here between its two passes (about 2 bytes per
input pixel per modality: 245 MB for a 10980² tile). Plain ``pwrite``/``pread`` of row
segments, not a memory map: the data lives in the page cache, not in the process's
resident memory, so a run's memory stays bounded by its block size.
"""
from __future__ import annotations

import os

import numpy as np


class GridStore:
    """``rows x cols`` cells of ``depth`` values of ``dtype``, in a file deleted on ``close``."""

    def __init__(self, path: str, rows: int, cols: int, depth: int, dtype=np.float32) -> None:
        self.path, self.shape, self.dtype = path, (rows, cols, depth), np.dtype(dtype)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, rows * cols * depth * self.dtype.itemsize)  # sparse: unwritten cells read as 0

    def _offset(self, r: int, c: int) -> int:
        return ((r * self.shape[1] + c) * self.shape[2]) * self.dtype.itemsize

    def _check(self, r0: int, c0: int, nr: int, nc: int) -> None:
        if r0 < 0 or c0 < 0 or r0 + nr > self.shape[0] or c0 + nc > self.shape[1]:
            raise IndexError(f"window {(r0, c0, nr, nc)} outside the store {self.shape[:2]}")

    def write(self, r0: int, c0: int, values: np.ndarray) -> None:
        """Store ``values`` [nr, nc, depth] at cells (r0, c0)."""
        nr, nc, d = values.shape
        if d != self.shape[2]:
            raise ValueError(f"depth {d}, the store holds {self.shape[2]}")
        self._check(r0, c0, nr, nc)
        v = np.ascontiguousarray(values, dtype=self.dtype)
        for i in range(nr):
            os.pwrite(self.fd, v[i].tobytes(), self._offset(r0 + i, c0))

    def read(self, r0: int, c0: int, nr: int, nc: int) -> np.ndarray:
        """Cells [r0, r0 + nr) x [c0, c0 + nc) as [nr, nc, depth]."""
        self._check(r0, c0, nr, nc)
        out = np.empty((nr, nc, self.shape[2]), self.dtype)
        n = nc * self.shape[2] * self.dtype.itemsize
        for i in range(nr):
            buf = os.pread(self.fd, n, self._offset(r0 + i, c0))
            out[i] = np.frombuffer(buf, self.dtype).reshape(nc, self.shape[2])
        return out

    def close(self) -> None:
        """Close and delete the file (idempotent)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if os.path.exists(self.path):
            os.remove(self.path)
