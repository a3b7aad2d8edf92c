"""Events: pydantic bodies wrapped in CloudEvents 1.0 attributes plus lineage.

Lineage (causation = the parent event, correlation = the root event) outlives traces: traces are
sampled and expire, the ids travel with the data forever.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

# Fixed namespace so that the same (parent, step, index) gives the same id on every machine.
_ID_NAMESPACE = uuid.UUID("5b0f6f5e-2b6c-4d0e-9c1a-1f6a3c0d9e21")


class Event(BaseModel):
    """Base of every event body. Subclasses set ``ce_type`` (``lisa.segment.raw.v1``...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ce_type: ClassVar[str]


E = TypeVar("E", bound=Event)


def derive_event_id(parent_id: str, step: str, index: int | str = 0) -> str:
    """Deterministic id of the ``index``-th output of ``step`` for input ``parent_id``.

    A retried or redelivered input reproduces the same ids, so downstream sees duplicates as
    duplicates instead of new facts.
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{parent_id}/{step}/{index}"))


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """One event as it travels: CloudEvents attributes, lineage, the Kafka key and the body."""

    id: str
    source: str
    data: E
    correlation_id: str
    subject: str | None = None
    causation_id: str | None = None
    key: str | None = None
    time: datetime = field(default_factory=now)

    @property
    def type(self) -> str:
        return self.data.ce_type

    @classmethod
    def root(
        cls,
        data: E,
        *,
        source: str,
        id: str | None = None,
        subject: str | None = None,
        key: str | None = None,
    ) -> Envelope[E]:
        """An event that starts a flow: it is its own correlation root."""
        event_id = id or str(uuid.uuid4())
        return cls(
            id=event_id,
            source=source,
            data=data,
            correlation_id=event_id,
            subject=subject,
            key=key if key is not None else subject,
        )


@dataclass(frozen=True)
class Emit:
    """What a handler returns: an event body for a topic; the runner adds ids and lineage.

    ``subject`` and ``key`` default to the input's, which keeps one segment on one partition all
    the way down the chain. ``index`` distinguishes several outputs of one input (must be stable
    across retries: a candidate number, not a counter of wall-clock events).
    """

    topic: str
    data: Event
    subject: str | None = None
    key: str | None = None
    index: int | str = 0

    def child_of(self, parent: Envelope[Any], step: str) -> Envelope[Event]:
        return Envelope(
            id=derive_event_id(parent.id, step, f"{self.topic}/{self.index}"),
            source=step,
            data=self.data,
            correlation_id=parent.correlation_id,
            causation_id=parent.id,
            subject=self.subject if self.subject is not None else parent.subject,
            key=self.key if self.key is not None else parent.key,
        )
