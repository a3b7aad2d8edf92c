"""Reading and writing TDI X, Y, Z time series in the LISA Data Challenge (LDC) HDF5 layouts.

Layouts (LDC documentation and the files of the Radler, Sangria and Spritz challenges):

* LDC 2 (Sangria, Spritz), written by LDC's ``TDI.save``: compound dataset ``obs/tdi`` of shape
  (N, 1) (or (N,)) with fields ``t, X, Y, Z`` and attributes ``coord='t'``, ``dt``, ``t0``,
  ``units``. Spritz data contain NaN gaps in X, Y, Z.
* LDC 1 (Radler): plain float array ``H5LISA/PreProcess/TDIdata`` of shape (N, 4), columns
  ``t, X, Y, Z``.

Time stamps are validated (strictly increasing, regular to 1e-6 of dt) because every later
step (segmentation, FFT frequencies, phases) assumes a regular grid. This is the only module of
the package that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

LDC_TDI_PATH = "obs/tdi"
RADLER_TDI_PATH = "H5LISA/PreProcess/TDIdata"
TRUTH_PATH = "sky/truth"
FIELDS = ("t", "X", "Y", "Z")
UNITS = "fractional frequency"
DT_RTOL = 1e-6
"""Allowed deviation of each time step from dt, relative to dt."""
ALIGN_RTOL = 1e-3
"""Allowed deviation of a slice's first time from t0 + start dt, relative to dt."""


class LDCFormatError(ValueError):
    """The file is not a usable LDC TDI file; the message says what is wrong and where."""


@dataclass(frozen=True, eq=False)
class TDIData:
    """TDI Michelson channels on a regular time grid t = t0 + i dt (fractional frequency)."""

    t0: float
    dt: float
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    z: NDArray[np.float64]

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        shapes = {np.shape(self.x), np.shape(self.y), np.shape(self.z)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"x, y, z must be 1-D arrays of equal length, got shapes {shapes}")

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(np.shape(self.x)[0])

    def times(self) -> NDArray[np.float64]:
        """Sample times t0 + i dt."""
        return self.t0 + self.dt * np.arange(self.n)


def _scalar_attr(attrs: h5py.AttributeManager, name: str) -> float | None:
    if name not in attrs:
        return None
    return float(np.asarray(attrs[name]).reshape(-1)[0])


def _locate(f: h5py.File, path: str) -> tuple[h5py.Dataset, str]:
    """Find the TDI dataset; return it and its layout ('ldc' or 'radler')."""
    if LDC_TDI_PATH in f:
        ds = f[LDC_TDI_PATH]
        if not isinstance(ds, h5py.Dataset):
            raise LDCFormatError(f"{path}: {LDC_TDI_PATH} is not a dataset")
        names = ds.dtype.names
        if names is None or not set(FIELDS) <= set(names):
            raise LDCFormatError(
                f"{path}: {LDC_TDI_PATH} must be a compound dataset with fields t, X, Y, Z; "
                f"got dtype {ds.dtype}"
            )
        if not (ds.ndim == 1 or (ds.ndim == 2 and ds.shape[1] == 1)):
            raise LDCFormatError(
                f"{path}: {LDC_TDI_PATH} must have shape (N, 1) or (N,), got {ds.shape}"
            )
        return ds, "ldc"
    if RADLER_TDI_PATH in f:
        ds = f[RADLER_TDI_PATH]
        if not isinstance(ds, h5py.Dataset) or ds.dtype.names is not None:
            raise LDCFormatError(f"{path}: {RADLER_TDI_PATH} must be a plain numeric array")
        if ds.ndim != 2 or ds.shape[1] != 4:
            raise LDCFormatError(
                f"{path}: {RADLER_TDI_PATH} must have shape (N, 4) with columns t, X, Y, Z; "
                f"got {ds.shape}"
            )
        return ds, "radler"
    raise LDCFormatError(
        f"{path}: no TDI dataset found (looked for {LDC_TDI_PATH!r} and {RADLER_TDI_PATH!r})"
    )


def _columns(rows: NDArray[Any], layout: str) -> tuple[NDArray[np.float64], ...]:
    """Split raw rows into float64 t, X, Y, Z columns."""
    if layout == "ldc":
        flat = rows.reshape(-1)
        return tuple(np.asarray(flat[name], dtype=np.float64) for name in FIELDS)
    return tuple(np.asarray(rows[:, i], dtype=np.float64) for i in range(4))


def _time_column(ds: h5py.Dataset, layout: str, start: int, stop: int) -> NDArray[np.float64]:
    if layout == "ldc":
        return np.asarray(ds.fields("t")[start:stop], dtype=np.float64).reshape(-1)
    return np.asarray(ds[start:stop, 0], dtype=np.float64)


def _check_times(t: NDArray[np.float64], dt: float, where: str, first_row: int = 0) -> None:
    """Refuse NaN, non-increasing or irregular time stamps (tolerance DT_RTOL * dt)."""
    finite = np.isfinite(t)
    if not np.all(finite):
        row = first_row + int(np.flatnonzero(~finite)[0])
        raise LDCFormatError(f"{where}: time column contains NaN/inf at row {row}")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise LDCFormatError(
            f"{where}: time is not strictly increasing at row {first_row + i + 1} "
            f"(t={t[i]!r} then {t[i + 1]!r})"
        )
    off = np.abs(steps - dt) > DT_RTOL * dt
    if np.any(off):
        i = int(np.flatnonzero(off)[0])
        raise LDCFormatError(
            f"{where}: irregular time step at row {first_row + i + 1}: {steps[i]!r} s "
            f"instead of dt={dt!r} s"
        )


def _info(ds: h5py.Dataset, layout: str, where: str) -> tuple[float, float, int]:
    n = int(ds.shape[0])
    if n < 2:
        raise LDCFormatError(f"{where}: need at least 2 samples, got {n}")
    head = _time_column(ds, layout, 0, 2)
    if not np.all(np.isfinite(head)):
        raise LDCFormatError(f"{where}: time column contains NaN/inf in the first rows")
    t0_attr = _scalar_attr(ds.attrs, "t0")
    dt_attr = _scalar_attr(ds.attrs, "dt")
    dt = dt_attr if dt_attr is not None else float(head[1] - head[0])
    if not dt > 0:
        raise LDCFormatError(f"{where}: time is not strictly increasing (dt={dt!r})")
    if dt_attr is not None and abs((head[1] - head[0]) - dt_attr) > DT_RTOL * dt_attr:
        raise LDCFormatError(
            f"{where}: irregular time step: attribute dt={dt_attr!r} but the time column "
            f"steps by {float(head[1] - head[0])!r}"
        )
    t0 = t0_attr if t0_attr is not None else float(head[0])
    if abs(head[0] - t0) > ALIGN_RTOL * dt:
        raise LDCFormatError(
            f"{where}: attribute t0={t0!r} disagrees with the first time {float(head[0])!r}"
        )
    return t0, dt, n


def locate_tdi(f: h5py.File, path: str) -> tuple[h5py.Dataset, str]:
    """The TDI dataset of an open LDC or Radler file, and its layout ('ldc' or 'radler')."""
    return _locate(f, path)


def ldc_info(path: str) -> tuple[float, float, int]:
    """(t0, dt, n) of the TDI data, reading only attributes and two time stamps.

    dt and t0 come from the dataset attributes when present, else from the first two times.
    """
    with h5py.File(path, "r") as f:
        ds, layout = _locate(f, path)
        return _info(ds, layout, f"{path}:{ds.name}")


def read_ldc_slice(path: str, start: int, stop: int) -> TDIData:
    """Rows [start, stop) of the TDI data, read with h5py slicing (the file is never loaded whole).

    Times of the slice are validated against the file's (t0, dt): strictly increasing, regular,
    and aligned with t0 + start * dt, so that validating consecutive slices validates the file.
    """
    with h5py.File(path, "r") as f:
        ds, layout = _locate(f, path)
        where = f"{path}:{ds.name}"
        t0, dt, n = _info(ds, layout, where)
        if not (0 <= start < stop <= n) or stop - start < 2:
            raise ValueError(
                f"slice [{start}, {stop}) must lie within [0, {n}] and hold at least 2 samples"
            )
        rows = ds[start:stop]
    t, x, y, z = _columns(rows, layout)
    _check_times(t, dt, where, first_row=start)
    expected = t0 + start * dt
    if abs(t[0] - expected) > ALIGN_RTOL * dt:
        raise LDCFormatError(
            f"{where}: irregular time grid: row {start} has t={t[0]!r}, expected {expected!r} "
            f"from t0 + row * dt"
        )
    return TDIData(t0=float(t[0]), dt=dt, x=x, y=y, z=z)


def read_ldc(path: str) -> TDIData:
    """Whole TDI X, Y, Z of an LDC (``obs/tdi``) or Radler (``H5LISA/PreProcess/TDIdata``) file.

    NaN in X, Y, Z (data gaps, as in Spritz) are kept; NaN in t is refused.
    """
    with h5py.File(path, "r") as f:
        ds, _ = _locate(f, path)
        n = int(ds.shape[0])
    return read_ldc_slice(path, 0, n)  # a file with < 2 rows is refused by _info


def _truth_dtype(truth: list[dict[str, Any]]) -> np.dtype:
    keys = list(truth[0])
    fields: list[tuple[str, Any]] = []
    for key in keys:
        if any(set(row) != set(keys) for row in truth):
            raise ValueError("all truth rows must have the same keys")
        values = [row[key] for row in truth]
        if all(isinstance(v, str) for v in values):
            fields.append((key, h5py.string_dtype("utf-8")))
        elif all(isinstance(v, (bool, np.bool_)) for v in values):
            fields.append((key, np.bool_))
        elif all(isinstance(v, (int, np.integer)) for v in values):
            fields.append((key, np.int64))
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
            fields.append((key, np.float64))
        else:
            raise ValueError(f"truth column {key!r} mixes types or holds unsupported values")
    return np.dtype(fields)


def write_ldc(path: str, data: TDIData, truth: list[dict[str, Any]] | None = None) -> None:
    """Write TDI data in the LDC 2 layout, optionally with the injected sources' table.

    ``obs/tdi``: compound (N, 1) float64 fields t, X, Y, Z with attributes coord='t', dt, t0,
    units. ``sky/truth`` (optional): one compound row per injected source, fields from the dict
    keys (str, int, float or bool values).
    """
    rows = np.zeros((data.n, 1), dtype=[(name, np.float64) for name in FIELDS])
    rows["t"][:, 0] = data.times()
    rows["X"][:, 0], rows["Y"][:, 0], rows["Z"][:, 0] = data.x, data.y, data.z
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(LDC_TDI_PATH, data=rows)
        ds.attrs["coord"] = "t"
        ds.attrs["dt"] = float(data.dt)
        ds.attrs["t0"] = float(data.t0)
        ds.attrs["units"] = UNITS
        if truth:
            dtype = _truth_dtype(truth)
            table = np.empty(len(truth), dtype=dtype)
            for i, row in enumerate(truth):
                table[i] = tuple(row[name] for name in dtype.names or ())
            f.create_dataset(TRUTH_PATH, data=table)


def read_truth(path: str) -> list[dict[str, Any]]:
    """The injected-source table written by :func:`write_ldc` (empty list if absent)."""
    with h5py.File(path, "r") as f:
        if TRUTH_PATH not in f:
            return []
        table = f[TRUTH_PATH][()]
    out: list[dict[str, Any]] = []
    for row in table:
        item: dict[str, Any] = {}
        for name in table.dtype.names:
            value = row[name]
            item[name] = value.decode("utf-8") if isinstance(value, bytes) else value.item()
        out.append(item)
    return out
