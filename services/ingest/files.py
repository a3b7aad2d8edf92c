"""Planning the segments of one LDC file, reading at most one chunk at a time.

A file is validated whole (shape, regular monotonic time) before anything is published, but
never loaded whole: a year at 5 s is read in slices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from lisa_science.ldc import LDCFormatError, TDIData, ldc_info, locate_tdi, read_ldc_slice
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
    revision: str = ""
    """A reprocessing's label: the same file cut again (other settings, a retraction of the
    earlier cut) gets new segment ids, ``<sha256[:16]>.<revision>-<index:05d>``, because a
    retracted id is never counted again. Empty: the first cut, ``<sha256[:16]>-<index:05d>``."""

    @property
    def identity(self) -> str:
        """The cut's full name: content hash, and revision if any (ledger, event ids)."""
        return f"{self.sha256}.{self.revision}" if self.revision else self.sha256

    @property
    def label(self) -> str:
        """What the file's segment ids, ledger entry and transaction id are named after."""
        return f"{self.sha256[:16]}.{self.revision}" if self.revision else self.sha256[:16]

    def segment_id(self, index: int) -> str:
        return f"{self.label}-{index:05d}"

    def read(self, index: int) -> TDIData:
        start, stop = self.bounds[index]
        return read_ldc_slice(str(self.path), start, stop)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


MAX_SEGMENT_SAMPLES = 20_000_000
"""Samples per segment (a day at 4.3 ms): beyond, one segment's arrays would not fit a step."""
MAX_DATA_BYTES = 64 << 30
"""The TDI table's decompressed size (rows x row bytes): a year at 0.25 s is ~4 GB."""


REVISION = re.compile(r"[A-Za-z0-9_]{1,32}")
"""A revision label: letters, digits and ``_`` (no ``-`` or ``.``, which delimit the id)."""


def check_revision(revision: str) -> str:
    """``revision`` if it can label segment ids, else ``ValueError`` (it comes from a command
    line or an environment variable)."""
    if revision and not REVISION.fullmatch(revision):
        raise ValueError(
            f"revision {revision[:40]!r}: 1-32 letters, digits or underscores, or empty"
        )
    return revision


def plan_file(
    path: Path,
    duration_s: float,
    overlap_s: float,
    max_segment_samples: int = MAX_SEGMENT_SAMPLES,
    max_data_bytes: int = MAX_DATA_BYTES,
    revision: str = "",
) -> FilePlan:
    """Check the whole file chunk by chunk and cut it into segments; ``LDCFormatError`` with the
    reason for anything wrong with it, whatever the file holds (it is hostile input)."""
    check_revision(revision)
    try:
        plan = _plan(path, duration_s, overlap_s, max_segment_samples, max_data_bytes)
        return dataclasses.replace(plan, revision=revision) if revision else plan
    except LDCFormatError:
        raise
    except OSError as exc:
        raise LDCFormatError(f"{path.name}: not a readable HDF5 file ({exc})") from exc
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RuntimeError) as exc:
        raise LDCFormatError(f"{path.name}: unusable ({type(exc).__name__}: {exc})") from exc


def _plan(
    path: Path, duration_s: float, overlap_s: float, max_samples: int, max_bytes: int
) -> FilePlan:
    t0, dt, n = ldc_info(str(path))
    if not (math.isfinite(t0) and math.isfinite(dt) and dt > 0):
        raise LDCFormatError(f"{path.name}: t0 {t0!r} and dt {dt!r} must be finite, dt > 0")
    if dt > duration_s:
        raise LDCFormatError(f"{path.name}: dt = {dt} s is longer than a segment ({duration_s} s)")
    if round(duration_s / dt) > max_samples:
        raise LDCFormatError(
            f"{path.name}: {round(duration_s / dt)} samples per segment at dt = {dt} s "
            f"(limit {max_samples})"
        )
    row_bytes = _row_bytes(path)
    if n * row_bytes > max_bytes:
        raise LDCFormatError(f"{path.name}: {n} rows of {row_bytes} bytes over {max_bytes} bytes")
    step = VALIDATION_CHUNK
    for start in range(0, n, step):
        # overlap one sample so regularity is checked across chunk borders too
        chunk = read_ldc_slice(str(path), max(start - 1, 0), min(start + step, n))
        if not np.all(np.isnan(chunk.x) | np.isfinite(chunk.x)):
            raise LDCFormatError(f"{path.name}: infinite values in X")
    bounds = segment_bounds(n, dt, duration_s, overlap_s)
    if not bounds:
        raise LDCFormatError(
            f"{path.name}: {n * dt:.0f} s of data is shorter than one segment of {duration_s:.0f} s"
        )
    return FilePlan(path, file_sha256(path), t0, dt, n, bounds)


def _row_bytes(path: Path) -> int:
    with h5py.File(path, "r") as f:
        dataset, _ = locate_tdi(f, str(path))
        return int(dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64)))
