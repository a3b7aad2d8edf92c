"""LDC HDF5 reading/writing: round trips, both layouts, slices and every refusal."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from lisa_science.ldc import (
    LDCFormatError,
    TDIData,
    ldc_info,
    read_ldc,
    read_ldc_slice,
    read_truth,
    write_ldc,
)

COMPOUND = np.dtype([("t", "f8"), ("X", "f8"), ("Y", "f8"), ("Z", "f8")])


def _data(n: int = 64, t0: float = 1000.0, dt: float = 5.0) -> TDIData:
    rng = np.random.default_rng(7)
    x, y, z = rng.standard_normal((3, n)) * 1e-21
    return TDIData(t0=t0, dt=dt, x=x, y=y, z=z)


def _write_raw(path: Path, t: np.ndarray, shape: str = "N1", attrs: dict | None = None) -> None:
    """An obs/tdi compound dataset written by hand (not by write_ldc)."""
    rows = np.zeros(t.size, dtype=COMPOUND)
    rows["t"] = t
    rows["X"] = np.arange(t.size)
    data = rows.reshape(-1, 1) if shape == "N1" else rows
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("obs/tdi", data=data)
        for key, value in (attrs or {}).items():
            ds.attrs[key] = value


def test_round_trip_with_attributes(tmp_path: Path) -> None:
    data = _data()
    path = str(tmp_path / "tdi.h5")
    write_ldc(path, data)
    back = read_ldc(path)
    assert (back.t0, back.dt, back.n) == (1000.0, 5.0, 64)
    for name in "xyz":
        np.testing.assert_array_equal(getattr(back, name), getattr(data, name))
    with h5py.File(path) as f:
        ds = f["obs/tdi"]
        assert ds.shape == (64, 1)
        assert ds.dtype.names == ("t", "X", "Y", "Z")
        assert ds.attrs["coord"] == "t"
        assert ds.attrs["units"] == "fractional frequency"
        assert ds.attrs["dt"] == 5.0
        assert ds.attrs["t0"] == 1000.0
        np.testing.assert_array_equal(ds["t"][:, 0], 1000.0 + 5.0 * np.arange(64))


def test_truth_table_round_trip(tmp_path: Path) -> None:
    truth = [
        {"name": "AM CVn", "f": 1.94e-3, "amplitude": 2.8e-22, "index": 0, "injected": True},
        {"name": "HM Cnc", "f": 6.22e-3, "amplitude": 6.4e-23, "index": 1, "injected": False},
    ]
    path = str(tmp_path / "tdi.h5")
    write_ldc(path, _data(), truth=truth)
    assert read_truth(path) == truth
    write_ldc(path, _data())
    assert read_truth(path) == []


def test_gaps_nan_are_kept(tmp_path: Path) -> None:
    data = _data()
    x = data.x.copy()
    x[10:20] = np.nan
    path = str(tmp_path / "gaps.h5")
    write_ldc(path, TDIData(data.t0, data.dt, x, data.y, data.z))
    back = read_ldc(path)
    assert np.isnan(back.x[10:20]).all()
    assert np.isfinite(back.x[:10]).all()


@pytest.mark.parametrize("shape", ["N1", "N"])
def test_time_grid_derived_when_attributes_absent(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "noattrs.h5"
    _write_raw(path, 7.0 + 2.5 * np.arange(10), shape=shape)
    back = read_ldc(str(path))
    assert (back.t0, back.dt, back.n) == (7.0, 2.5, 10)
    np.testing.assert_array_equal(back.x, np.arange(10))
    assert ldc_info(str(path)) == (7.0, 2.5, 10)


def test_radler_layout(tmp_path: Path) -> None:
    path = tmp_path / "radler.h5"
    table = np.column_stack([15.0 * np.arange(20), np.arange(20), 2 * np.arange(20), -np.ones(20)])
    with h5py.File(path, "w") as f:
        f.create_dataset("H5LISA/PreProcess/TDIdata", data=table)
    back = read_ldc(str(path))
    assert (back.t0, back.dt, back.n) == (0.0, 15.0, 20)
    np.testing.assert_array_equal(back.y, 2 * np.arange(20))
    np.testing.assert_array_equal(back.z, -np.ones(20))


@pytest.mark.parametrize(("start", "stop"), [(0, 64), (0, 2), (17, 40), (62, 64)])
def test_slice_equals_slice_of_full_read(tmp_path: Path, start: int, stop: int) -> None:
    path = str(tmp_path / "tdi.h5")
    write_ldc(path, _data())
    full, part = read_ldc(path), read_ldc_slice(path, start, stop)
    assert part.t0 == full.t0 + start * full.dt
    assert part.dt == full.dt
    for name in "xyz":
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name)[start:stop])
    assert ldc_info(path) == (1000.0, 5.0, 64)


@pytest.mark.parametrize(("start", "stop"), [(-1, 5), (10, 10), (60, 65), (5, 6)])
def test_bad_slice_bounds(tmp_path: Path, start: int, stop: int) -> None:
    path = str(tmp_path / "tdi.h5")
    write_ldc(path, _data())
    with pytest.raises(ValueError, match="slice"):
        read_ldc_slice(path, start, stop)


def test_slice_detects_irregularity_beyond_first_rows(tmp_path: Path) -> None:
    t = 5.0 * np.arange(100)
    t[50:] += 5.0  # one missing sample at row 50
    path = tmp_path / "jump.h5"
    _write_raw(path, t, attrs={"dt": 5.0, "t0": 0.0})
    read_ldc_slice(str(path), 0, 50)  # clean chunk
    with pytest.raises(LDCFormatError, match="irregular time grid: row 60"):
        read_ldc_slice(str(path), 60, 80)
    with pytest.raises(LDCFormatError, match="irregular time step at row 50"):
        read_ldc(str(path))


def test_missing_dataset(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/other", data=np.zeros(3))
    with pytest.raises(LDCFormatError, match="no TDI dataset found"):
        read_ldc(str(path))
    with pytest.raises(LDCFormatError, match="no TDI dataset found"):
        ldc_info(str(path))


def test_non_monotonic_time(tmp_path: Path) -> None:
    t = 5.0 * np.arange(10)
    t[[4, 5]] = t[[5, 4]]
    path = tmp_path / "order.h5"
    _write_raw(path, t)
    with pytest.raises(LDCFormatError, match="not strictly increasing at row 5"):
        read_ldc(str(path))


def test_irregular_time(tmp_path: Path) -> None:
    t = 5.0 * np.arange(10)
    t[6:] += 1e-3  # 2e-4 dt > 1e-6 dt
    path = tmp_path / "irregular.h5"
    _write_raw(path, t)
    with pytest.raises(LDCFormatError, match="irregular time step at row 6"):
        read_ldc(str(path))


def test_tiny_jitter_is_tolerated(tmp_path: Path) -> None:
    t = 5.0 * np.arange(10) + 1e-7 * np.sin(np.arange(10))  # < 1e-6 dt
    path = tmp_path / "jitter.h5"
    _write_raw(path, t)
    assert read_ldc(str(path)).n == 10


def test_dt_attribute_disagreeing_with_times(tmp_path: Path) -> None:
    path = tmp_path / "dt.h5"
    _write_raw(path, 5.0 * np.arange(10), attrs={"dt": 10.0})
    with pytest.raises(LDCFormatError, match="irregular time step"):
        read_ldc(str(path))


def test_nan_time(tmp_path: Path) -> None:
    t = 5.0 * np.arange(10)
    t[3] = np.nan
    path = tmp_path / "nan.h5"
    _write_raw(path, t)
    with pytest.raises(LDCFormatError, match="time column contains NaN/inf at row 3"):
        read_ldc(str(path))


def test_too_few_samples(tmp_path: Path) -> None:
    path = tmp_path / "short.h5"
    _write_raw(path, np.array([0.0]))
    with pytest.raises(LDCFormatError, match="at least 2 samples"):
        read_ldc(str(path))


def test_wrong_compound_shape(tmp_path: Path) -> None:
    path = tmp_path / "shape.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/tdi", data=np.zeros((10, 2), dtype=COMPOUND))
    with pytest.raises(LDCFormatError, match=r"must have shape \(N, 1\) or \(N,\), got \(10, 2\)"):
        read_ldc(str(path))


def test_compound_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "fields.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/tdi", data=np.zeros((10, 1), dtype=[("t", "f8"), ("X", "f8")]))
    with pytest.raises(LDCFormatError, match="compound dataset with fields t, X, Y, Z"):
        read_ldc(str(path))


def test_plain_array_at_ldc_path_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/tdi", data=np.zeros((10, 4)))
    with pytest.raises(LDCFormatError, match="compound dataset"):
        read_ldc(str(path))


def test_radler_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "radler3.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("H5LISA/PreProcess/TDIdata", data=np.zeros((10, 3)))
    with pytest.raises(LDCFormatError, match=r"must have shape \(N, 4\).*got \(10, 3\)"):
        read_ldc(str(path))


def test_tdidata_validation() -> None:
    with pytest.raises(ValueError, match="equal length"):
        TDIData(0.0, 1.0, np.zeros(3), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="dt must be positive"):
        TDIData(0.0, 0.0, np.zeros(3), np.zeros(3), np.zeros(3))
