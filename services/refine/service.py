"""``refine``: ``lisa.catalog`` -> ``lisa.sources.refined``. Each update of a promoted source is
refined by a coherent fit of a physical Galactic-binary waveform through LISA's response over
all the segments the catalogue stacked (``lisa_science.gbfit``): f, fdot, amplitude, sky
position, inclination, polarisation and phase, with uncertainties.

Where the data come from: a catalogue update names its segments, not their data; each
segment's conditioned A/E and PSD are claim checks on ``lisa.candidates.gb`` (keyed by segment
id, published before the catalogue could stack the segment). The step looks them up there with
a group-less reader (``choreo.reader``; an ACL of its own, ``LOOKUP_TOPICS``) and keeps the index
in memory, reading the topic again only when a segment is missing. The index and the previous
fit of each source (an extra starting point) are caches: a restarted replica rebuilds them,
and the result does not depend on them beyond the optimiser's start.

Conflation: the catalogue publishes an update of every source after every segment, and a fit
over all segments costs seconds, so an update that a later record of the same source already
supersedes is skipped (the step reads the latest record id per source from ``lisa.catalog``,
group-less, when an input is newer than what it last read). Live, with segments a day apart,
every update is fitted; on a backlog (a 30-day file at once) only each source's last.

Stateless otherwise, so run by the step runner; at most one output per input, keyed by source
id, with a deterministic id (the runner's), so redeliveries repeat it. A demoted or retracted source
gets no output: its last refined record stays, and the catalogue's readers show a source's
refined parameters only while it is promoted.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from aiokafka.errors import KafkaError
from opentelemetry import trace
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from choreo import Consumes, Emit, Envelope, Produces, Step, codec
from choreo.control import ControlChannel
from choreo.errors import DecodeError, TransientError
from choreo.reader import TopicReader
from choreo.runner import run_step
from choreo.settings import KafkaSettings
from choreo.store import ArrayRef, Store
from lisa_pipeline.events import (
    CandidatesGB,
    CatalogSource,
    SegmentTiming,
    SourceRefined,
    StepControl,
)
from lisa_pipeline.topics import CANDIDATES_GB, CATALOG, CONTROL, SOURCES_REFINED
from lisa_science.gbfit import RefinedFit, SegmentInput, refine

step = Step(
    "refine",
    consumes=[Consumes(CATALOG, CatalogSource)],
    produces=[Produces(SOURCES_REFINED, SourceRefined)],
    description="coherent fit of a Galactic-binary waveform through LISA's response over all "
    "of a promoted source's segments: f, fdot, amplitude, sky position, inclination, "
    "polarisation, phase, with Fisher uncertainties",
)
_tracer = trace.get_tracer("refine")
log = structlog.get_logger(__name__)


class RefineSettings(BaseSettings):
    """``LISA_REFINE_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="LISA_REFINE_")

    sky_points: int = Field(96, ge=8, description="sky grid of the search (equal areas)")
    half_band_bins: int = Field(4, ge=2, description="DFT bins fitted either side of f")
    tdi_generation: str = Field("2.0", description="TDI generation of the conditioned data")
    cache_segments: int = Field(256, ge=0, description="conditioned segments kept in memory")


SETTINGS = RefineSettings()
STORE = Store()


@dataclass(frozen=True)
class SegmentRefs:
    timing: SegmentTiming
    conditioned: ArrayRef
    psd: ArrayRef


class SegmentIndex:
    """segment id -> its timing and claim checks, from ``lisa.candidates.gb``."""

    def __init__(self) -> None:
        self.known: dict[str, SegmentRefs] = {}

    async def lookup(self, ids: list[str], kafka: KafkaSettings) -> dict[str, SegmentRefs]:
        if any(i not in self.known for i in ids):
            await self._read(kafka)
        return {i: self.known[i] for i in ids if i in self.known}

    async def _read(self, kafka: KafkaSettings) -> None:
        types = {CandidatesGB.ce_type: CandidatesGB}
        try:
            async with TopicReader(kafka, [CANDIDATES_GB]) as reader:
                records = await reader.snapshot()
        except (LookupError, KafkaError) as exc:  # no topic yet, broker away: may heal
            raise TransientError(f"segment lookup: {exc}") from exc
        for record in records:
            try:
                data = codec.decode(record.key, record.value, record.headers, types).data
            except DecodeError:  # what the search's own consumers dead-letter
                continue
            self.known[data.timing.segment_id] = SegmentRefs(
                data.timing, data.conditioned, data.psd
            )


class LatestUpdates:
    """The id of the latest ``lisa.catalog`` record of each source, from a group-less read of
    the topic, refreshed when an input is newer than what it knows."""

    def __init__(self) -> None:
        self.latest: dict[str, str] = {}
        self.seen: dict[str, set[str]] = {}

    def is_latest(self, source_id: str, event_id: str) -> bool | None:
        """True/False if known, None if this update is newer than the last read."""
        if event_id not in self.seen.get(source_id, set()):
            return None
        return self.latest.get(source_id) == event_id

    async def superseded(self, source_id: str, event_id: str, kafka: KafkaSettings) -> bool:
        known = self.is_latest(source_id, event_id)
        if known is None:
            await self._read(kafka)
            known = self.is_latest(source_id, event_id)
        # not on the topic even now: compacted away, i.e. a later record of the source exists
        return known is not True

    async def _read(self, kafka: KafkaSettings) -> None:
        try:
            async with TopicReader(kafka, [CATALOG]) as reader:
                records = await reader.snapshot()
        except (LookupError, KafkaError) as exc:
            raise TransientError(f"catalogue lookup: {exc}") from exc
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            event_id = dict(record.headers or ()).get("ce_id", b"").decode(errors="replace")
            source_id = (record.key or b"").decode(errors="replace")
            if event_id and source_id:
                self.seen.setdefault(source_id, set()).add(event_id)
                self.latest[source_id] = event_id


INDEX = SegmentIndex()
LATEST = LatestUpdates()
_SEGMENTS: OrderedDict[tuple[str, str], dict[str, np.ndarray]] = OrderedDict()
_LAST_FIT: dict[str, dict[str, float]] = {}


def _load(refs: SegmentRefs) -> dict[str, np.ndarray]:
    """A segment's A, E, mask and PSD, through a small LRU cache (content-addressed refs)."""
    key = (refs.conditioned.sha256, refs.psd.sha256)
    if key in _SEGMENTS:
        _SEGMENTS.move_to_end(key)
        return _SEGMENTS[key]
    arrays = STORE.get(refs.conditioned, ["A", "E", "mask"])
    arrays.update(
        {f"psd_{k}": v for k, v in STORE.get(refs.psd, ["f", "A_smooth", "E_smooth"]).items()}
    )
    if SETTINGS.cache_segments:
        _SEGMENTS[key] = arrays
        while len(_SEGMENTS) > SETTINGS.cache_segments:
            _SEGMENTS.popitem(last=False)
    return arrays


def _inputs(f_ref: float, refs: list[SegmentRefs]) -> list[SegmentInput]:
    out = []
    for r in refs:
        arrays = _load(r)
        f_psd = arrays["psd_f"]
        out.append(
            SegmentInput(
                t0=r.timing.t0,
                dt=r.timing.dt,
                a=arrays["A"],
                e=arrays["E"],
                mask=arrays["mask"].astype(bool),
                psd_a=float(np.interp(f_ref, f_psd, arrays["psd_A_smooth"])),
                psd_e=float(np.interp(f_ref, f_psd, arrays["psd_E_smooth"])),
            )
        )
    return out


def _sigma(value: float) -> float | None:
    return value if math.isfinite(value) else None


_FIELDS = {  # the fit's parameter -> its field in the event; its sigma is "sigma_" + field
    "frequency": "frequency_hz",
    "frequency_derivative": "frequency_derivative_hz_s",
    "ecliptic_latitude": "ecliptic_latitude_rad",
    "ecliptic_longitude": "ecliptic_longitude_rad",
    "amplitude": "amplitude",
    "inclination": "inclination_rad",
    "polarization": "polarization_rad",
    "initial_phase": "initial_phase_rad",
}


def _event(src: CatalogSource, event_id: str, ids: list[str], fit: RefinedFit) -> SourceRefined:
    parameters: dict[str, float | None] = {}
    for name, field in _FIELDS.items():
        parameters[field] = fit.values[name]
        parameters[f"sigma_{field}"] = _sigma(fit.sigmas[name])
    return SourceRefined(
        source_id=src.source_id,
        catalog_event_id=event_id,
        segments=ids,
        **parameters,
        snr=fit.snr,
        reduced_chi2=fit.chi2 / max(fit.dof, 1),
        tdi_generation=SETTINGS.tdi_generation,
    )


def _fit(src: CatalogSource, refs: list[SegmentRefs]) -> RefinedFit:
    segments = _inputs(src.frequency_hz, refs)
    return refine(
        segments,
        src.frequency_hz,
        f_halfwidth=3 * src.sigma_frequency_hz,
        start=_LAST_FIT.get(src.source_id),
        generation=SETTINGS.tdi_generation,
        n_sky=SETTINGS.sky_points,
        half_band_bins=SETTINGS.half_band_bins,
    )


@step.handler
async def refine_source(event: Envelope[CatalogSource]) -> list[Emit]:
    src = event.data
    span = trace.get_current_span()
    span.set_attributes({"lisa.source_id": src.source_id, "lisa.source_status": src.status})
    if src.status != "promoted" or not src.contributing_segments:
        return []
    if await LATEST.superseded(src.source_id, event.id, KafkaSettings()):
        span.set_attribute("lisa.superseded", True)  # conflated: the newer update is fitted
        log.info("superseded update skipped", source_id=src.source_id, n_segments=src.n_segments)
        return []
    found = await INDEX.lookup(src.contributing_segments, KafkaSettings())
    missing = [i for i in src.contributing_segments if i not in found]
    if missing:  # causally impossible unless the search's records expired: fit what is there
        log.warning("segments not found", source_id=src.source_id, missing=missing[:5])
    if not found:
        raise TransientError(f"none of {len(src.contributing_segments)} segments found yet")
    ids = sorted(found)
    refs = [found[i] for i in sorted(ids, key=lambda i: found[i].timing.t0)]
    with _tracer.start_as_current_span(
        "coherent fit", attributes={"lisa.n_segments": len(refs)}
    ) as fit_span:
        fit: Any = await asyncio.to_thread(_fit, src, refs)
        fit_span.set_attributes(
            {
                "lisa.snr": fit.snr,
                "lisa.frequency_hz": fit.values["frequency"],
                "lisa.ecliptic_latitude_rad": fit.values["ecliptic_latitude"],
                "lisa.ecliptic_longitude_rad": fit.values["ecliptic_longitude"],
            }
        )
    _LAST_FIT[src.source_id] = fit.values
    log.info(
        "source refined",
        source_id=src.source_id,
        n_segments=len(refs),
        snr=round(fit.snr, 2),
        frequency_hz=fit.values["frequency"],
        ecliptic_latitude_rad=round(fit.values["ecliptic_latitude"], 4),
        ecliptic_longitude_rad=round(fit.values["ecliptic_longitude"], 4),
    )
    return [Emit(SOURCES_REFINED, _event(src, event.id, ids, fit), subject=src.source_id)]


def main() -> int:
    """Run the step until SIGTERM/SIGINT; it pauses and resumes on ``lisa.control``."""
    return run_step(step, control=ControlChannel(CONTROL, StepControl))


if __name__ == "__main__":
    sys.exit(main())
