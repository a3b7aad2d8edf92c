"""Incoherent stacking of daily statistics: chi^2_{4N} on noise, SNR^2 adds up for a source."""

import math

import numpy as np
import pytest

from lisa_science.noise import tdi_psd
from lisa_science.search import independent_bins, search_statistic
from lisa_science.segments import segment_bounds, xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise
from lisa_science.stacking import StackState, stack_statistics, stacked_fap, stacked_snr

DT = 5.0
N_DAY = 17280
DAY = N_DAY * DT


def _daily_stats(n_days: int, seed: int, source: tuple[float, float] | None = None):
    """Statistics of consecutive 1-day segments of one continuous series (plus a sinusoid of
    frequency f0 with per-day A and E SNR rho each, if given)."""
    x, y, z = analytic_tdi_noise((n_days + 1) * N_DAY, DT, np.random.default_rng(seed))
    a, e, _ = xyz_to_aet(x, y, z)
    t = np.arange(a.size) * DT
    if source is not None:
        f0, rho = source
        a = a + rho * math.sqrt(tdi_psd(f0, "A") / DAY) * np.cos(2 * np.pi * f0 * t)
        e = e + rho * math.sqrt(tdi_psd(f0, "E") / DAY) * np.sin(2 * np.pi * f0 * t + 0.4)
    f_psd = np.fft.rfftfreq(2 * N_DAY, DT)
    psd_a, psd_e = tdi_psd(f_psd, "A"), tdi_psd(f_psd, "E")
    out = []
    for start, stop in segment_bounds(a.size, DT, DAY, 0.0)[:n_days]:
        f, stat = search_statistic(a[start:stop], e[start:stop], DT, f_psd, psd_a, psd_e)
        out.append(stat)
    return f, out


def test_stacked_noise_is_chi2_with_4n_dof() -> None:
    f, stats_ = _daily_stats(10, 1)
    stacked = stack_statistics(stats_)
    band = (f >= 1e-4) & (f <= 2e-2)
    values = stacked[band]
    n_eff = values.size / 2
    # chi^2_40: mean 40, variance 80, central 4th moment 12 k (k + 4) = 21120
    assert values.mean() == pytest.approx(40.0, abs=4 * math.sqrt(80 / n_eff))
    assert values.var() == pytest.approx(80.0, abs=4 * math.sqrt((21120 - 6400) / n_eff))


def test_incremental_state_equals_batch_and_skips_nan() -> None:
    f, stats_ = _daily_stats(3, 2)
    state = StackState.empty(f.size)
    for stat in stats_:
        state = state.add(stat)
    batch = stack_statistics(stats_)
    finite = np.isfinite(batch)
    np.testing.assert_allclose(state.total[finite], batch[finite])
    assert state.count[0] == 0
    assert np.all(state.count[finite] == 3)
    np.testing.assert_allclose(state.snr()[finite], stacked_snr(batch, 3)[finite])
    assert state.fap(100)[0] == 1.0
    with pytest.raises(ValueError, match="shape"):
        state.add(np.zeros(3))
    with pytest.raises(ValueError, match="frequency grid"):
        stack_statistics([np.zeros(3), np.zeros(4)])


def test_fap_and_snr_closed_forms() -> None:
    # chi^2 with even dof 2m: sf(x) = exp(-x/2) sum_{j<m} (x/2)^j / j!
    def sf_even(x: float, dof: int) -> float:
        return math.exp(-x / 2) * sum((x / 2) ** j / math.factorial(j) for j in range(dof // 2))

    # independent bins: a run starts at a bin above x whose neighbour is not, p (1 - p), and
    # runs are Poisson: 1 - exp(-n p (1 - p)); reported as 1 once n p >= 10 (FAP > 0.99)
    stacked = np.array([30.0, 60.0, 90.0])
    expected = [
        1.0 if 1000 * p >= 10 else -math.expm1(-1000 * p * (1 - p))
        for p in (sf_even(v, 20) for v in stacked)
    ]
    assert expected[0] == 1.0
    assert expected[1] < 0.1
    np.testing.assert_allclose(stacked_fap(stacked, 5, 1000), expected, rtol=1e-9)
    np.testing.assert_allclose(
        stacked_snr(stacked, 5), [math.sqrt(10), math.sqrt(40), math.sqrt(70)]
    )
    assert stacked_snr(np.array([10.0]), 5)[0] == 0.0


def test_weak_source_emerges_only_when_stacked() -> None:
    f0 = 3.0e-3
    rho_day = 2.5  # per channel per day: A+E SNR^2 = 12.5 a day, 200 over 16 days
    f, stats_ = _daily_stats(16, 3, source=(f0, rho_day))
    n_bins = independent_bins(N_DAY, DT, 1e-4, 2e-2)
    k = int(np.argmin(np.abs(f - f0)))
    single_faps = np.array([stacked_fap(s[k], 1, n_bins) for s in stats_])
    # a typical day does not detect it (noncentral chi^2_4 with lambda ~ 12 rarely beats ~28)
    assert np.median(single_faps) > 0.01
    stacked = stack_statistics(stats_)
    assert stacked_fap(stacked[k], 16, n_bins) < 1e-3 * single_faps.min()
    # stacked SNR^2 = sum of daily SNR^2 (~200), minus window/scalloping losses (< 20 %)
    assert stacked_snr(stacked, 16)[k] == pytest.approx(math.sqrt(16 * 2 * rho_day**2), rel=0.25)
