"""Cataloguing galactic binaries from stacked per-bin statistics: promotion and association.

The catalogue sums the per-bin A+E statistics of every segment sharing one frequency grid
(:mod:`lisa_science.stacking`): chi-square with 4N degrees of freedom on noise, and a source adds
its per-segment SNR^2 in every segment. Three decisions are made here, without any I/O:

- **promotion**: bins whose stacked false-alarm probability is below the catalogue threshold are
  significant. The FAP is the one of a maximum over the zero-padded grid
  (:func:`lisa_science.stacking.stacked_fap`, :mod:`lisa_science.significance`): ``grid_trials``
  gives the number of grid bins and the coherence of neighbours for the catalogue's grid;
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

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import windows

from .search import DOF
from .significance import nominal_coherence
from .stacking import stacked_fap

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
    """sqrt of the excess at the line's own frequency (:func:`scalloping_corrected_excess`)."""
    fap: float
    n_segments: int
    n_estimates: int
    mean_amplitude: float | None


def source_id_for(frequency_hz: float) -> str:
    """``GB<frequency in uHz with 3 decimals>``: readable, and unique per bin of a daily grid."""
    return f"GB{frequency_hz * 1e6:.3f}"


def grid_pad(n_grid: int, n_independent_bins: int) -> int:
    """The zero-padding factor of a catalogue grid: its bins over the independent ones."""
    return max(1, round(n_grid / max(n_independent_bins, 1)))


@functools.lru_cache(maxsize=1)
def _lobe_table() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """|W(d)|^2 / |W(0)|^2 of the Tukey(0.1) search window for offsets d in [0, 0.6] Fourier
    bins: how much of a line's power a bin d away from it sees (scalloping)."""
    n = 4096
    w = windows.tukey(n, 0.1)
    d = np.linspace(0.0, 0.6, 121)
    spectrum = np.abs(np.exp(-2j * np.pi * np.outer(d, np.arange(n)) / n) @ w) ** 2
    return d, spectrum / spectrum[0]


MAX_OFFSET = 0.35
"""Largest line offset (Fourier bins) from its peak bin that the scalloping correction believes:
a padded-by-2 grid puts a bin within 0.25 of any line, noise can move the peak a little further."""


def scalloping_corrected_excess(
    excess: ArrayLike, count: ArrayLike, k: int, pad_factor: int
) -> float:
    """The excess a line would have at its own frequency, from its peak bin ``k`` and the two
    neighbours on a grid zero-padded by ``pad_factor`` (>= 2; otherwise the bin's own excess).

    A line between grid bins loses up to 17 % of its SNR^2 at pad 2 (the window's main lobe,
    24 % at 0.29 bins when noise moved the peak). The offset of the line from bin k is found by
    a parabola through the logarithms of the three excesses (exact for a Gaussian lobe, within
    0.04 bins for the Tukey one), and the excess is divided by the lobe's value there. Where the
    three do not make a peak (noise, or neighbours that stacked other segments), the bin's own
    excess is returned."""
    excess = np.asarray(excess, dtype=np.float64)
    count = np.asarray(count)
    y0 = float(excess[k])
    if pad_factor < 2 or k < 1 or k + 1 >= excess.size:
        return y0
    if not count[k - 1] == count[k] == count[k + 1]:  # neighbours stacked other segments
        return y0
    ym, yp = float(excess[k - 1]), float(excess[k + 1])
    if not (y0 > 0 and ym > 0 and yp > 0 and y0 >= ym and y0 >= yp):
        return y0
    lm, l0, lp = math.log(ym), math.log(y0), math.log(yp)
    curvature = lm - 2 * l0 + lp
    if curvature >= 0:
        return y0
    offset = min(abs(0.5 * (lm - lp) / curvature) / pad_factor, MAX_OFFSET)
    d, lobe = _lobe_table()
    return y0 / float(np.interp(offset, d, lobe))


def grid_trials(n_grid: int, n_independent_bins: int) -> tuple[int, float]:
    """(trials, coherence) of a catalogue grid of ``n_grid`` bins in the searched band holding
    ``n_independent_bins`` unpadded Fourier bins: the zero-padding factor is their ratio, the
    trials are the grid bins, and the coherence of neighbours is the gap-free Tukey window's
    (segments with gaps differ a little; the statistic a catalogue stores has no window)."""
    return int(n_grid), nominal_coherence(grid_pad(n_grid, n_independent_bins))


def significant_bins(
    total: ArrayLike,
    count: ArrayLike,
    n_trials: int,
    fap_threshold: float,
    dof_per_segment: int = DOF,
    coherence: float = 0.0,
) -> NDArray[np.bool_]:
    """Bins covered by a segment whose stacked FAP is below ``fap_threshold``."""
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    fap = stacked_fap(total, count, n_trials, dof_per_segment, coherence)
    return (count > 0) & np.isfinite(total) & (fap < fap_threshold)


def supported_sources(
    sources: Mapping[str, int], significant: ArrayLike, merge_bins: int = MERGE_BINS
) -> set[str]:
    """The sources that stay promoted: a significant bin within ``merge_bins`` of their bin."""
    significant = np.asarray(significant, dtype=bool)
    return {
        sid
        for sid, k in sources.items()
        if significant[max(k - merge_bins, 0) : k + merge_bins + 1].any()
    }


def significant_clusters(
    total: ArrayLike,
    count: ArrayLike,
    n_independent_bins: int,
    fap_threshold: float,
    merge_bins: int = MERGE_BINS,
    dof_per_segment: int = DOF,
    coherence: float = 0.0,
) -> list[Cluster]:
    """Clusters of bins whose stacked FAP is below ``fap_threshold``, in frequency order
    (``n_independent_bins``: the trials, independent when ``coherence`` is 0)."""
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    significant = np.flatnonzero(
        significant_bins(
            total, count, n_independent_bins, fap_threshold, dof_per_segment, coherence
        )
    )
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


@dataclass(frozen=True)
class Attached:
    """The estimates attached to one source, as the columns its summary needs. The catalogue
    keeps these per source and appends each segment's (a copy of a few kB), so its summary
    runs over arrays, not over every estimate object so far at every segment; the sums are
    the same, in the same order, as over the list."""

    frequency_hz: NDArray[np.float64]
    sigma_frequency_hz: NDArray[np.float64]
    amplitude: NDArray[np.float64]

    @classmethod
    def of(cls, estimates: Sequence[Estimate]) -> Attached:
        n = len(estimates)

        def column(name: str) -> NDArray[np.float64]:
            return np.fromiter((getattr(e, name) for e in estimates), np.float64, count=n)

        return cls(column("frequency_hz"), column("sigma_frequency_hz"), column("amplitude"))

    def __len__(self) -> int:
        return int(self.frequency_hz.size)

    def __add__(self, other: Attached) -> Attached:
        if not len(other):
            return self
        return Attached(
            np.concatenate([self.frequency_hz, other.frequency_hz]),
            np.concatenate([self.sigma_frequency_hz, other.sigma_frequency_hz]),
            np.concatenate([self.amplitude, other.amplitude]),
        )

    def mean_amplitude(self) -> float | None:
        finite = self.amplitude[np.isfinite(self.amplitude)]
        return float(np.mean(finite)) if finite.size else None


def _columns(estimates: Attached | Sequence[Estimate]) -> Attached:
    return estimates if isinstance(estimates, Attached) else Attached.of(estimates)


def frequency_and_sigma(
    estimates: Attached | Sequence[Estimate], bin_frequency: float, bin_width: float
) -> tuple[float, float]:
    """Source frequency and its 1-sigma uncertainty.

    With estimates: the inverse-variance weighted mean of their frequencies, and the larger of its
    formal error 1/sqrt(sum 1/sigma_i^2) and the standard error of their spread (which also absorbs
    the Doppler drift across segments). Without: the peak bin's frequency and bin_width/sqrt(12),
    the standard deviation of a frequency known only to lie somewhere in the bin.
    """
    columns = _columns(estimates)
    if not len(columns):
        return bin_frequency, bin_width / math.sqrt(12.0)
    freqs, sigmas = columns.frequency_hz, columns.sigma_frequency_hz
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
    coherence: float = 0.0,
    pad_factor: int = 1,
    attached: Mapping[str, Attached | list[Estimate]] | None = None,
) -> list[SourceSummary]:
    """Every catalogued source as the current stack and estimates describe it, by frequency.
    ``pad_factor`` >= 2: the stacked SNR is corrected for scalloping (the line between bins).
    ``attached``: ``associate(f, sources, estimates, radius)`` when the caller has it already,
    lists or :class:`Attached` columns (the catalogue extends the previous segment's columns
    with the new estimates only)."""
    f = np.asarray(f, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    if attached is None:
        attached = associate(f, sources, estimates, radius)
    bin_width = float(f[1] - f[0]) if f.size > 1 else float("nan")
    excess = total - dof_per_segment * count
    out = []
    for sid, k in sources.items():
        ests = _columns(attached[sid])
        freq, sigma = frequency_and_sigma(ests, float(f[k]), bin_width)
        out.append(
            SourceSummary(
                source_id=sid,
                frequency_bin=int(k),
                frequency_hz=freq,
                sigma_frequency_hz=sigma,
                stacked_statistic=float(total[k]),
                stacked_snr=math.sqrt(
                    max(scalloping_corrected_excess(excess, count, k, pad_factor), 0.0)
                ),
                fap=float(
                    stacked_fap(total[k], count[k], n_independent_bins, dof_per_segment, coherence)
                ),
                n_segments=int(count[k]),
                n_estimates=len(ests),
                mean_amplitude=ests.mean_amplitude(),
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
    coherence: float = 0.0,
) -> dict[str, int]:
    """One promotion round on the current stack: source id -> peak bin (a superset of
    ``existing``, whose bins may have moved to their cluster's new peak). Which of them are
    promoted now is :func:`supported_sources` of the same stack."""
    total = np.asarray(total, dtype=np.float64)
    count = np.asarray(count)
    clusters = significant_clusters(
        total, count, n_independent_bins, fap_threshold, merge_bins, dof_per_segment, coherence
    )
    excess = total - dof_per_segment * count
    return assign_sources(clusters, f, excess, existing, merge_bins)
