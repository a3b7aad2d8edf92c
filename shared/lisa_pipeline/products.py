"""The catalogue product's columns, shared by the catalog service (which writes ``catalog.csv`` and
``catalog.h5``) and the tools (``lisa-choreo catalog --csv`` prints the same columns)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np

from lisa_pipeline.events import CatalogSource

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
    # the refine step's physical parameters (lisa.sources.refined), empty until refined
    "source_frequency_hz",
    "sigma_source_frequency_hz",
    "frequency_derivative_hz_s",
    "sigma_frequency_derivative_hz_s",
    "ecliptic_latitude_rad",
    "sigma_ecliptic_latitude_rad",
    "ecliptic_longitude_rad",
    "sigma_ecliptic_longitude_rad",
    "amplitude",
    "sigma_amplitude",
    "inclination_rad",
    "sigma_inclination_rad",
)


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
