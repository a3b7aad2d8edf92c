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
)
