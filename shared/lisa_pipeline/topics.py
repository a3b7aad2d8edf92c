"""The pipeline's topics: names, partitions, retention and compaction, declared once.

Keys are segment ids (source ids on the catalogue), so one segment stays on one partition.
Every consumed topic also gets ``<topic>.dlq`` from ``choreo.topology.Topology``.
"""

from __future__ import annotations

from choreo.topology import DAY_MS, TopicSpec

SEGMENTS_RAW = "lisa.segments.raw"
SEGMENTS_CONDITIONED = "lisa.segments.conditioned"
CANDIDATES_GB = "lisa.candidates.gb"
SOURCES_ESTIMATES = "lisa.sources.estimates"
CATALOG = "lisa.catalog"
FLOWS_ALERTS = "lisa.flows.alerts"
FLOWS_STATE = "lisa.flows.state"
CONTROL = "lisa.control"
RETRACTIONS = "lisa.retractions"
SOURCES_REFINED = "lisa.sources.refined"
CATALOG_RELEASES = "lisa.catalog.releases"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        SEGMENTS_RAW,
        partitions=6,
        retention_ms=30 * DAY_MS,
        description="raw TDI X/Y/Z segments cut by ingest (claim checks)",
    ),
    TopicSpec(
        SEGMENTS_CONDITIONED,
        partitions=6,
        retention_ms=30 * DAY_MS,
        description="A/E/T segments with quality mask, PSDs and whitened data",
    ),
    TopicSpec(
        CANDIDATES_GB,
        partitions=6,
        retention_ms=30 * DAY_MS,
        description="per-segment Galactic-binary search results and candidates",
    ),
    TopicSpec(
        SOURCES_ESTIMATES,
        partitions=6,
        retention_ms=30 * DAY_MS,
        description="per-segment refined source parameters",
    ),
    TopicSpec(
        CATALOG,
        partitions=3,
        compacted=True,
        description="the catalogue: latest state of each source, keyed by source id",
    ),
    # The refinement step's (lisa_services.refine): the latest physical parameters of each
    # catalogued source, so compacted like the catalogue it completes.
    TopicSpec(
        SOURCES_REFINED,
        partitions=3,
        compacted=True,
        description="physical parameters of each catalogued source from a coherent fit over "
        "its segments, keyed by source id",
    ),
    # The flow monitor's (lisa_services.flows): a read-only observer of the topics above, so
    # nothing it writes is on the processing path. One partition each: alerts in the order they
    # were raised, and the state read back whole at start.
    TopicSpec(
        FLOWS_ALERTS,
        partitions=1,
        retention_ms=30 * DAY_MS,
        description="stuck, dead-lettered and recovered segment flows, keyed by segment id",
    ),
    TopicSpec(
        FLOWS_STATE,
        partitions=1,
        compacted=True,
        description="the flow monitor's state: each segment's flow, keyed by segment id",
    ),
    # Pause and resume: every step reads the whole topic without a consumer group
    # (choreo.control), so one partition; compacted, the latest command per step name wins.
    TopicSpec(
        CONTROL,
        partitions=1,
        compacted=True,
        description="desired state of each step (paused or running), keyed by step name",
    ),
    # Retractions: a permanent fact about a segment, so compacted (kept whatever the age), and
    # a catalogue rebuilt from the topics honours it too.
    TopicSpec(
        RETRACTIONS,
        partitions=3,
        compacted=True,
        description="segments withdrawn from the products, keyed by segment id",
    ),
    # A reprocessing campaign's outcome (lisa_choreo.campaign): one record per release, kept.
    TopicSpec(
        CATALOG_RELEASES,
        partitions=1,
        compacted=True,
        description="catalogue releases published by reprocessing campaigns, keyed by release id",
    ),
)
