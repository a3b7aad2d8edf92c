"""Detection of monochromatic sources: the A+E whitened periodogram and its chi-square statistics.

For Gaussian noise the PSD-normalised periodogram of one channel is chi-square with 2 degrees of
freedom; summing the two noise-independent channels A and E gives chi-square with 4 (Allen et
al. 2012, PRD 85 122006; the 'F-statistic' of Jaranowski, Krolak & Schutz 1998 reduces to it for
a source whose response is constant over the segment). A sinusoid adds a non-centrality equal to
its optimal SNR^2, so thresholds follow from chi-square tail probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, stats
from scipy.signal import windows

from .quality import gap_weights
from .significance import adjacent_coherence, grid_fap, grid_threshold, nominal_coherence
from .whiten import whitened_power

DOF = 4
"""Degrees of freedom of the A+E statistic on noise (2 per channel)."""


@dataclass(frozen=True)
class Candidate:
    """A local maximum of the statistic above threshold."""

    frequency: float
    statistic: float
    snr: float
    """sqrt(max(statistic - dof, 0)): the SNR estimate that removes the noise mean."""
    bin_index: int
    fap: float
    """Probability that noise alone gives a maximum this high anywhere on the searched grid
    (:func:`lisa_science.significance.grid_fap`)."""


def search_window(
    mask: ArrayLike, dt: float, tukey_alpha: float = 0.1, gap_taper_seconds: float = 120.0
) -> NDArray[np.float64]:
    """Tukey window times the tapered gap weights (:func:`lisa_science.quality.gap_weights`).

    The Tukey taper of the segment ends keeps the strong high-frequency TDI 2.0 noise from
    leaking into the weak low-frequency band; alpha = 0.1 costs only ~4 % of the SNR^2."""
    mask = np.asarray(mask, dtype=bool)
    taper = round(gap_taper_seconds / dt)
    return windows.tukey(mask.size, tukey_alpha) * gap_weights(mask, taper)


def search_statistic(
    a: ArrayLike,
    e: ArrayLike,
    dt: float,
    f_psd: ArrayLike,
    psd_a: ArrayLike,
    psd_e: ArrayLike,
    mask: ArrayLike | None = None,
    tukey_alpha: float = 0.1,
    pad_factor: int = 2,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(f, stat): sum over A and E of the whitened, windowed, zero-padded periodogram.

    Per channel, P_k = 4 dt |FFT(w x)_k|^2 / (S(f_k) sum w^2) (see
    :func:`lisa_science.whiten.whitened_power`), chi^2_2 on noise, so stat is chi^2_4 (mean 4,
    variance 8) and a sinusoid adds ~ its optimal SNR^2 over the usable data. Zero padding by
    ``pad_factor`` only interpolates the spectrum (less scalloping loss: <= 19 % at pad 2
    against 59 % at pad 1); neighbouring padded bins are correlated. Masked samples (default:
    NaN in A or E) get zero weight with tapered edges and are accounted for in sum w^2. NaN
    where the PSD is unknown or zero (e.g. DC).
    """
    a = np.asarray(a, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    usable = np.isfinite(a) & np.isfinite(e)
    if mask is not None:
        usable &= np.asarray(mask, dtype=bool)
    if not usable.any():
        raise ValueError("no usable samples")
    w = search_window(usable, dt, tukey_alpha)
    f, p_a = whitened_power(np.where(usable, a, 0.0), dt, f_psd, psd_a, w, pad_factor)
    _, p_e = whitened_power(np.where(usable, e, 0.0), dt, f_psd, psd_e, w, pad_factor)
    return f, p_a + p_e


def independent_bins(n_samples: int, dt: float, fmin: float, fmax: float) -> int:
    """Number of unpadded Fourier frequencies k / (n dt) in [fmin, fmax].

    These are the independent trials of a search: zero padding adds bins but no information
    (padded bins are interpolations of their neighbours), so it must not tighten the threshold.
    """
    duration = n_samples * dt
    return max(int(np.floor(fmax * duration)) - int(np.ceil(fmin * duration)) + 1, 0)


def false_alarm_threshold(fap: float, n_bins: int, dof: int = DOF) -> float:
    """Statistic threshold for a false-alarm probability ``fap`` over ``n_bins`` INDEPENDENT bins.

    Bonferroni: each bin is given probability fap / n_bins, i.e. threshold =
    chi2.isf(fap / n_bins, dof) (accurate for small fap; conservative otherwise). Not the
    threshold of a zero-padded search (its maximum is over correlated bins, more of them): that
    is :func:`grid_search_threshold`.
    """
    if not 0 < fap < 1:
        raise ValueError(f"fap must be in (0, 1), got {fap}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return float(stats.chi2.isf(fap / n_bins, dof))


def grid_search_threshold(
    fap: float, n_grid: int, window: ArrayLike | None = None, pad_factor: int = 2
) -> tuple[float, float]:
    """(threshold, coherence) for a false-alarm probability ``fap`` of the maximum over
    ``n_grid`` bins of a grid zero-padded by ``pad_factor`` (see
    :mod:`lisa_science.significance`). ``window`` is the search window of the segment (its gaps
    change the correlation of neighbouring bins a little); by default the gap-free Tukey one."""
    coherence = (
        nominal_coherence(pad_factor) if window is None else adjacent_coherence(window, pad_factor)
    )
    return grid_threshold(fap, DOF, n_grid, coherence), coherence


def find_candidates(
    f: ArrayLike,
    stat: ArrayLike,
    threshold: float,
    fmin: float = 1e-4,
    fmax: float = 2e-2,
    n_bins: int | None = None,
    dof: int = DOF,
    coherence: float = 0.0,
) -> list[Candidate]:
    """Peaks of ``stat`` above ``threshold`` within [fmin, fmax], strongest first.

    A run of contiguous bins above threshold is one candidate (its maximum): a source spreads
    over neighbouring padded bins. Each candidate's FAP is
    :func:`lisa_science.significance.grid_fap` over ``n_bins`` trials (default: the grid bins
    in the band) whose neighbours have ``coherence`` (0: independent bins, where it is
    1 - exp(-n_bins chi2.sf(stat, dof))). The default band stops below the TDI 2.0 null at
    30 mHz, where S -> 0 and the statistic is unreliable.
    """
    f = np.asarray(f, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    in_band = (f >= fmin) & (f <= fmax)
    if n_bins is None:
        n_bins = int(in_band.sum())
    with np.errstate(invalid="ignore"):
        above = in_band & (stat > threshold)
    labels, n_runs = ndimage.label(above)
    if n_runs == 0:
        return []
    peaks = ndimage.maximum_position(np.where(above, stat, -np.inf), labels, range(1, n_runs + 1))
    found = []
    faps = grid_fap([stat[k] for (k,) in peaks], dof, n_bins, coherence)
    for (k,), fap in zip(peaks, faps, strict=True):
        value = float(stat[k])
        snr = float(np.sqrt(max(value - dof, 0.0)))
        found.append(Candidate(float(f[k]), value, snr, int(k), float(fap)))
    return sorted(found, key=lambda c: c.statistic, reverse=True)
