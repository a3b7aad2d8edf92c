"""Parameter estimation of a monochromatic source found by the search: a common-frequency
sinusoid in A and E, fitted by least squares in a narrow band around the candidate frequency.

Why a narrow band: the TDI noise is strongly coloured, but within a few bins of f0 it is
locally white with PSD S(f0), i.e. like white noise of variance sigma^2 = S(f0) / (2 dt). Fitting
the windowed DFT bins |f - f0| <= half_band_bins / T, each normalised to unit noise variance, is
the least-squares fit of the band-passed data with that sigma (Parseval), and the Fisher matrix
J^T J of the normalised residuals gives the 1-sigma uncertainties (Cramer-Rao bound; for white
noise and a rectangular window it reproduces Rife & Boorstyn 1974, IEEE Trans. Inf. Theory 20
591: sigma_f = sqrt(3) / (pi T rho), sigma_A = A / rho).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar

from .search import search_window
from .whiten import windowed_rfft

N_PARAMS = 5


@dataclass(frozen=True)
class SinusoidFit:
    """Best fit of h_c(t) = amplitude_c cos(2 pi frequency t + phase_c), c = A, E, with 1-sigma
    (Fisher) uncertainties. Phases refer to absolute time t = 0 (t = t0 + i dt), so fits of
    different segments are comparable; their uncertainty includes 2 pi t0 sigma_frequency."""

    frequency: float
    amplitude_a: float
    amplitude_e: float
    phase_a: float
    phase_e: float
    snr: float
    """Optimal A+E SNR of the fitted signal given the window and the usable data."""
    sigma_frequency: float
    sigma_amplitude_a: float
    sigma_amplitude_e: float
    sigma_phase_a: float
    sigma_phase_e: float
    chi2: float
    dof: int

    @property
    def reduced_chi2(self) -> float:
        """chi2 / dof: ~1 if the noise level near f0 matches the PSD and the model fits."""
        return self.chi2 / self.dof


class _Problem:
    """Normalised DFT bins of A and E near f0 and the sinusoid model evaluated on them.

    Amplitudes are scaled by u_c = sqrt(S_c / (dt sum w^2)) (~ their 1-sigma error sqrt(S/T)) so
    all parameters are of order the SNR or 1: p = [delta, c_a, s_a, c_e, s_e] with
    f = f0 + delta / T and h_c = u_c (c_c cos 2 pi f tau + s_c sin 2 pi f tau), tau = i dt.
    """

    def __init__(
        self,
        channels: tuple[NDArray[np.float64], NDArray[np.float64]],
        psds: tuple[float, float],
        dt: float,
        f0: float,
        window: NDArray[np.float64],
        half_band_bins: int,
    ) -> None:
        n = window.size
        self.dt, self.f0, self.window = dt, f0, window
        self.duration = n * dt
        self.tau = np.arange(n) * dt
        k0 = round(f0 * self.duration)
        lo, hi = max(k0 - half_band_bins, 1), min(k0 + half_band_bins, (n - 1) // 2)
        if hi <= lo:
            raise ValueError(f"f0={f0} Hz leaves no usable bins between DC and Nyquist")
        self.band = slice(lo, hi + 1)
        sum_w2 = float(np.sum(window**2))
        # residual scale sqrt(4 dt / (S sum w^2)) gives unit-variance Re, Im noise per bin
        self.data = [
            np.sqrt(4 * dt / (s * sum_w2)) * windowed_rfft(x, window)[self.band]
            for x, s in zip(channels, psds, strict=True)
        ]
        self.model_gain = 2.0 / sum_w2
        self.amp_unit = [np.sqrt(s / (dt * sum_w2)) for s in psds]

    def _dft(self, series: NDArray[np.float64]) -> NDArray[np.complex128]:
        return self.model_gain * windowed_rfft(series, self.window)[self.band]

    def basis(self, delta: float) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        phase = 2 * np.pi * (self.f0 + delta / self.duration) * self.tau
        return self._dft(np.cos(phase)), self._dft(np.sin(phase))

    @staticmethod
    def _ri(z: NDArray[np.complex128]) -> NDArray[np.float64]:
        return np.concatenate([z.real, z.imag])

    def residuals(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        cos_b, sin_b = self.basis(p[0])
        return np.concatenate(
            [
                self._ri(d - (p[1 + 2 * i] * cos_b + p[2 + 2 * i] * sin_b))
                for i, d in enumerate(self.data)
            ]
        )

    def jacobian(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        cos_b, sin_b = self.basis(p[0])
        phase = 2 * np.pi * (self.f0 + p[0] / self.duration) * self.tau
        ramp = 2 * np.pi * self.tau / self.duration  # d(phase)/d(delta)
        dcos = self._dft(-ramp * np.sin(phase))
        dsin = self._dft(ramp * np.cos(phase))
        m = len(self._ri(cos_b))
        jac = np.zeros((2 * m, N_PARAMS))
        for i in range(2):
            rows = slice(i * m, (i + 1) * m)
            c, s = p[1 + 2 * i], p[2 + 2 * i]
            jac[rows, 0] = -self._ri(c * dcos + s * dsin)
            jac[rows, 1 + 2 * i] = -self._ri(cos_b)
            jac[rows, 2 + 2 * i] = -self._ri(sin_b)
        return jac

    def linear_start(self, delta: float) -> tuple[float, NDArray[np.float64]]:
        """Best (c, s) per channel at fixed frequency (linear least squares) and its chi2."""
        cos_b, sin_b = self.basis(delta)
        design = np.column_stack([self._ri(cos_b), self._ri(sin_b)])
        p = [delta]
        chi2 = 0.0
        for d in self.data:
            coef, *_ = np.linalg.lstsq(design, self._ri(d), rcond=None)
            chi2 += float(np.sum((self._ri(d) - design @ coef) ** 2))
            p.extend(coef)
        return chi2, np.asarray(p)


def fit_sinusoid(
    a: ArrayLike,
    e: ArrayLike,
    dt: float,
    f0: float,
    psd_a_f0: float,
    psd_e_f0: float,
    mask: ArrayLike | None = None,
    t0: float = 0.0,
    tukey_alpha: float = 0.1,
    half_band_bins: int = 16,
) -> SinusoidFit:
    """Least-squares fit of a sinusoid with one frequency and a free amplitude and phase per
    channel, near the search frequency f0, by variable projection (amplitudes in closed form,
    frequency by a grid then ``scipy.optimize.minimize_scalar``).

    The frequency is searched within one bin of the best point of a grid over f0 +- 1 / T, and
    bounded to f0 +- half_band_bins / (2 T). The window
    (Tukey, times tapered gap weights as in the search) keeps leakage of the strong
    high-frequency noise out of the band; uncertainties are the square roots of the diagonal of
    (J^T J)^-1, J the Jacobian of the unit-variance residuals, propagated to amplitude/phase.
    """
    a = np.asarray(a, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    usable = np.isfinite(a) & np.isfinite(e)
    if mask is not None:
        usable &= np.asarray(mask, dtype=bool)
    if not psd_a_f0 > 0 or not psd_e_f0 > 0:
        raise ValueError("the PSDs at f0 must be positive")
    window = search_window(usable, dt, tukey_alpha)
    prob = _Problem(
        (np.where(usable, a, 0.0), np.where(usable, e, 0.0)),
        (psd_a_f0, psd_e_f0),
        dt,
        f0,
        window,
        half_band_bins,
    )
    # Variable projection: at a fixed frequency the four amplitudes are linear, so they are
    # solved in closed form (``linear_start``) and only the frequency offset is searched, in one
    # dimension: a grid over f0 +- 1 / T (the search localises a peak to a fraction of a bin),
    # then Brent's method around the best grid point. The optimum is the full least-squares one;
    # the Jacobian is evaluated once, there, for the Fisher covariance.
    grid = np.linspace(-1.0, 1.0, 9)  # a quarter bin apart: finer than the main lobe
    chi2s = [prob.linear_start(delta)[0] for delta in grid]
    best = int(np.argmin(chi2s))
    limit = half_band_bins / 2
    step = grid[1] - grid[0]
    lo, hi = max(grid[best] - step, -limit), min(grid[best] + step, limit)
    found = minimize_scalar(
        lambda delta: prob.linear_start(delta)[0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-7},
    )
    delta = float(found.x) if found.fun <= chi2s[best] else float(grid[best])
    chi2, p = prob.linear_start(delta)
    jac = prob.jacobian(p)
    cov_p = np.linalg.inv(jac.T @ jac)
    return _to_physical(prob, p, cov_p, t0, chi2, jac.shape[0] - N_PARAMS)


def _to_physical(
    prob: _Problem,
    p: NDArray[np.float64],
    cov_p: NDArray[np.float64],
    t0: float,
    chi2: float,
    dof: int,
) -> SinusoidFit:
    """Map [delta, c_a, s_a, c_e, s_e] to (f, A_a, phi_a, A_e, phi_e) and propagate covariance."""
    frequency = prob.f0 + p[0] / prob.duration
    grad = np.zeros((N_PARAMS, N_PARAMS))
    grad[0, 0] = 1.0 / prob.duration
    values = [frequency]
    snr2 = 0.0
    for i in range(2):
        c, s, u = p[1 + 2 * i], p[2 + 2 * i], prob.amp_unit[i]
        rho2 = c * c + s * s
        amp = u * np.sqrt(rho2)
        # h = A cos(2 pi f tau + phi_tau), c = A cos(phi)/u, s = -A sin(phi)/u; tau = t - t0
        phase = np.angle(np.exp(1j * (np.arctan2(-s, c) - 2 * np.pi * frequency * t0)))
        values += [amp, phase]
        row_a, row_p = 1 + 2 * i, 2 + 2 * i
        grad[row_a, row_a], grad[row_a, row_p] = u * c / np.sqrt(rho2), u * s / np.sqrt(rho2)
        grad[row_p, row_a], grad[row_p, row_p] = s / rho2, -c / rho2
        grad[row_p, 0] = -2 * np.pi * t0 / prob.duration
        cos_b, sin_b = prob.basis(p[0])
        snr2 += float(np.sum(np.abs(c * cos_b + s * sin_b) ** 2))
    sigma = np.sqrt(np.diag(grad @ cov_p @ grad.T))
    return SinusoidFit(
        frequency=float(values[0]),
        amplitude_a=float(values[1]),
        amplitude_e=float(values[3]),
        phase_a=float(values[2]),
        phase_e=float(values[4]),
        snr=float(np.sqrt(snr2)),
        sigma_frequency=float(sigma[0]),
        sigma_amplitude_a=float(sigma[1]),
        sigma_amplitude_e=float(sigma[3]),
        sigma_phase_a=float(sigma[2]),
        sigma_phase_e=float(sigma[4]),
        chi2=chi2,
        dof=int(dof),
    )
