"""The LISA pipeline's event types: the bodies services exchange over the topics of ``topics``.

Services never import each other; they share these models. A change here is backward compatible
(new optional fields) or becomes a new ``.vN`` type.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from choreo import Event
from choreo.store import ArrayRef


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentTiming(_Part):
    segment_id: str = Field(
        description="<source file sha256[:16]>-<index>: stable across re-ingests"
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
    status: Literal["promoted"] = "promoted"
