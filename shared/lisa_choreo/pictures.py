"""The run's pictures, for humans: pure functions from data to PNG files (matplotlib, Agg).

- ``spectrum.png``: the stacked A+E statistic over frequency, rebuilt from every segment's
  statistic, with the catalogue's threshold (the stacked false-alarm probability of
  ``LISA_CATALOG_FAP`` for a maximum over the zero-padded grid,
  ``lisa_science.significance.grid_threshold`` with 4N degrees of freedom), the noise mean 4N,
  the significant clusters (``lisa_science.cataloguing.significant_clusters``) and the
  catalogued sources;
- ``quality.png``: data quality per segment over time: the measured PSD over the SciRD model per
  band (A and E), and the gap and glitch samples the conditioning masked;
- ``catalogue.png``: the catalogue, frequency against stacked SNR, and beside it the sky map of
  the sources the refine step has positioned (ecliptic longitude/latitude with 1-sigma bars);
- ``latency.png``: per hop, the time from the previous hop's record to this one's (record
  timestamps), and the time records waited in the topic before a consumer took them (the
  consumer spans' ``lisa.queue_wait_ms``).

Nothing here reads Kafka or the store: ``lisa_choreo.mainjob.collect`` gathers a ``RunData``.
Figures are made with ``matplotlib.figure.Figure`` (no pyplot state), so drawing is thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter
from numpy.typing import NDArray

from lisa_science.cataloguing import MERGE_BINS, grid_trials, significant_clusters
from lisa_science.search import DOF
from lisa_science.significance import grid_threshold

DPI = 110
BAND_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


class SourceLike(Protocol):
    """What a picture needs of a catalogued source (``CatalogSource`` has it)."""

    source_id: str
    frequency_hz: float
    frequency_bin: int
    stacked_snr: float
    n_segments: int


@dataclass(frozen=True, eq=False)
class Stack:
    """The stacked statistic of the segments sharing one frequency grid."""

    f: NDArray[np.float64]
    total: NDArray[np.float64]
    count: NDArray[np.int64]
    n_independent_bins: int
    segments: int
    label: str = ""

    def threshold(self, fap: float) -> NDArray[np.float64]:
        """Per bin, the stacked statistic whose false-alarm probability over the grid is ``fap``
        (chi-square with 4N degrees of freedom, N the segments in that bin), as the catalogue
        promotes (``lisa_science.cataloguing.grid_trials``)."""
        out = np.full(self.f.shape, np.nan)
        n_trials, coherence = self.trials()
        for n in np.unique(self.count[self.count > 0]):
            out[self.count == n] = grid_threshold(fap, DOF * n, n_trials, coherence)
        return out

    def trials(self) -> tuple[int, float]:
        return grid_trials(self.f.size, self.n_independent_bins)


@dataclass(frozen=True)
class BandRatio:
    channel: str
    fmin_hz: float
    fmax_hz: float
    ratio: float


@dataclass(frozen=True)
class SegmentQuality:
    """One conditioned segment: when, and how its noise and samples looked."""

    segment_id: str
    t0: float
    duration_s: float
    ratios: tuple[BandRatio, ...]
    gap_samples: int
    glitch_samples: int
    usable_fraction: float


@dataclass
class RunData:
    """Everything the pictures show, gathered from a run's topics, store and spans."""

    stacks: list[Stack] = field(default_factory=list)
    sources: Sequence[SourceLike] = ()
    fap: float = 1e-3
    merge_bins: int = MERGE_BINS
    truth_hz: Sequence[float] = ()
    quality: list[SegmentQuality] = field(default_factory=list)
    hop_ms: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """stage label -> per segment, its record's timestamp minus the previous hop's (ms)."""
    queue_wait_ms: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """stage label -> per consumed record, how long it waited before processing (ms)."""
    title: str = ""


@dataclass(frozen=True)
class Picture:
    path: Path
    what: str


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=DPI, format="png")
    tmp.replace(path)
    return path


class _PlainLogFormatter(LogFormatter):
    """matplotlib's log-axis labels (which ticks get one) written as plain numbers: 0.1, 20."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _plain_log(axis) -> None:
    """Log-scale tick labels as plain numbers (20, 0.3), not 2x10^1 or 1e-01; minor ticks
    labelled when the axis spans about a decade or less."""
    axis.set_major_formatter(_PlainLogFormatter())
    axis.set_minor_formatter(_PlainLogFormatter(minor_thresholds=(1.2, 0.5)))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_spectrum(
    path: Path,
    stacks: Sequence[Stack],
    sources: Sequence[SourceLike],
    fap: float,
    merge_bins: int = MERGE_BINS,
    truth_hz: Sequence[float] = (),
    title: str = "",
) -> Path:
    """The stacked statistic, the noise mean 4N, the catalogue's threshold, the significant
    clusters (shaded) and the catalogued sources (triangles, labelled)."""
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot()
    if not stacks:
        _empty(ax, "no segment statistic to stack")
        return _save(fig, path)
    for i, stack in enumerate(stacks):
        f_mhz = stack.f * 1e3
        label = f"stacked statistic, {stack.segments} segment(s)"
        if len(stacks) > 1:
            label += f" ({stack.label})"
        ax.plot(f_mhz, stack.total, lw=0.6, color="0.25" if i == 0 else f"C{i}", label=label)
        ax.plot(
            f_mhz,
            np.where(stack.count > 0, DOF * stack.count, np.nan),
            lw=0.8,
            ls=":",
            color="tab:blue",
            label="noise mean 4N" if i == 0 else None,
        )
        ax.plot(
            f_mhz,
            stack.threshold(fap),
            lw=1.2,
            color="tab:red",
            label=f"threshold: stacked FAP {fap:g} over {stack.f.size} grid bins"
            if i == 0
            else None,
        )
        n_trials, coherence = stack.trials()
        for c in significant_clusters(
            stack.total, stack.count, n_trials, fap, merge_bins, coherence=coherence
        ):
            ax.axvspan(f_mhz[c.lo] - 0.002, f_mhz[c.hi] + 0.002, color="tab:red", alpha=0.12)
    main = stacks[0]
    for src in sources:
        k = int(np.clip(src.frequency_bin, 0, main.f.size - 1))
        y = main.total[k] * 1.35
        ax.plot(src.frequency_hz * 1e3, y, marker="v", color="tab:red", ms=7, ls="none")
        ax.annotate(  # upright: neighbours a few percent apart in frequency stay readable
            src.source_id,
            (src.frequency_hz * 1e3, y),
            xytext=(0, 7),
            textcoords="offset points",
            rotation=90,
            fontsize=7,
            ha="center",
            va="bottom",
        )
    for j, f in enumerate(truth_hz):
        ax.axvline(
            f * 1e3, color="tab:green", lw=0.7, alpha=0.5, label="injected" if j == 0 else None
        )
    if sources:
        ax.plot([], [], marker="v", color="tab:red", ls="none", label="catalogued source")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    finite = main.total[np.isfinite(main.total) & (main.total > 0)]
    if finite.size:
        ax.set_ylim(max(finite.min() * 0.5, 1e-2), finite.max() * 12)
    ax.set_xlabel("frequency (mHz)")
    ax.set_ylabel("stacked A+E statistic (χ² with 4N dof on noise)")
    ax.set_title(title or "Stacked statistic spectrum")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def _band_label(lo: float, hi: float) -> str:
    return f"{lo * 1e3:g}–{hi * 1e3:g} mHz"


def draw_quality(path: Path, quality: Sequence[SegmentQuality], title: str = "") -> Path:
    """Top: measured PSD / SciRD model per band (mean of A and E) per segment, 1 = nominal.
    Bottom: samples masked per segment as gaps (NaN) and glitches (outliers)."""
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    if not quality:
        _empty(top, "no conditioned segment")
        _empty(bottom, "")
        return _save(fig, path)
    rows = sorted(quality, key=lambda q: q.t0)
    t_ref = rows[0].t0
    days = np.array([(q.t0 - t_ref + q.duration_s / 2) / 86_400 for q in rows])
    width = max(min(q.duration_s for q in rows) / 86_400 * 0.8, 1e-3)
    bands = sorted({(r.fmin_hz, r.fmax_hz) for q in rows for r in q.ratios})
    for i, (lo, hi) in enumerate(bands):
        values = []
        for q in rows:
            ae = [
                r.ratio
                for r in q.ratios
                if (r.fmin_hz, r.fmax_hz) == (lo, hi) and r.channel in ("A", "E")
            ]
            values.append(float(np.mean(ae)) if ae else np.nan)
        top.plot(
            days,
            values,
            marker="o",
            ms=3,
            lw=1,
            color=BAND_COLOURS[i % len(BAND_COLOURS)],
            label=_band_label(lo, hi),
        )
    top.axhline(1.0, color="0.3", lw=0.8, ls="--")
    top.set_ylabel("PSD / SciRD model (A, E)")
    top.legend(fontsize=8, ncols=min(len(bands), 5), loc="upper left")
    top.grid(True, alpha=0.3)
    top.set_title(title or "Data quality per segment")
    gaps = np.array([q.gap_samples for q in rows], dtype=float)
    glitches = np.array([q.glitch_samples for q in rows], dtype=float)
    bottom.bar(days - width / 4, gaps, width=width / 2, color="0.55", label="gap samples")
    bottom.bar(
        days + width / 4, glitches, width=width / 2, color="tab:purple", label="glitch samples"
    )
    bottom.set_ylabel("masked samples")
    bottom.set_xlabel(f"time since the first segment (days; t0 = {t_ref:.0f} s)")
    bottom.legend(fontsize=8, loc="upper left")
    bottom.grid(True, alpha=0.3)
    if not gaps.any() and not glitches.any():
        bottom.text(
            0.5,
            0.5,
            "no gap, no glitch",
            ha="center",
            va="center",
            transform=bottom.transAxes,
            color="0.4",
        )
        bottom.set_ylim(0, 1)
    usable = np.array([q.usable_fraction for q in rows])
    bottom.set_title(
        f"{int(gaps.sum())} gap and {int(glitches.sum())} glitch samples masked; usable fraction "
        f"min {usable.min():.3f}",
        fontsize=9,
    )
    return _save(fig, path)


def _sky_map(ax, sources: Sequence[SourceLike]) -> None:
    """Ecliptic longitude/latitude of the refined sources, 1-sigma error bars (degrees)."""
    for s in sources:
        lon = math.degrees(getattr(s, "ecliptic_longitude_rad", 0.0))
        lat = math.degrees(getattr(s, "ecliptic_latitude_rad", 0.0))
        sig_lon = math.degrees(getattr(s, "sigma_ecliptic_longitude_rad", None) or 0.0)
        sig_lat = math.degrees(getattr(s, "sigma_ecliptic_latitude_rad", None) or 0.0)
        ax.errorbar(lon, lat, xerr=sig_lon, yerr=sig_lat, fmt="o", ms=4, capsize=2, alpha=0.8)
        ax.annotate(s.source_id, (lon, lat), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlim(0, 360)
    ax.set_ylim(-90, 90)
    ax.set_xlabel("ecliptic longitude (deg)")
    ax.set_ylabel("ecliptic latitude (deg)")
    ax.set_title("Sky (refine: coherent fit, 1 sigma)")
    ax.grid(True, alpha=0.3)


def draw_catalogue(
    path: Path,
    sources: Sequence[SourceLike],
    truth_hz: Sequence[float] = (),
    title: str = "",
) -> Path:
    """Frequency against stacked SNR, one labelled point per source (marker area ~ segments),
    and the sky map of the refined sources when there are any."""
    has_sky = any(getattr(s, "ecliptic_latitude_rad", None) is not None for s in sources)
    fig = Figure(figsize=(15 if has_sky else 9, 5.2), layout="constrained")
    ax = fig.add_subplot(1, 2, 1) if has_sky else fig.add_subplot()
    for j, f in enumerate(truth_hz):
        ax.axvline(
            f * 1e3, color="tab:green", lw=0.7, alpha=0.5, label="injected" if j == 0 else None
        )
    if not sources:
        _empty(ax, "the catalogue is empty")
        return _save(fig, path)
    f_mhz = np.array([s.frequency_hz * 1e3 for s in sources])
    snr = np.array([s.stacked_snr for s in sources])
    segs = np.array([s.n_segments for s in sources], dtype=float)
    ax.scatter(
        f_mhz,
        snr,
        s=20 + 80 * segs / max(segs.max(), 1),
        color="tab:red",
        zorder=3,
        label="catalogued (area ~ segments stacked)",
    )
    for s, x, y in zip(sources, f_mhz, snr, strict=True):
        ax.annotate(s.source_id, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = f_mhz.min(), f_mhz.max()
    ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.set_ylim(max(snr.min() / 1.6, 0.5), snr.max() * 1.8)
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set_xlabel("frequency (mHz)")
    ax.set_ylabel("stacked SNR")
    ax.set_title(title or f"Catalogue: {len(sources)} source(s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    sky = [s for s in sources if getattr(s, "ecliptic_latitude_rad", None) is not None]
    if sky:
        _sky_map(fig.add_subplot(1, 2, 2), sky)
    else:
        fig.text(
            0.01,
            0.005,
            "sky map skipped: no source has a refined sky position yet",
            fontsize=7,
            color="0.4",
        )
    return _save(fig, path)


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def _boxes(ax, series: Mapping[str, Sequence[float]], colour: str, ylabel: str) -> None:
    labels = [k for k, v in series.items() if len(v)]
    if not labels:
        _empty(ax, "no data")
        return
    data = [np.maximum(np.asarray(series[k], dtype=float), 1e-2) for k in labels]
    ticks = [
        f"{k}\np50 {_percentile(series[k], 50):.0f} · p99 {_percentile(series[k], 99):.0f}"
        f"\nn = {len(series[k])}"
        for k in labels
    ]
    ax.boxplot(
        data,
        tick_labels=ticks,
        whis=(5, 95),
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.5},
        patch_artist=True,
        boxprops={"facecolor": colour, "alpha": 0.5},
        medianprops={"color": "black"},
    )
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", which="both", alpha=0.3)


def draw_latency(
    path: Path,
    hop_ms: Mapping[str, Sequence[float]],
    queue_wait_ms: Mapping[str, Sequence[float]],
    title: str = "",
) -> Path:
    """Left: per stage, its record's timestamp minus the previous stage's (a hop: waiting in the
    topic + processing + producing). Right: how long records waited before their consumer took
    them. Boxes: quartiles; whiskers: 5-95 %; p50/p99 in ms under each stage."""
    fig = Figure(figsize=(11, 5), layout="constrained")
    left, right = fig.subplots(1, 2)
    _boxes(left, hop_ms, "tab:blue", "ms (log)")
    left.set_title("per-hop latency: record timestamp − previous hop's", fontsize=10)
    _boxes(right, queue_wait_ms, "tab:orange", "ms (log)")
    right.set_title("queue wait before processing (consumer spans)", fontsize=10)
    fig.suptitle(title or "Latency per stage")
    return _save(fig, path)


def draw_all(data: RunData, out_dir: Path) -> list[Picture]:
    """Every picture of a run into ``out_dir``; returns them with one line each on what they
    show."""
    prefix = f"{data.title}: " if data.title else ""
    segments = max((s.segments for s in data.stacks), default=0)
    pictures = [
        Picture(
            draw_spectrum(
                out_dir / "spectrum.png",
                data.stacks,
                data.sources,
                data.fap,
                data.merge_bins,
                data.truth_hz,
                f"{prefix}stacked statistic of {segments} segment(s)",
            ),
            "stacked statistic spectrum, threshold and catalogued sources",
        ),
        Picture(
            draw_quality(out_dir / "quality.png", data.quality, f"{prefix}data quality"),
            "data quality over time: PSD/model per band, gaps and glitches",
        ),
        Picture(
            draw_catalogue(
                out_dir / "catalogue.png",
                data.sources,
                data.truth_hz,
                f"{prefix}catalogue, {len(data.sources)} source(s)",
            ),
            "the catalogue: frequency vs stacked SNR, and the refined sources' sky map",
        ),
        Picture(
            draw_latency(
                out_dir / "latency.png",
                data.hop_ms,
                data.queue_wait_ms,
                f"{prefix}latency per hop",
            ),
            "per-hop latency and queue wait per stage",
        ),
    ]
    return pictures
