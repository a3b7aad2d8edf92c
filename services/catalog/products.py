"""The catalogue product: ``catalog.csv`` (one row per source) and ``catalog.h5`` (the same
columns, also put in the content-addressed store). Both are replaced atomically (temp file in the
same directory, then rename), so a reader sees the previous catalogue or the new one, never half.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from choreo.store import ArrayRef, Store
from lisa_choreo.events import CatalogSource

COLUMNS = (
    "source_id",
    "frequency_hz",
    "sigma_frequency_hz",
    "frequency_bin",
    "stacked_statistic",
    "stacked_snr",
    "fap",
    "n_segments",
    "n_estimates",
    "mean_amplitude",
)


def _replace_atomically(directory: Path, name: str, write) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)
    return directory / name


def csv_text(sources: Sequence[CatalogSource]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in sources:
        row = s.model_dump()
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return out.getvalue()


def arrays(sources: Sequence[CatalogSource]) -> dict[str, np.ndarray]:
    """Columns as HDF5-friendly arrays (ids as bytes; a missing amplitude as NaN)."""
    cols: dict[str, np.ndarray] = {"source_id": np.array([s.source_id for s in sources], "S")}
    for c in COLUMNS[1:]:
        values = [getattr(s, c) for s in sources]
        dtype = np.int64 if c in ("frequency_bin", "n_segments", "n_estimates") else np.float64
        cols[c] = np.array([np.nan if v is None else v for v in values], dtype=dtype)
    return cols


def write_products(
    sources: Sequence[CatalogSource], directory: Path, store: Store | None = None
) -> ArrayRef:
    """Write catalog.csv and catalog.h5 into ``directory``; return the stored HDF5's reference."""
    ordered = sorted(sources, key=lambda s: (s.frequency_hz, s.source_id))
    ref = (store or Store()).put(
        arrays(ordered), attrs={"n_sources": len(ordered), "columns": ",".join(COLUMNS)}
    )
    text = csv_text(ordered).encode()
    _replace_atomically(directory, "catalog.csv", lambda fh: fh.write(text))
    with open(unquote(urlparse(ref.uri).path), "rb") as src:  # the file:// store's file
        _replace_atomically(directory, "catalog.h5", lambda fh: shutil.copyfileobj(src, fh))
    return ref
