"""The Galactic foreground: its PSD against Robson, Cornish & Liu's sensitivity curve, the
simulated noise against its PSD, a noise model that follows it unbiased by bright binaries, and
the search's false alarms with and without it (>= 500 noise days each, Clopper-Pearson bounds).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lisa_science.calibration import calibrated_model_psd
from lisa_science.foreground import (
    confusion_strain_psd,
    confusion_tdi_psd,
    fit_noise_model,
    shape_years,
    total_tdi_psd,
)
from lisa_science.ldc import read_ldc
from lisa_science.noise import tdi_psd
from lisa_science.psd import welch_psd
from lisa_science.search import grid_search_threshold, search_statistic
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import coloured_noise, foreground_tdi_noise

DT = 5.0
N_DAY = 17280
CONFIDENCE = 0.999


def rcl_instrument_sensitivity(f: np.ndarray) -> np.ndarray:
    """RCL 2019 eq. 1 without S_c, written out from the paper (strain, sky-averaged)."""
    L, fstar = 2.5e9, 299792458.0 / (2 * math.pi * 2.5e9)
    p_oms = (1.5e-11) ** 2 * (1 + (2e-3 / f) ** 4)
    p_acc = (3e-15) ** 2 * (1 + (0.4e-3 / f) ** 2) * (1 + (f / 8e-3) ** 4)
    return (
        10
        / (3 * L**2)
        * (p_oms + 2 * (1 + np.cos(f / fstar) ** 2) * p_acc / (2 * math.pi * f) ** 4)
        * (1 + 0.6 * (f / fstar) ** 2)
    )


def test_foreground_over_instrument_in_tdi_is_rcl_confusion_over_instrument_sensitivity():
    """S_c adds to RCL's S_n: in every TDI channel the foreground / instrument ratio must be
    S_c / S_n(instrument) (both transfers are the same at these frequencies)."""
    f = np.geomspace(2e-4, 4e-3, 40)
    for years in (0.5, 1.0, 2.0, 4.0):
        expected = confusion_strain_psd(f, years) / rcl_instrument_sensitivity(f)
        for channel, generation in (("X", "1.5"), ("A", "2.0"), ("E", "1.5")):
            ratio = confusion_tdi_psd(f, channel, years, generation) / tdi_psd(
                f, channel, generation
            )
            np.testing.assert_allclose(ratio, expected, rtol=0.02)
    # the description: 10-25x the instrument between 0.5 and 3 mHz for half a year
    ratio = confusion_tdi_psd(f, "A", 0.5) / tdi_psd(f, "A")
    assert 20 < ratio[(f > 5e-4) & (f < 3e-3)].max() < 30
    assert np.all(confusion_tdi_psd(f, "T", 1.0) == 0)


def test_rcl_shape_values_and_stable_cutoff():
    # eq. 14 at 1 mHz, 1 year, by hand: 9e-45 f^(-7/3) exp(-f^0.171 + 292 f sin(1020 f)) (1 + tanh)
    f = 1e-3
    by_hand = (
        9e-45
        * f ** (-7 / 3)
        * math.exp(-(f**0.171) + 292 * f * math.sin(1020 * f))
        * (1 + math.tanh(1680 * (0.00215 - f)))
    )
    assert float(confusion_strain_psd(f, 1.0)) == pytest.approx(by_hand, rel=1e-12)
    high = confusion_strain_psd(np.array([0.02, 0.05]), 1.0)
    assert np.all(high > 0)  # 1 + tanh written without cancellation
    assert np.all(high < 1e-40)
    assert [shape_years(y) for y in (0.01, 0.5, 0.9, 1.0, 3.0, 10.0)] == [
        0.5,
        0.5,
        0.5,
        1.0,
        2.0,
        4.0,
    ]


def test_simulated_foreground_has_its_psd(tmp_path: Path):
    """``simulate --foreground``: a 2-day file whose A noise is instrument + foreground."""
    from lisa_choreo.simfile import simulate

    out = simulate(tmp_path / "fg.h5", 2 * 86400.0, DT, "analytic", "none", seed=3, foreground=True)
    data = read_ldc(str(out))
    a, _, _ = xyz_to_aet(data.x, data.y, data.z)
    f, p = welch_psd(a, DT, average="mean")
    band = (f > 5e-4) & (f < 3e-3)
    ratio = p[band] / total_tdi_psd(f[band], "A", 0.5)
    # mean of ~70 Welch bins of 23 averages each
    assert ratio.mean() == pytest.approx(1.0, abs=4 / math.sqrt(23 * band.sum()))
    assert (p[band] / tdi_psd(f[band], "A")).max() > 10  # and it is the foreground
    x, y, z = foreground_tdi_noise(1000, DT, np.random.default_rng(1), 1.0)
    np.testing.assert_allclose(x + y + z, 0.0, atol=1e-30)  # T = 0


def _noise(days: int, years: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, e = (
        coloured_noise(N_DAY * days, DT, lambda f, c=c: total_tdi_psd(f, c, years), rng)
        for c in ("A", "E")
    )
    return a.reshape(days, N_DAY), e.reshape(days, N_DAY)


def _fit(a: np.ndarray, e: np.ndarray):
    f, p_a = welch_psd(a, DT)
    _, p_e = welch_psd(e, DT)
    return f, fit_noise_model(f, p_a, p_e, 0.5)


def test_noise_model_follows_the_foreground_unbiased_by_a_bright_binary():
    a, e = _noise(40, 0.5, 21)
    amplitudes, shifted = [], []
    t = np.arange(N_DAY) * DT
    f0 = 1.5e-3  # where the foreground is 16x the instrument
    for d in range(40):
        _, fit = _fit(a[d], e[d])
        amplitudes.append(fit.amplitude)
        # a binary of SNR 50 in the day against the total noise, in A and E
        s = total_tdi_psd(f0, "A", 0.5)
        amp = 50 / math.sqrt(2) * math.sqrt(s / (N_DAY * DT))
        _, loud = _fit(
            a[d] + amp * np.cos(2 * np.pi * f0 * t), e[d] + amp * np.sin(2 * np.pi * f0 * t)
        )
        shifted.append(loud.amplitude - fit.amplitude)
    amplitudes = np.array(amplitudes)
    sd = amplitudes.std(ddof=1)
    assert 0.02 < sd < 0.12  # ~6 % from one day
    assert amplitudes.mean() == pytest.approx(1.0, abs=4 * sd / math.sqrt(40))
    assert abs(np.mean(shifted)) < 0.2 * sd  # the line's bins are clipped out of the fit


def _false_alarm_days(years: float | None, days: int, seed: int, model: str) -> np.ndarray:
    """Per noise day, the maximum of the search statistic normalised by the condition step's
    noise model (``model`` "foreground": lisa_science.foreground; "level": the former SciRD
    level fit)."""
    a, e = _noise(days, years, seed)
    maxima = np.empty(days)
    for d in range(days):
        f, p_a = welch_psd(a[d], DT)
        _, p_e = welch_psd(e[d], DT)
        if model == "foreground":
            fit = fit_noise_model(f, p_a, p_e, 0.5)
            s_a, s_e = fit.psd(f, "A"), fit.psd(f, "E")
        else:
            s_a, s_e = calibrated_model_psd(f, p_a, "A"), calibrated_model_psd(f, p_e, "E")
        fs, stat = search_statistic(a[d], e[d], DT, f, s_a, s_e)
        band = (fs >= 1e-4) & (fs <= 2e-2)
        maxima[d] = np.nanmax(stat[band])
    return maxima, int(band.sum())


def _contains(count: int, trials: int, p: float) -> bool:
    ci = stats.binomtest(count, trials, p).proportion_ci(CONFIDENCE, method="exact")
    return ci.low <= p <= ci.high


@pytest.mark.parametrize("years", [0.5, None], ids=["foreground", "no-foreground"])
def test_search_false_alarms_are_nominal_with_the_foreground_noise_model(years):
    """500 noise days each, with and without foreground, normalised by the noise model the
    condition step fits: the fraction of days with a false alarm is the nominal FAP."""
    days = 500
    maxima, n_grid = _false_alarm_days(years, days, 100 if years else 200, "foreground")
    for fap in (0.01, 0.05, 0.2):
        threshold, _ = grid_search_threshold(fap, n_grid)
        count = int(np.sum(maxima > threshold))
        assert _contains(count, days, fap), (fap, count / days)


def test_the_former_level_fit_cannot_follow_the_foreground():
    maxima, n_grid = _false_alarm_days(0.5, 20, 300, "level")
    threshold, _ = grid_search_threshold(0.01, n_grid)
    assert np.mean(maxima > threshold) > 0.9  # every day "finds" the foreground
