"""The A+E whitened periodogram: chi^2_4 on noise, non-centrality SNR^2 for a sinusoid."""

import math

import numpy as np
import pytest
from scipy import stats

from lisa_science.noise import tdi_psd
from lisa_science.search import (
    Candidate,
    false_alarm_threshold,
    find_candidates,
    independent_bins,
    search_statistic,
)
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise

DT = 5.0
N_DAY = 17280


def _noise_ae(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A, E noise cut from a series twice as long, so the segment is not periodic (realistic
    leakage at its ends, unlike a whole frequency-domain simulation)."""
    x, y, z = analytic_tdi_noise(2 * n, DT, np.random.default_rng(seed))
    a, e, _ = xyz_to_aet(x, y, z)
    return a[n // 2 : n // 2 + n], e[n // 2 : n // 2 + n]


def _stat(a: np.ndarray, e: np.ndarray, **kw: object) -> tuple[np.ndarray, np.ndarray]:
    f_psd = np.fft.rfftfreq(2 * a.size, DT)
    return search_statistic(a, e, DT, f_psd, tdi_psd(f_psd, "A"), tdi_psd(f_psd, "E"), **kw)


def test_noise_statistic_is_chi2_with_4_dof() -> None:
    n = 7 * N_DAY
    f, stat = _stat(*_noise_ae(n, 1))
    band = (f >= 1e-4) & (f <= 2e-2)
    values = stat[band]
    n_eff = values.size / 2  # pad factor 2: pairs of neighbouring bins are correlated
    # chi^2_4: mean 4, variance 8, central 4th moment 12 k (k + 4) = 384
    assert values.mean() == pytest.approx(4.0, abs=4 * math.sqrt(8 / n_eff))
    assert values.var() == pytest.approx(8.0, abs=4 * math.sqrt((384 - 64) / n_eff))
    # tails, on the unpadded (independent) Fourier bins: binomial counts
    independent = stat[::2][(f[::2] >= 1e-4) & (f[::2] <= 2e-2)]
    for p in (1e-2, 1e-3):
        count = int(np.sum(independent > stats.chi2.isf(p, 4)))
        expected = p * independent.size
        assert abs(count - expected) < 4 * math.sqrt(expected * (1 - p)) + 1, (p, count, expected)


def test_sinusoid_adds_its_optimal_snr_squared() -> None:
    """Optimal SNR^2 of h(t) = A cos(2 pi f0 t + phi) over T in noise of one-sided PSD S:
    rho^2 = 4 int |h~(f)|^2 / S df = (4 / S) * (1/2) int h(t)^2 dt = (2 / S)(A^2 T / 2) = A^2 T / S
    (Parseval; half of the energy A^2 T / 2 is at positive frequencies). Equivalently, with
    white samples of variance sigma^2 = S / (2 dt): rho^2 = sum h_i^2 / sigma^2 = N (A^2/2)(2 dt)/S.
    """
    a, e = _noise_ae(N_DAY, 2)
    duration = N_DAY * DT
    index = 519  # f0 = 519 / (2 T) ~ 3.0 mHz: half-way between two Fourier bins, on a padded one
    f0 = index / (2 * duration)
    t = np.arange(N_DAY) * DT
    rho_a, rho_e = 24.0, 18.0  # total rho^2 = 900
    amp_a = rho_a * math.sqrt(tdi_psd(f0, "A") / duration)
    amp_e = rho_e * math.sqrt(tdi_psd(f0, "E") / duration)
    a = a + amp_a * np.cos(2 * np.pi * f0 * t + 0.3)
    e = e + amp_e * np.cos(2 * np.pi * f0 * t - 1.1)
    f, stat = _stat(a, e)
    band = (f >= 1e-4) & (f <= 2e-2)
    peak = int(np.flatnonzero(band)[np.argmax(stat[band])])
    assert abs(peak - index) <= 1
    assert stat[peak] == pytest.approx(4 + rho_a**2 + rho_e**2, rel=0.25)


def test_one_day_am_cvn_like_source_crosses_one_percent_threshold() -> None:
    a, e = _noise_ae(N_DAY, 3)
    n_bins = independent_bins(N_DAY, DT, 1e-4, 2e-2)
    threshold = false_alarm_threshold(0.01, n_bins)
    f, stat = _stat(a, e)
    assert find_candidates(f, stat, threshold, n_bins=n_bins) == []  # noise alone
    duration = N_DAY * DT
    f0 = 1.94e-3
    t = np.arange(N_DAY) * DT
    rho = 8.0 / math.sqrt(2)  # SNR 8 over A+E in one day, as AM CVn
    a = a + rho * math.sqrt(tdi_psd(f0, "A") / duration) * np.cos(2 * np.pi * f0 * t)
    e = e + rho * math.sqrt(tdi_psd(f0, "E") / duration) * np.sin(2 * np.pi * f0 * t)
    f, stat = _stat(a, e)
    found = find_candidates(f, stat, threshold, n_bins=n_bins)
    assert len(found) == 1
    assert abs(found[0].frequency - f0) < 1 / duration
    assert found[0].fap < 0.01
    assert found[0].snr == pytest.approx(8.0, abs=3.0)


def test_gaps_keep_the_noise_statistic_calibrated() -> None:
    a, e = _noise_ae(N_DAY, 4)
    a[3000:3720] = np.nan  # two 1 h gaps
    e[11000:11720] = np.nan
    f, stat = _stat(a, e)
    band = (f >= 1e-4) & (f <= 2e-2)
    assert np.isfinite(stat[band]).all()
    assert stat[band].mean() == pytest.approx(4.0, abs=4 * math.sqrt(8 / (band.sum() / 2)))


def test_statistic_undefined_where_psd_unknown() -> None:
    a, e = _noise_ae(1000, 5)
    f, stat = _stat(a, e)
    assert np.isnan(stat[0])  # S(0) = 0
    assert stat.shape == f.shape == (1001,)


def test_false_alarm_threshold_closed_forms() -> None:
    # chi^2_4 survival function: exp(-x/2) (1 + x/2); chi^2_2: exp(-x/2)
    thr = false_alarm_threshold(0.01, 1720)
    assert math.exp(-thr / 2) * (1 + thr / 2) == pytest.approx(0.01 / 1720, rel=1e-9)
    assert false_alarm_threshold(1e-3, 100, dof=2) == pytest.approx(-2 * math.log(1e-5))
    with pytest.raises(ValueError, match="fap"):
        false_alarm_threshold(1.5, 10)
    with pytest.raises(ValueError, match="n_bins"):
        false_alarm_threshold(0.01, 0)


def test_independent_bins_counts_unpadded_fourier_frequencies() -> None:
    # T = 86400 s: k / T in [1e-4, 2e-2] for k = ceil(8.64) = 9 ... floor(1728) = 1728
    assert independent_bins(N_DAY, DT, 1e-4, 2e-2) == 1720


def test_find_candidates_merges_runs_and_respects_band() -> None:
    f = np.arange(100) * 1e-3
    stat = np.full(100, 4.0)
    stat[10:13] = [30.0, 50.0, 31.0]  # one peak spread over three bins
    stat[15] = 40.0  # a separate peak
    stat[50] = 60.0  # above fmax
    stat[2] = np.nan
    found = find_candidates(f, stat, 25.0, fmin=2e-3, fmax=2e-2, n_bins=10)
    assert [c.bin_index for c in found] == [11, 15]  # strongest first
    top = found[0]
    assert isinstance(top, Candidate)
    assert top.frequency == pytest.approx(0.011)
    assert top.statistic == 50.0
    assert top.snr == pytest.approx(math.sqrt(46.0))
    assert top.fap == pytest.approx(10 * math.exp(-25.0) * 26.0)  # n_bins * chi2_4.sf(50)
    assert find_candidates(f, stat, 100.0) == []
