"""Frequency-domain whitening: dividing a spectrum by the noise amplitude spectral density.

Whitening puts every frequency bin on the same footing (unit noise), which is what makes the
periodogram of :mod:`lisa_science.search` chi-square distributed (e.g. Allen et al. 2012, PRD
85 122006, for the conventions of one-sided PSDs and windowed DFTs).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def interpolate_psd(f: ArrayLike, f_psd: ArrayLike, psd: ArrayLike) -> NDArray[np.float64]:
    """PSD linearly interpolated at ``f``; NaN outside the tabulated range or where the PSD
    is not positive (such bins cannot be whitened and must not be searched)."""
    f = np.asarray(f, dtype=np.float64)
    f_psd = np.asarray(f_psd, dtype=np.float64)
    psd = np.asarray(psd, dtype=np.float64)
    out = np.interp(f, f_psd, psd, left=np.nan, right=np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(out > 0, out, np.nan)


def windowed_rfft(
    x: ArrayLike, window: ArrayLike, n_fft: int | None = None
) -> NDArray[np.complex128]:
    """rfft of window * (x - weighted mean), zero-padded to ``n_fft``.

    Removing the window-weighted mean keeps a constant offset of the data from leaking into the
    lowest frequency bins through the window's sidelobes.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(window, dtype=np.float64)
    usable = w > 0
    mean = np.sum(w[usable] * x[usable]) / np.sum(w[usable]) if usable.any() else 0.0
    xw = np.where(usable, (x - mean) * w, 0.0)
    return np.fft.rfft(xw, n=n_fft)


def whitened_power(
    x: ArrayLike,
    dt: float,
    f_psd: ArrayLike,
    psd: ArrayLike,
    window: ArrayLike,
    pad_factor: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(f, P) with P_k = 4 dt |X_k|^2 / (S(f_k) sum w^2), X = windowed, zero-padded rfft.

    For noise of one-sided PSD S that is locally white over the window's spectral width,
    E|X_k|^2 = S(f_k) sum(w^2) / (2 dt) and Re, Im are independent with equal variance, so P_k
    is chi-square with 2 degrees of freedom (mean 2). A sinusoid of amplitude h adds a
    non-centrality h^2 dt (sum w)^2 / (S sum w^2) ~ h^2 T / S (= its optimal SNR^2) at its
    frequency. NaN where the PSD is unknown (see :func:`interpolate_psd`).
    """
    w = np.asarray(window, dtype=np.float64)
    n_fft = int(pad_factor) * w.size
    spec = windowed_rfft(x, w, n_fft)
    f = np.fft.rfftfreq(n_fft, dt)
    s = interpolate_psd(f, f_psd, psd)
    return f, 4.0 * dt * np.abs(spec) ** 2 / (s * np.sum(w**2))


def whiten(
    x: ArrayLike,
    dt: float,
    f_psd: ArrayLike,
    psd: ArrayLike,
    window: ArrayLike | None = None,
    fmin: float = 0.0,
    fmax: float = np.inf,
) -> NDArray[np.float64]:
    """Whitened time series: noise of PSD ``psd`` becomes white with PSD 2 dt in [fmin, fmax].

    Each rfft bin is divided by sqrt(S(f) / (2 dt)) (2 dt is the white level of a unit-variance
    series sampled at dt, so the output has variance 2 dt (fmax - fmin), 1 for the full band).
    Bins outside [fmin, fmax] or with unknown PSD (including DC when S(0) = 0) are zeroed: near
    the TDI 2.0 nulls (k c / (4 L), 30 mHz, 60 mHz, ...) S -> 0 and whitening would amplify
    leakage and any model error, so a band below 25 mHz is the usual choice. ``window``
    (default: none) multiplies the data first to limit leakage from the segment ends.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.ones_like(x) if window is None else np.asarray(window, dtype=np.float64)
    spec = windowed_rfft(x, w)
    f = np.fft.rfftfreq(x.size, dt)
    asd = np.sqrt(interpolate_psd(f, f_psd, psd) / (2.0 * dt))
    keep = np.isfinite(asd) & (f >= fmin) & (f <= fmax)
    white = np.where(keep, spec / np.where(keep, asd, 1.0), 0.0)
    return np.fft.irfft(white, n=x.size)
