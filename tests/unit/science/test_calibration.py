"""The calibrated model PSD: unbiased level on noise, follows a broadband excess, ignores lines."""

import numpy as np

from lisa_science.calibration import calibrated_model_psd
from lisa_science.noise import tdi_psd
from lisa_science.psd import welch_psd
from lisa_science.search import search_statistic
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise

N, DT = 17280, 5.0


def _days(seed: int, n_days: int, scale: float = 1.0):
    x, y, z = analytic_tdi_noise(N * (n_days + 2), DT, np.random.default_rng(seed))
    for k in range(1, n_days + 1):  # skip the ends: the simulated noise is periodic
        sl = slice(k * N, (k + 1) * N)
        a, e, _ = xyz_to_aet(x[sl], y[sl], z[sl])
        yield a * np.sqrt(scale), e * np.sqrt(scale)


def test_statistic_normalised_by_the_calibrated_psd_is_chi2_4_on_noise():
    stats = []
    for a, e in _days(7, 8):
        f, pa = welch_psd(a, DT)
        _, pe = welch_psd(e, DT)
        fs, st = search_statistic(
            a, e, DT, f, calibrated_model_psd(f, pa, "A"), calibrated_model_psd(f, pe, "E")
        )
        stats.append(st[(fs >= 1e-4) & (fs <= 2e-2)])
    s = np.concatenate(stats)
    # chi2_4: mean 4, variance 8; n ~ 27 000 correlated (padded) bins: sigma(mean) ~ 0.025
    assert abs(s.mean() - 4) < 0.1
    assert 7.0 < s.var() < 9.0


def test_a_broadband_excess_is_followed_and_a_line_is_ignored():
    a, _ = next(_days(3, 1, scale=1.3))
    t = np.arange(N) * DT
    a = a + 6e-22 * np.sin(2 * np.pi * 3e-3 * t)  # a line ~50x the noise in its Welch bin
    f, pa = welch_psd(a, DT)
    cal = calibrated_model_psd(f, pa, "A")
    band = (f >= 2e-4) & (f <= 2e-2)
    ratio = cal[band] / tdi_psd(f[band], "A")
    assert np.all(np.abs(ratio / 1.3 - 1) < 0.06)
    assert abs(cal[np.argmin(abs(f - 3e-3))] / tdi_psd(3e-3, "A") / 1.3 - 1) < 0.06
