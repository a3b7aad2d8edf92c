"""A step service's declaration: what it consumes, what it produces, and its handler.

The declaration is data, so the topology, the JSON Schemas and the AsyncAPI document are generated
from it rather than kept by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from choreo.events import Emit, Envelope, Event

Handler = Callable[[Envelope[Any]], Iterable[Emit] | Awaitable[Iterable[Emit]]]


@dataclass(frozen=True)
class Consumes:
    topic: str
    types: tuple[type[Event], ...]

    def __init__(self, topic: str, *types: type[Event]) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "types", types)


@dataclass(frozen=True)
class Produces:
    topic: str
    types: tuple[type[Event], ...]

    def __init__(self, topic: str, *types: type[Event]) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "types", types)


@dataclass
class Step:
    """A named service. Sync handlers run in a worker thread so the event loop keeps heartbeats.

    Usage::

        step = Step("condition", consumes=[Consumes(RAW, SegmentRaw)],
                    produces=[Produces(CONDITIONED, SegmentConditioned)])

        @step.handler
        def condition(event: Envelope[SegmentRaw]) -> list[Emit]: ...
    """

    name: str
    consumes: list[Consumes]
    produces: list[Produces] = field(default_factory=list)
    description: str = ""
    handle: Handler | None = None

    def handler(self, fn: Handler) -> Handler:
        self.handle = fn
        return fn

    def types_by_topic(self) -> dict[str, dict[str, type[Event]]]:
        """Decoder registry: topic -> ce_type -> model."""
        return {c.topic: {t.ce_type: t for t in c.types} for c in self.consumes}

    def may_emit(self, topic: str, event: Event) -> bool:
        return any(p.topic == topic and isinstance(event, p.types) for p in self.produces)
