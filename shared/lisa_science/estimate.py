"""Parameter estimation of a monochromatic source found by the search: a common-frequency
sinusoid in A and E, fitted by least squares in a narrow band around the candidate frequency.

Why a narrow band: the TDI noise is strongly coloured, but within a few bins of f0 it is
locally white with PSD S(f0), i.e. like white noise of variance sigma^2 = S(f0) / (2 dt). Fitting
the windowed DFT bins |f - f0| <= half_band_bins / T, each normalised to unit noise variance, is
the least-squares fit of the band-passed data with that sigma (Parseval), and the Fisher matrix
J^T J of the normalised residuals gives the 1-sigma uncertainties (Cramer-Rao bound; for white
noise and a rectangular window it reproduces Rife & Boorstyn 1974, IEEE Trans. Inf. Theory 20
591: sigma_f = sqrt(3) / (pi T rho), sigma_A = A / rho).

Why no FFT per trial frequency: the fit tries a few dozen frequencies per candidate, and an
FFT of the whole segment per trial (with the cos and sin series built at full length) made it
most of the pipeline's time. The model's band bins are values of the window's DTFT,
D(nu) = sum_j w_j exp(-2 pi i nu j / n), at nu = k -+ f T. Writing f T as an integer plus a
shift |e| <= 1/2, exp(2 pi i e j / n) is expanded in Chebyshev polynomials of the centred time
(Jacobi-Anger: exp(i z x) = sum_p eps_p i^p J_p(z) T_p(x), |x| <= 1), so D at any frequency is
a sum of ~20 terms over the rffts of w T_p, computed once per segment (:class:`BandDFT`). The
series is cut where |J_p(pi / 2)| < 1e-18, so the bins agree with a direct FFT to rounding;
every candidate of a segment shares the window, the data's spectra and these rffts
(:class:`SinusoidFitter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import jv, jvp

from .search import search_window
from .whiten import windowed_rfft

N_PARAMS = 5
GRID = np.linspace(-1.0, 1.0, 9)
"""Frequency offsets (bins) tried before Brent's method: a quarter bin apart, finer than the
main lobe; the search localises a peak to a fraction of a bin."""
TRUNCATION = 1e-18
"""|J_p(z)| below which the Chebyshev series of the shift is cut (relative to the window sum)."""


def chebyshev_order(z_max: float) -> int:
    """Terms of exp(i z x) = sum_p eps_p i^p J_p(z) T_p(x) kept for |z| <= z_max: up to one
    past the first p > z_max where |J_p(z_max)| < ``TRUNCATION`` (for p > z, J_p(z) falls faster
    than geometrically with p and grows with z, so the rest of the series is smaller still)."""
    p = int(np.ceil(abs(z_max))) + 1
    while abs(jv(p, z_max)) >= TRUNCATION:
        p += 1
    return p + 1


class BandDFT:
    """D(m, eta) = sum_j w_j exp(-2 pi i (m - eta) j / n) for integer bins m and real shifts
    eta: the window's DTFT at m - eta, i.e. bin m of the DFT of w_j exp(2 pi i eta j / n).

    D depends on m - eta only, so eta is first reduced to r + e, r = round(eta), |e| <= 1/2,
    and D(m, eta) = D(m - r, e). With j / n = c + x_j / 2, c = (n - 1) / (2 n), x_j in [-1, 1]:
    exp(2 pi i e j / n) = exp(2 pi i e c) sum_p eps_p i^p J_p(pi e) T_p(x_j), so
    D(m - r, e) = exp(2 pi i e c) sum_p eps_p i^p J_p(pi e) R_p(m - r), R_p = rfft(w T_p(x)):
    ``chebyshev_order(pi / 2)`` rffts made once serve every bin and shift.
    """

    def __init__(self, window: NDArray[np.float64]) -> None:
        n = window.size
        self.n = n
        self.centre = (n - 1) / (2 * n)
        order = chebyshev_order(np.pi / 2)
        x = (2.0 * np.arange(n) - (n - 1)) / n
        rows = np.empty((order, n))
        rows[0] = window
        rows[1] = window * x
        for p in range(2, order):  # T_p = 2 x T_(p-1) - T_(p-2), times w
            np.multiply(rows[p - 1], 2 * x, out=rows[p])
            rows[p] -= rows[p - 2]
        self.spectra = np.fft.rfft(rows, axis=-1)  # (order, n // 2 + 1)
        self.orders = np.arange(order)
        self.weights = np.where(self.orders == 0, 1.0, 2.0) * (1j**self.orders)
        self.parity = 1.0 - 2.0 * (self.orders % 2)  # J_p(-z) = (-1)^p J_p(z)

    def columns(self, bins: NDArray[np.int_]) -> NDArray[np.complex128]:
        """R_p(m) for every p at integer bins m (any sign), folded from the rfft: the window
        is real, so R_p(-m) = conj(R_p(m)) and R_p(m + n) = R_p(m)."""
        m = np.mod(np.asarray(bins), self.n)
        upper = m > self.n // 2
        cols = self.spectra[:, np.where(upper, self.n - m, m)]
        return np.where(upper, np.conj(cols), cols)

    def values(
        self, bins: NDArray[np.int_], eta: ArrayLike, derivative: bool = False
    ) -> NDArray[np.complex128]:
        """D(m, eta) (or dD / d eta) at the integer ``bins`` for each shift: (K, M)."""
        return self.evaluate([(np.asarray(bins), 1)], eta, derivative)[0]

    def evaluate(
        self,
        groups: list[tuple[NDArray[np.int_], int]],
        eta: ArrayLike,
        derivative: bool = False,
        cache: dict | None = None,
    ) -> list[NDArray[np.complex128]]:
        """D(m, s eta) (or its derivative in eta) for each group (bins m, sign s = +-1), sharing
        one Bessel evaluation: J_p(-z) = (-1)^p J_p(z). ``cache`` keeps the gathered columns
        per group and integer shift (a fit's trial shifts stay within a bin or two)."""
        eta = np.atleast_1d(np.asarray(eta, dtype=np.float64))
        whole = np.round(eta)
        frac = eta - whole
        z = np.pi * frac[:, None]
        bessel = jv(self.orders, z)
        slope = jvp(self.orders, z) if derivative else None
        parity = self.parity
        out = []
        for g, (bins, sign) in enumerate(groups):
            coef = self.weights * (bessel if sign > 0 else parity * bessel)
            if derivative:
                dcoef = self.weights * np.pi * (slope if sign > 0 else -parity * slope)
                coef = sign * (2j * np.pi * self.centre * coef + dcoef)
            values = np.empty((eta.size, bins.size), dtype=np.complex128)
            for r in np.unique(whole):
                shift = int(sign * r)
                key = (g, shift)
                cols = None if cache is None else cache.get(key)
                if cols is None:
                    cols = self.columns(bins - shift)
                    if cache is not None:
                        cache[key] = cols
                rows = whole == r
                values[rows] = coef[rows] @ cols
            out.append(np.exp(2j * np.pi * self.centre * sign * frac)[:, None] * values)
        return out

    def pair_values(
        self,
        bins_plus: NDArray[np.int_],
        bins_minus: NDArray[np.int_],
        eta: ArrayLike,
        cache: dict,
    ) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """(D(bins_plus, eta), D(bins_minus, -eta)): :meth:`evaluate` of the two groups with
        one matrix product, the hot path of a fit (the minus group's (-1)^p is folded into its
        cached columns, its phase is the conjugate)."""
        eta = np.atleast_1d(np.asarray(eta, dtype=np.float64))
        whole = np.round(eta)
        frac = eta - whole
        coef = self.weights * jv(self.orders, np.pi * frac[:, None])
        values = np.empty((eta.size, bins_plus.size + bins_minus.size), dtype=np.complex128)
        for r in np.unique(whole):
            shift = int(r)
            cols = cache.get(shift)
            if cols is None:
                cols = np.concatenate(
                    [
                        self.columns(bins_plus - shift),
                        self.parity[:, None] * self.columns(bins_minus + shift),
                    ],
                    axis=1,
                )
                cache[shift] = cols
            if eta.size == 1:
                values = coef @ cols
            else:
                rows = whole == r
                values[rows] = coef[rows] @ cols
        phase = np.exp(2j * np.pi * self.centre * frac)[:, None]
        m = bins_plus.size
        return phase * values[:, :m], np.conj(phase) * values[:, m:]


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
    The model bins are those of ``windowed_rfft`` of the cos and sin series (window-weighted
    mean removed), from the segment's :class:`BandDFT`.
    """

    def __init__(
        self,
        fitter: SinusoidFitter,
        psds: tuple[float, float],
        f0: float,
        half_band_bins: int,
    ) -> None:
        n = fitter.window.size
        dt = fitter.dt
        self.f0, self.dft = f0, fitter.dft
        self.duration = n * dt
        k0 = round(f0 * self.duration)
        lo, hi = max(k0 - half_band_bins, 1), min(k0 + half_band_bins, (n - 1) // 2)
        if hi <= lo:
            raise ValueError(f"f0={f0} Hz leaves no usable bins between DC and Nyquist")
        band = np.arange(lo, hi + 1)
        sum_w2 = fitter.sum_w2
        # residual scale sqrt(4 dt / (S sum w^2)) gives unit-variance Re, Im noise per bin
        self.data = [
            np.sqrt(4 * dt / (s * sum_w2)) * spec[lo : hi + 1]
            for spec, s in zip(fitter.spectra, psds, strict=True)
        ]
        self.data_ri = np.stack([self._ri(d) for d in self.data], axis=1)  # (2 bins, channel)
        self.model_gain = 2.0 / sum_w2
        self.amp_unit = [np.sqrt(s / (dt * sum_w2)) for s in psds]
        # f T = k0 + eta, eta = offset + delta: e^{+i phase} at bin k is D(k - k0, eta),
        # e^{-i phase} is D(k + k0, -eta)
        self.offset = f0 * self.duration - k0
        self.sum_w = fitter.sum_w
        self.bins_plus = band - k0
        self.bins_minus = np.append(band + k0, k0)  # and the weighted sum's bin, also at -eta
        self.window_bins = fitter.window_spectrum[lo : hi + 1]
        self._columns: dict = {}

    def _parts(self, delta: ArrayLike, derivative: bool):
        eta = self.offset + np.atleast_1d(np.asarray(delta, dtype=np.float64))
        if derivative:
            plus, minus = self.dft.evaluate([(self.bins_plus, 1), (self.bins_minus, -1)], eta, True)
        else:
            plus, minus = self.dft.pair_values(self.bins_plus, self.bins_minus, eta, self._columns)
        # sum_j w_j e^{+i phase_j} = conj(D(k0, -eta)) (w real)
        return plus, minus[:, :-1], np.conj(minus[:, -1])

    def _combine(self, plus, minus, total):
        mean_cos = (total.real / self.sum_w)[:, None]
        mean_sin = (total.imag / self.sum_w)[:, None]
        cos_b = self.model_gain * (0.5 * (plus + minus) - mean_cos * self.window_bins)
        sin_b = self.model_gain * (-0.5j * (plus - minus) - mean_sin * self.window_bins)
        return cos_b, sin_b

    def bases(self, delta: ArrayLike) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """The cos and sin model bins at each offset: two (K, M) arrays."""
        return self._combine(*self._parts(delta, derivative=False))

    def basis(self, delta: float) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        cos_b, sin_b = self.bases(delta)
        return cos_b[0], sin_b[0]

    def basis_derivative(
        self, delta: float
    ) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """d/d delta of :meth:`basis` (the mean removal is linear, so it carries over)."""
        plus, minus, total = self._parts(delta, derivative=True)
        cos_d, sin_d = self._combine(plus, minus, total)
        return cos_d[0], sin_d[0]

    @staticmethod
    def _ri(z: NDArray[np.complex128]) -> NDArray[np.float64]:
        return np.concatenate([z.real, z.imag], axis=-1)

    def jacobian(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        cos_b, sin_b = self.basis(p[0])
        dcos, dsin = self.basis_derivative(p[0])
        m = len(self._ri(cos_b))
        jac = np.zeros((2 * m, N_PARAMS))
        for i in range(2):
            rows = slice(i * m, (i + 1) * m)
            c, s = p[1 + 2 * i], p[2 + 2 * i]
            jac[rows, 0] = -self._ri(c * dcos + s * dsin)
            jac[rows, 1 + 2 * i] = -self._ri(cos_b)
            jac[rows, 2 + 2 * i] = -self._ri(sin_b)
        return jac

    def linear_fits(self, delta: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Best (c, s) per channel at each fixed offset (linear least squares by the 2 x 2
        normal equations, both channels at once) and the chi2: (K,) chi2, (K, 5) parameters."""
        delta = np.atleast_1d(np.asarray(delta, dtype=np.float64))
        cos_b, sin_b = self.bases(delta)
        design = np.stack(  # (K, 2 bins, [cos, sin]): real and imaginary parts as rows
            [
                np.concatenate([cos_b.real, cos_b.imag], axis=1),
                np.concatenate([sin_b.real, sin_b.imag], axis=1),
            ],
            axis=2,
        )
        normal = np.swapaxes(design, 1, 2) @ design  # (K, 2, 2)
        coef = np.linalg.solve(normal, np.swapaxes(design, 1, 2) @ self.data_ri)  # (K, 2, ch)
        # the residuals themselves, not |d|^2 - projection: no cancellation at high SNR
        resid = self.data_ri - design @ coef
        chi2 = np.einsum("kmc,kmc->k", resid, resid)
        params = np.column_stack(
            [delta, coef[:, 0, 0], coef[:, 1, 0], coef[:, 0, 1], coef[:, 1, 1]]
        )
        return chi2, params

    def linear_start(self, delta: float) -> tuple[float, NDArray[np.float64]]:
        """Best (c, s) per channel at one fixed offset and its chi2."""
        chi2, params = self.linear_fits(delta)
        return float(chi2[0]), params[0]


class SinusoidFitter:
    """What every candidate of one segment shares: the window (Tukey times tapered gap weights,
    as in the search), the data's windowed spectra and the :class:`BandDFT` of the window.
    :meth:`fit` then costs a few dozen band-sized sums per candidate instead of an FFT per
    trial frequency."""

    def __init__(
        self,
        a: ArrayLike,
        e: ArrayLike,
        dt: float,
        mask: ArrayLike | None = None,
        t0: float = 0.0,
        tukey_alpha: float = 0.1,
    ) -> None:
        a = np.asarray(a, dtype=np.float64)
        e = np.asarray(e, dtype=np.float64)
        usable = np.isfinite(a) & np.isfinite(e)
        if mask is not None:
            usable &= np.asarray(mask, dtype=bool)
        self.dt, self.t0 = dt, t0
        self.window = search_window(usable, dt, tukey_alpha)
        self.sum_w = float(np.sum(self.window))
        self.sum_w2 = float(np.sum(self.window**2))
        self.spectra = [windowed_rfft(np.where(usable, x, 0.0), self.window) for x in (a, e)]
        self.window_spectrum = np.fft.rfft(self.window)
        self.dft = BandDFT(self.window)

    def fit(
        self, f0: float, psd_a_f0: float, psd_e_f0: float, half_band_bins: int = 16
    ) -> SinusoidFit:
        """Least-squares fit of a sinusoid with one frequency and a free amplitude and phase per
        channel, near the search frequency f0, by variable projection (amplitudes in closed
        form, frequency by a grid then ``scipy.optimize.minimize_scalar``).

        The frequency is searched within one bin of the best point of a grid over f0 +- 1 / T,
        and bounded to f0 +- half_band_bins / (2 T). Uncertainties are the square roots of the
        diagonal of (J^T J)^-1, J the Jacobian of the unit-variance residuals, propagated to
        amplitude/phase.
        """
        if not psd_a_f0 > 0 or not psd_e_f0 > 0:
            raise ValueError("the PSDs at f0 must be positive")
        prob = _Problem(self, (psd_a_f0, psd_e_f0), f0, half_band_bins)
        # Variable projection: at a fixed frequency the four amplitudes are linear, so they are
        # solved in closed form and only the frequency offset is searched, in one dimension:
        # the grid (all its points at once), then Brent's method around the best grid point.
        # The optimum is the full least-squares one; the Jacobian is evaluated once, there,
        # for the Fisher covariance.
        chi2s, _ = prob.linear_fits(GRID)
        best = int(np.argmin(chi2s))
        limit = half_band_bins / 2
        step = GRID[1] - GRID[0]
        lo, hi = max(GRID[best] - step, -limit), min(GRID[best] + step, limit)
        found = minimize_scalar(
            lambda delta: prob.linear_start(delta)[0],
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-7},
        )
        delta = float(found.x) if found.fun <= chi2s[best] else float(GRID[best])
        chi2, p = prob.linear_start(delta)
        jac = prob.jacobian(p)
        cov_p = np.linalg.inv(jac.T @ jac)
        return _to_physical(prob, p, cov_p, self.t0, chi2, jac.shape[0] - N_PARAMS)


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
    """One candidate: :meth:`SinusoidFitter.fit` on a fitter made for it (several candidates
    of one segment should share a :class:`SinusoidFitter`)."""
    if not psd_a_f0 > 0 or not psd_e_f0 > 0:
        raise ValueError("the PSDs at f0 must be positive")
    fitter = SinusoidFitter(a, e, dt, mask=mask, t0=t0, tukey_alpha=tukey_alpha)
    return fitter.fit(f0, psd_a_f0, psd_e_f0, half_band_bins)


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
    cos_b, sin_b = prob.basis(p[0])
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
