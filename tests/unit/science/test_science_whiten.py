"""Whitening normalisation: white, unit-variance output and chi^2_2 periodogram values."""

import numpy as np
import pytest
from scipy import signal
from scipy.signal import windows

from lisa_science.noise import tdi_psd
from lisa_science.simulate import coloured_noise
from lisa_science.whiten import interpolate_psd, whiten, whitened_power

DT = 5.0
N = 17280


def _model(f: np.ndarray) -> np.ndarray:
    return tdi_psd(f, "A")


def test_whitened_noise_has_unit_variance_and_flat_spectrum() -> None:
    x = coloured_noise(4 * N, DT, _model, np.random.default_rng(1))
    f_psd = np.fft.rfftfreq(1 << 16, DT)
    # a segment cut from a longer series is not periodic: taper its ends
    seg = x[N : 2 * N]
    fmin, fmax = 1e-4, 2.5e-2  # keep away from the TDI 2.0 null at 30 mHz
    white = whiten(seg, DT, f_psd, _model(f_psd), windows.tukey(N, 0.1), fmin, fmax)
    core = white[N // 10 : -N // 10]  # where the window is 1
    assert np.var(core) == pytest.approx(2 * DT * (fmax - fmin), rel=0.05)
    circular = whiten(x, DT, f_psd, _model(f_psd))  # a periodic series needs no window
    assert np.var(circular) == pytest.approx(1.0, rel=0.02)
    f, p = signal.welch(core, fs=1 / DT, nperseg=2048)
    band = (f > 1e-4) & (f < 2.5e-2)
    assert np.mean(p[band]) == pytest.approx(2 * DT, rel=0.05)  # white level of unit variance


def test_whitened_power_is_chi2_2() -> None:
    x = coloured_noise(3 * N, DT, _model, np.random.default_rng(2))[N : 2 * N]
    f_psd = np.fft.rfftfreq(1 << 16, DT)
    f, p = whitened_power(x, DT, f_psd, _model(f_psd), windows.tukey(N, 0.1))
    band = (f >= 1e-4) & (f <= 2e-2)
    assert p[band].mean() == pytest.approx(2.0, abs=4 * 2 / np.sqrt(band.sum()))
    assert p[band].var() == pytest.approx(4.0, rel=0.15)


def test_interpolate_psd_marks_unknown_bins() -> None:
    out = interpolate_psd([0.0, 0.5, 1.0, 2.0], [0.0, 1.0], [0.0, 4.0])
    assert np.isnan(out[0])
    assert out[1] == 2.0
    assert out[2] == 4.0
    assert np.isnan(out[3])
