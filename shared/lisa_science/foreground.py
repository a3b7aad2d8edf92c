"""The Galactic confusion foreground: its analytic PSD, and a noise model that follows it.

Millions of unresolved Galactic binaries add a confusion noise that dominates the instrument
between ~0.5 and 3 mHz (8-25 times the SciRD A/E noise for half a year to a year of
observation). Robson, Cornish & Liu 2019 (CQG 36 105011, eq. 14 and Table 1) fit it, in the
sky-averaged strain sensitivity, as

    S_c(f) = A f^(-7/3) exp(-f^alpha + beta f sin(kappa f)) [1 + tanh(gamma (f_k - f))],

A = 9e-45, with (alpha, beta, kappa, gamma, f_k) for 0.5, 1, 2 and 4 years of observation (the
knee f_k falls as more binaries are resolved and subtracted). S_c adds to their instrument
sensitivity S_n = P_n / R with R = (3/10) / (1 + 0.6 x^2), x = 2 pi f L / c, while the TDI 1.5
Michelson X noise is 16 x^2 sin^2 x P_n (the project's ``noise.tdi_psd``, with the same P_n).
The foreground in X is therefore S_c R 16 x^2 sin^2 x; A and E carry 3/2 of it (as they do the
instrument noise at these frequencies), T none (its GW response is suppressed by ~x^2 more);
TDI 2.0 multiplies by 4 sin^2(2x) like the noise. The stationary Gaussian foreground of that PSD
is what ``simulate --foreground`` adds (the cyclostationary modulation of the real one, ~x2 over
a year, is left out).

For the search the noise PSD has to be known to a few percent (a 5 % low PSD doubles the false
alarms at 1 %), from one segment, without being pulled up by bright binaries. A free spline in
log f on top of the SciRD model (as BayesLine, Littenberg & Cornish 2015, does over long data)
has too many parameters for one day's ~40 Welch bins in the foreground band; the global-fit
prototypes (Littenberg & Cornish 2023, PRD 107 063004) model the foreground with the RCL shape
and a free amplitude. :func:`fit_noise_model` does that per segment, with A and E fitted
together: their instrument levels c_A, c_E and a common foreground amplitude a >= 0 for the RCL
shape of a given observation time. Bins more than ``clip_sigma`` robust sigmas from the model
(bright binaries) are dropped and the fit repeated. Measured on one-day segments of 0.5-year
foreground: a scatters by 5.7 % and the A PSD in 0.5-3 mHz by 5 %. Choosing the shape per
segment as well (the best of the four) was tried and rejected: one day in 25 picked a wrong
shape, and those days had false alarms at every threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .noise import C_LIGHT, L_ARM, tdi_psd

YEAR = 365.25 * 86400.0

RCL_AMPLITUDE = 9e-45
RCL_SHAPES: dict[float, tuple[float, float, float, float, float]] = {
    0.5: (0.133, 243.0, 482.0, 917.0, 2.58e-3),
    1.0: (0.171, 292.0, 1020.0, 1680.0, 2.15e-3),
    2.0: (0.165, 299.0, 611.0, 1340.0, 1.73e-3),
    4.0: (0.138, -221.0, 521.0, 1680.0, 1.13e-3),
}
"""Robson, Cornish & Liu 2019, Table 1: observation time (years) -> alpha, beta, kappa, gamma,
f_k (Hz)."""


def shape_years(observation_years: float) -> float:
    """The tabulated observation time to use: the longest not longer than ``observation_years``
    (a shorter observation resolves fewer binaries: more foreground), at least half a year (the
    shortest published)."""
    known = sorted(RCL_SHAPES)
    return max([y for y in known if y <= observation_years + 1e-9], default=known[0])


def confusion_strain_psd(f: ArrayLike, observation_years: float) -> NDArray[np.float64]:
    """S_c(f) of RCL eq. 14 (sky-averaged strain, 1/Hz); 0 at f <= 0."""
    f = np.asarray(f, dtype=np.float64)
    fp = np.where(f > 0, f, 1.0)
    alpha, beta, kappa, gamma, f_k = RCL_SHAPES[shape_years(observation_years)]
    # 1 + tanh(y) = 2 / (1 + exp(-2y)): the sum cancels to nothing above the knee
    cutoff = 2.0 / (1.0 + np.exp(np.clip(-2.0 * gamma * (f_k - fp), -700, 700)))
    s_c = RCL_AMPLITUDE * fp ** (-7.0 / 3.0) * np.exp(-(fp**alpha) + beta * fp * np.sin(kappa * fp))
    return np.where(f > 0, s_c * cutoff, 0.0)


def confusion_tdi_psd(
    f: ArrayLike, channel: str, observation_years: float, generation: str = "2.0"
) -> NDArray[np.float64]:
    """The foreground's one-sided PSD in TDI channel X, A, E or T (fractional frequency)."""
    f = np.asarray(f, dtype=np.float64)
    x = 2 * math.pi * f * L_ARM / C_LIGHT
    response = 16 * x**2 * np.sin(x) ** 2 * 0.3 / (1 + 0.6 * x**2)
    if channel in ("A", "E"):
        response = 1.5 * response
    elif channel == "T":
        response = np.zeros_like(response)
    elif channel != "X":
        raise ValueError(f"unknown TDI channel {channel!r}")
    if generation == "2.0":
        response = response * 4 * np.sin(2 * x) ** 2
    elif generation != "1.5":
        raise ValueError(f"unknown TDI generation {generation!r}")
    return response * confusion_strain_psd(f, observation_years)


def total_tdi_psd(
    f: ArrayLike, channel: str, observation_years: float | None, generation: str = "2.0"
) -> NDArray[np.float64]:
    """SciRD instrument noise plus the foreground (none when ``observation_years`` is None)."""
    psd = tdi_psd(f, channel, generation)
    if observation_years is None:
        return psd
    return psd + confusion_tdi_psd(f, channel, observation_years, generation)


@dataclass(frozen=True)
class NoiseFit:
    """The fitted A/E noise model: c_A S_A + a G, c_E S_E + a G (G the RCL foreground)."""

    level_a: float
    level_e: float
    amplitude: float
    """Foreground amplitude relative to RCL's fit (0: no foreground)."""
    shape_years: float
    """Which RCL shape fitted best (its observation time)."""
    bins: int
    """Welch bins used per channel after clipping."""

    def psd(self, f: ArrayLike, channel: str, generation: str = "2.0") -> NDArray[np.float64]:
        """The model PSD; NaN where the instrument model is zero (DC, the TDI nulls)."""
        level = {"A": self.level_a, "E": self.level_e}[channel]
        model = tdi_psd(f, channel, generation)
        total = level * model + self.amplitude * confusion_tdi_psd(
            f, channel, self.shape_years, generation
        )
        return np.where(model > 0, total, np.nan)


LINE_BINS = 3
"""A bin clipped high (a bright binary) takes this many Welch bins on each side with it: the
Hann window leaks a line into its neighbours at -30 dB and more, which a loud binary (SNR 50 in
one day) lifts above the noise without crossing the clip."""


def _near(flags: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """Bins within ``radius`` of a flagged one."""
    return np.convolve(flags.astype(float), np.ones(2 * radius + 1), mode="same") > 0


def _fit_shape(
    ratios: tuple[NDArray[np.float64], NDArray[np.float64]],
    g: NDArray[np.float64],
    use: tuple[NDArray[np.bool_], NDArray[np.bool_]],
    clip_sigma: float,
) -> tuple[NDArray[np.float64], tuple[NDArray[np.bool_], NDArray[np.bool_]]]:
    """(c_A, c_E, a) and the bins kept.

    The measured / instrument ratio r = c + a g is linear in the parameters; each Welch bin
    scatters in proportion to its expectation, so the weights are 1 / model^2 (iterated), and a
    bin further than ``clip_sigma`` robust sigmas above or below the model is dropped, and
    ``LINE_BINS`` on each side of one above it."""
    use = (use[0].copy(), use[1].copy())
    params = np.array([1.0, 1.0, 0.0])
    for _ in range(6):
        rows, rhs = [], []
        for ch in (0, 1):
            model = params[ch] + params[2] * g
            w = 1.0 / model[use[ch]]
            design = np.zeros((int(use[ch].sum()), 3))
            design[:, ch] = w
            design[:, 2] = g[use[ch]] * w
            rows.append(design)
            rhs.append(ratios[ch][use[ch]] * w)
        design, target = np.vstack(rows), np.concatenate(rhs)
        params, *_ = np.linalg.lstsq(design, target, rcond=None)
        if params[2] < 0:  # no foreground: refit the levels alone
            params[2] = 0.0
            params[:2] = [np.sum(r[u]) / np.sum(u) for r, u in zip(ratios, use, strict=True)]
        rel = [ratios[ch] / (params[ch] + params[2] * g) - 1.0 for ch in (0, 1)]
        spread = 1.4826 * np.median(np.abs(np.concatenate([rel[0][use[0]], rel[1][use[1]]])))
        keep = tuple(
            u & (np.abs(r) <= clip_sigma * spread) & ~_near(r > clip_sigma * spread, LINE_BINS)
            for u, r in zip(use, rel, strict=True)
        )
        if all((k == u).all() for k, u in zip(keep, use, strict=True)):
            break
        use = keep
    return params, use


def fit_noise_model(
    f: ArrayLike,
    measured_a: ArrayLike,
    measured_e: ArrayLike,
    observation_years: float = 0.5,
    generation: str = "2.0",
    band: tuple[float, float] = (3e-4, 2.5e-2),
    clip_sigma: float = 4.0,
) -> NoiseFit:
    """Fit c_A S_A + a G, c_E S_E + a G to the Welch PSDs of A and E, G the RCL foreground of
    ``observation_years`` (see the module docstring)."""
    f = np.asarray(f, dtype=np.float64)
    s_a, s_e = tdi_psd(f, "A", generation), tdi_psd(f, "E", generation)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (np.asarray(measured_a) / s_a, np.asarray(measured_e) / s_e)
    in_band = (f >= band[0]) & (f <= band[1]) & (s_a > 0) & (s_e > 0)
    use = (in_band & np.isfinite(ratios[0]), in_band & np.isfinite(ratios[1]))
    if min(u.sum() for u in use) < 10:
        raise ValueError("too few usable bins in the band to fit the noise model")
    years = shape_years(observation_years)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(in_band, confusion_tdi_psd(f, "A", years, generation) / s_a, 0.0)
    params, kept = _fit_shape(ratios, g, use, clip_sigma)
    return NoiseFit(float(params[0]), float(params[1]), float(params[2]), years, int(kept[0].sum()))
