"""What the client, the workflows and the activities pass each other: names and plain dataclasses.

Nothing here imports numpy, pydantic or a service: the workflow sandbox imports this module
(passed through, as the SDK's documentation asks for data models), and Temporal's JSON data
converter turns these dataclasses into the payloads the web UI shows. Events travel as the JSON
form of their envelope (``activities.envelope_json``): readable in the UI, validated by the next
activity exactly as a Kafka consumer validates a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

SEGMENT_WORKFLOW = "segment"
CATALOGUE_WORKFLOW = "catalogue"
PROBE_WORKFLOW = "probe"

INGEST = "ingest"
STACK = "stack"
FORWARD = "forward"
"""The probe's activity: returns its input (the orchestrator's cost of one step, nothing else)."""

ADD_SEGMENT = "add_segment"
SEGMENT_FAILED = "segment_failed"
CLOSE = "close"
VIEW = "view"


@dataclass
class StepPolicy:
    """The choreography's retry and liveness budget (``StepSettings``), in Temporal's terms.

    - ``maximum_attempts`` = 1 + ``LISA_STEP_MAX_RETRIES``; the first retry after
      ``LISA_STEP_RETRY_BACKOFF_S``, doubling up to ``LISA_STEP_RETRY_BACKOFF_MAX_S`` (Temporal
      does not jitter). A ``PermanentError`` is a non-retryable ``ApplicationError`` whose type
      is the dead-letter reason: it fails the segment at once, as it dead-letters it there.
    - ``heartbeat_s`` = ``LISA_STEP_SESSION_TIMEOUT_MS``: a consumer silent for that long loses
      its partitions; an activity silent for that long is retried elsewhere.
    - ``start_to_close_s`` = ``LISA_STEP_MAX_POLL_INTERVAL_MS``: a consumer stuck in one batch
      that long is removed from its group; an activity that long is timed out and retried.
    """

    maximum_attempts: int
    initial_interval_s: float
    maximum_interval_s: float
    start_to_close_s: float
    heartbeat_s: float

    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.initial_interval_s),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=self.maximum_interval_s),
            maximum_attempts=self.maximum_attempts,
        )

    def options(self) -> dict[str, Any]:
        """``execute_activity`` keyword arguments."""
        return {
            "start_to_close_timeout": timedelta(seconds=self.start_to_close_s),
            "heartbeat_timeout": timedelta(seconds=self.heartbeat_s),
            "retry_policy": self.retry(),
        }


@dataclass
class SegmentInput:
    """One segment of one file: where to read it, which steps follow, which catalogue gets it."""

    segment_id: str
    catalogue_id: str
    store_uri: str
    path: str
    sha256: str
    t0: float
    dt: float
    n_samples: int
    index: int
    start: int
    stop: int
    overlap_s: float
    chain: list[str]
    """The steps after ingest, upstream first (``lisa_pipeline.stages.RUNNER_STEPS``)."""
    policy: StepPolicy


@dataclass
class StepInput:
    """One step's input: the previous step's output event (envelope JSON) and the store."""

    event: dict[str, Any]
    store_uri: str


@dataclass
class SegmentFailure:
    """A segment the chain gave up on: the orchestrated mode's dead letter."""

    segment_id: str
    step: str
    reason: str
    message: str


@dataclass
class SegmentOutcome:
    segment_id: str
    event_id: str
    """The id of the estimates event, derived from the raw segment's as in the choreography."""


@dataclass
class CatalogueParams:
    """``CatalogSettings`` fixed for one catalogue's life (set by the client, not the workers)."""

    fap: float
    merge_bins: int
    association_bins: int
    max_links: int


@dataclass
class CatalogueCarry:
    """The catalogue's state, carried by continue-as-new from one run to the next."""

    state: dict[str, Any] = field(default_factory=dict)
    """Grid key -> ``GridStack.to_json()`` (per-bin sums, counted segments, sources)."""
    sources: list[dict[str, Any]] = field(default_factory=list)
    counted: dict[str, float] = field(default_factory=dict)
    """Segment id -> when the catalogue had it stacked (workflow time, epoch s)."""
    failed: dict[str, SegmentFailure] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)
    folds: int = 0
    generation: int = 0


@dataclass
class CatalogueInput:
    store_uri: str
    params: CatalogueParams
    policy: StepPolicy
    products_dir: str | None = None
    max_batch: int = 64
    carry: CatalogueCarry | None = None


@dataclass
class CatalogueView:
    """What a query (and the closed catalogue's result) answers."""

    sources: list[dict[str, Any]]
    counted: dict[str, float]
    failed: dict[str, SegmentFailure]
    pending: int
    folds: int
    generation: int
    closed: bool


@dataclass
class StackInput:
    state: dict[str, Any]
    events: list[dict[str, Any]]
    store_uri: str
    params: CatalogueParams
    products_dir: str | None = None


@dataclass
class StackOutput:
    state: dict[str, Any]
    sources: list[dict[str, Any]]
    stacked: list[str]
    rejected: list[SegmentFailure]


@dataclass
class ProbeInput:
    steps: int
    local: bool = False


def segment_of(event: dict[str, Any]) -> str:
    """The segment id an envelope's body names (every event of the chain carries ``timing``)."""
    return str(event["data"]["timing"]["segment_id"])
