"""Cataloguing galactic binaries from stacked per-bin statistics: promotion and association.

The catalogue sums the per-bin A+E statistics of every segment sharing one frequency grid
(:mod:`lisa_science.stacking`): chi-square with 4N degrees of freedom on noise, and a source adds
its per-segment SNR^2 in every segment. Three decisions are made here, without any I/O:

- **promotion**: bins whose stacked false-alarm probability, min(1, n_indep chi2_{4N}.sf(sum)),
  is below the catalogue threshold are significant;
- **clustering**: a source spreads over neighbouring bins (zero padding interpolates the spectrum
  and the window leaks), so significant bins closer than ``merge_bins + 1`` bins to one another
  form one cluster (single linkage: a bin within +-merge_bins of a member joins it), reported as one
  source at its peak (largest stacked excess). The price is resolution: two real sources that close
  are catalogued as one, which matches the ~1/T resolution of a periodogram anyway;
- **identity**: source ids must not change as segments arrive, although the peak of a weak source
  can hop between neighbouring bins with the noise. A cluster first claims an existing source
  whose bin lies inside the cluster or within +-merge_bins of its peak (the source's bin follows
  the peak); only an unclaimed cluster gets a new id, ``GB<peak frequency in uHz, 3 decimals>``.
  A source once promoted stays catalogued; its statistics keep following the stack at its bin.

Association attaches each per-segment estimate to the catalogued source within +-1 bin of it
(the nearest one), which refines the source's frequency and gives its uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .search import DOF
from .stacking import stacked_fap, stacked_snr

MERGE_BINS = 2
"""Significant bins within this many bins of a cluster member belong to the same source."""

ASSOCIATION_BINS = 1
"""A per-segment estimate within this many bins of a source is attached to it."""


@dataclass(frozen=True)
class Estimate:
    """What the catalogue keeps of one per-segment parameter estimate."""

    segment_id: str
    frequency_hz: float
    sigma_frequency_hz: float
    amplitude: float
    """rms of the A and E amplitudes, sqrt((a_A^2 + a_E^2) / 2): one number per estimate."""
    snr: float


@dataclass(frozen=True)
class Cluster:
    """A run of significant bins (gaps of at most ``merge_bins``) and its strongest bin."""

    peak: int
    lo: int
    hi: int


@dataclass(frozen=True)
class SourceSummary:
    """A catalogued source as the stack and its associated estimates describe it now."""

    source_id: str
    frequency_bin: int
    frequency_hz: float
    sigma_frequency_hz: float
    stacked_statistic: float
    stacked_snr: float
    fap: float
    n_segments: int
    n_estimates: int
    mean_amplitude: float | None


def source_id_for(frequency_hz: float) -> str:
    """``GB<frequency in uHz with 3 decimals>``: readable, and unique per bin of a daily grid."""
    return f"GB{frequency_hz * 1e6:.3f}"


def significant_clusters(
    total: ArrayLike,
    count: ArrayLike,
    n_independent_bins: int,
    fap_threshold: float,
    merge_bins: int = MERGE_BINS,
    dof_per_segment: int = DOF,
) -> list[Cluster]:
    """Clusters of bins whose stacked FAP is below ``fap_threshold``, in frequency order."""
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    fap = stacked_fap(total, count, n_independent_bins, dof_per_segment)
    significant = np.flatnonzero((count > 0) & np.isfinite(total) & (fap < fap_threshold))
    if significant.size == 0:
        return []
    excess = total - dof_per_segment * count
    breaks = np.flatnonzero(np.diff(significant) > merge_bins) + 1
    clusters = []
    for members in np.split(significant, breaks):
        peak = int(members[np.argmax(excess[members])])
        clusters.append(Cluster(peak=peak, lo=int(members[0]), hi=int(members[-1])))
    return clusters


def assign_sources(
    clusters: Sequence[Cluster],
    f: ArrayLike,
    excess: ArrayLike,
    existing: Mapping[str, int],
    merge_bins: int = MERGE_BINS,
) -> dict[str, int]:
    """Source id -> peak bin after this promotion round (existing sources are never dropped).

    Clusters are served strongest first, so when two clusters could claim one source the brighter
    keeps it; each source is claimed at most once.
    """
    f = np.asarray(f, dtype=np.float64)
    excess = np.asarray(excess, dtype=np.float64)
    out = dict(existing)
    claimed: set[str] = set()
    for cluster in sorted(clusters, key=lambda c: (-excess[c.peak], c.peak)):
        near = [
            (abs(b - cluster.peak), sid)
            for sid, b in existing.items()
            if sid not in claimed
            and (cluster.lo <= b <= cluster.hi or abs(b - cluster.peak) <= merge_bins)
        ]
        if near:
            sid = min(near)[1]
        else:
            sid = source_id_for(float(f[cluster.peak]))
            suffix = 2
            while sid in out:  # another source was first named after this bin, then moved
                sid = f"{source_id_for(float(f[cluster.peak]))}-{suffix}"
                suffix += 1
        out[sid] = cluster.peak
        claimed.add(sid)
    return out


def nearest_bin(f: NDArray[np.float64], frequency_hz: float) -> int:
    """Index of the grid frequency nearest to ``frequency_hz`` (uniform grid)."""
    df = float(f[1] - f[0]) if f.size > 1 else 1.0
    return int(np.clip(round((frequency_hz - float(f[0])) / df), 0, f.size - 1))


def associate(
    f: ArrayLike,
    sources: Mapping[str, int],
    estimates: Iterable[Estimate],
    radius: int = ASSOCIATION_BINS,
) -> dict[str, list[Estimate]]:
    """Estimates attached to each source: those within +-``radius`` bins (nearest source wins)."""
    f = np.asarray(f, dtype=np.float64)
    out: dict[str, list[Estimate]] = {sid: [] for sid in sources}
    if not sources:
        return out
    ids = sorted(sources)
    bins = np.array([sources[s] for s in ids])
    # nearest_bin of every estimate at once (np.rint rounds half to even, as round() does),
    # then the nearest source of each (argmin: the first of equals, as one by one): one pass
    # in numpy instead of a few numpy calls per estimate (the catalogue calls this with every
    # estimate so far at every segment)
    ests = [e for e in estimates if math.isfinite(e.frequency_hz)]
    if not ests:
        return out
    df = float(f[1] - f[0]) if f.size > 1 else 1.0
    freqs = np.fromiter((e.frequency_hz for e in ests), dtype=np.float64, count=len(ests))
    nearest = np.clip(np.rint((freqs - float(f[0])) / df), 0, f.size - 1).astype(np.int64)
    distance = np.abs(bins[None, :] - nearest[:, None])
    best = np.argmin(distance, axis=1)
    near = distance[np.arange(len(ests)), best] <= radius
    for est, b, ok in zip(ests, best.tolist(), near.tolist(), strict=True):
        if ok:
            out[ids[b]].append(est)
    return out


def frequency_and_sigma(
    estimates: Sequence[Estimate], bin_frequency: float, bin_width: float
) -> tuple[float, float]:
    """Source frequency and its 1-sigma uncertainty.

    With estimates: the inverse-variance weighted mean of their frequencies, and the larger of its
    formal error 1/sqrt(sum 1/sigma_i^2) and the standard error of their spread (which also absorbs
    the Doppler drift across segments). Without: the peak bin's frequency and bin_width/sqrt(12),
    the standard deviation of a frequency known only to lie somewhere in the bin.
    """
    if not estimates:
        return bin_frequency, bin_width / math.sqrt(12.0)
    freqs = np.array([e.frequency_hz for e in estimates])
    sigmas = np.array([e.sigma_frequency_hz for e in estimates])
    valid = np.isfinite(sigmas) & (sigmas > 0)
    spread = float(np.std(freqs, ddof=1) / math.sqrt(freqs.size)) if freqs.size > 1 else 0.0
    if valid.any():
        w = 1.0 / sigmas[valid] ** 2
        mean = float(np.sum(w * freqs[valid]) / np.sum(w))
        return mean, max(float(1.0 / math.sqrt(np.sum(w))), spread)
    if freqs.size > 1:
        return float(np.mean(freqs)), spread
    return float(freqs[0]), bin_width / math.sqrt(12.0)


def summarise(
    f: ArrayLike,
    total: ArrayLike,
    count: ArrayLike,
    n_independent_bins: int,
    sources: Mapping[str, int],
    estimates: Iterable[Estimate],
    radius: int = ASSOCIATION_BINS,
    dof_per_segment: int = DOF,
    attached: Mapping[str, list[Estimate]] | None = None,
) -> list[SourceSummary]:
    """Every catalogued source as the current stack and estimates describe it, by frequency.
    ``attached``: ``associate(f, sources, estimates, radius)`` when the caller has it already
    (the catalogue extends the previous segment's with the new estimates only)."""
    f = np.asarray(f, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    if attached is None:
        attached = associate(f, sources, estimates, radius)
    bin_width = float(f[1] - f[0]) if f.size > 1 else float("nan")
    out = []
    for sid, k in sources.items():
        ests = attached[sid]
        freq, sigma = frequency_and_sigma(ests, float(f[k]), bin_width)
        amplitudes = [e.amplitude for e in ests if math.isfinite(e.amplitude)]
        out.append(
            SourceSummary(
                source_id=sid,
                frequency_bin=int(k),
                frequency_hz=freq,
                sigma_frequency_hz=sigma,
                stacked_statistic=float(total[k]),
                stacked_snr=float(stacked_snr(total[k], count[k], dof_per_segment)),
                fap=float(stacked_fap(total[k], count[k], n_independent_bins, dof_per_segment)),
                n_segments=int(count[k]),
                n_estimates=len(ests),
                mean_amplitude=float(np.mean(amplitudes)) if amplitudes else None,
            )
        )
    return sorted(out, key=lambda s: (s.frequency_bin, s.source_id))


def promote(
    f: ArrayLike,
    total: ArrayLike,
    count: ArrayLike,
    n_independent_bins: int,
    fap_threshold: float,
    existing: Mapping[str, int],
    merge_bins: int = MERGE_BINS,
    dof_per_segment: int = DOF,
) -> dict[str, int]:
    """One promotion round on the current stack: source id -> peak bin (a superset of
    ``existing``, whose bins may have moved to their cluster's new peak)."""
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    clusters = significant_clusters(
        total, count, n_independent_bins, fap_threshold, merge_bins, dof_per_segment
    )
    excess = total - dof_per_segment * count
    return assign_sources(clusters, f, excess, existing, merge_bins)
