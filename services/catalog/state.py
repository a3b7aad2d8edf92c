"""The catalogue's state for one frequency grid, as one JSON value of the faust table.

Everything a segment changes lives in ONE table value (the per-bin sums, the ids of the segments
already counted, their trace contexts, their estimates, the sources and what was last published
about each), so one changelog record carries it all: a crash can never leave the stack updated
and the segment not marked as counted, or the reverse. A redelivered segment is then recognised
by its id and ignored.

Retraction, a compensation (``lisa.segment.retracted.v1``), is pure here too:

- **subtract**: each counted segment keeps its origin (the claim-check reference of its statistic
  and its trace context, ``Origin``), so ``GridStack.retract`` takes the statistic out of every
  bin it was added to (a bin no segment covers any more is exactly zero again), drops the
  segment's estimates and its trace link, runs a promotion round on what is left and settles the
  sources' status;
- **demote**: after every change of the stack (a segment added or retracted) the catalogue is
  decided again on the whole stack (re-evaluation, ``lisa_science.cataloguing``; identity stays
  sticky): a source with no significant bin within ``merge_bins`` of its own becomes ``demoted``
  (segments remain at its bin) or ``retracted`` (none remains). A later promotion round that finds
  it significant again promotes it again, under the same id. Withdrawn sources stay in the state
  and on ``lisa.catalog`` with their status; the products list only promoted ones;
- **remember**: ``RetractionLedger`` holds every retracted segment id of one partition of the
  by-grid hop (one table value per partition, written on that partition's changelog), so a
  segment whose retraction came first is never counted, whatever its grid; a grid also lists its
  retracted segments (``retracted``: subtracted, or refused on arrival; a segment refused before
  its grid existed is noted in the ledger with the grid and listed when the grid is created), and
  its update events carry that list, whatever the order of segment and retraction.

State version 2 adds ``origins``, ``retracted`` and ``status``. A version-1 value is read as is
(migrated on its next write): its segments have no origin, so retracting one of them is refused
with ``retraction-unsupported`` (its statistic reference was never kept); anything else works.

Version 3 (the catalog service's table) keeps the per-segment part apart, so that a segment's
table writes cost the same at the 3650th segment as at the first, and the grid's value stays far
under the broker's record limit (a version-2 value of ten years of daily segments, their
estimates and statistic references, would be ~2.3 MB): the grid's value is its *head* (the
per-bin sums as base64 float64/int64, the counted ids, sources, what was published, status,
retractions: ``head_json``), and each counted segment has an *entry* of its own (its origin and
its estimates, ``segment_entry``, under ``entry_key(grid, segment)`` in a second table). The head
is the commit point: a segment's entry is written first, then the head that counts it; a crash
in between leaves an entry no head lists, which the replay writes again. A retracted segment's
entry is left behind (no head lists it: it is never read). Version 2 (``to_json``, whole) is
still what the orchestrated mode keeps and what ``from_json`` reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from aiokafka.partitioner import murmur2
from numpy.typing import NDArray

from choreo.errors import PermanentError
from choreo.store import ArrayRef
from lisa_pipeline.events import CatalogSource, SourceEstimate, SourceEstimates
from lisa_science.cataloguing import (
    Attached,
    Estimate,
    associate,
    grid_pad,
    grid_trials,
    promote,
    significant_bins,
    summarise,
    supported_sources,
)
from lisa_services.catalog.settings import CatalogSettings

STATE_VERSION = 2
HEAD_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
"""Version 1 (before retraction) is migrated on read; 3 is a head with its segment entries;
anything else is refused."""

PROMOTED, DEMOTED, RETRACTED = "promoted", "demoted", "retracted"

LEDGER_PREFIX = "~retractions/"
"""Table keys of the retraction ledgers, one per by-grid partition (grid keys start with dt)."""


def grid_key(event: SourceEstimates) -> str:
    """Segments stack only on one frequency grid: same cadence, length and band."""
    shapes = event.statistic.shapes
    if "f" not in shapes or "stat" not in shapes or len(shapes["f"]) != 1:
        raise PermanentError("bad-statistic", f"statistic shapes {shapes} lack 1-D f and stat")
    if shapes["f"] != shapes["stat"]:
        raise PermanentError("bad-statistic", f"f {shapes['f']} and stat {shapes['stat']} differ")
    return f"dt{event.timing.dt!r}-n{event.timing.n_samples}-f{shapes['f'][0]}"


def entry_key(grid: str, segment_id: str) -> str:
    """The key of a counted segment's entry (origin and estimates) in the entries table."""
    return f"{grid}|{segment_id}"


def _pack(array: NDArray[Any], dtype: str) -> str:
    """An array as base64 of its little-endian bytes: exact, and ~100x cheaper to encode and
    decode than a JSON list of its numbers."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def _unpack(value: Any, dtype: str) -> NDArray[Any]:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype=dtype).astype(dtype[1:])
    return np.asarray(value, dtype=dtype[1:])


def ledger_key(partition: int) -> str:
    return f"{LEDGER_PREFIX}{partition}"


def is_grid_key(key: str) -> bool:
    return not key.startswith(LEDGER_PREFIX)


def grid_partition(key: str, partitions: int) -> int:
    """The by-grid partition a grid key lands on: the producer's default partitioner (murmur2
    of the key, as Kafka's Java client and aiokafka compute it), which the route agent uses."""
    if partitions <= 1:
        return 0
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def to_estimate(segment_id: str, est: SourceEstimate) -> Estimate:
    return Estimate(
        segment_id=segment_id,
        frequency_hz=est.frequency_hz,
        sigma_frequency_hz=est.sigma_frequency_hz,
        amplitude=math.sqrt((est.amplitude_a**2 + est.amplitude_e**2) / 2),
        snr=est.snr,
    )


def _estimate_row(e: Estimate) -> list[Any]:
    return [e.segment_id, e.frequency_hz, e.sigma_frequency_hz, e.amplitude, e.snr]


_SEGMENT_LISTS = {"contributing_segments", "retracted_segments"}


def _digest(body: CatalogSource, version: str) -> str:
    """What was published of a source: its body but the two segment lists, which ``version``
    (the digest of the grid's counted and retracted sets, the lists' only source) stands for;
    hashing the lists themselves cost ~22 B per counted segment and source at every segment."""
    text = body.model_dump_json(exclude=_SEGMENT_LISTS) + version
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Origin:
    """What a retraction needs of a counted segment: its statistic and its trace context."""

    statistic: ArrayRef | None
    traceparent: str | None

    def to_json(self) -> list[Any]:
        ref = self.statistic.model_dump(mode="json") if self.statistic is not None else None
        return [ref, self.traceparent]

    @classmethod
    def from_json(cls, value: list[Any]) -> Origin:
        ref, traceparent = value
        return cls(ArrayRef.model_validate(ref) if ref is not None else None, traceparent)


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
    origins: dict[str, Origin] = field(default_factory=dict)
    """counted segment id -> its statistic reference and traceparent (version 2 on)."""
    retracted: tuple[str, ...] = ()
    """segments retracted from this grid: subtracted, or refused because retracted first."""
    status: dict[str, str] = field(default_factory=dict)
    """source id -> demoted | retracted; a source absent here is promoted."""
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    """catalogue() and version() of this state, computed once (the service asks for both
    several times per segment; ``replace`` starts every new state with an empty one)."""

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
    def from_json(cls, value: dict[str, Any], entries: dict[str, Any] | None = None) -> GridStack:
        """A whole value (versions 1, 2), or a head (version 3) with the entries of its counted
        segments (segment id -> ``segment_entry``)."""
        version = value.get("version")
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"catalogue state version {version} unsupported (this catalogue reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}): run the matching release"
            )
        segments = tuple(value["segments"])
        if version == HEAD_VERSION:
            entries = entries or {}
            missing = [sid for sid in segments if entries.get(sid) is None]
            if missing:
                raise ValueError(f"catalogue state: no entry for counted segments {missing[:3]}")
            rows = [e for sid in segments for e in entries[sid]["estimates"]]
            origins = {sid: entries[sid]["origin"] for sid in segments}
        else:
            rows = value["estimates"]
            origins = value.get("origins", {})
        return cls(
            f=_unpack(value["f"], "<f8"),
            n_independent_bins=int(value["n_independent_bins"]),
            total=_unpack(value["total"], "<f8"),
            count=_unpack(value["count"], "<i8"),
            segments=segments,
            traceparents=tuple(value["traceparents"]),
            estimates=tuple(Estimate(*e) for e in rows),
            sources=dict(value["sources"]),
            published=dict(value["published"]),
            # version 1 kept none of these: no origin (no retraction of those segments), no
            # retraction, every source promoted
            origins={k: Origin.from_json(v) for k, v in origins.items() if v is not None},
            retracted=tuple(value.get("retracted", ())),
            status=dict(value.get("status", {})),
        )

    def head_json(self) -> dict[str, Any]:
        """The grid's value in the catalog service's table (version 3): everything but the
        per-segment entries; its size grows only by one id per counted segment."""
        return {
            "version": HEAD_VERSION,
            "f": _pack(self.f, "<f8"),
            "n_independent_bins": self.n_independent_bins,
            "total": _pack(self.total, "<f8"),
            "count": _pack(self.count, "<i8"),
            "segments": list(self.segments),
            "traceparents": list(self.traceparents),
            "sources": dict(self.sources or {}),
            "published": dict(self.published or {}),
            "retracted": list(self.retracted),
            "status": dict(self.status),
        }

    def segment_entry(self, segment_id: str) -> dict[str, Any]:
        """A counted segment's entry: its origin and its estimates (version 3)."""
        origin = self.origins.get(segment_id)
        return {
            "origin": origin.to_json() if origin is not None else None,
            "estimates": [_estimate_row(e) for e in self._estimates_of(segment_id)],
        }

    def _estimates_of(self, segment_id: str) -> list[Estimate]:
        """The segment's estimates; those of the segment added last are the tail, found
        without a pass over every estimate."""
        if self.segments and self.segments[-1] == segment_id:
            tail: list[Estimate] = []
            for e in reversed(self.estimates):
                if e.segment_id != segment_id:
                    break
                tail.append(e)
            return tail[::-1]
        return [e for e in self.estimates if e.segment_id == segment_id]

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
            "estimates": [_estimate_row(e) for e in self.estimates],
            "sources": dict(self.sources or {}),
            "published": dict(self.published or {}),
            "origins": {k: o.to_json() for k, o in self.origins.items()},
            "retracted": list(self.retracted),
            "status": dict(self.status),
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
        statistic: ArrayRef | None = None,
    ) -> GridStack:
        """The state with one more segment (NaN bins, where the PSD was unknown, not counted)."""
        ok = np.isfinite(stat)
        links = (*self.traceparents, traceparent) if traceparent else self.traceparents
        added = replace(
            self,
            total=self.total + np.where(ok, stat, 0.0),
            count=self.count + ok,
            segments=(*self.segments, segment_id),
            traceparents=links[-max_links:] if max_links else (),
            estimates=(*self.estimates, *estimates),
            origins={**self.origins, segment_id: Origin(statistic, traceparent)},
        )
        return added._carry_association(self)  # its estimates begin with this state's

    def statistic_of(self, segment_id: str) -> ArrayRef:
        """The statistic a retraction of ``segment_id`` subtracts (it must be counted here)."""
        origin = self.origins.get(segment_id)
        if origin is None or origin.statistic is None:
            raise PermanentError(
                "retraction-unsupported",
                f"segment {segment_id} was counted by catalogue state version 1, which kept no "
                "reference to its statistic: it cannot be subtracted (rebuild the catalogue "
                "from the topics to retract it)",
            )
        return origin.statistic

    def traceparent_of(self, segment_id: str) -> str | None:
        origin = self.origins.get(segment_id)
        return origin.traceparent if origin is not None else None

    def retract(
        self, segment_id: str, stat: NDArray[np.float64], fap: float, merge_bins: int
    ) -> GridStack:
        """The state without a counted segment: its statistic subtracted from every bin it was
        added to, its estimates and trace link gone, sources promoted and demoted again. A
        segment not counted here (already retracted, never seen) changes nothing."""
        if segment_id not in self.segments:
            return self
        stat = np.asarray(stat, dtype=np.float64)
        if stat.shape != self.total.shape:
            raise PermanentError(
                "retraction-mismatch",
                f"statistic of {segment_id} has shape {stat.shape}, the stack {self.total.shape}",
            )
        ok = np.isfinite(stat)
        count = self.count - ok
        if (count < 0).any():
            raise PermanentError(
                "retraction-mismatch", f"{segment_id}: a bin would be counted a negative time"
            )
        # Where no segment is left the sum is zero, not a rounding residue of additions and one
        # subtraction; elsewhere it is the sum of the others to ~1e-16 relative.
        total = np.where(count == 0, 0.0, self.total - np.where(ok, stat, 0.0))
        link = self.traceparent_of(segment_id)
        withdrawn = replace(
            self,
            total=total,
            count=count,
            segments=tuple(s for s in self.segments if s != segment_id),
            traceparents=tuple(t for t in self.traceparents if t != link),
            estimates=tuple(e for e in self.estimates if e.segment_id != segment_id),
            origins={k: o for k, o in self.origins.items() if k != segment_id},
            retracted=self._with_retracted(segment_id),
        )
        return withdrawn.promote(fap, merge_bins)

    def refuse(self, segment_id: str) -> GridStack:
        """The segment arrived after its retraction: not counted, listed as retracted here."""
        if segment_id in self.retracted or segment_id in self.segments:
            return self
        return replace(self, retracted=self._with_retracted(segment_id))

    def _with_retracted(self, segment_id: str) -> tuple[str, ...]:
        if segment_id in self.retracted:
            return self.retracted
        return (*self.retracted, segment_id)

    def trials(self) -> tuple[int, float]:
        """(grid bins, coherence of neighbours) for the FAP of a maximum over this grid."""
        return grid_trials(self.f.size, self.n_independent_bins)

    def promote(self, fap: float, merge_bins: int) -> GridStack:
        """One promotion round, then the status of every source decided again on the whole
        stack (re-evaluation): promoted while significant, withdrawn otherwise. The promoted
        set depends on the stack only, not on the order segments came in."""
        n_trials, coherence = self.trials()
        sources = promote(
            self.f,
            self.total,
            self.count,
            n_trials,
            fap,
            self.sources or {},
            merge_bins,
            coherence=coherence,
        )
        promoted = replace(self, sources=sources)
        settled = replace(promoted, status=promoted.settled_status(fap, merge_bins))
        return settled._carry_association(self)  # same estimates

    def significant_near(self, fap: float, merge_bins: int) -> set[str]:
        """Sources with a significant bin within ``merge_bins`` of their own."""
        n_trials, coherence = self.trials()
        significant = significant_bins(self.total, self.count, n_trials, fap, coherence=coherence)
        return supported_sources(self.sources or {}, significant, merge_bins)

    def settled_status(self, fap: float, merge_bins: int) -> dict[str, str]:
        supported = self.significant_near(fap, merge_bins)
        return {
            sid: RETRACTED if self.count[k] == 0 else DEMOTED
            for sid, k in (self.sources or {}).items()
            if sid not in supported
        }

    def status_of(self, source_id: str) -> str:
        return self.status.get(source_id, PROMOTED)

    def version(self) -> str:
        """Names the set of stacked (and retracted) segments: a recomputation after a crash
        gives the same, so an update replayed repeats its id."""
        if "version" not in self._memo:
            text = "\n".join(sorted(self.segments))
            if self.retracted:
                text += "\n-retracted-\n" + "\n".join(sorted(self.retracted))
            digest = hashlib.sha256(text.encode()).hexdigest()
            self._memo["version"] = f"{len(self.segments)}-{digest[:16]}"
        return self._memo["version"]

    def catalogue(self, association_bins: int) -> list[CatalogSource]:
        """Every source of the grid, withdrawn ones included, each with its status."""
        memo = ("catalogue", association_bins)
        if memo not in self._memo:
            self._memo[memo] = self._catalogue(association_bins)
        return list(self._memo[memo])

    def _carry_association(self, previous: GridStack) -> GridStack:
        """Take over ``previous``'s association of estimates to sources, when this state's
        estimates begin with ``previous``'s (``add``, ``promote``): ``association`` then
        associates only the estimates after them."""
        for key, value in previous._memo.items():
            if isinstance(key, tuple) and key[0] in ("association", "association-base"):
                base = ("association-base", key[1])
                if key[0] == "association" or base not in self._memo:
                    self._memo[base] = value
        return self

    def association(self, radius: int) -> dict[str, Attached]:
        """``associate(f, sources, estimates, radius)`` as columns, extending the previous
        state's when the sources are the same (each estimate goes to its nearest source on its
        own, so the columns are the same as one pass over every estimate), instead of a pass
        over all the estimates so far at every segment."""
        key = ("association", radius)
        if key not in self._memo:
            sources = dict(self.sources or {})
            base = self._memo.get(("association-base", radius))
            if base is not None and base[0] == sources and base[1] <= len(self.estimates):
                new = associate(self.f, sources, self.estimates[base[1] :], radius)
                attached = {sid: base[2][sid] + Attached.of(new[sid]) for sid in sources}
            else:
                lists = associate(self.f, sources, self.estimates, radius)
                attached = {sid: Attached.of(ests) for sid, ests in lists.items()}
            self._memo[key] = (sources, len(self.estimates), attached)
        return self._memo[key][2]

    def _catalogue(self, association_bins: int) -> list[CatalogSource]:
        # The segment lists are set after validation: they are this state's own ids (checked
        # when each segment came in), and validating every id of every source again at every
        # segment was a cost growing with the run.
        lists = {
            "contributing_segments": sorted(self.segments),
            "retracted_segments": sorted(self.retracted),
        }
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
                status=self.status_of(s.source_id),  # type: ignore[arg-type]
            ).model_copy(update=lists)
            for s in summarise(
                self.f,
                self.total,
                self.count,
                self.trials()[0],
                self.sources or {},
                self.estimates,
                association_bins,
                coherence=self.trials()[1],
                pad_factor=grid_pad(self.f.size, self.n_independent_bins),
                attached=self.association(association_bins),
            )
        ]

    def changed(self, association_bins: int) -> list[CatalogSource]:
        """Sources whose published state would differ from the last one sent."""
        published = self.published or {}
        version = self.version()
        return [
            body
            for body in self.catalogue(association_bins)
            if published.get(body.source_id) != _digest(body, version)
        ]

    def mark_published(self, bodies: list[CatalogSource]) -> GridStack:
        marked = replace(
            self,
            published={
                **(self.published or {}),
                **{b.source_id: _digest(b, self.version()) for b in bodies},
            },
        )
        marked._memo.update(self._memo)  # what was published changes neither
        return marked


def decode_state(value: Any, entries: dict[str, Any] | None = None) -> GridStack | None:
    """A table value (dict, or JSON text/bytes for robustness) as state; None if absent.
    ``entries``: a version-3 head's segment entries (segment id -> entry)."""
    if value is None:
        return None
    if isinstance(value, bytes | str):
        value = json.loads(value)
    return GridStack.from_json(value, entries)


def is_head(value: Any) -> bool:
    """A version-3 value, whose segment entries are kept apart."""
    return isinstance(value, dict) and value.get("version") == HEAD_VERSION


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
    stack = stack.add(
        segment_id, stat, estimates, traceparent, settings.max_links, statistic=event.statistic
    )
    return stack.promote(settings.fap, settings.merge_bins)


def retract_segment(
    stack: GridStack, segment_id: str, stat: NDArray[np.float64], settings: CatalogSettings
) -> GridStack:
    """The grid's state with ``segment_id`` taken out (see ``GridStack.retract``)."""
    return stack.retract(segment_id, stat, settings.fap, settings.merge_bins)


# -- remember: the retracted segment ids of one by-grid partition ------------------------------


@dataclass(frozen=True)
class Retraction:
    segment_id: str
    traceparent: str | None
    """The retraction's own trace context: a segment refused later links to it."""
    reason: str = ""
    grid: str | None = None
    """The grid of the segment, once it arrived (and was refused) before its grid existed: the
    grid, created later, lists it as retracted, whatever the order."""


@dataclass(frozen=True)
class RetractionLedger:
    """Every segment id retracted on one partition of the by-grid hop (each retraction is
    broadcast to every partition, so each ledger holds them all)."""

    entries: dict[str, Retraction] = field(default_factory=dict)

    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, segment_id: str) -> Retraction | None:
        return self.entries.get(segment_id)

    def remember(
        self, segment_id: str, traceparent: str | None, reason: str = ""
    ) -> RetractionLedger:
        """With ``segment_id`` retracted (the first retraction of a segment is the one kept)."""
        if segment_id in self.entries:
            return self
        entry = Retraction(segment_id, traceparent, reason)
        return RetractionLedger({**self.entries, segment_id: entry})

    def seen_in(self, segment_id: str, grid: str) -> RetractionLedger:
        """The retracted segment arrived, of ``grid``, which did not exist yet."""
        entry = self.entries.get(segment_id)
        if entry is None or entry.grid == grid:
            return self
        return RetractionLedger({**self.entries, segment_id: replace(entry, grid=grid)})

    def of_grid(self, grid: str) -> list[str]:
        """The retracted segments seen of ``grid`` (to list when the grid is created)."""
        return sorted(k for k, r in self.entries.items() if r.grid == grid)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "retracted": {
                k: [r.traceparent, r.reason, r.grid] for k, r in sorted(self.entries.items())
            },
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RetractionLedger:
        if value.get("version") != STATE_VERSION:
            raise ValueError(f"retraction ledger version {value.get('version')} unsupported")
        # each entry: [traceparent, reason, grid]
        return cls({k: Retraction(k, *entry) for k, entry in value["retracted"].items()})


def decode_ledger(value: Any) -> RetractionLedger:
    """A table value as a ledger; an empty one if absent."""
    if value is None:
        return RetractionLedger()
    if isinstance(value, bytes | str):
        value = json.loads(value)
    return RetractionLedger.from_json(value)
