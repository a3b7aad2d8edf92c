"""Sinusoid fit: Fisher uncertainties against the Cramer-Rao bound and Monte Carlo pulls.

Cramer-Rao bound for a real sinusoid A cos(2 pi f t + phi) in white noise of variance sigma^2,
N samples over T, per-channel SNR rho_c^2 = N A^2 / (2 sigma^2) = A^2 T / S (Rife & Boorstyn 1974;
Kay, Fundamentals of Statistical Signal Processing I, ex. 3.14):
  var(f) = 12 / ((2 pi)^2 rho^2 T^2)  ->  sigma_f = sqrt(3) / (pi T rho),
  var(A) = 2 sigma^2 / N = S / T,
  var(phi) = 1 / rho_c^2 at the segment centre, + (pi T sigma_f)^2 = 3 / rho^2 when phi refers to
  the segment start. A common frequency in A and E adds the informations: rho^2 = rho_A^2 + rho_E^2.
"""

import math

import numpy as np
import pytest

from lisa_science.estimate import SinusoidFit, fit_sinusoid
from lisa_science.noise import tdi_psd
from lisa_science.segments import xyz_to_aet
from lisa_science.simulate import analytic_tdi_noise

DT = 5.0
N = 17280
T = N * DT


def _wrap(x: float) -> float:
    return math.remainder(x, 2 * math.pi)


def _pulls(fit: SinusoidFit, f: float, amps: tuple, phases: tuple) -> list[float]:
    return [
        (fit.frequency - f) / fit.sigma_frequency,
        (fit.amplitude_a - amps[0]) / fit.sigma_amplitude_a,
        (fit.amplitude_e - amps[1]) / fit.sigma_amplitude_e,
        _wrap(fit.phase_a - phases[0]) / fit.sigma_phase_a,
        _wrap(fit.phase_e - phases[1]) / fit.sigma_phase_e,
    ]


def _white_trial(rng: np.random.Generator, s: float, f: float, amps: tuple, phases: tuple):
    t = np.arange(N) * DT
    sigma = math.sqrt(s / (2 * DT))
    a = amps[0] * np.cos(2 * np.pi * f * t + phases[0]) + sigma * rng.standard_normal(N)
    e = amps[1] * np.cos(2 * np.pi * f * t + phases[1]) + sigma * rng.standard_normal(N)
    return a, e


def test_fisher_errors_equal_cramer_rao_bound_in_white_noise() -> None:
    s = 1e-40
    f = 300.37 / T
    rho_a, rho_e = 12.0, 9.0
    amps = (rho_a * math.sqrt(s / T), rho_e * math.sqrt(s / T))
    a, e = _white_trial(np.random.default_rng(1), s, f, amps, (0.7, -2.0))
    fit = fit_sinusoid(a, e, DT, 300 / T, s, s, tukey_alpha=0.0)
    # the bound at the fitted amplitudes (the Fisher matrix is evaluated there)
    fit_rho_a = fit.amplitude_a / math.sqrt(s / T)
    fit_rho_e = fit.amplitude_e / math.sqrt(s / T)
    rho = math.hypot(fit_rho_a, fit_rho_e)
    assert fit.sigma_frequency == pytest.approx(math.sqrt(3) / (math.pi * T * rho), rel=0.03)
    assert fit.sigma_amplitude_a == pytest.approx(math.sqrt(s / T), rel=0.03)
    assert fit.sigma_amplitude_e == pytest.approx(math.sqrt(s / T), rel=0.03)
    assert fit.sigma_phase_a == pytest.approx(math.sqrt(1 / fit_rho_a**2 + 3 / rho**2), rel=0.03)
    assert fit.sigma_phase_e == pytest.approx(math.sqrt(1 / fit_rho_e**2 + 3 / rho**2), rel=0.03)
    assert fit.snr == pytest.approx(rho, rel=0.03)
    assert fit.dof == 2 * 2 * 33 - 5


def _check_pulls(pulls: np.ndarray) -> None:
    # 100 pulls: P(|z| > 3) = 0.27 % each, so allow 2 beyond 3 sigma but none beyond 4.5
    assert np.sum(np.abs(pulls) > 3) <= 2, pulls
    assert np.all(np.abs(pulls) < 4.5), pulls
    spread = pulls.std(axis=0)
    assert np.all((spread > 0.6) & (spread < 1.6)), spread


def test_monte_carlo_white_noise_rectangular_window() -> None:
    rng = np.random.default_rng(2)
    s = 1e-40
    amps = (12 * math.sqrt(s / T), 9 * math.sqrt(s / T))
    pulls = []
    for _ in range(20):
        f = (300 + rng.uniform(-0.5, 0.5)) / T
        phases = tuple(rng.uniform(-np.pi, np.pi, 2))
        a, e = _white_trial(rng, s, f, amps, phases)
        fit = fit_sinusoid(a, e, DT, round(f * T) / T, s, s, tukey_alpha=0.0)
        pulls.append(_pulls(fit, f, amps, phases))
    _check_pulls(np.array(pulls))


def test_monte_carlo_coloured_tdi_noise_default_window() -> None:
    """SciRD TDI 2.0 noise (segments cut from longer series), phases referred to t = 0 with the
    segment starting at t0 = 1 day: checks the absolute-time phase convention too."""
    rng = np.random.default_rng(3)
    t0 = 86400.0
    t = t0 + np.arange(N) * DT
    pulls, reduced = [], []
    for _ in range(20):
        f = (400 + rng.uniform(-0.5, 0.5)) / T  # ~4.6 mHz
        s_a, s_e = float(tdi_psd(f, "A")), float(tdi_psd(f, "E"))
        amps = (15 * math.sqrt(s_a / T), 10 * math.sqrt(s_e / T))
        phases = tuple(rng.uniform(-np.pi, np.pi, 2))
        x, y, z = analytic_tdi_noise(2 * N, DT, rng)
        a, e, _ = xyz_to_aet(x[N // 2 : N // 2 + N], y[N // 2 : N // 2 + N], z[N // 2 : N // 2 + N])
        a = a + amps[0] * np.cos(2 * np.pi * f * t + phases[0])
        e = e + amps[1] * np.cos(2 * np.pi * f * t + phases[1])
        f_search = (round(2 * f * T) / 2) / T  # a zero-padded search bin
        fit = fit_sinusoid(
            a, e, DT, f_search, tdi_psd(f_search, "A"), tdi_psd(f_search, "E"), t0=t0
        )
        pulls.append(_pulls(fit, f, amps, phases))
        reduced.append(fit.reduced_chi2)
    _check_pulls(np.array(pulls))
    # chi2 / dof of 127 unit-variance residuals: 1 +- 0.13 per trial
    assert np.mean(reduced) == pytest.approx(1.0, abs=0.1)


def test_masked_samples_are_ignored() -> None:
    s = 1e-40
    f = 250.2 / T
    amps = (20 * math.sqrt(s / T), 20 * math.sqrt(s / T))
    a, e = _white_trial(np.random.default_rng(4), s, f, amps, (0.1, 0.2))
    a[5000:6000] = np.nan  # a gap
    e[5000:6000] = 1e3  # garbage, masked explicitly
    mask = np.ones(N, dtype=bool)
    mask[5000:6000] = False
    fit = fit_sinusoid(a, e, DT, 250 / T, s, s, mask=mask)
    assert abs(fit.frequency - f) < 4 * fit.sigma_frequency
    assert abs(fit.amplitude_e - amps[1]) < 4 * fit.sigma_amplitude_e


def test_refuses_non_positive_psd() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_sinusoid(np.zeros(100), np.zeros(100), DT, 1e-3, 0.0, 1.0)
