"""Topics as one declaration: names, partitions, retention, compaction; created idempotently."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from choreo.settings import KafkaSettings
from choreo.step import Step

log = structlog.get_logger(__name__)

DLQ_SUFFIX = ".dlq"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    compacted: bool = False
    description: str = ""

    def config(self, min_insync_replicas: int) -> dict[str, str]:
        cfg = {"min.insync.replicas": str(min_insync_replicas)}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
        else:
            cfg["retention.ms"] = str(self.retention_ms)
        return cfg


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class Topology:
    """Every topic of a deployment and every step that talks over them."""

    topics: tuple[TopicSpec, ...]
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        names = {t.name for t in self.topics}
        for step in self.steps:
            for topic in [c.topic for c in step.consumes] + [p.topic for p in step.produces]:
                if topic not in names:
                    raise ValueError(f"step {step.name!r} uses undeclared topic {topic!r}")

    def all_topics(self) -> list[TopicSpec]:
        """Declared topics plus a dead-letter topic for every consumed one."""
        consumed = {c.topic for s in self.steps for c in s.consumes}
        dlqs = [
            TopicSpec(
                dead_letter_topic(t.name),
                partitions=1,
                retention_ms=30 * DAY_MS,
                description=f"inputs of {t.name} that could not be processed, with the reason",
            )
            for t in self.topics
            if t.name in consumed
        ]
        return [*self.topics, *dlqs]

    def edges(self) -> Iterable[tuple[str, str, str]]:
        """(producer-or-topic, consumer-or-topic, label) pairs: the choreography graph."""
        for step in self.steps:
            for c in step.consumes:
                yield c.topic, step.name, ", ".join(t.ce_type for t in c.types)
            for p in step.produces:
                yield step.name, p.topic, ", ".join(t.ce_type for t in p.types)


async def ensure_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
) -> list[str]:
    """Create the missing topics; existing ones are left alone. Returns the names created."""
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(spec.name),
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                topic_configs=spec.config(min_insync_replicas),
            )
            for spec in specs
            if settings.topic(spec.name) not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, *rest in getattr(response, "topic_errors", ()):
                # 36 = TOPIC_ALREADY_EXISTS: another process raced us, which is fine.
                if code not in (0, 36):
                    raise RuntimeError(f"cannot create topic {name}: error {code} {rest}")
            log.info("topics created", topics=[t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()
