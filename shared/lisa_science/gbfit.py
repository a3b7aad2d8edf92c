"""Coherent fit of one Galactic binary over many segments: physical parameters with Fisher
uncertainties.

The likelihood is that of :mod:`lisa_science.estimate`, extended across segments: per segment
and channel (A, E), the windowed DFT bins within ``half_band_bins`` of the source, each
normalised to unit noise (``sqrt(4 dt / (S(f0) sum w^2))``, S the segment's noise PSD at the
source) and decorrelated (the window's bin-to-bin correlation, whitened by its Cholesky
factor), and the model of :mod:`lisa_science.gbresponse` put through the same window and DFT.
Segments are independent (the noise PSD is estimated per segment); the phase is coherent
across them because the model is one function of absolute time.

Speed: the model's slow complex amplitude is sampled on nodes ``node_s`` apart and linearly
interpolated; the windowed DFT of the interpolant is a fixed linear map of the node values
(precomputed per segment), so a model evaluation costs O(nodes x bins), not O(samples). The
interpolation error is ~(2 pi df node_s)^2 / 8 < 1e-4 for |f - carrier| < 1 bin.

Parameters: f [Hz] and fdot [Hz/s] at TCB t = 0, amplitude A, ecliptic latitude/longitude,
inclination, polarisation psi (ICRS, lisagwresponse's convention), initial phase phi0 (as
:mod:`lisa_science.binaries`). The signal is linear in the two complex polarisation amplitudes
(P, C) = f(A, i, psi, phi0), so the fit profiles them out by linear least squares (the
F-statistic of Jaranowski, Krolak & Schutz 1998 PRD 58 063001, with LISA's response) and
searches only (f, fdot, sky): a sky grid with a frequency scan (cold start), then Nelder-Mead.
The uncertainties are the Cramer-Rao bound: the inverse Fisher matrix J^T J of the unit-variance
residuals in the eight physical parameters (central finite differences). The data must be the
conditioned A and E (fractional frequency; gaps zeroed and tapered by
:func:`lisa_science.quality.fill_masked`, mask given).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from .binaries import GalacticBinary
from .gbresponse import geometry, physical_from_polarisation, polarisation_amplitudes, tdi_bases
from .quality import gap_weights
from .search import search_window
from .whiten import windowed_rfft

PARAMETERS = (
    "frequency",
    "frequency_derivative",
    "ecliptic_latitude",
    "ecliptic_longitude",
    "amplitude",
    "inclination",
    "polarization",
    "initial_phase",
)
#: The taper :func:`lisa_science.quality.fill_masked` puts next to gaps (condition's default).
FILL_TAPER_SAMPLES = 24
#: G M_sun / c^3 [s]
_T_SUN = 4.925490947e-6
#: Chirp mass setting the width of the fdot prior [M_sun]
PRIOR_CHIRP_MASS_MSUN = 1.0


def fdot_prior_sigma(f: float, chirp_mass_msun: float = PRIOR_CHIRP_MASS_MSUN) -> float:
    """Width of the Gaussian prior on fdot (mean 0): the GR chirp of a binary of chirp mass
    ``chirp_mass_msun`` at f, fdot = (96/5) pi^(8/3) (G Mc / c^3)^(5/3) f^(11/3) (Peters 1964),
    ~7e-17 Hz/s at 2 mHz for 1 M_sun, above every verification binary's.

    Why a prior: over weeks fdot shifts the phase by pi fdot T^2 ~ 1e-3 rad, far below what the
    data resolve, while a free fdot trades with the sky position through the quadratic part of
    the orbital Doppler phase and blows the sky uncertainty up (30 days of AM CVn: sigma of the
    latitude 1.4 rad free, 0.6 rad with the prior). With the prior, sigma_fdot is the prior's
    width until the data measure fdot (a year and more)."""
    return 96 / 5 * math.pi ** (8 / 3) * (chirp_mass_msun * _T_SUN) ** (5 / 3) * f ** (11 / 3)


@dataclass(frozen=True)
class SegmentInput:
    """One conditioned segment: A, E (fractional frequency), usable-sample mask, and the noise
    PSDs of A and E at the source frequency."""

    t0: float
    dt: float
    a: NDArray[np.float64]
    e: NDArray[np.float64]
    psd_a: float
    psd_e: float
    mask: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class RefinedFit:
    """Best-fit parameters, their 1-sigma Fisher uncertainties (NaN where the Fisher matrix
    does not constrain them) and the fit's quality."""

    values: dict[str, float]
    sigmas: dict[str, float]
    snr: float
    """optimal SNR of the fitted signal"""
    chi2: float
    dof: int
    n_segments: int
    covariance: NDArray[np.float64]

    def binary(self, name: str = "") -> GalacticBinary:
        v = self.values
        return GalacticBinary(
            name=name,
            f=v["frequency"],
            fdot=v["frequency_derivative"],
            amplitude=v["amplitude"],
            ecliptic_longitude=v["ecliptic_longitude"],
            ecliptic_latitude=v["ecliptic_latitude"],
            inclination=v["inclination"],
            polarization=v["polarization"],
            initial_phase=v["initial_phase"],
        )


class _Segment:
    """A segment's normalised data bins and the linear map node values -> model bins."""

    def __init__(
        self,
        seg: SegmentInput,
        f_ref: float,
        half_band_bins: int,
        node_s: float,
        tukey_alpha: float,
    ) -> None:
        a = np.asarray(seg.a, dtype=np.float64)
        e = np.asarray(seg.e, dtype=np.float64)
        n = a.size
        if e.size != n or n < 4:
            raise ValueError("A and E must have the same length (>= 4 samples)")
        if not (seg.psd_a > 0 and seg.psd_e > 0):
            raise ValueError("the PSDs at the source frequency must be positive")
        usable = np.isfinite(a) & np.isfinite(e)
        if seg.mask is not None:
            usable &= np.asarray(seg.mask, dtype=bool)
        if not usable.any():
            raise ValueError("segment has no usable sample")
        dt = float(seg.dt)
        duration = n * dt
        window = search_window(usable, dt, tukey_alpha)
        k_c = round(f_ref * duration)
        lo, hi = max(k_c - half_band_bins, 1), min(k_c + half_band_bins, (n - 1) // 2)
        if hi <= lo:
            raise ValueError(f"f={f_ref} Hz leaves no bins between DC and Nyquist")
        bins = np.arange(lo, hi + 1)
        sum_w2 = float(np.sum(window**2))
        self.scale = np.sqrt(4 * dt / (np.array([seg.psd_a, seg.psd_e]) * sum_w2))
        self.window, self.usable, self.band = window, usable, slice(lo, hi + 1)
        # The window correlates neighbouring bins (Tukey 0.1: -0.06 between neighbours, which
        # would understate the sigmas by ~4 %): for noise locally white over the band,
        # E[X_k X_l^*] ~ sum_n w_n^2 e^{-2 pi i (k - l) n / N}; whiten the bins with the inverse
        # Cholesky factor of that (normalised) Toeplitz matrix, data and model alike.
        power = np.fft.fft(window**2)
        lags = bins[:, None] - bins[None, :]
        corr = power[lags % n] / power[0]
        self.whitener = np.linalg.inv(np.linalg.cholesky(corr))  # (nb, nb)
        self.data = self.bins(a, e)  # (2, nb)
        self.carrier = k_c / duration
        # the model gets the data's window and the fill taper next to gaps
        w_model = window * gap_weights(usable, FILL_TAPER_SAMPLES)
        step = max(1, round(node_s / dt))
        n_nodes = -(-(n - 1) // step) + 1
        self.t_nodes = seg.t0 + dt * step * np.arange(n_nodes)
        idx = np.arange(n)
        frac = (idx % step) / step
        kernel = np.exp(2j * np.pi * np.outer(idx, (k_c - bins) / n))  # (n, nb)
        g = np.zeros((n_nodes + 1, bins.size), dtype=np.complex128)
        padded = n_nodes * step
        for weights, shift in ((w_model * (1 - frac), 0), (w_model * frac, 1)):
            contrib = np.zeros((padded, bins.size), dtype=np.complex128)
            contrib[:n] = weights[:, None] * kernel
            g[shift : shift + n_nodes] += contrib.reshape(n_nodes, step, bins.size).sum(axis=1)
        # s_n = Re[M_n e^{2 pi i f_c t_n}] -> DFT bin k ~ (1/2) sum_n w_n M_n e^{...}
        g = 0.5 * np.exp(2j * np.pi * self.carrier * seg.t0) * g[:n_nodes]  # (nodes, nb)
        self.g = g @ self.whitener.T
        self.usable_samples = int(usable.sum())

    def bins(self, a: NDArray[np.float64], e: NDArray[np.float64]) -> NDArray[np.complex128]:
        """Normalised windowed DFT bins of A and E in the band: (2, nb)."""
        raw = np.stack(
            [
                s * windowed_rfft(np.where(self.usable, x, 0.0), self.window)[self.band]
                for s, x in zip(self.scale, (a, e), strict=True)
            ]
        )
        return raw @ self.whitener.T


@dataclass(frozen=True)
class SkyGrid:
    """The profile likelihood over a sky grid (see :meth:`CoherentProblem.search`)."""

    latitude: NDArray[np.float64]
    longitude: NDArray[np.float64]
    chi2: NDArray[np.float64]
    logdet: NDArray[np.float64]
    frequency_offset: NDArray[np.float64]
    """best f at each point, in units of 1 / span from f_ref"""

    def weights(self) -> NDArray[np.float64]:
        """Posterior weight of each point: exp(-chi2 / 2) times the Laplace volume of the
        marginalised amplitudes, det^(-1/2) (flat priors on them and on the sky, which the
        Fibonacci grid samples with equal areas)."""
        log_w = -0.5 * self.chi2 - 0.5 * self.logdet
        w = np.exp(log_w - log_w.max())
        return w / w.sum()

    def starts(self, keep: int = 2, ratio: float = 0.2) -> list[NDArray[np.float64]]:
        """The most probable point and up to ``keep - 1`` more whose posterior weight is at
        least ``ratio`` times its own, as scaled start vectors."""
        weights = self.weights()
        order = [i for i in np.argsort(-weights)[:keep] if weights[i] >= ratio * weights.max()]
        return [
            np.array([self.frequency_offset[i], 0.0, math.sin(self.latitude[i]), self.longitude[i]])
            for i in order
        ]


class CoherentProblem:
    """The data of one source over its segments and the profile likelihood over
    (f, fdot, latitude, longitude)."""

    def __init__(
        self,
        segments: Sequence[SegmentInput],
        f_ref: float,
        *,
        generation: str = "2.0",
        half_band_bins: int = 4,
        node_s: float = 600.0,
        tukey_alpha: float = 0.1,
        fdot_sigma: float | None = None,
    ) -> None:
        """``fdot_sigma``: width of the Gaussian prior on fdot (mean 0); None: no prior."""
        if not segments:
            raise ValueError("no segment to fit")
        if not f_ref > 0:
            raise ValueError(f"reference frequency must be > 0, got {f_ref}")
        self.f_ref = float(f_ref)
        self.generation = generation
        self.fdot_sigma = fdot_sigma
        self.segments = [_Segment(s, f_ref, half_band_bins, node_s, tukey_alpha) for s in segments]
        nodes = [s.t_nodes for s in self.segments]
        self._slices = []
        start = 0
        for t in nodes:
            self._slices.append(slice(start, start + t.size))
            start += t.size
        t_all = np.concatenate(nodes)
        self._geo = geometry(t_all)
        self._carrier = np.concatenate([np.full(s.t_nodes.size, s.carrier) for s in self.segments])
        self._set_bins([s.data for s in self.segments])
        starts = [float(s.t_nodes[0]) for s in self.segments]
        stops = [float(s.t_nodes[-1]) for s in self.segments]
        self.t_mid = 0.5 * (min(starts) + max(stops))
        self.span = max(stops) - min(starts) + (stops[0] - starts[0]) / max(1, len(nodes[0]) - 1)
        self.evaluations = 0
        shapes = {seg.g.shape for seg in self.segments}
        self._g = np.stack([seg.g for seg in self.segments]) if len(shapes) == 1 else None
        self._scale = np.stack([seg.scale for seg in self.segments], axis=1)  # (channel, seg)

    def _set_bins(self, bins: Sequence[NDArray[np.complex128]]) -> None:
        self.data = np.concatenate([b.ravel() for b in bins])  # complex, segment-major
        self._data_ri = np.concatenate([self.data.real, self.data.imag])

    def set_data(self, channels: Sequence[tuple[NDArray[np.float64], NDArray[np.float64]]]) -> None:
        """New A, E series for the same segments (same times, masks and PSDs): Monte Carlo
        studies reuse the precomputed model maps."""
        self._set_bins(
            [seg.bins(a, e) for seg, (a, e) in zip(self.segments, channels, strict=True)]
        )

    def residuals(self, values: dict[str, float]) -> NDArray[np.float64]:
        """Data minus model, real and imaginary parts stacked (unit variance on noise)."""
        r = self.data - self.model(values)
        return np.concatenate([r.real, r.imag])

    # -- model -------------------------------------------------------------------------------

    def bases(
        self, f: float, fdot: float, lat: float, lon: float
    ) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """Normalised model bins (all segments, A then E) per unit P and per unit C."""
        self.evaluations += 1
        b = tdi_bases(self._geo, f, fdot, lat, lon, self._carrier, self.generation)  # (2,2,N)
        return self._project(b)

    def _project(
        self, b: NDArray[np.complex128]
    ) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
        """Node values (2 channels, 2 polarisations, nodes) -> normalised bins per polarisation."""
        if self._g is not None:  # every segment alike: one batched product
            local = np.einsum("cpsn,snk->pcsk", b.reshape(2, 2, *self._g.shape[:2]), self._g)
            local = local * self._scale[None, :, :, None]  # (pol, channel, segment, bin)
            local = local.transpose(0, 2, 1, 3)  # (pol, segment, channel, bin)
            return local[0].ravel(), local[1].ravel()
        plus, cross = [], []
        for seg, sl in zip(self.segments, self._slices, strict=True):
            local = (b[:, :, sl] @ seg.g) * seg.scale[:, None, None]  # (channel, pol, bin)
            plus.append(local[:, 0].ravel())
            cross.append(local[:, 1].ravel())
        return np.concatenate(plus), np.concatenate(cross)

    def model(self, params: dict[str, float]) -> NDArray[np.complex128]:
        plus, cross = self.bases(
            params["frequency"],
            params["frequency_derivative"],
            params["ecliptic_latitude"],
            params["ecliptic_longitude"],
        )
        p, c = polarisation_amplitudes(
            params["amplitude"],
            params["inclination"],
            params["polarization"],
            params["initial_phase"],
        )
        return p * plus + c * cross

    def profile(
        self, f: float, fdot: float, lat: float, lon: float
    ) -> tuple[float, complex, complex]:
        """(chi2, P, C): the best polarisation amplitudes at (f, fdot, sky), in closed form."""
        chi2, p, c = self._solve(*self.bases(f, fdot, lat, lon))
        return chi2, p, c

    def _solve(
        self,
        plus: NDArray[np.complex128],
        cross: NDArray[np.complex128],
        with_logdet: bool = False,
    ) -> tuple:
        cols = [plus, 1j * plus, cross, 1j * cross]
        design = np.stack([np.concatenate([c.real, c.imag]) for c in cols], axis=1)
        normal = design.T @ design
        rhs = design.T @ self._data_ri
        try:
            coef = np.linalg.solve(normal, rhs)
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(design, self._data_ri, rcond=None)[0]
        chi2 = float(self._data_ri @ self._data_ri - coef @ rhs)
        out = (chi2, complex(coef[0], coef[1]), complex(coef[2], coef[3]))
        if with_logdet:
            return (*out, float(np.linalg.slogdet(normal)[1]))
        return out

    # -- search and fit ----------------------------------------------------------------------

    def _unpack(self, x: NDArray[np.float64]) -> tuple[float, float, float, float]:
        """Scaled variables -> (f, fdot, lat, lon): f in units of 1/span about f_ref (fdot
        about t_mid), fdot in 1/span^2, sin(latitude) reflected into [-1, 1]."""
        f_mid = self.f_ref + x[0] / self.span
        fdot = x[1] / self.span**2
        f = f_mid - fdot * self.t_mid
        s = (x[2] + 1) % 4 - 1  # reflect into [-1, 3) then fold
        s = 2 - s if s > 1 else s
        return f, fdot, math.asin(max(-1.0, min(1.0, s))), x[3] % (2 * math.pi)

    def _pack(self, f: float, fdot: float, lat: float, lon: float) -> NDArray[np.float64]:
        f_mid = f + fdot * self.t_mid
        return np.array([(f_mid - self.f_ref) * self.span, fdot * self.span**2, math.sin(lat), lon])

    def _prior(self, fdot: float) -> float:
        return 0.0 if self.fdot_sigma is None else (fdot / self.fdot_sigma) ** 2

    def _chi2(self, x: NDArray[np.float64]) -> float:
        params = self._unpack(x)
        return self.profile(*params)[0] + self._prior(params[1])

    def search(
        self,
        f_halfwidth: float,
        n_sky: int = 128,
        f_step_bins: float = 0.25,
        f_center_bins: float = 0.0,
    ) -> SkyGrid:
        """The profile likelihood on a Fibonacci sky grid: at each point the best frequency of
        a scan over f_ref + f_center_bins / span +- f_halfwidth (steps of f_step_bins / span,
        refined by a parabola through the best three), fdot = 0, and the log-determinant of
        the amplitudes' normal matrix (their Laplace volume)."""
        k = np.arange(n_sky) + 0.5
        sin_lat = 1 - 2 * k / n_sky
        lons = (math.pi * (1 + 5**0.5) * k) % (2 * math.pi)
        n_f = max(1, math.ceil(f_halfwidth * self.span / f_step_bins))
        offsets = f_center_bins + np.arange(-n_f, n_f + 1) * f_step_bins
        t_tcb = self._geo.t_tcb
        shifts = [np.exp(2j * np.pi * (df / self.span) * t_tcb) for df in offsets]
        chi2s, logdets, dfs = [], [], []
        for s, lon in zip(sin_lat, lons, strict=True):
            lat = math.asin(s)
            # f enters the slow amplitudes through e^{2 pi i f t} (and, negligibly over a few
            # bins, through the transfer functions): compute them once, shift per frequency
            self.evaluations += 1
            b = tdi_bases(self._geo, self.f_ref, 0.0, lat, lon, self._carrier, self.generation)
            scan = [self._solve(*self._project(b * shift), with_logdet=True) for shift in shifts]
            values = np.array([r[0] for r in scan])
            i = int(np.argmin(values))
            df = float(offsets[i])
            if 0 < i < len(values) - 1:  # vertex of the parabola through the best three
                y0, y1, y2 = values[i - 1 : i + 2]
                denom = y0 - 2 * y1 + y2
                if denom > 0:
                    df += 0.5 * f_step_bins * (y0 - y2) / denom
            chi2s.append(float(values[i]))
            logdets.append(float(scan[i][3]))
            dfs.append(df)
        return SkyGrid(np.arcsin(sin_lat), lons, np.array(chi2s), np.array(logdets), np.array(dfs))

    def fit(
        self,
        starts: Sequence[NDArray[np.float64]],
        maxiter: int = 400,
    ) -> tuple[dict[str, float], float]:
        """Nelder-Mead from each start (scaled variables); the best optimum's physical
        parameters and chi2."""
        best = None
        for x0 in starts:
            simplex = np.array([x0] + [x0 + d for d in np.diag([0.2, 0.5, 0.1, 0.15])])
            out = minimize(
                self._chi2,
                x0,
                method="Nelder-Mead",
                options={
                    "initial_simplex": simplex,
                    "maxiter": maxiter,
                    "xatol": 1e-2,
                    "fatol": 1e-2,
                },
            )
            if best is None or out.fun < best.fun:
                best = out
        assert best is not None
        f, fdot, lat, lon = self._unpack(best.x)
        chi2, p, c = self.profile(f, fdot, lat, lon)
        chi2 += self._prior(fdot)
        amplitude, inclination, psi, phi0 = physical_from_polarisation(p, c)
        values = {
            "frequency": f,
            "frequency_derivative": fdot,
            "ecliptic_latitude": lat,
            "ecliptic_longitude": lon,
            "amplitude": amplitude,
            "inclination": inclination,
            "polarization": psi,
            "initial_phase": phi0,
        }
        return values, chi2

    def start_from(self, values: dict[str, float]) -> NDArray[np.float64]:
        return self._pack(
            values["frequency"],
            values["frequency_derivative"],
            values["ecliptic_latitude"],
            values["ecliptic_longitude"],
        )

    # -- uncertainties -----------------------------------------------------------------------

    def steps(self, values: dict[str, float]) -> dict[str, float]:
        """Finite-difference steps, small against every parameter's expected uncertainty."""
        return {
            "frequency": 1e-3 / self.span,
            "frequency_derivative": 1e-3 / self.span**2,
            "ecliptic_latitude": 1e-4,
            "ecliptic_longitude": 1e-4,
            "amplitude": 1e-4 * max(values["amplitude"], 1e-30),
            "inclination": 1e-4,
            "polarization": 1e-4,
            "initial_phase": 1e-4,
        }

    def jacobian(self, values: dict[str, float]) -> NDArray[np.float64]:
        """d(model)/d(parameter), real and imaginary parts stacked: (2 bins, 8)."""
        cols = []
        for name, h in self.steps(values).items():
            up = self.model({**values, name: values[name] + h})
            down = self.model({**values, name: values[name] - h})
            deriv = (up - down) / (2 * h)
            cols.append(np.concatenate([deriv.real, deriv.imag]))
        return np.stack(cols, axis=1)

    def fisher(self, values: dict[str, float]) -> NDArray[np.float64]:
        """J^T J, plus the fdot prior's 1 / sigma^2 (the posterior's Fisher matrix)."""
        jac = self.jacobian(values)
        fisher = jac.T @ jac
        if self.fdot_sigma is not None:
            fisher[1, 1] += 1 / self.fdot_sigma**2
        return fisher

    def snr(self, values: dict[str, float]) -> float:
        return float(np.linalg.norm(self.model(values)))

    def dof(self) -> int:
        return 2 * self.data.size - len(PARAMETERS)


def covariance(fisher: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse Fisher matrix, scaled for conditioning; NaN rows/columns for parameters the data
    do not constrain (e.g. psi and phi0 of a face-on source)."""
    d = np.sqrt(np.clip(np.diag(fisher), 1e-300, None))
    scaled = fisher / np.outer(d, d)
    w, v = np.linalg.eigh(scaled)
    ok = w > 1e-12 * w.max()
    cov_scaled = (v[:, ok] / w[ok]) @ v[:, ok].T
    cov = cov_scaled / np.outer(d, d)
    if not ok.all():  # the unconstrained directions: NaN on the parameters they involve
        loose = np.abs(v[:, ~ok]).max(axis=1) > 1e-3
        cov[loose, :] = np.nan
        cov[:, loose] = np.nan
    return cov


def refine(
    segments: Sequence[SegmentInput],
    f_ref: float,
    *,
    f_halfwidth: float | None = None,
    start: dict[str, float] | None = None,
    generation: str = "2.0",
    n_sky: int = 128,
    half_band_bins: int = 4,
    fdot_sigma: float | str | None = "gr",
) -> RefinedFit:
    """Fit one source coherently over ``segments``: the maximum a posteriori parameters and
    their uncertainties.

    Uncertainties: the Fisher matrix at the optimum, except where the posterior is not one
    narrow peak. Over weeks LISA barely resolves the sky (30 days of AM CVn at SNR 40: the
    likelihood differs by < 1 in chi2 between points a radian apart, and a mirror mode across
    the constellation's plane competes), so the local Fisher matrix understates the sky and
    frequency errors (Doppler ties f to the sky). The sky grid of the search gives the
    posterior over the sky (profile likelihood times the amplitudes' Laplace volume, see
    :class:`SkyGrid`): sigma of the latitude and longitude is the larger of the Fisher value
    and the posterior's RMS distance from the reported position, and sigma of f adds (law of
    total variance) the spread of the best f over the sky to its Fisher sigma at fixed sky.

    Args:
        segments: the source's conditioned segments.
        f_ref: frequency to start from (the catalogue's) [Hz].
        f_halfwidth: how far from f_ref the source may be (e.g. 3 sigma of the catalogue's
            frequency); at least one coherent bin plus the largest orbital Doppler shift,
            1.1e-4 f_ref, which the sky grid scans at each point (a wider range is first
            scanned coarsely on 8 sky points).
        start: a previous fit's values: an extra starting point.
        generation: TDI generation of the data.
        n_sky: points of the sky grid.
        fdot_sigma: width of the fdot prior; "gr": :func:`fdot_prior_sigma`; None: no prior.
    """
    prior = fdot_prior_sigma(f_ref) if fdot_sigma == "gr" else fdot_sigma
    assert prior is None or isinstance(prior, float)
    problem = CoherentProblem(
        segments, f_ref, generation=generation, half_band_bins=half_band_bins, fdot_sigma=prior
    )
    # Doppler (|v/c| < 1e-4) and a coherent bin: the f range to scan at every sky point
    narrow = 1.0 / problem.span + 1.1e-4 * f_ref
    width = max(f_halfwidth or 0.0, narrow)
    center = 0.0
    if width > 1.5 * narrow:  # locate f first on a few sky points, coarsely, then narrow down
        coarse = problem.search(width, n_sky=8, f_step_bins=0.5)
        center = float(coarse.frequency_offset[int(np.argmax(coarse.weights()))])
    grid = problem.search(narrow, n_sky=n_sky, f_center_bins=center)
    starts = grid.starts(2)
    if start is not None:
        starts.append(problem.start_from(start))
    values, chi2 = problem.fit(starts)
    fisher = problem.fisher(values)
    cov = covariance(fisher)
    sigmas = {
        name: float(math.sqrt(cov[i, i]))
        if np.isfinite(cov[i, i]) and cov[i, i] >= 0
        else float("nan")
        for i, name in enumerate(PARAMETERS)
    }
    weights = grid.weights()
    d_lat = grid.latitude - values["ecliptic_latitude"]
    d_lon = (grid.longitude - values["ecliptic_longitude"] + math.pi) % (2 * math.pi) - math.pi
    for name, diff in (("ecliptic_latitude", d_lat), ("ecliptic_longitude", d_lon)):
        spread = math.sqrt(float(weights @ diff**2))
        sigmas[name] = max(sigmas[name], spread) if math.isfinite(sigmas[name]) else spread
    at_fixed_sky = [0, 1, 4, 5, 6, 7]
    cov_f = covariance(fisher[np.ix_(at_fixed_sky, at_fixed_sky)])[0, 0]
    f_grid = problem.f_ref + grid.frequency_offset / problem.span
    spread_f = float(weights @ (f_grid - values["frequency"]) ** 2)
    if np.isfinite(cov_f):
        sigmas["frequency"] = math.sqrt(cov_f + spread_f)
    return RefinedFit(
        values=values,
        sigmas=sigmas,
        snr=problem.snr(values),
        chi2=chi2,
        dof=problem.dof(),
        n_segments=len(segments),
        covariance=cov,
    )


def binary_values(binary: GalacticBinary) -> dict[str, float]:
    """A :class:`GalacticBinary`'s parameters under the names of :data:`PARAMETERS`."""
    return {
        "frequency": binary.f,
        "frequency_derivative": binary.fdot,
        "ecliptic_latitude": binary.ecliptic_latitude,
        "ecliptic_longitude": binary.ecliptic_longitude,
        "amplitude": binary.amplitude,
        "inclination": binary.inclination,
        "polarization": binary.polarization,
        "initial_phase": binary.initial_phase,
    }


def wrap_difference(name: str, fitted: float, truth: float) -> float:
    """fitted - truth, angles wrapped (longitude mod 2 pi; psi mod pi/2 and phi0 mod 2 pi are
    compared as a pair by the caller, see :func:`physical_from_polarisation`)."""
    diff = fitted - truth
    if name == "ecliptic_longitude" or name == "initial_phase":
        diff = (diff + math.pi) % (2 * math.pi) - math.pi
    return diff


__all__ = [
    "PARAMETERS",
    "CoherentProblem",
    "RefinedFit",
    "SegmentInput",
    "binary_values",
    "covariance",
    "fdot_prior_sigma",
    "refine",
    "wrap_difference",
]
