"""Normalisation of the frequency-domain noise generator and the XYZ cross-spectra."""

import numpy as np
import pytest
from scipy import signal

from lisa_science.noise import tdi_psd
from lisa_science.psd import DEFAULT_BANDS
from lisa_science.simulate import analytic_tdi_noise, coloured_noise

DT = 5.0


@pytest.mark.parametrize("n", [100_000, 100_001])
def test_white_noise_variance(n: int) -> None:
    s0 = 3.0
    x = coloured_noise(n, DT, lambda f: np.full_like(f, s0), np.random.default_rng(n))
    expected = s0 / (2 * DT)  # integral of a flat one-sided PSD up to Nyquist 1 / (2 dt)
    assert np.var(x) == pytest.approx(expected, rel=4 * np.sqrt(2 / n))


def test_periodogram_of_coloured_noise_is_unbiased() -> None:
    n = 200_000

    def psd(f: np.ndarray) -> np.ndarray:
        return (1e-3 / np.maximum(f, 1e-6)) ** 2

    x = coloured_noise(n, DT, psd, np.random.default_rng(5))
    f = np.fft.rfftfreq(n, DT)[1:-1]
    periodogram = 2 * DT * np.abs(np.fft.rfft(x)[1:-1]) ** 2 / n
    ratio = periodogram / psd(f)  # exponential with mean 1 at every interior bin
    assert ratio.mean() == pytest.approx(1.0, abs=4 / np.sqrt(ratio.size))
    assert ratio.var() == pytest.approx(1.0, abs=0.05)


def test_xyz_auto_and_cross_spectra() -> None:
    rng = np.random.default_rng(6)
    n = 20 * 17280
    x, y, _z = analytic_tdi_noise(n, DT, rng)
    nperseg = 2880
    f, s_x = signal.welch(x, fs=1 / DT, nperseg=nperseg)
    _, c_xy = signal.csd(x, y, fs=1 / DT, nperseg=nperseg)
    model_x = tdi_psd(f, "X")
    model_xy = (tdi_psd(f, "T") - tdi_psd(f, "A")) / 3  # from X, Y in terms of A, E, T
    for lo, hi in DEFAULT_BANDS:
        sel = (f >= lo) & (f < hi)
        assert np.mean(s_x[sel] / model_x[sel]) == pytest.approx(1.0, abs=0.06), lo
        assert np.mean(c_xy[sel].real / model_xy[sel]) == pytest.approx(1.0, abs=0.06), lo
        assert abs(np.mean(c_xy[sel].imag / model_xy[sel])) < 0.1  # the model CSD is real


def test_seeded_and_shapes() -> None:
    one = analytic_tdi_noise(1000, DT, np.random.default_rng(9), generation="1.5")
    two = analytic_tdi_noise(1000, DT, np.random.default_rng(9), generation="1.5")
    for u, v in zip(one, two, strict=True):
        np.testing.assert_array_equal(u, v)
        assert u.shape == (1000,)
    with pytest.raises(ValueError, match="at least 2 samples"):
        coloured_noise(1, DT, lambda f: f, np.random.default_rng(0))
