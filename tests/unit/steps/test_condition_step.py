"""The condition step's handler through ``StepHarness``: real HDF5 files in a temporary store,
no broker. Noise comes from the analytic SciRD TDI 2.0 spectra (``lisa_science.simulate``), so
the truths (PSD levels, whitened variance) come from the model, not from this code's output."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from choreo.settings import StepSettings
from choreo.store import ArrayRef, Store
from choreo.testing import StepHarness
from lisa_pipeline.events import SegmentConditioned, SegmentRaw, SegmentTiming
from lisa_pipeline.topics import SEGMENTS_CONDITIONED, SEGMENTS_RAW
from lisa_science.noise import tdi_psd
from lisa_science.segments import aet_to_xyz, xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise
from lisa_services.condition import service as condition

DT = 5.0
N = 17_280  # one day at 5 s: the production segment length, and ~20 ms to condition
DAY = N * DT
SEGMENT_ID = "0123456789abcdef-0"
FAST_RETRIES = StepSettings(max_retries=2, retry_backoff_s=0.001, retry_backoff_max_s=0.002)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A private store that the condition module's handler reads and writes."""
    s = Store((tmp_path / "store").as_uri())
    monkeypatch.setattr(condition, "STORE", s)
    return s


def noise_xyz(seed: int, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return analytic_tdi_noise(n, DT, np.random.default_rng(seed))


def sinusoid_xyz(
    f: float, snr_a: float, snr_e: float, phases: tuple[float, float], t0: float = 0.0
) -> tuple[tuple[np.ndarray, ...], tuple[float, float]]:
    """X, Y, Z of a sinusoid present in A and E only, with the per-channel optimal SNRs given
    over one day (rho_c^2 = amplitude_c^2 T / S_c(f)); returns the amplitudes too."""
    t = t0 + np.arange(N) * DT
    amps = (
        snr_a * math.sqrt(float(tdi_psd(f, "A")) / DAY),
        snr_e * math.sqrt(float(tdi_psd(f, "E")) / DAY),
    )
    a = amps[0] * np.cos(2 * np.pi * f * t + phases[0])
    e = amps[1] * np.cos(2 * np.pi * f * t + phases[1])
    return aet_to_xyz(a, e, np.zeros(N)), amps


def raw_segment(
    store: Store,
    xyz: tuple[np.ndarray, np.ndarray, np.ndarray],
    t0: float = 0.0,
    n_samples: int | None = None,
) -> SegmentRaw:
    """A SegmentRaw whose X, Y, Z are really in ``store`` (as ingest would leave them)."""
    x, y, z = xyz
    ref = store.put({"X": x, "Y": y, "Z": z}, {"t0": t0})
    return SegmentRaw(
        timing=SegmentTiming(segment_id=SEGMENT_ID, t0=t0, dt=DT, n_samples=n_samples or x.size),
        index=0,
        source_file="memory",
        source_sha256=hashlib.sha256(b"memory").hexdigest(),
        overlap_s=0.0,
        data=ref,
        nan_fraction=float(np.isnan(x).mean()),
    )


def stored_files(store: Store) -> set[Path]:
    return {p for p in store.root.rglob("*.h5") if p.parent.name != "tmp"}


def test_one_day_of_noise_gives_one_conditioned_segment_matching_the_model(store: Store):
    x, y, z = noise_xyz(seed=11)
    raw = raw_segment(store, (x, y, z))
    result = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw, key=SEGMENT_ID)
    assert result.dead_letters == []
    [(topic, out)] = result.outputs
    assert topic == SEGMENTS_CONDITIONED
    assert (out.subject, out.key) == (SEGMENT_ID, SEGMENT_ID)  # same partition downstream
    seg = out.data
    assert isinstance(seg, SegmentConditioned)
    assert seg.timing == raw.timing
    assert seg.usable_fraction == 1.0
    assert (seg.gap_samples, seg.glitch_samples) == (0, 0)  # 8-sigma glitches: ~1e-15/sample

    # Per-band measured / model PSD. One day holds only T (f_hi - f_lo) independent cells per
    # band (130 in 0.5-2 mHz), so no estimator does better than ~1 / sqrt(T df) (9 % there);
    # Welch (Hann, 50 % overlap) loses ~10 % more: 3 sigma of that below 10 mHz, 10 % above
    # (the same bounds as the integration test on the real broker). T's model is tiny below
    # 10 mHz and not part of the acceptance.
    assert len(seg.psd_model_ratio) == 15  # 3 channels x 5 bands
    checked = 0
    for r in seg.psd_model_ratio:
        if r.channel == "T":
            continue
        sigma = 1.1 / math.sqrt(DAY * (r.fmax_hz - r.fmin_hz))
        tolerance = 0.1 if r.fmin_hz >= 1e-2 else 3 * sigma
        assert abs(r.ratio - 1) <= tolerance, (r.channel, r.fmin_hz, r.ratio, tolerance)
        checked += 1
    assert checked == 10

    # The products exist in the store, verify (Store.get checks the SHA-256) and match the refs.
    assert stored_files(store) == {
        Path(ref.uri.removeprefix("file://")) for ref in (raw.data, seg.data, seg.psd, seg.whitened)
    }
    data = store.get(seg.data)
    psd = store.get(seg.psd)
    whitened = store.get(seg.whitened)
    for ref, arrays in ((seg.data, data), (seg.psd, psd), (seg.whitened, whitened)):
        assert ref.shapes == {k: list(v.shape) for k, v in arrays.items()}
    assert sorted(data) == ["A", "E", "T", "mask"]
    assert sorted(psd) == ["A", "A_smooth", "E", "E_smooth", "T", "T_smooth", "f"]
    assert sorted(whitened) == ["A", "E"]
    assert data["mask"].all()
    # nothing masked, so A, E, T are exactly the rotation of the input (no taper applied)
    for name, expected in zip("AET", xyz_to_aet(x, y, z), strict=True):
        np.testing.assert_array_equal(data[name], expected)

    # The smooth A/E PSD is the model times a level plus a foreground of free amplitude >= 0
    # (lisa_science.foreground): on instrument noise alone, the level is near 1 where the
    # foreground is negligible (above 5 mHz), and the foreground adds little below. Over 200
    # simulated days the level scatters by 3.1 % rms, so 15 % is ~5 sigma; a wrong
    # normalisation (x2, a lost dt) fails.
    f = psd["f"]
    band = (f > 5e-3) & (f < 2.5e-2)
    low = (f > 5e-4) & (f < 3e-3)
    for name in ("A", "E"):
        level = psd[f"{name}_smooth"][band] / tdi_psd(f[band], name)
        assert np.ptp(level) <= 0.01 * level.mean()  # foreground G / S < 0.5 % above 5 mHz
        assert abs(level.mean() - 1) < 0.15, (name, level.mean())
        near = psd[f"{name}_smooth"][low] / tdi_psd(f[low], name)
        assert abs(near.mean() - 1) < 0.15, (name, near.mean())

    # Whitened by that PSD over [0.1, 25] mHz: white with PSD 2 dt, so variance
    # 2 dt (fmax - fmin) = 0.249. ~2150 cells of 2 dof give ~2 % scatter; 10 % is ~5 sigma.
    expected_var = 2 * DT * (condition.SETTINGS.whiten_fmax_hz - 1e-4)
    for name in ("A", "E"):
        assert np.var(whitened[name]) == pytest.approx(expected_var, rel=0.1), name


def test_conditioning_is_deterministic_so_a_redelivery_writes_nothing_new(store: Store):
    raw = raw_segment(store, noise_xyz(seed=3))
    harness = StepHarness(condition.step)
    [first] = harness.deliver(SEGMENTS_RAW, raw, key=SEGMENT_ID).events(SEGMENTS_CONDITIONED)
    files = stored_files(store)
    [second] = harness.deliver(SEGMENTS_RAW, raw, key=SEGMENT_ID).events(SEGMENTS_CONDITIONED)
    # content-addressed products: same input, same files, same references
    assert second.data == first.data
    assert stored_files(store) == files


def test_a_gap_is_masked_counted_and_zeroed(store: Store):
    x, y, z = noise_xyz(seed=4)
    gap = slice(5_000, 6_728)  # 10 % of the day
    for channel in (x, y, z):
        channel[gap] = np.nan
    raw = raw_segment(store, (x, y, z))
    [out] = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw).events(SEGMENTS_CONDITIONED)
    seg = out.data
    assert seg.gap_samples == 1_728
    assert seg.usable_fraction == pytest.approx(0.9, abs=1e-9)
    data = store.get(seg.data)
    assert not data["mask"][gap].any()
    assert data["mask"][: gap.start].all()
    assert data["mask"][gap.stop :].all()
    for name in "AET":
        assert np.isfinite(data[name]).all()
        assert not data[name][gap].any()  # gaps are zero, not NaN, ready for FFTs


def test_a_glitch_is_masked_with_its_padding(store: Store):
    x, y, z = noise_xyz(seed=5)
    x[9_000] += 1e3 * np.std(np.diff(x))  # a huge, one-sample transient
    raw = raw_segment(store, (x, y, z))
    [out] = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw).events(SEGMENTS_CONDITIONED)
    seg = out.data
    # the jump flags samples 8999..9001 (both sides of two differences), widened by 120 s = 24
    # samples on each side: 3 + 2 * 24 samples
    assert seg.glitch_samples == 3 + 2 * 24
    assert seg.gap_samples == 0
    mask = store.get(seg.data, ["mask"])["mask"].astype(bool)
    assert not mask[8_999 - 24 : 9_001 + 24 + 1].any()
    assert mask.sum() == N - seg.glitch_samples


def test_an_all_nan_segment_is_dead_lettered_no_data_and_writes_nothing(store: Store):
    nan = np.full(N, np.nan)
    raw = raw_segment(store, (nan, nan.copy(), nan.copy()))
    before = stored_files(store)
    result = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw, key=SEGMENT_ID)
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "no-data"
    assert dead.info["attempts"] == "1"
    assert dead.record.key == SEGMENT_ID.encode()
    assert stored_files(store) == before


def test_a_mostly_empty_segment_is_dead_lettered_too_little_data(store: Store):
    x, y, z = noise_xyz(seed=6)
    for channel in (x, y, z):
        channel[: int(0.8 * N)] = np.nan  # 20 % usable < min_usable_fraction 25 %
    [dead] = (
        StepHarness(condition.step)
        .deliver(SEGMENTS_RAW, raw_segment(store, (x, y, z)))
        .dead_letters
    )
    assert dead.reason == "too-little-data"


def _replace_file(ref: ArrayRef, blob: bytes) -> None:
    path = Path(ref.uri.removeprefix("file://"))
    path.unlink()  # store files are immutable: replace, never write into, the original
    path.write_bytes(blob)


@pytest.mark.parametrize(
    ("damage", "reason", "error_type"),
    [
        ("tampered", "checksum-mismatch", "ChecksumMismatch"),
        ("truncated", "size-mismatch", "PermanentError"),  # refused before hashing
    ],
)
def test_a_reference_whose_content_differs_is_dead_lettered(
    store: Store, damage: str, reason: str, error_type: str
):
    raw = raw_segment(store, noise_xyz(seed=7))
    blob = Path(raw.data.uri.removeprefix("file://")).read_bytes()
    _replace_file(raw.data, blob[:-10] + b"0123456789" if damage == "tampered" else blob[:5000])
    result = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw)
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == reason
    assert dead.info["error_type"] == error_type
    if damage == "tampered":
        assert raw.data.sha256[:12] in dead.info["error_message"]
    assert dead.info["attempts"] == "1"  # corrupt data does not heal: no retries


def test_a_missing_file_is_dead_lettered_store_missing(store: Store):
    raw = raw_segment(store, noise_xyz(seed=8))
    Path(raw.data.uri.removeprefix("file://")).unlink()
    [dead] = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw).dead_letters
    assert dead.reason == "store-missing"
    assert dead.info["attempts"] == "1"


def test_an_unreachable_store_is_retried_then_dead_lettered(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    raw = raw_segment(store, noise_xyz(seed=9))
    # the step's store root is gone (an unmounted volume): transient, so retried
    monkeypatch.setattr(condition, "STORE", Store((tmp_path / "unmounted").as_uri()))
    Path(raw.data.uri.removeprefix("file://")).unlink()
    [dead] = StepHarness(condition.step, FAST_RETRIES).deliver(SEGMENTS_RAW, raw).dead_letters
    assert dead.reason == "transient-exhausted"
    assert dead.info["attempts"] == str(FAST_RETRIES.max_retries + 1)
    assert dead.info["error_type"] == "TransientError"


def test_stored_arrays_shorter_than_announced_are_dead_lettered(store: Store):
    raw = raw_segment(store, noise_xyz(seed=10), n_samples=N + 1)
    [dead] = StepHarness(condition.step).deliver(SEGMENTS_RAW, raw).dead_letters
    assert dead.reason == "shape-mismatch"
