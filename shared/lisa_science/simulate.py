"""Fast Gaussian noise with the analytic TDI spectra, for tests, benchmarks and long runs.

The LISA Consortium's instrument simulator costs minutes per simulated day; noise coloured in
the frequency domain by the SciRD PSD costs well under a second per simulated year and is the
stationary Gaussian reference the search statistics are calibrated against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from .foreground import confusion_tdi_psd
from .noise import tdi_psd
from .segments import aet_to_xyz

PsdFunction = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def coloured_noise(
    n: int, dt: float, psd_fn: PsdFunction, rng: np.random.Generator
) -> NDArray[np.float64]:
    """n samples of stationary Gaussian noise with one-sided PSD ``psd_fn(f)``.

    Each rfft bin k (numpy's unnormalised convention) gets independent Gaussian real and
    imaginary parts with E|X_k|^2 = S(f_k) n / (2 dt), which makes the periodogram
    2 dt |X_k|^2 / n unbiased; the Nyquist bin (even n) is real with E X^2 = S n / (2 dt), and DC
    is set to 0. The series is periodic (circular): analyses that want realistic edge effects
    should simulate more than they use and cut.
    """
    if n < 2:
        raise ValueError(f"need at least 2 samples, got {n}")
    f = np.fft.rfftfreq(n, dt)
    psd = np.asarray(psd_fn(f), dtype=np.float64)
    psd = np.where(np.isfinite(psd) & (f > 0), psd, 0.0)
    sigma = np.sqrt(psd * n / (4.0 * dt))
    spec = sigma * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
    if n % 2 == 0:
        spec[-1] = np.sqrt(2.0) * sigma[-1] * rng.standard_normal()
    return np.fft.irfft(spec, n=n)


def analytic_tdi_noise(
    n: int, dt: float, rng: np.random.Generator, generation: str = "2.0"
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(X, Y, Z) noise with the SciRD TDI spectra and cross-spectra.

    A, E, T are independent (their noise is uncorrelated for equal arms) and coloured by S_A,
    S_E, S_T; rotating them back to X, Y, Z gives S_X = (2 S_A + S_T) / 3 and
    CSD_XY = (S_T - S_A) / 3, the model's Michelson spectra (Robson+ 2019 / LDC).
    """
    a, e, t = (
        coloured_noise(n, dt, lambda f, ch=ch: tdi_psd(f, ch, generation), rng)
        for ch in ("A", "E", "T")
    )
    return aet_to_xyz(a, e, t)


def foreground_tdi_noise(
    n: int, dt: float, rng: np.random.Generator, observation_years: float, generation: str = "2.0"
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(X, Y, Z) of the Galactic confusion foreground as stationary Gaussian noise: A and E
    coloured by its PSD for ``observation_years`` (:mod:`lisa_science.foreground`, Robson,
    Cornish & Liu 2019 eq. 14), T zero. Added to instrument noise, it makes the total noise."""
    a, e = (
        coloured_noise(
            n, dt, lambda f, ch=ch: confusion_tdi_psd(f, ch, observation_years, generation), rng
        )
        for ch in ("A", "E")
    )
    return aet_to_xyz(a, e, np.zeros(n))
