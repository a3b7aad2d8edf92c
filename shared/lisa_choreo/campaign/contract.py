"""A reprocessing campaign's names and plain dataclasses (the workflow sandbox imports this).

The hybrid mode: the choreography stays the hot path (every segment goes through the step
services over Kafka, unchanged), and one Temporal workflow per campaign runs the long,
compensable control on top of it. Its identity follows from what it reprocesses: the new cut of
a file is ``<sha256[:16]>.<revision>`` (``lisa_services.ingest.files.FilePlan.label``), and the
campaign's workflow id is ``campaign-<that label>``, so that the bridge (``bridge.py``) finds the
campaign of any segment from the segment id alone, and starting the same campaign twice attaches
to the first instead of running it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.common import RetryPolicy

CAMPAIGN_WORKFLOW = "reprocess-campaign"
TASK_QUEUE = "lisa-campaigns"
WORKFLOW_PREFIX = "campaign-"

PLAN = "campaign-plan"
RETRACT = "campaign-retract"
INGEST = "campaign-ingest"
RELEASE = "campaign-release"
CONFIRM = "campaign-confirm"

RESTORE_SUFFIX = "_restore"
"""The revision of the cut compensation re-ingests: ``<revision>_restore``, the same campaign's."""

SEGMENT_CATALOGUED = "segment_catalogued"
SEGMENT_DEAD = "segment_dead_lettered"
PROGRESS = "progress"


def workflow_id(label: str) -> str:
    """The campaign of the cut ``label`` (``<sha256[:16]>.<revision>``)."""
    return f"{WORKFLOW_PREFIX}{label}"


def campaign_of(segment_id: str) -> str | None:
    """The campaign that cut ``segment_id``, or None for a first cut (no revision)."""
    label, sep, index = segment_id.rpartition("-")
    if not sep or "." not in label or not index.isdigit():
        return None
    return workflow_id(label.removesuffix(RESTORE_SUFFIX))


@dataclass
class Cut:
    """How a file is cut into segments: ingest's settings and the revision labelling the ids."""

    segment_s: float
    overlap_s: float = 0.0
    revision: str = ""


@dataclass
class CampaignInput:
    """Reprocess ``path`` (whose content hash is ``sha256``) cut as ``old`` into the cut ``new``.

    ``restore_revision`` labels the cut that compensation re-ingests if the campaign fails after
    the old segments were retracted (a retracted id is never counted again, so the old data come
    back under new ids). ``wait_s``: how long to wait for the catalogue to count the new cut (or
    the restored one) before giving up."""

    path: str
    sha256: str
    old: Cut
    new: Cut
    restore_revision: str
    reason: str = ""
    requested_by: str = ""
    wait_s: float = 600.0
    attempts: int = 5


@dataclass
class CampaignPlan:
    """The segment ids of the old cut (to retract) and of the new one (to wait for)."""

    old_ids: list[str]
    new_ids: list[str]


@dataclass
class RetractInput:
    segment_ids: list[str]
    reason: str
    source_file: str
    requested_by: str


@dataclass
class IngestInput:
    path: str
    sha256: str
    cut: Cut


@dataclass
class ConfirmInput:
    """Wait until the catalogue's own state counts every segment of ``counted`` and none of
    ``gone`` (its table changelog: the flow monitor's "catalogued" is the catalogue's input
    commit, which its faust router makes before the stacking agent has stacked)."""

    counted: list[str]
    gone: list[str]
    wait_s: float


@dataclass
class ReleaseInput:
    campaign: str
    path: str
    sha256: str
    cut: Cut
    segments: list[str]
    retracted: list[str]
    requested_by: str
    wait_s: float


@dataclass
class ReleaseOutput:
    release_id: str
    n_sources: int
    csv_sha256: str
    topic: str
    partition: int
    offset: int


@dataclass
class DeadLetter:
    """A segment of the campaign's cut that a step gave up on (the bridge's signal)."""

    segment_id: str
    reason: str


@dataclass
class CampaignProgress:
    """What the ``progress`` query returns (and the CLI prints while it waits)."""

    step: str
    expected: int = 0
    catalogued: int = 0
    dead_lettered: dict[str, str] = field(default_factory=dict)
    compensations: list[str] = field(default_factory=list)


@dataclass
class CampaignResult:
    status: str  # "released" or "compensated"
    release: ReleaseOutput | None
    plan: CampaignPlan
    failure: str = ""
    compensations: list[str] = field(default_factory=list)


def activity_options(attempts: int) -> dict:
    """Every campaign activity: retried with backoff (Kafka or the store down for a while);
    heartbeat-timed so that a dead worker's activity moves to another worker in 30 s."""
    return {
        "start_to_close_timeout": timedelta(minutes=30),
        "heartbeat_timeout": timedelta(seconds=30),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=attempts,
            non_retryable_error_types=["bad-input"],
        ),
    }
