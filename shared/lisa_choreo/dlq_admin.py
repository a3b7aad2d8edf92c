"""Dead letters: list them, show one, replay selected ones to their original topic.

Replay is idempotent: a replayed record carries ``lisa_replay_of=<dlq topic>/<partition>/<offset>``
and a letter already replayed (that header seen on its original topic) is skipped. A letter is a
``lisa_choreo.records.Record``: its key, value and raw headers are what replay sends back. The
replay itself is ``choreo.replay``, shared with the flow monitor's view.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime

from choreo import replay as replay_core
from choreo.deadletter import DLQ_HEADER_PREFIX
from choreo.reader import TopicReader
from choreo.replay import REPLAY_HEADER, home_topic
from choreo.settings import KafkaSettings
from choreo.topology import DLQ_SUFFIX
from lisa_choreo.records import Record, printable
from lisa_choreo.registry import topology

__all__ = ["REPLAY_HEADER", "DeadLetter", "dlq_topics", "read_dead_letters", "replay", "select"]


def _utc(when: datetime | None) -> datetime | None:
    """Naive means UTC, as the runtime writes ``dlq_time`` in UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


@dataclass(frozen=True)
class DeadLetter(Record):
    """A record of a dead-letter topic: the original record, and ``dlq_*`` headers saying why."""

    @property
    def dlq_topic(self) -> str:
        return self.topic

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(DLQ_HEADER_PREFIX + name, default)

    @property
    def failed_at(self) -> datetime | None:
        """When it was dead-lettered (``dlq_time``); None when absent or not ISO 8601."""
        try:
            return _utc(datetime.fromisoformat(self.get("time")))
        except ValueError:
            return None

    @property
    def origin(self) -> str | None:
        """The topic this letter goes home to: the one its dead-letter topic belongs to
        (``<origin>.dlq``), never a topic named by a header, which anyone could forge."""
        return home_topic(self.topic)

    @property
    def problems(self) -> list[str]:
        problems = super().problems
        header = self.get("topic")
        if header and header != self.origin:
            problems.append(printable(f"dlq_topic {header!r} is not its home {self.origin!r}"))
        if self.get("time") and self.failed_at is None:
            problems.append(printable(f"dlq_time {self.get('time')!r} is not an ISO 8601 time"))
        return problems

    def summary(self) -> dict[str, str]:
        return {
            "ref": self.ref,
            "time": self.get("time"),
            "topic": self.get("topic"),
            "service": self.get("service"),
            "reason": self.get("reason"),
            "error": f"{self.get('error_type')}: {self.get('error_message')}",
            "event_id": self.event_id or "",
            "type": self.type or "",
            "subject": self.subject or "",
            "origin": f"{self.get('topic')}/{self.get('partition')}/{self.get('offset')}",
            "attempts": self.get("attempts"),
        }


def dlq_topics() -> list[str]:
    return [t.name for t in topology().all_topics() if t.name.endswith(DLQ_SUFFIX)]


async def read_dead_letters(
    settings: KafkaSettings, topics: list[str] | None = None
) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    for topic in topics or dlq_topics():
        try:
            async with TopicReader(settings, [topic]) as reader:
                records = await reader.snapshot()
        except LookupError:
            continue
        letters += [DeadLetter.of(r, settings.topic_prefix) for r in records]
    return sorted(letters, key=lambda d: (d.get("time"), d.ref))


def select(
    letters: list[DeadLetter],
    ids: list[str] | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DeadLetter]:
    """Letters matching every given criterion (``ids``: event ids or dlq refs; ``reason``: glob;
    ``since``/``until``: naive means UTC, and a letter without a readable time matches neither)."""
    since, until = _utc(since), _utc(until)
    chosen = []
    for d in letters:
        if ids and d.event_id not in ids and d.ref not in ids:
            continue
        if reason and not fnmatch.fnmatch(d.get("reason"), reason):
            continue
        when = d.failed_at
        if since and (when is None or when < since):
            continue
        if until and (when is None or when > until):
            continue
        chosen.append(d)
    return chosen


async def replay(
    settings: KafkaSettings, letters: list[DeadLetter]
) -> tuple[list[str], list[str], list[str]]:
    """Send each letter's original record (key, value, headers but ``dlq_*``, as bytes) back to
    home topic (the one its dead-letter topic belongs to). Returns the refs replayed, skipped
    (already replayed) and refused (not on a ``.dlq`` topic, or its home topic is gone).
    ``choreo.replay`` does it, the same code path as the flow view's replay action."""
    return await replay_core.replay(settings, letters)
