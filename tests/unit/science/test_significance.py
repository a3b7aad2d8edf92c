"""The per-segment FAP is right for the zero-padded grid the maximum is taken over.

Checked against simulation only (no number the code produced): the Kibble joint law against
windowed white noise, and the whole search against coloured SciRD noise over 1200 days, with
two-sided binomial (Clopper-Pearson) bounds at the nominal rate.
"""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.signal import windows

from lisa_science.noise import tdi_psd
from lisa_science.search import (
    false_alarm_threshold,
    grid_search_threshold,
    independent_bins,
    search_statistic,
)
from lisa_science.significance import (
    adjacent_coherence,
    grid_fap,
    grid_threshold,
    joint_sf,
    nominal_coherence,
)
from lisa_science.simulate import coloured_noise

DT = 5.0
N_DAY = 17280
CONFIDENCE = 0.999
"""Two-sided level of the binomial intervals: a correct rate fails one check 1 time in 1000."""


def _contains(count: int, trials: int, p: float) -> bool:
    ci = stats.binomtest(count, trials, p).proportion_ci(CONFIDENCE, method="exact")
    return ci.low <= p <= ci.high


def test_coherence_of_the_padded_tukey_window():
    # rectangular window, half a bin apart: |sum exp(-i pi n / N)| / N -> 2 / pi
    assert adjacent_coherence(np.ones(100_000), 2) == pytest.approx((2 / math.pi) ** 2, rel=1e-4)
    assert adjacent_coherence(np.ones(1000), 1) == pytest.approx(0.0, abs=1e-20)
    assert nominal_coherence(2) == pytest.approx(
        adjacent_coherence(windows.tukey(N_DAY, 0.1), 2), abs=1e-4
    )


def test_joint_survival_matches_simulated_windowed_white_noise():
    """Powers of A+E at neighbouring bins of a Tukey window zero-padded by 2."""
    rng = np.random.default_rng(11)
    n, trials = 4096, 300
    w = windows.tukey(n, 0.1)
    x = rng.standard_normal((trials, 2, n))
    power = 2 * np.abs(np.fft.rfft(x * w, n=2 * n, axis=-1)) ** 2 / np.sum(w**2)
    stat = power.sum(axis=1)[:, 50:-50]  # chi2_4, away from DC and Nyquist
    r = adjacent_coherence(w, 2)
    pairs = stat.size - trials  # neighbouring pairs; ~2 pairs per independent bin
    for u in (12.0, 18.0):
        both = int(np.sum((stat[:, :-1] > u) & (stat[:, 1:] > u)))
        p = float(joint_sf(u, 4, r))
        # pairs overlap: the count's variance is about (1 + 2 r) times binomial; 5 sigma
        sd = math.sqrt(pairs * p * (1 - p) * (1 + 2 * r))
        assert abs(both - pairs * p) < 5 * sd, (u, both, pairs * p)
        assert abs(both - pairs * p) > 0 or p == 0
    # and it is not the independent value: at u = 18, r = 0.46 makes it ~30 times larger
    assert float(joint_sf(18.0, 4, r)) > 10 * stats.chi2.sf(18.0, 4) ** 2


def test_grid_fap_limits_and_threshold_inverse():
    # no coherence: independent bins, a run starts where a bin is above and its neighbour is
    # not, p (1 - p), and 1 - exp(-n p (1 - p)) ~ 1 - (1 - p)^n
    p = stats.chi2.sf(30.0, 4)
    expected = -math.expm1(-1000 * p * (1 - p))
    assert float(grid_fap(30.0, 4, 1000)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1 - (1 - p) ** 1000, rel=1e-5)
    u = grid_threshold(0.01, 4, 3440, 0.456)
    assert float(grid_fap(u, 4, 3440, 0.456)) == pytest.approx(0.01, rel=1e-8)
    # between Bonferroni over the grid bins (too high) and over the independent bins (too low)
    assert false_alarm_threshold(0.01, 1720) < u < false_alarm_threshold(0.01, 3440)
    assert np.isnan(grid_fap(np.nan, 4, 10))
    assert float(grid_fap(1.0, 4, 3440, 0.456)) == 1.0
    with pytest.raises(ValueError, match="fap"):
        grid_threshold(0.0, 4, 10)


def test_search_false_alarms_are_nominal_on_the_zero_padded_grid():
    """1200 noise days, each cut from one long coloured series (so segments are not periodic),
    searched with the true PSD: the fraction of days whose maximum crosses the threshold is the
    nominal FAP, where Bonferroni over the unpadded bins (the former threshold) is not."""
    days = 1200
    rng = np.random.default_rng(2026)
    a = coloured_noise(N_DAY * days, DT, lambda f: tdi_psd(f, "A"), rng).reshape(days, N_DAY)
    e = coloured_noise(N_DAY * days, DT, lambda f: tdi_psd(f, "E"), rng).reshape(days, N_DAY)
    f_psd = np.fft.rfftfreq(2 * N_DAY, DT)
    s_a, s_e = tdi_psd(f_psd, "A"), tdi_psd(f_psd, "E")
    maxima = np.empty(days)
    for d in range(days):
        f, stat = search_statistic(a[d], e[d], DT, f_psd, s_a, s_e)
        band = (f >= 1e-4) & (f <= 2e-2)
        maxima[d] = np.max(stat[band])
    n_grid = int(band.sum())
    n_indep = independent_bins(N_DAY, DT, 1e-4, 2e-2)
    for fap in (0.01, 0.05, 0.2):
        threshold, _ = grid_search_threshold(fap, n_grid)
        count = int(np.sum(maxima > threshold))
        assert _contains(count, days, fap), (fap, count / days)
    former = int(np.sum(maxima > false_alarm_threshold(0.2, n_indep)))
    assert not _contains(former, days, 0.2), former / days  # ~31 %: the test can fail


def test_adjacent_coherence_of_a_gapped_window_is_its_normalised_spectrum() -> None:
    """|sum w^2 exp(-2 pi i k / (pad N))|^2 / (sum w^2)^2, summed directly, for windows with
    gaps (one shape per length is cached inside, so two lengths and two pads are checked)."""
    rng = np.random.default_rng(4)
    for n in (N_DAY, 4001):
        w = windows.tukey(n, 0.1) * (rng.random(n) > 0.02)
        for pad in (2, 3):
            direct = np.sum(w**2 * np.exp(-2j * np.pi * np.arange(n) / (pad * n)))
            expected = abs(direct) ** 2 / np.sum(w**2) ** 2
            assert adjacent_coherence(w, pad) == pytest.approx(expected, rel=1e-12)


def test_joint_survival_by_the_gamma_ladder_equals_the_kibble_series_term_by_term():
    """``joint_sf`` takes each term's upper incomplete gamma from its predecessor's (the
    recurrence Q(s + 1, x) = Q(s, x) + x^s e^-x / s!); the reference here sums Kibble's series
    with scipy's Q at every term, over stacks of 1 to 3650 segments (the catalogue's range) and
    statistics from the bulk to far in the tail."""
    from scipy import special

    def kibble(u, dof, r):
        a = dof / 2.0
        j = np.arange(0, int(a * r / (1 - r) + 12 * math.sqrt(a * r) / (1 - r)) + 40)
        log_nb = (
            special.gammaln(a + j)
            - special.gammaln(a)
            - special.gammaln(j + 1.0)
            + a * math.log1p(-r)
            + j * math.log(r)
        )
        return float(np.sum(np.exp(log_nb) * special.gammaincc(a + j, u / (2 * (1 - r))) ** 2))

    for n in (1, 30, 365, 3650):
        dof = 4 * n
        for r in (0.05, 0.4, 0.9):
            u = dof + np.array([-1.0, 0.0, 3.0, 8.0, 12.0]) * math.sqrt(2 * dof)
            got = joint_sf(u, dof, r)
            want = np.array([kibble(x, dof, r) for x in u])
            assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (n, r)
    assert joint_sf(0.0, 8, 0.5) == pytest.approx(1.0)  # x = 0: every Q is 1
