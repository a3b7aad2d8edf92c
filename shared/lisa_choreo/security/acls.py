"""Least privilege from the topology: each principal's ACL bindings, derived from what the
services declare they consume and produce (``choreo.step.Step``), and nothing else.

Pure: a ``Topology`` and the deployment's topic prefix in, a sorted list of ``AclBinding`` out;
``lisa-choreo acl plan`` prints it, ``acl apply`` (and ``stack up --secure``) creates it on the
broker as the super user. The broker runs with ``allow.everyone.if.no.acl.found=false``, so
what is not listed here is refused.

One principal per service (``User:<step name>``):

- every consumed topic T: READ, DESCRIBE on T; WRITE, DESCRIBE on ``T.dlq`` (its dead letters);
- every produced topic: WRITE, DESCRIBE;
- its consumer group, ``<prefix><step name>`` (the runner's default group id; also the faust
  catalogue's app id): READ, DESCRIBE;
- IDEMPOTENT_WRITE on the cluster (every producer is idempotent, ``choreo.publisher``);
- two runtime facts the declarations do not carry, named here: ingest publishes each file in a
  transaction whose id is ``<prefix>ingest-<sha16>`` (``lisa_services.ingest.publish``), hence
  WRITE, DESCRIBE on the PREFIXED transactional id ``<prefix>ingest-``; the catalogue is a faust
  app whose internal topics (``<app id>-by-grid``, ``<app id>-stacks-changelog``,
  ``<app id>-__assignor-__leader``) it creates itself, hence READ, WRITE, DESCRIBE, CREATE on
  topics PREFIXED ``<prefix>catalog-``; refine looks up a source's segments (their
  conditioned data and PSD) on ``lisa.candidates.gb``, read without a consumer group
  (``lisa_services.refine``), hence READ, DESCRIBE on that topic.

An observer (``User:<name>``, a service of ``Deployment.observers``: the flow monitor), read-only
on the pipeline: READ, DESCRIBE on every topic it consumes and on every dead-letter topic of the
topology (it lists them all; it dead-letters nothing, so it never writes one); READ, WRITE,
DESCRIBE on the topics it produces (its own: it reads its state back at start); READ, DESCRIBE on
its group ``<prefix><name>`` (it commits its positions there); DESCRIBE on the groups of the
services consuming what it reads (it measures their lag); IDEMPOTENT_WRITE on the cluster.

The operator (``User:operator``), for the tools (tail, trace, dlq, report, catalog): READ,
DESCRIBE on every topic of the topology, dead-letter topics included (the tools read without a
consumer group, ``choreo.reader``, so no group READ); DESCRIBE on each service's group (``report``
reads the groups' committed offsets); DESCRIBE on the cluster. And one write, decided here:
``dlq replay`` (and the flow view's replay) send a dead letter back to the topic it came from, so
the operator may WRITE the topics that have a dead-letter topic (the consumed ones, the only
replay targets), with IDEMPOTENT_WRITE for replay's idempotent producer; not ``lisa.catalog``
(refine consumes it, but only the catalogue writes it: a dead-lettered catalogue update is not
replayed, the source's next update supersedes it),
not the dead-letter topics, not the catalogue's internal topics. Replayed records carry
``lisa_replay_of`` and are processed like any input, so this write injects nothing a service
would not accept from its upstream.

A client (``User:<name>``, of ``Deployment.clients``: the campaign worker, which publishes a
file's segments through ingest's code, retractions and releases, and reads the catalogue and the
flow monitor's state without a group): WRITE, DESCRIBE on what it declares it produces (with
ingest's PREFIXED transactional id), READ, DESCRIBE on what it reads; IDEMPOTENT_WRITE.

No binding names a wildcard resource or principal; ``User:admin`` is a super user and needs none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from choreo.step import Step
from choreo.topology import Topology, dead_letter_topic
from lisa_pipeline.topics import CANDIDATES_GB, CATALOG, CONTROL

OPERATOR = "operator"
CLUSTER = "kafka-cluster"  # the one name Kafka gives the CLUSTER resource

# Runtime facts outside the declarations (see the module docstring), by service name.
TRANSACTIONAL_ID_PREFIXES: dict[str, str] = {"ingest": "ingest-", "campaign": "ingest-"}
INTERNAL_TOPIC_PREFIXES: dict[str, str] = {"catalog": "catalog-"}
# Internal topics a client reads (not declared: the catalogue's faust app makes them).
INTERNAL_READS: dict[str, tuple[str, ...]] = {"campaign": ("catalog-stacks-changelog",)}
LOOKUP_TOPICS: dict[str, tuple[str, ...]] = {"refine": (CANDIDATES_GB,)}
#: Consumed topics the operator may not write back to (``dlq replay``): their one writer is
#: the catalogue.
NOT_REPLAYED: frozenset[str] = frozenset({CATALOG})


# Kafka's codes (org.apache.kafka.common.resource / acl): the wire values of the admin protocol.
class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(IntEnum):
    DENY = 2
    ALLOW = 3


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL: ``principal`` may do ``operation`` on a resource (from any host)."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation
    permission: Permission = Permission.ALLOW
    host: str = "*"

    def describe(self) -> str:
        return (
            f"{self.principal:<16} {self.permission.name} {self.operation.name:<16} "
            f"{self.resource_type.name:<16} {self.pattern_type.name:<8} {self.resource_name}"
        )


def principal(name: str) -> str:
    return f"User:{name}"


def observers(topology: Topology) -> tuple[Step, ...]:
    """The deployment's observers (``lisa_choreo.registry.Deployment``; none on a bare
    ``Topology``)."""
    return tuple(getattr(topology, "observers", ()))


def principals(topology: Topology) -> list[str]:
    """The user names of the deployment: one per service and observer, and the operator."""
    steps = [s.name for s in topology.steps] + [s.name for s in observers(topology)]
    return [*steps, OPERATOR, *(s.name for s in clients(topology))]


class _Grants:
    def __init__(self, user: str) -> None:
        self.user = principal(user)
        self.bindings: set[AclBinding] = set()

    def allow(
        self,
        resource_type: ResourceType,
        name: str,
        operations: Iterable[Operation],
        pattern: PatternType = PatternType.LITERAL,
    ) -> None:
        for op in operations:
            self.bindings.add(AclBinding(self.user, resource_type, name, pattern, op))


R, W, D = Operation.READ, Operation.WRITE, Operation.DESCRIBE


def service_bindings(step: Step, prefix: str) -> list[AclBinding]:
    """What one service may do, from its declaration."""
    g = _Grants(step.name)
    for c in step.consumes:
        g.allow(ResourceType.TOPIC, prefix + c.topic, (R, D))
        g.allow(ResourceType.TOPIC, prefix + dead_letter_topic(c.topic), (W, D))
    for p in step.produces:
        g.allow(ResourceType.TOPIC, prefix + p.topic, (W, D))
    if step.consumes:
        g.allow(ResourceType.GROUP, prefix + step.name, (R, D))
        # Every consumer follows the pause/resume commands (choreo.control), read without a group.
        g.allow(ResourceType.TOPIC, prefix + CONTROL, (R, D))
    if step.consumes or step.produces:
        g.allow(ResourceType.CLUSTER, CLUSTER, (Operation.IDEMPOTENT_WRITE,))
    if txn := TRANSACTIONAL_ID_PREFIXES.get(step.name):
        g.allow(ResourceType.TRANSACTIONAL_ID, prefix + txn, (W, D), PatternType.PREFIXED)
    for topic in LOOKUP_TOPICS.get(step.name, ()):
        g.allow(ResourceType.TOPIC, prefix + topic, (R, D))
    if internal := INTERNAL_TOPIC_PREFIXES.get(step.name):
        g.allow(
            ResourceType.TOPIC,
            prefix + internal,
            (R, W, D, Operation.CREATE),
            PatternType.PREFIXED,
        )
    return sorted(g.bindings)


def observer_bindings(step: Step, topology: Topology, prefix: str) -> list[AclBinding]:
    """What an observer may do: read what it declares it consumes and every dead letter, read
    and write its own topics, commit in its own group, describe the groups it measures."""
    g = _Grants(step.name)
    read = {c.topic for c in step.consumes}
    for topic in sorted(read):
        g.allow(ResourceType.TOPIC, prefix + topic, (R, D))
    declared = {t.name for t in topology.topics}
    for spec in topology.all_topics():
        if spec.name not in declared:  # the dead-letter topics
            g.allow(ResourceType.TOPIC, prefix + spec.name, (R, D))
    for p in step.produces:
        g.allow(ResourceType.TOPIC, prefix + p.topic, (R, W, D))
    g.allow(ResourceType.GROUP, prefix + step.name, (R, D))
    for s in topology.steps:
        if any(c.topic in read for c in s.consumes):
            g.allow(ResourceType.GROUP, prefix + s.name, (D,))
    g.allow(ResourceType.CLUSTER, CLUSTER, (Operation.IDEMPOTENT_WRITE,))
    return sorted(g.bindings)


def operator_bindings(topology: Topology, prefix: str) -> list[AclBinding]:
    """The operator's tools: read everything declared, write only replay targets and the
    pause/resume commands."""
    g = _Grants(OPERATOR)
    for spec in topology.all_topics():
        g.allow(ResourceType.TOPIC, prefix + spec.name, (R, D))
    for step in topology.steps:
        if step.consumes:
            g.allow(ResourceType.GROUP, prefix + step.name, (D,))
        for c in step.consumes:  # `dlq replay` writes a letter back to where it came from
            if c.topic not in NOT_REPLAYED:
                g.allow(ResourceType.TOPIC, prefix + c.topic, (W,))
    g.allow(ResourceType.TOPIC, prefix + CONTROL, (W,))  # `lisa-choreo step pause|resume`
    # The catalogue's changelog is how `process` counts catalogued segments: read-only.
    for internal in INTERNAL_TOPIC_PREFIXES.values():
        g.allow(ResourceType.TOPIC, prefix + internal, (R, D), PatternType.PREFIXED)
    g.allow(ResourceType.CLUSTER, CLUSTER, (D, Operation.IDEMPOTENT_WRITE))
    return sorted(g.bindings)


def clients(topology: Topology) -> tuple[Step, ...]:
    """The deployment's clients (``lisa_choreo.registry.Deployment``: the campaign worker)."""
    return tuple(getattr(topology, "clients", ()))


def client_bindings(step: Step, prefix: str) -> list[AclBinding]:
    """A client acts on the pipeline from outside, as an operator would: WRITE what it declares
    it produces, READ what it declares it reads (without a group), ingest's transactional ids if
    it publishes files through ingest's code."""
    g = _Grants(step.name)
    for c in step.consumes:
        g.allow(ResourceType.TOPIC, prefix + c.topic, (R, D))
    for p in step.produces:
        g.allow(ResourceType.TOPIC, prefix + p.topic, (W, D))
    if txn := TRANSACTIONAL_ID_PREFIXES.get(step.name):
        g.allow(ResourceType.TRANSACTIONAL_ID, prefix + txn, (W, D), PatternType.PREFIXED)
    for internal in INTERNAL_READS.get(step.name, ()):
        g.allow(ResourceType.TOPIC, prefix + internal, (R, D))
    g.allow(ResourceType.CLUSTER, CLUSTER, (Operation.IDEMPOTENT_WRITE,))
    return sorted(g.bindings)


def derive(topology: Topology, prefix: str = "") -> list[AclBinding]:
    """Every binding of the deployment whose names start with ``prefix``, sorted."""
    bindings = [b for s in topology.steps for b in service_bindings(s, prefix)]
    bindings += [b for s in observers(topology) for b in observer_bindings(s, topology, prefix)]
    bindings += operator_bindings(topology, prefix)
    bindings += [b for s in clients(topology) for b in client_bindings(s, prefix)]
    check(bindings)
    return sorted(set(bindings))


def check(bindings: Iterable[AclBinding]) -> None:
    """No wildcard: neither a ``*`` resource or principal, nor an empty prefix (which would
    match every name)."""
    for b in bindings:
        if "*" in b.resource_name or b.principal.endswith(":*") or not b.resource_name:
            raise ValueError(f"wildcard ACL refused: {b.describe()}")
        if b.resource_type is ResourceType.CLUSTER and b.resource_name != CLUSTER:
            raise ValueError(f"the cluster resource is named {CLUSTER!r}: {b.describe()}")


def by_principal(bindings: Iterable[AclBinding]) -> dict[str, list[AclBinding]]:
    out: dict[str, list[AclBinding]] = {}
    for b in sorted(bindings):
        out.setdefault(b.principal, []).append(b)
    return out
