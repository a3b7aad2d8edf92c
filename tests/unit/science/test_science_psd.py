"""Welch PSD and band ratios against the SciRD model and against scipy's own Welch."""

import math

import numpy as np
import pytest
from scipy import signal

from lisa_science.noise import tdi_psd
from lisa_science.psd import (
    DEFAULT_BANDS,
    average_periodograms,
    band_ratios,
    median_bias,
    welch_periodograms,
    welch_psd,
)
from lisa_science.quality import quality_mask
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise

DT = 5.0
N_DAY = 17280


def _aet(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = analytic_tdi_noise(n, DT, np.random.default_rng(seed))
    a, e, _ = xyz_to_aet(x, y, z)
    return a, e


def _sigma_band(duration: float, lo: float, hi: float) -> float:
    """Expected 1-sigma scatter of a band ratio of a median-averaged Welch PSD.

    The band holds duration * (hi - lo) independent time-frequency cells, each an exponential
    (chi^2_2 / 2) periodogram value. The sample median of K unit exponentials has variance
    1 / (4 K p(m)^2) = 1 / K (density p = 1/2 at the median m = ln 2), i.e. relative variance
    1 / (K ln^2 2), about twice that of the mean.
    """
    return 1.0 / (math.log(2) * math.sqrt(duration * (hi - lo)))


def test_median_bias_from_order_statistics() -> None:
    assert median_bias(1) == 1.0
    assert median_bias(2) == pytest.approx(1.0)  # mean of the two values
    assert median_bias(3) == pytest.approx(1 / 2 + 1 / 3)  # E[X_(2)] of 3 exponentials
    assert median_bias(5) == pytest.approx(1 / 3 + 1 / 4 + 1 / 5)
    assert median_bias(1001) == pytest.approx(math.log(2), rel=1e-3)  # median of Exp(1)


def test_unmasked_welch_equals_scipy_median_welch() -> None:
    a, _ = _aet(N_DAY, 1)
    f, p = welch_psd(a, DT)
    f_ref, p_ref = signal.welch(a, fs=1 / DT, nperseg=2880, noverlap=1440, average="median")
    np.testing.assert_allclose(f, f_ref)
    np.testing.assert_allclose(p, p_ref, rtol=1e-10)
    assert f[1] == pytest.approx(1 / (4 * 3600))  # 69 uHz resolution


def test_one_day_band_ratios_match_scird_model() -> None:
    a, e = _aet(N_DAY, 2)
    for channel, series in (("A", a), ("E", e)):
        f, p = welch_psd(series, DT)
        ratios = band_ratios(f, p, tdi_psd(f, channel))
        for (lo, hi), ratio in zip(DEFAULT_BANDS, ratios, strict=True):
            assert abs(ratio - 1) < 4 * _sigma_band(N_DAY * DT, lo, hi), (channel, lo, ratio)
        # bands above 10 mHz hold > 1000 cells: the scatter is small enough for +-10 %
        assert all(0.9 < r < 1.1 for r in ratios[3:]), (channel, ratios)


def test_band_ratios_unbiased_over_twenty_days() -> None:
    ratios = []
    for seed in range(20):
        a, e = _aet(N_DAY, 100 + seed)
        for channel, series in (("A", a), ("E", e)):
            f, p = welch_psd(series, DT)
            ratios.append(band_ratios(f, p, tdi_psd(f, channel)))
    mean = np.mean(ratios, axis=0)
    # scatter of the mean of 40 daily ratios: <= 2 % in the lowest band
    assert np.all((mean > 0.9) & (mean < 1.1)), mean
    sigmas = [_sigma_band(N_DAY * DT, lo, hi) / math.sqrt(40) for lo, hi in DEFAULT_BANDS]
    assert np.all(np.abs(mean - 1) < 4 * np.array(sigmas)), mean


def test_gaps_drop_only_the_affected_segments() -> None:
    a, _ = _aet(2 * N_DAY, 3)
    a[10000 : 10000 + 5040] = np.nan  # a 7 h gap
    f, p = welch_psd(a, DT)
    assert np.all(np.isfinite(p))
    ratios = band_ratios(f, p, tdi_psd(f, "A"))
    usable = 2 * N_DAY * DT - (5040 * DT + 4 * 3600)  # at most the gap plus one segment lost
    for (lo, hi), ratio in zip(DEFAULT_BANDS, ratios, strict=True):
        assert abs(ratio - 1) < 4 * _sigma_band(usable, lo, hi), (lo, ratio)
    # an explicit mask acts like NaN
    mask = np.isfinite(a)
    _, p_masked = welch_psd(np.nan_to_num(a), DT, mask=mask)
    np.testing.assert_allclose(p_masked, p)


def test_median_averaging_bounds_a_glitch_and_masking_removes_it() -> None:
    a, _ = _aet(N_DAY, 4)
    a[5000:5003] += 1e3 * np.std(a)
    f, p = welch_psd(a, DT)
    model = tdi_psd(f, "A")
    # the glitch corrupts 2 of 11 overlapping segments; the median then picks the 6th of the
    # 9 clean values: E = sum_{j=4}^{9} 1/j = 1.33 instead of median_bias(11) = 0.74 (x 1.8)
    assert all(r < 2.5 for r in band_ratios(f, p, model))
    _, p_mean = signal.welch(a, fs=1 / DT, nperseg=2880, noverlap=1440, average="mean")
    assert band_ratios(f, p_mean, model)[0] > 100  # what a mean would have done
    _, p_clean = welch_psd(a, DT, mask=quality_mask(a, DT))
    usable = N_DAY * DT - 4 * 3600
    for (lo, hi), ratio in zip(DEFAULT_BANDS, band_ratios(f, p_clean, model), strict=True):
        assert abs(ratio - 1) < 4 * _sigma_band(usable, lo, hi), (lo, ratio)


def test_band_ratios_simple_and_empty_band() -> None:
    f = np.linspace(0, 0.1, 1001)
    model = 1 + f
    assert band_ratios(f, 2 * model, model, bands=((0.01, 0.02), (0.5, 0.6))) == [
        2.0,
        pytest.approx(float("nan"), nan_ok=True),
    ]


def test_refusals() -> None:
    with pytest.raises(ValueError, match="shorter than one Welch segment"):
        welch_psd(np.zeros(100), DT)
    with pytest.raises(ValueError, match="free of masked samples"):
        welch_psd(np.zeros(N_DAY), DT, mask=np.arange(N_DAY) % 1000 != 0)


def test_periodograms_of_several_channels_equal_scipy_per_segment() -> None:
    """Three channels in one call, a gap: each clean segment's periodogram is scipy's
    one-segment Welch of it, and the two averages are scipy's median and mean over them."""
    x, y, z = analytic_tdi_noise(N_DAY, DT, np.random.default_rng(9))
    channels = np.stack(xyz_to_aet(x, y, z))
    mask = np.ones(N_DAY, dtype=bool)
    mask[7000:7100] = False  # spoils the two segments that start at 4320 and 5760
    f, per = welch_periodograms(channels, DT, mask)
    # the TDI 2.0 spectra span 11 (A, E) to 15 (T) decades: two FFT libraries' rounding (1e-16
    # of the largest bins) shows in the smallest, hence rtol 1e-6 (scipy's test above: A alone)
    starts = [s for s in range(0, N_DAY - 2880 + 1, 1440) if mask[s : s + 2880].all()]
    assert len(starts) == 9
    assert per.shape == (3, len(starts), f.size)
    for c in range(3):
        for k, start in enumerate(starts):
            f_ref, p_ref = signal.welch(channels[c, start : start + 2880], fs=1 / DT, nperseg=2880)
            np.testing.assert_allclose(f, f_ref)
            np.testing.assert_allclose(per[c, k], p_ref, rtol=1e-6)
        segments = np.stack([channels[c, s : s + 2880] for s in starts])
        _, per_ref = signal.welch(segments, fs=1 / DT, nperseg=2880, axis=-1)
        np.testing.assert_allclose(
            average_periodograms(per[c]), np.median(per_ref, axis=0) / median_bias(9), rtol=1e-6
        )
        np.testing.assert_allclose(
            average_periodograms(per[c], "mean"), per_ref.mean(axis=0), rtol=1e-6
        )
        np.testing.assert_allclose(
            welch_psd(channels[c], DT, mask)[1], average_periodograms(per[c]), rtol=1e-12
        )


def test_median_of_an_even_number_of_periodograms() -> None:
    per = np.random.default_rng(3).exponential(size=(4, 2, 50))
    np.testing.assert_allclose(
        average_periodograms(per), np.median(per, axis=-2) / median_bias(2), rtol=1e-15
    )
    with pytest.raises(ValueError, match="average"):
        average_periodograms(per, "mode")
