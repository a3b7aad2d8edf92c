"""What the campaign worker reads and writes, declared like a step's (``choreo.Step``): the
schemas and the AsyncAPI document list it as a client of the choreography."""

from __future__ import annotations

from choreo import Consumes, Produces, Step
from lisa_pipeline.events import (
    CatalogSource,
    CatalogueRelease,
    FlowSnapshot,
    SegmentRaw,
    SegmentRetracted,
)
from lisa_pipeline.topics import (
    CATALOG,
    CATALOG_RELEASES,
    FLOWS_STATE,
    RETRACTIONS,
    SEGMENTS_RAW,
)

step = Step(
    "campaign",
    consumes=[Consumes(FLOWS_STATE, FlowSnapshot), Consumes(CATALOG, CatalogSource)],
    produces=[
        Produces(SEGMENTS_RAW, SegmentRaw),
        Produces(RETRACTIONS, SegmentRetracted),
        Produces(CATALOG_RELEASES, CatalogueRelease),
    ],
    description="reprocessing campaigns (Temporal workflows): retract a file's old cut, ingest "
    "it again under a revision, wait for the flow monitor's verdicts, release the catalogue "
    "(reads without a group)",
)
