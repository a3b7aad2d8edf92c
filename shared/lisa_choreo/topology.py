"""The deployment's one declaration of topics and services: topics are created from it, and the
graph, the schemas and the AsyncAPI document are generated from it."""

from __future__ import annotations

import importlib
from types import ModuleType

from choreo.step import Step
from choreo.topology import DAY_MS, TopicSpec, Topology
from lisa_choreo.events import (
    CANDIDATES_GB,
    CATALOG,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)

# Service name -> module exposing ``step`` (its declaration) and, when it is not a plain
# handler run by choreo.runner, ``main()``. The CLI runs them; no service imports another.
SERVICE_MODULES: dict[str, str] = {
    "ingest": "services.ingest.service",
    "condition": "services.condition.step",
    "gb-search": "services.gb_search.step",
    "estimate": "services.estimate.step",
    "catalog": "services.catalog.app",
    "toy-square": "services.toy.square",
    "toy-describe": "services.toy.describe",
}
PIPELINE = ("ingest", "condition", "gb-search", "estimate", "catalog")

# Keys are segment ids (source ids on the catalogue), so one segment stays on one partition.
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
    TopicSpec("toy.numbers", partitions=3, description="toy chain input"),
    TopicSpec("toy.squares", partitions=3, description="toy chain middle"),
    TopicSpec("toy.descriptions", partitions=3, description="toy chain output"),
)


def load_service(name: str) -> ModuleType:
    try:
        module = SERVICE_MODULES[name]
    except KeyError:
        known = ", ".join(sorted(SERVICE_MODULES))
        raise SystemExit(f"unknown service {name!r}; known: {known}") from None
    return importlib.import_module(module)


def load_step(name: str) -> Step:
    return load_service(name).step


def topology() -> Topology:
    return Topology(topics=TOPICS, steps=tuple(load_step(n) for n in SERVICE_MODULES))
