"""The catalogue's state for one frequency grid, as one JSON value of the faust table.

Everything a segment changes lives in ONE table value (the per-bin sums, the ids of the segments
already counted, their trace contexts, their estimates, the sources and what was last published
about each), so one changelog record carries it all: a crash can never leave the stack updated
and the segment not marked as counted, or the reverse. A redelivered segment is then recognised
by its id and ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from choreo.errors import PermanentError
from lisa_pipeline.events import CatalogSource, SourceEstimate, SourceEstimates
from lisa_science.cataloguing import Estimate, promote, summarise
from lisa_services.catalog.settings import CatalogSettings

STATE_VERSION = 1


def grid_key(event: SourceEstimates) -> str:
    """Segments stack only on one frequency grid: same cadence, length and band."""
    shapes = event.statistic.shapes
    if "f" not in shapes or "stat" not in shapes or len(shapes["f"]) != 1:
        raise PermanentError("bad-statistic", f"statistic shapes {shapes} lack 1-D f and stat")
    if shapes["f"] != shapes["stat"]:
        raise PermanentError("bad-statistic", f"f {shapes['f']} and stat {shapes['stat']} differ")
    return f"dt{event.timing.dt!r}-n{event.timing.n_samples}-f{shapes['f'][0]}"


def to_estimate(segment_id: str, est: SourceEstimate) -> Estimate:
    return Estimate(
        segment_id=segment_id,
        frequency_hz=est.frequency_hz,
        sigma_frequency_hz=est.sigma_frequency_hz,
        amplitude=math.sqrt((est.amplitude_a**2 + est.amplitude_e**2) / 2),
        snr=est.snr,
    )


def _digest(body: CatalogSource) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class GridStack:
    f: NDArray[np.float64]
    n_independent_bins: int
    total: NDArray[np.float64]
    count: NDArray[np.int64]
    segments: tuple[str, ...] = ()
    traceparents: tuple[str, ...] = ()
    estimates: tuple[Estimate, ...] = ()
    sources: dict[str, int] | None = None
    published: dict[str, str] | None = None
    """source id -> digest of the body last published (publish only what changed)."""

    @classmethod
    def new(cls, f: NDArray[np.float64], n_independent_bins: int) -> GridStack:
        return cls(
            np.asarray(f, dtype=np.float64),
            int(n_independent_bins),
            np.zeros(len(f)),
            np.zeros(len(f), dtype=np.int64),
            sources={},
            published={},
        )

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> GridStack:
        if value.get("version") != STATE_VERSION:
            raise ValueError(f"catalogue state version {value.get('version')} unsupported")
        return cls(
            f=np.asarray(value["f"], dtype=np.float64),
            n_independent_bins=int(value["n_independent_bins"]),
            total=np.asarray(value["total"], dtype=np.float64),
            count=np.asarray(value["count"], dtype=np.int64),
            segments=tuple(value["segments"]),
            traceparents=tuple(value["traceparents"]),
            estimates=tuple(Estimate(*e) for e in value["estimates"]),
            sources=dict(value["sources"]),
            published=dict(value["published"]),
        )

    def to_json(self) -> dict[str, Any]:
        """Lists and scalars only: the table's JSON serializer round-trips floats exactly."""
        return {
            "version": STATE_VERSION,
            "f": self.f.tolist(),
            "n_independent_bins": self.n_independent_bins,
            "total": self.total.tolist(),
            "count": self.count.tolist(),
            "segments": list(self.segments),
            "traceparents": list(self.traceparents),
            "estimates": [
                [e.segment_id, e.frequency_hz, e.sigma_frequency_hz, e.amplitude, e.snr]
                for e in self.estimates
            ],
            "sources": dict(self.sources or {}),
            "published": dict(self.published or {}),
        }

    def check_grid(self, f: NDArray[np.float64], n_independent_bins: int) -> None:
        """A statistic from another grid would add unrelated frequencies bin by bin."""
        if f.shape != self.f.shape or not np.allclose(f, self.f, rtol=1e-12, atol=0.0):
            raise PermanentError(
                "grid-mismatch",
                f"frequency grid ({f.size} bins from {f[0] if f.size else None} Hz) differs from "
                f"the stacked one ({self.f.size} bins from {self.f[0]} Hz)",
            )
        if n_independent_bins != self.n_independent_bins:
            raise PermanentError(
                "grid-mismatch",
                f"n_independent_bins {n_independent_bins} != {self.n_independent_bins}",
            )

    def add(
        self,
        segment_id: str,
        stat: NDArray[np.float64],
        estimates: list[Estimate],
        traceparent: str | None,
        max_links: int,
    ) -> GridStack:
        """The state with one more segment (NaN bins, where the PSD was unknown, not counted)."""
        ok = np.isfinite(stat)
        links = (*self.traceparents, traceparent) if traceparent else self.traceparents
        return replace(
            self,
            total=self.total + np.where(ok, stat, 0.0),
            count=self.count + ok,
            segments=(*self.segments, segment_id),
            traceparents=links[-max_links:] if max_links else (),
            estimates=(*self.estimates, *estimates),
        )

    def promote(self, fap: float, merge_bins: int) -> GridStack:
        sources = promote(
            self.f,
            self.total,
            self.count,
            self.n_independent_bins,
            fap,
            self.sources or {},
            merge_bins,
        )
        return replace(self, sources=sources)

    def version(self) -> str:
        """Names the set of stacked segments: a recomputation after a crash gives the same."""
        digest = hashlib.sha256("\n".join(sorted(self.segments)).encode()).hexdigest()
        return f"{len(self.segments)}-{digest[:16]}"

    def catalogue(self, association_bins: int) -> list[CatalogSource]:
        contributing = sorted(self.segments)
        return [
            CatalogSource(
                source_id=s.source_id,
                frequency_hz=s.frequency_hz,
                frequency_bin=s.frequency_bin,
                sigma_frequency_hz=s.sigma_frequency_hz,
                stacked_statistic=s.stacked_statistic,
                stacked_snr=s.stacked_snr,
                fap=s.fap,
                n_segments=s.n_segments,
                n_estimates=s.n_estimates,
                mean_amplitude=s.mean_amplitude,
                contributing_segments=contributing,
            )
            for s in summarise(
                self.f,
                self.total,
                self.count,
                self.n_independent_bins,
                self.sources or {},
                self.estimates,
                association_bins,
            )
        ]

    def changed(self, association_bins: int) -> list[CatalogSource]:
        """Sources whose published state would differ from the last one sent."""
        published = self.published or {}
        return [
            body
            for body in self.catalogue(association_bins)
            if published.get(body.source_id) != _digest(body)
        ]

    def mark_published(self, bodies: list[CatalogSource]) -> GridStack:
        return replace(
            self, published={**(self.published or {}), **{b.source_id: _digest(b) for b in bodies}}
        )


def decode_state(value: Any) -> GridStack | None:
    """A table value (dict, or JSON text/bytes for robustness) as state; None if absent."""
    if value is None:
        return None
    if isinstance(value, bytes | str):
        value = json.loads(value)
    return GridStack.from_json(value)


def stack_segment(
    stack: GridStack | None,
    event: SourceEstimates,
    f: NDArray[np.float64],
    stat: NDArray[np.float64],
    traceparent: str | None,
    settings: CatalogSettings,
) -> GridStack:
    """The catalogue's one job, without a broker: the grid's state with this segment's statistic
    and estimates added and the sources promoted. ``stack`` is None for a grid's first segment;
    a statistic on another grid, or unusable, is a ``PermanentError``."""
    f = np.asarray(f, dtype=np.float64)
    stat = np.asarray(stat, dtype=np.float64)
    if f.ndim != 1 or stat.shape != f.shape or f.size < 2:
        raise PermanentError("bad-statistic", f"f {f.shape} and stat {stat.shape} unusable")
    if event.n_independent_bins < 1:
        raise PermanentError("bad-statistic", "n_independent_bins must be >= 1")
    if stack is None:
        stack = GridStack.new(f, event.n_independent_bins)
    else:
        stack.check_grid(f, event.n_independent_bins)
    segment_id = event.timing.segment_id
    estimates = [to_estimate(segment_id, e) for e in event.estimates]
    stack = stack.add(segment_id, stat, estimates, traceparent, settings.max_links)
    return stack.promote(settings.fap, settings.merge_bins)
