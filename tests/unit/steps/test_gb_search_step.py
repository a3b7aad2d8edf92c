"""The gb-search step's handler through ``StepHarness`` on conditioned segments written to a
temporary store by hand: analytic SciRD noise in A and E, the model PSD as the smooth PSD, and,
where said, a sinusoid of known frequency and SNR."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from choreo.store import Store
from choreo.testing import StepHarness
from lisa_pipeline.events import CandidatesGB, SegmentConditioned, SegmentTiming
from lisa_pipeline.topics import CANDIDATES_GB, SEGMENTS_CONDITIONED
from lisa_science.noise import tdi_psd
from lisa_science.segments import xyz_to_aet
from lisa_science.significance import grid_threshold
from lisa_services.gb_search import service as gb_search

from .test_condition_step import DAY, DT, SEGMENT_ID, N, noise_xyz, sinusoid_xyz

F_SOURCE = 259.3 / DAY  # ~3.0 mHz, 0.3 of a Fourier bin off the grid
SNR_A, SNR_E = 15.0, 10.0
RHO = math.hypot(SNR_A, SNR_E)  # optimal A+E SNR over the day: 18.0


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    s = Store((tmp_path / "store").as_uri())
    monkeypatch.setattr(gb_search, "STORE", s)
    return s


def noise_aet(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return xyz_to_aet(*noise_xyz(seed))


def with_source(
    aet: tuple[np.ndarray, ...], t0: float = 0.0, phases: tuple[float, float] = (0.4, -1.9)
) -> tuple[tuple[np.ndarray, ...], tuple[float, float]]:
    signal, amps = sinusoid_xyz(F_SOURCE, SNR_A, SNR_E, phases, t0)
    return tuple(c + s for c, s in zip(aet, xyz_to_aet(*signal), strict=True)), amps


def conditioned_segment(
    store: Store,
    aet: tuple[np.ndarray, ...],
    mask: np.ndarray | None = None,
    t0: float = 0.0,
) -> SegmentConditioned:
    """What condition would publish, with the exact model PSD as the smooth PSD."""
    a, e, t = aet
    mask = np.ones(N, dtype=bool) if mask is None else mask
    f = np.linspace(0.0, 0.5 / DT, 1441)  # a 4 h Welch grid, as condition's
    model = {name: tdi_psd(f, name) for name in "AET"}
    return SegmentConditioned(
        timing=SegmentTiming(segment_id=SEGMENT_ID, t0=t0, dt=DT, n_samples=N),
        data=store.put({"A": a, "E": e, "T": t, "mask": mask.astype(np.uint8)}, {"t0": t0}),
        psd=store.put({"f": f, **model, **{f"{n}_smooth": v for n, v in model.items()}}),
        whitened=store.put({"A": np.zeros(N), "E": np.zeros(N)}),
        usable_fraction=float(mask.mean()),
        gap_samples=int((~mask).sum()),
        glitch_samples=0,
        psd_model_ratio=[],
    )


def search(seg: SegmentConditioned) -> CandidatesGB:
    result = StepHarness(gb_search.step).deliver(SEGMENTS_CONDITIONED, seg, key=SEGMENT_ID)
    assert result.dead_letters == []
    [out] = result.events(CANDIDATES_GB)
    assert (out.subject, out.key) == (SEGMENT_ID, SEGMENT_ID)
    return out.data


def test_a_strong_sinusoid_is_found_near_its_frequency(store: Store):
    aet, _ = with_source(noise_aet(seed=31))
    seg = conditioned_segment(store, aet)
    found = search(seg)

    # unpadded Fourier bins k / T in [0.1, 20] mHz, 1728 - 9 + 1; the threshold is the one of
    # the maximum over the 3439 padded grid bins (lisa_science.significance, tested against
    # simulation there): between Bonferroni over the independent and over the grid bins
    assert found.n_independent_bins == 1720
    assert found.threshold == pytest.approx(grid_threshold(0.01, 4, 3439, 0.4565), rel=1e-4)
    assert stats.chi2.isf(0.01 / 1720, 4) < found.threshold < stats.chi2.isf(0.01 / 3439, 4)
    assert (found.fmin_hz, found.fmax_hz, found.fap) == (1e-4, 2e-2, 0.01)
    assert (found.conditioned, found.psd) == (seg.data, seg.psd)  # for estimate downstream

    best = found.candidates[0]
    # Padded (x2) grid spacing 1 / (2 T): the nearest grid point is within 1 / (4 T) of the
    # source; noise moves the peak by ~ sqrt(3) / (pi T rho) ~ 0.03 / T. Half a bin is ample.
    assert abs(best.frequency_hz - F_SOURCE) <= 0.5 / DAY
    # statistic ~ 4 + L rho^2 with the losses L of the Tukey window (4 %) and of scalloping
    # (<= 19 % at pad 2); noise moves the SNR by ~1 rms (1.1 over 30 simulated days), hence
    # [sqrt(0.78) rho - 3, rho + 3].
    assert math.sqrt(0.78) * RHO - 3 <= best.snr <= RHO + 3, best.snr
    assert best.snr == pytest.approx(math.sqrt(best.statistic - 4))
    assert best.statistic > found.threshold
    assert best.fap < 1e-20
    # Anything else is much weaker: a noise false alarm (1 % per day) or, near a strong line,
    # a sidelobe plus noise just over the threshold (2 of 60 simulated days had one, with a
    # statistic ~30-40 against the line's ~150-350).
    assert len(found.candidates) <= 2
    assert all(c.statistic < best.statistic / 3 for c in found.candidates[1:])

    # the statistic is stored over the search band and indexes the candidate
    spectrum = store.get(found.statistic)
    assert sorted(spectrum) == ["f", "stat"]
    f, stat = spectrum["f"], spectrum["stat"]
    assert f.min() >= 1e-4
    assert f.max() <= 2e-2
    assert np.diff(f) == pytest.approx(np.full(f.size - 1, 0.5 / DAY))
    assert f[best.bin] == best.frequency_hz
    assert stat[best.bin] == best.statistic == np.nanmax(stat)


def test_pure_noise_gives_a_result_with_its_statistic_and_chi2_4_levels(store: Store):
    found = search(conditioned_segment(store, noise_aet(seed=32)))
    # FAP 1 % per segment: one false candidate at most (P(>= 2) ~ 5e-5)
    assert len(found.candidates) <= 1
    for c in found.candidates:
        assert c.statistic > found.threshold
        assert c.fap <= found.fap
    stat = store.get(found.statistic)["stat"]
    assert np.isfinite(stat).all()
    # chi2_4 on noise (the PSD is the true one): mean 4, variance 8, over ~1720 independent
    # bins the mean scatters by sqrt(8 / 1720) = 0.07 (padding correlates bins, not the mean);
    # 0.3 is ~4 sigma. The median of chi2_4 is 3.36; +-10 % is ~5 sigma of its scatter.
    assert np.mean(stat) == pytest.approx(4.0, abs=0.3)
    assert np.median(stat) == pytest.approx(stats.chi2.median(4), rel=0.1)
    assert stat.max() < found.threshold or found.candidates


def test_masked_samples_do_not_reach_the_statistic(store: Store):
    (a, e, t), _ = with_source(noise_aet(seed=33))
    mask = np.ones(N, dtype=bool)
    mask[N // 2 :] = False
    junk = 1e6 * np.std(a) * np.random.default_rng(0).standard_normal(N - N // 2)
    for channel in (a, e):
        channel[N // 2 :] = junk  # garbage that only the mask keeps out
    found = search(conditioned_segment(store, (a, e, t), mask))
    best = found.candidates[0]
    assert abs(best.frequency_hz - F_SOURCE) <= 1 / DAY
    # half the data: rho^2 halves; same loss and noise margins as with the whole day
    half = RHO / math.sqrt(2)
    assert math.sqrt(0.78) * half - 3 <= best.snr <= half + 3, best.snr
    # had the junk reached the statistic, it would be ~1e12 everywhere with many candidates
    assert best.statistic < 1e3
    assert all(c.statistic < best.statistic / 3 for c in found.candidates[1:])
    assert np.nanmax(store.get(found.statistic)["stat"]) == best.statistic


def test_the_band_follows_the_settings(store: Store, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gb_search, "SETTINGS", gb_search.SearchSettings(fmax_hz=2e-3))
    aet, _ = with_source(noise_aet(seed=34))
    found = search(conditioned_segment(store, aet))
    assert found.fmax_hz == 2e-3
    assert found.n_independent_bins == 172 - 9 + 1
    assert all(c.frequency_hz <= 2e-3 for c in found.candidates)  # the 3 mHz line is outside
    assert store.get(found.statistic)["f"].max() <= 2e-3


def test_a_missing_conditioned_file_is_dead_lettered(store: Store):
    seg = conditioned_segment(store, noise_aet(seed=35))
    Path(seg.data.uri.removeprefix("file://")).unlink()
    result = StepHarness(gb_search.step).deliver(SEGMENTS_CONDITIONED, seg)
    assert result.outputs == []
    [dead] = result.dead_letters
    assert dead.reason == "store-missing"
    assert dead.topic == f"{SEGMENTS_CONDITIONED}.dlq"
