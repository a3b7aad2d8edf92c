"""The pipeline's order, declared once: which service turns which topic into which.

The demo, the flow and accounting tools, the tests and the benchmarks all read the order here,
so a new stage is one line (plus its service).
"""

from __future__ import annotations

from dataclasses import dataclass

from lisa_pipeline.topics import (
    CANDIDATES_GB,
    CATALOG,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)


@dataclass(frozen=True)
class Stage:
    service: str
    consumes: str | None
    """The topic the service reads (ingest reads files)."""
    produces: str
    reached: str
    """What a segment is once the stage is done (a progress column)."""


STAGES: tuple[Stage, ...] = (
    Stage("ingest", None, SEGMENTS_RAW, "raw"),
    Stage("condition", SEGMENTS_RAW, SEGMENTS_CONDITIONED, "conditioned"),
    Stage("gb-search", SEGMENTS_CONDITIONED, CANDIDATES_GB, "searched"),
    Stage("estimate", CANDIDATES_GB, SOURCES_ESTIMATES, "estimated"),
    Stage("catalog", SOURCES_ESTIMATES, CATALOG, "catalogued"),
)

PIPELINE: tuple[str, ...] = tuple(s.service for s in STAGES)
"""Every service, upstream first."""
CONSUMERS: tuple[str, ...] = tuple(s.service for s in STAGES if s.consumes is not None)
"""The services that consume a topic (all but ingest)."""
FLOW_TOPICS: tuple[str, ...] = tuple(s.produces for s in STAGES)
"""The topics a segment's flow crosses, upstream first."""
STATEFUL = ("catalog",)
"""Consumers that keep state across segments (the catalogue's stack is one grid partition)."""
RUNNER_STEPS: tuple[str, ...] = tuple(s for s in CONSUMERS if s not in STATEFUL)
"""Stateless consumers run by ``choreo.runner`` and scaled by replicas."""
SOURCE_STEPS: tuple[str, ...] = ("refine",)
"""Steps downstream of the catalogue that work per source, not per segment (``refine`` reads
``lisa.catalog`` and writes ``lisa.sources.refined``): steps of the topology and services of a
run, but no stage of a segment's flow, so the flow monitor, progress and the orchestrated mode
(which follow segments) leave them out. The catalogue's products merge what they publish."""
