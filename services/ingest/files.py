"""Planning the segments of one LDC file, reading at most one chunk at a time.

A file is validated whole (shape, regular monotonic time) before anything is published, but
never loaded whole: a year at 5 s is read in slices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lisa_science.ldc import LDCFormatError, TDIData, ldc_info, read_ldc_slice
from lisa_science.segments import segment_bounds

VALIDATION_CHUNK = 1_000_000


@dataclass(frozen=True)
class FilePlan:
    path: Path
    sha256: str
    t0: float
    dt: float
    n_samples: int
    bounds: list[tuple[int, int]]

    def segment_id(self, index: int) -> str:
        return f"{self.sha256[:16]}-{index:05d}"

    def read(self, index: int) -> TDIData:
        start, stop = self.bounds[index]
        return read_ldc_slice(str(self.path), start, stop)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def plan_file(path: Path, duration_s: float, overlap_s: float) -> FilePlan:
    """Check the whole file chunk by chunk and cut it into segments; LDCFormatError if bad."""
    try:
        t0, dt, n = ldc_info(str(path))
    except OSError as exc:
        raise LDCFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    step = VALIDATION_CHUNK
    for start in range(0, n, step):
        # overlap one sample so regularity is checked across chunk borders too
        chunk = read_ldc_slice(str(path), max(start - 1, 0), min(start + step, n))
        if not np.all(np.isnan(chunk.x) | np.isfinite(chunk.x)):
            raise LDCFormatError(f"{path}: infinite values in X")
    bounds = segment_bounds(n, dt, duration_s, overlap_s)
    if not bounds:
        raise LDCFormatError(
            f"{path}: {n * dt:.0f} s of data is shorter than one segment of {duration_s:.0f} s"
        )
    return FilePlan(path, file_sha256(path), t0, dt, n, bounds)
