"""Incoherent stacking of per-bin search statistics over segments.

A Galactic binary stays within one 1-day frequency bin for a year (Doppler f v/c ~ 6e-7 Hz,
fdot T ~ 2e-8 Hz), so the per-bin A+E statistics of N segments can be summed: on noise the sum
is chi-square with 4N degrees of freedom and a source adds the sum of its per-segment SNR^2.
The sensitivity grows as N^(1/4) in amplitude (incoherent), not N^(1/2) (coherent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .search import DOF
from .significance import grid_fap


def stack_statistics(stats_per_segment: Sequence[ArrayLike]) -> NDArray[np.float64]:
    """Per-bin sum of the statistics of segments sharing one frequency grid."""
    arrays = [np.asarray(s, dtype=np.float64) for s in stats_per_segment]
    if not arrays:
        raise ValueError("nothing to stack")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError("all segments must share one frequency grid (same length and padding)")
    return np.sum(arrays, axis=0)


def stacked_snr(
    stacked: ArrayLike, n_segments: ArrayLike, dof_per_segment: int = DOF
) -> NDArray[np.float64]:
    """sqrt(max(sum - dof N, 0)): the stacked SNR estimate (noise mean removed)."""
    excess = np.asarray(stacked, dtype=np.float64) - dof_per_segment * np.asarray(n_segments)
    return np.sqrt(np.maximum(excess, 0.0))


def stacked_fap(
    stacked: ArrayLike,
    n_segments: ArrayLike,
    n_bins: int,
    dof_per_segment: int = DOF,
    coherence: float = 0.0,
) -> NDArray[np.float64]:
    """False-alarm probability of a stacked maximum this high over ``n_bins`` grid bins whose
    neighbours have ``coherence`` (:func:`lisa_science.significance.grid_fap` with chi2_{4N}: a
    stack of N segments of one window is Kibble-correlated with the same coherence). With
    coherence 0 (independent bins) it is 1 - exp(-n_bins p (1 - p)), p = chi2_{4N}.sf(sum).

    Bins that no segment covered (N = 0) get 1.
    """
    n = np.asarray(n_segments)
    dof = dof_per_segment * np.maximum(n, 1)
    p = grid_fap(np.asarray(stacked, dtype=np.float64), dof, n_bins, coherence)
    return np.where(n > 0, p, 1.0)


@dataclass(frozen=True, eq=False)
class StackState:
    """Running per-bin sum and count of segment statistics (what a catalog table stores).

    Bins where a segment's statistic is NaN (unknown PSD) are not counted for that segment, so
    each bin keeps its own number of degrees of freedom, 4 * count.
    """

    total: NDArray[np.float64]
    count: NDArray[np.int64]

    @classmethod
    def empty(cls, n_bins: int) -> StackState:
        return cls(np.zeros(n_bins), np.zeros(n_bins, dtype=np.int64))

    def add(self, stat: ArrayLike) -> StackState:
        """A new state including one more segment's statistic."""
        stat = np.asarray(stat, dtype=np.float64)
        if stat.shape != self.total.shape:
            raise ValueError(f"statistic shape {stat.shape} != stack shape {self.total.shape}")
        ok = np.isfinite(stat)
        return StackState(self.total + np.where(ok, stat, 0.0), self.count + ok)

    def snr(self, dof_per_segment: int = DOF) -> NDArray[np.float64]:
        return stacked_snr(self.total, self.count, dof_per_segment)

    def fap(self, n_bins: int, dof_per_segment: int = DOF) -> NDArray[np.float64]:
        return stacked_fap(self.total, self.count, n_bins, dof_per_segment)
