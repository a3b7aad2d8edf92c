"""The choreography runtime: typed events over Kafka, with tracing, and nothing of physics.

Reading order: ``events`` (what travels), ``codec`` (how it travels), ``topology`` (where),
``step`` (a service's declaration), ``runner`` (topic -> decode -> handler -> encode -> topic).
"""

from choreo.errors import PermanentError, TransientError
from choreo.events import Emit, Envelope, Event, derive_event_id
from choreo.step import Consumes, Produces, Step

__all__ = [
    "Consumes",
    "Emit",
    "Envelope",
    "Event",
    "PermanentError",
    "Produces",
    "Step",
    "TransientError",
    "derive_event_id",
]
