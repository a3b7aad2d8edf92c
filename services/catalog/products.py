"""The catalogue product: ``catalog.csv`` (one row per source) and ``catalog.h5`` (the same
columns, also put in the content-addressed store). Both are replaced atomically (temp file in the
same directory, then rename), so a reader sees the previous catalogue or the new one, never half.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from choreo.store import ArrayRef, Store
from lisa_pipeline.events import CatalogSource
from lisa_pipeline.products import COLUMNS, arrays, csv_text


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


def write_products(
    sources: Sequence[CatalogSource], directory: Path, store: Store | None = None
) -> ArrayRef:
    """Write catalog.csv and catalog.h5 into ``directory``; return the stored HDF5's reference."""
    ordered = sorted(sources, key=lambda s: (s.frequency_hz, s.source_id))
    store = store or Store()
    ref = store.put(
        arrays(ordered), attrs={"n_sources": len(ordered), "columns": ",".join(COLUMNS)}
    )
    text = csv_text(ordered).encode()
    _replace_atomically(directory, "catalog.csv", lambda fh: fh.write(text))
    blob = store.read_bytes(ref)  # verified: the product file is the stored bytes
    _replace_atomically(directory, "catalog.h5", lambda fh: fh.write(blob))
    return ref
