"""The LISA pipeline's event types: the bodies services exchange over the topics of ``topics``.

Services never import each other; they share these models. A change here is backward compatible
(new optional fields) or becomes a new ``.vN`` type.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from choreo import Event
from choreo.store import ArrayRef


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentTiming(_Part):
    segment_id: str = Field(
        description="<source file sha256[:16]>[.<revision>]-<index>: stable across re-ingests "
        "of one cut (a reprocessing's revision labels a new cut)"
    )
    t0: float = Field(description="start time of the first sample (s, TDI time frame)")
    dt: float = Field(gt=0, description="sampling period (s)")
    n_samples: int = Field(gt=1)

    @property
    def duration(self) -> float:
        return self.n_samples * self.dt


class SegmentRaw(Event):
    """One contiguous chunk of TDI X, Y, Z as cut by ingest."""

    ce_type: ClassVar[str] = "lisa.segment.raw.v1"
    timing: SegmentTiming
    index: int = Field(ge=0, description="position of the segment in its source file")
    source_file: str = Field(description="path of the LDC file the segment was cut from")
    source_sha256: str
    overlap_s: float = Field(ge=0)
    channels: list[str] = Field(default=["X", "Y", "Z"])
    data: ArrayRef = Field(description="datasets X, Y, Z (NaN in gaps)")
    nan_fraction: float = Field(ge=0, le=1)


class BandRatio(_Part):
    channel: Literal["A", "E", "T"]
    fmin_hz: float
    fmax_hz: float
    ratio: float = Field(description="measured PSD / analytic SciRD TDI 2.0 model (1 = nominal)")


class SegmentConditioned(Event):
    """A segment made fit for searches: quality mask, PSDs, A/E/T with gaps tapered."""

    ce_type: ClassVar[str] = "lisa.segment.conditioned.v1"
    timing: SegmentTiming
    data: ArrayRef = Field(description="datasets A, E, T (gaps tapered to 0), mask (1 = usable)")
    psd: ArrayRef = Field(description="datasets f, A, E, T: one-sided Welch PSDs")
    whitened: ArrayRef = Field(description="datasets A, E, T whitened by the measured PSD")
    usable_fraction: float = Field(ge=0, le=1)
    gap_samples: int = Field(ge=0)
    glitch_samples: int = Field(ge=0)
    psd_model_ratio: list[BandRatio] = Field(description="data-quality figure per band")


class GBCandidate(_Part):
    frequency_hz: float
    bin: int = Field(description="index in the statistic spectrum")
    statistic: float = Field(description="A+E whitened power, chi-square 4 dof on noise")
    snr: float = Field(description="sqrt(max(statistic - 4, 0))")
    fap: float = Field(description="false-alarm probability corrected for the number of bins")


class CandidatesGB(Event):
    """Galactic-binary search result of one segment, published even with no candidate: the
    catalogue stacks every segment's statistic, not only those that found something."""

    ce_type: ClassVar[str] = "lisa.candidates.gb.v1"
    timing: SegmentTiming
    statistic: ArrayRef = Field(description="datasets f, stat over the search band")
    fmin_hz: float
    fmax_hz: float
    n_independent_bins: int
    fap: float = Field(description="false-alarm probability per segment")
    threshold: float = Field(description="statistic threshold matching fap")
    candidates: list[GBCandidate]
    conditioned: ArrayRef = Field(description="the conditioned data the search ran on")
    psd: ArrayRef


class SourceEstimate(_Part):
    candidate: GBCandidate
    frequency_hz: float
    sigma_frequency_hz: float
    amplitude_a: float
    amplitude_e: float
    sigma_amplitude_a: float
    sigma_amplitude_e: float
    phase_a: float
    phase_e: float
    sigma_phase_a: float
    sigma_phase_e: float
    snr: float
    reduced_chi2: float


class SourceEstimates(Event):
    """Refined parameters of every candidate of one segment (possibly none)."""

    ce_type: ClassVar[str] = "lisa.sources.estimates.v1"
    timing: SegmentTiming
    statistic: ArrayRef
    n_independent_bins: int
    estimates: list[SourceEstimate]


class CatalogSource(Event):
    """The current state of one catalogued source; keyed by source id on a compacted topic."""

    ce_type: ClassVar[str] = "lisa.catalog.source.v1"
    source_id: str
    frequency_hz: float
    frequency_bin: int
    sigma_frequency_hz: float
    stacked_statistic: float
    stacked_snr: float
    fap: float
    n_segments: int = Field(description="segments stacked so far")
    n_estimates: int = Field(description="per-segment estimates associated with the source")
    mean_amplitude: float | None = None
    contributing_segments: list[str] = Field(default_factory=list)
    status: Literal["promoted", "demoted", "retracted"] = Field(
        "promoted",
        description="promoted: in the catalogue; demoted: no longer significant on the whole "
        "stack, decided again after every segment added or retracted (segments remain stacked at "
        "its bin; promoted again if the stack says so); "
        "retracted: no segment remains stacked at its bin. Values were only added (every "
        "earlier record still validates); a withdrawn source is a record, never a tombstone",
    )
    retracted_segments: list[str] = Field(
        default_factory=list,
        description="segments retracted from this source's frequency grid (lisa.retractions): "
        "subtracted if they had been stacked, never counted if retracted before they arrived",
    )
    # Physical parameters from lisa.sources.refined (the refine step), merged by the readers of
    # the catalogue (catalog.csv/h5, ``lisa-choreo catalog``); None until the source is refined.
    source_frequency_hz: float | None = Field(
        None,
        description="refined GW frequency in the source frame at TCB t = 0 (the stack's "
        "frequency_hz is the mean detector-frame one)",
    )
    sigma_source_frequency_hz: float | None = None
    frequency_derivative_hz_s: float | None = None
    sigma_frequency_derivative_hz_s: float | None = None
    ecliptic_latitude_rad: float | None = None
    sigma_ecliptic_latitude_rad: float | None = None
    ecliptic_longitude_rad: float | None = None
    sigma_ecliptic_longitude_rad: float | None = None
    amplitude: float | None = Field(None, description="strain amplitude A (LDC convention)")
    sigma_amplitude: float | None = None
    inclination_rad: float | None = None
    sigma_inclination_rad: float | None = None

    def with_refined(self, refined: SourceRefined | None) -> CatalogSource:
        """This record with the refined parameters of the same source (if any) filled in."""
        if refined is None or refined.source_id != self.source_id:
            return self
        return self.model_copy(
            update={
                name: getattr(refined, REFINED_FIELDS.get(name, name)) for name in REFINED_FIELDS
            }
        )


REFINED_FIELDS: dict[str, str] = {
    name: name
    for name in (
        "frequency_derivative_hz_s",
        "sigma_frequency_derivative_hz_s",
        "ecliptic_latitude_rad",
        "sigma_ecliptic_latitude_rad",
        "ecliptic_longitude_rad",
        "sigma_ecliptic_longitude_rad",
        "amplitude",
        "sigma_amplitude",
        "inclination_rad",
        "sigma_inclination_rad",
    )
} | {"source_frequency_hz": "frequency_hz", "sigma_source_frequency_hz": "sigma_frequency_hz"}
"""The fields a catalogue record takes from the source's refinement (``lisa.sources.refined``):
catalogue field -> refined field."""


class SourceRefined(Event):
    """Physical parameters of one catalogued source from a coherent fit of a Galactic-binary
    waveform through LISA's response over all its segments (``lisa_science.gbfit``); keyed by
    source id on the compacted ``lisa.sources.refined``, the latest fit wins. Angles: ecliptic
    (J2000 mean ecliptic), polarisation in the ICRS basis of lisagwresponse; f, fdot and the
    phase at TCB t = 0. Sigmas are 1-sigma (Fisher matrix; sky and f widened by the sky
    posterior, see ``lisa_science.gbfit.refine``); None where the data do not constrain them."""

    ce_type: ClassVar[str] = "lisa.source.refined.v1"
    source_id: str
    catalog_event_id: str = Field(description="id of the lisa.catalog update refined")
    segments: list[str] = Field(description="the segments fitted")
    frequency_hz: float
    sigma_frequency_hz: float | None = None
    frequency_derivative_hz_s: float
    sigma_frequency_derivative_hz_s: float | None = None
    ecliptic_latitude_rad: float
    sigma_ecliptic_latitude_rad: float | None = None
    ecliptic_longitude_rad: float
    sigma_ecliptic_longitude_rad: float | None = None
    amplitude: float
    sigma_amplitude: float | None = None
    inclination_rad: float
    sigma_inclination_rad: float | None = None
    polarization_rad: float
    sigma_polarization_rad: float | None = None
    initial_phase_rad: float
    sigma_initial_phase_rad: float | None = None
    snr: float = Field(description="optimal SNR of the fitted signal")
    reduced_chi2: float
    tdi_generation: str


# -- the flow monitor (lisa_services.flows): alerts on ``lisa.flows.alerts``, its state on
# ``lisa.flows.state``. Stages are the labels of ``lisa_pipeline.stages`` (raw, conditioned,
# searched, estimated, catalogued); topics are named without the deployment prefix.


class FlowStuck(Event):
    """A segment that has not reached its next stage within the deadline: the service it waits
    for took nothing from its partition for that long. Raised once per waiting record."""

    ce_type: ClassVar[str] = "lisa.flow.stuck.v1"
    segment_id: str
    stage: str = Field(description="the stage the segment waits to reach")
    service: str = Field(description="the service it waits for")
    reached: str = Field(description="the last stage it reached")
    topic: str = Field(description="where it waits")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    since: datetime = Field(description="when it started waiting (its record's timestamp)")
    waited_s: float = Field(ge=0)
    deadline_s: float = Field(gt=0)
    trace_id: str | None = None


class FlowDeadLettered(Event):
    """A segment's input was dead-lettered: its flow ends there until the letter is replayed."""

    ce_type: ClassVar[str] = "lisa.flow.deadlettered.v1"
    segment_id: str
    stage: str = Field(description="the stage it failed to reach")
    service: str = Field(description="the service that gave up on it")
    reason: str
    error: str = ""
    dead_letter: str = Field(description="<topic>.dlq/<partition>/<offset>")
    at: datetime
    trace_id: str | None = None


class FlowRecovered(Event):
    """A segment reported stuck moved again."""

    ce_type: ClassVar[str] = "lisa.flow.recovered.v1"
    segment_id: str
    stage: str = Field(description="the stage it reached")
    service: str = Field(description="the service that moved it")
    stuck_alert_id: str = Field(description="the id of the lisa.flow.stuck.v1 event it answers")
    stuck_for_s: float = Field(ge=0, description="from when it started waiting to its move")
    at: datetime


class FlowMark(_Part):
    """A stage a segment reached: the record that says so."""

    stage: str
    at_ms: int = Field(description="the record's timestamp (ms since the epoch)")
    service: str = Field(description="who produced the record (ce_source)")
    topic: str
    partition: int
    offset: int
    event_id: str = ""
    trace_id: str | None = None
    via: Literal["record", "commit"] = Field(
        "record",
        description="record: an output on the stage's topic; commit: the stage's consumer "
        "committed past the input (the catalogue, which publishes sources, not segments)",
    )


class FlowDeath(_Part):
    """The dead letter that ended a flow."""

    stage: str = Field(description="the stage it failed to reach")
    service: str
    reason: str
    error: str = ""
    ref: str = Field(description="<topic>.dlq/<partition>/<offset>")
    at_ms: int
    trace_id: str | None = None


class FlowWait(_Part):
    """A record a service has yet to take (a replayed letter)."""

    topic: str
    partition: int
    offset: int
    since_ms: int


class FlowStuckMark(_Part):
    """The stuck alert raised for a flow, until it moves again."""

    stage: str
    service: str
    topic: str
    partition: int
    offset: int
    since_ms: int
    detected_ms: int
    alert_id: str


class FlowRetraction(_Part):
    """The retraction of a segment (``lisa.retractions``), as the flow monitor saw it."""

    reason: str = ""
    requested_by: str = ""
    source_file: str | None = None
    at_ms: int = Field(description="the retraction record's timestamp (ms since the epoch)")


class FlowSnapshot(Event):
    """One segment's flow as the flow monitor knows it (its compacted state, keyed by segment
    id): stages reached, the dead letter that ended it, the stuck alert outstanding, and the ids
    of every alert raised for it, so that a restarted monitor raises none twice."""

    ce_type: ClassVar[str] = "lisa.flow.state.v1"
    segment_id: str
    correlation_id: str
    marks: list[FlowMark] = Field(default_factory=list)
    death: FlowDeath | None = None
    stuck: FlowStuckMark | None = None
    resumed: FlowWait | None = None
    alerts: list[str] = Field(default_factory=list)
    replays: list[str] = Field(default_factory=list, description="dead letters replayed")
    updated_ms: int = 0
    retraction: FlowRetraction | None = Field(
        None, description="the segment was retracted (it may arrive afterwards: never counted)"
    )


# -- pause and resume (every step follows ``lisa.control``, see ``choreo.control``) and retraction
# (``lisa.retractions``: each stateful step compensates its own state; the catalogue's is the only
# state kept across segments).


class StepControl(Event):
    """The desired state of one step, for every replica of it: keyed by step name on the
    compacted ``lisa.control``, where the latest record per step wins. A paused step finishes and
    commits the batch in hand, keeps its partitions and group membership and fetches nothing
    until a ``running`` command for it arrives."""

    ce_type: ClassVar[str] = "lisa.control.step.v1"
    step: str = Field(description="the step's name (condition, gb-search, estimate, catalog)")
    state: Literal["paused", "running"]
    reason: str = Field("", description="why, for operators and the flow view")
    requested_by: str = Field("", description="who asked (user@host of the command line)")


class SegmentRetracted(Event):
    """A segment withdrawn from every product, keyed by segment id on ``lisa.retractions``. The
    catalogue subtracts its statistic and its estimates, demotes the sources that fall below the
    threshold and rewrites its products; a retraction is idempotent and, arriving before its
    segment, keeps the segment from ever being counted."""

    ce_type: ClassVar[str] = "lisa.segment.retracted.v1"
    segment_id: str = Field(
        description="<source file sha256[:16]>[.<revision>]-<index:05d>, as ingest cut it"
    )
    reason: str = Field("", description="why, for operators and the flow view")
    source_file: str | None = Field(None, description="the file it came from, if retracted by file")
    requested_by: str = Field("", description="who asked (user@host of the command line)")


class CatalogueRelease(Event):
    """A catalogue release: what a reprocessing campaign (``lisa_choreo.campaign``) publishes on
    ``lisa.catalog.releases`` once the catalogue has counted every segment of the new cut and
    honoured the retraction of the old one. Keyed by release id; the catalogue itself, as
    ``lisa-choreo catalog --csv`` prints it, is in ``csv`` (its SHA-256 beside it)."""

    ce_type: ClassVar[str] = "lisa.catalog.release.v1"
    release_id: str
    campaign: str = Field(description="the campaign's workflow id")
    source_file: str
    source_sha256: str
    revision: str = Field(description="the new cut's revision label")
    segment_s: float = Field(gt=0)
    overlap_s: float = Field(ge=0)
    segments: list[str] = Field(description="the new cut's segments, all counted")
    retracted: list[str] = Field(description="the old cut's segments, withdrawn")
    n_sources: int = Field(ge=0)
    csv: str = Field(description="the catalogue's promoted sources (catalog.csv columns)")
    csv_sha256: str
    requested_by: str = Field("", description="who started the campaign (user@host)")
