"""The flow monitor's ACLs, derived from its declaration (``lisa_services.flows.service.step``):
read on every flow topic and dead-letter topic, write on its own two topics only, its own group,
and a look at the groups it measures. No broker needed."""

from __future__ import annotations

import pytest

from choreo.topology import Topology, dead_letter_topic
from lisa_choreo.registry import OBSERVERS, load_service, topology
from lisa_choreo.security.acls import (
    CLUSTER,
    AclBinding,
    Operation,
    PatternType,
    ResourceType,
    by_principal,
    derive,
    principals,
)
from lisa_pipeline.flowmodel import OBSERVED_TOPICS
from lisa_pipeline.stages import PIPELINE
from lisa_pipeline.topics import FLOWS_ALERTS, FLOWS_STATE
from lisa_services.flows.monitor import SIDE_TOPICS

P = "p1."
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
READ, WRITE, DESCRIBE = Operation.READ, Operation.WRITE, Operation.DESCRIBE


@pytest.fixture(scope="module")
def grants() -> set[tuple]:
    plan: list[AclBinding] = derive(topology(), P)
    return {
        (b.resource_type, b.resource_name, b.operation, b.pattern_type)
        for b in plan
        if b.principal == "User:flows"
    }


def names(grants: set[tuple], kind: ResourceType, op: Operation) -> set[str]:
    return {n for t, n, o, _ in grants if t is kind and o is op}


def test_flows_is_an_observer_not_a_stage():
    assert OBSERVERS == ("flows",)
    assert "flows" not in PIPELINE
    deployment = topology()
    assert "flows" not in {s.name for s in deployment.steps}
    assert [s.name for s in deployment.observers] == ["flows"]
    assert "flows" in principals(deployment)
    assert load_service("flows").step is deployment.observers[0]
    # reading the pipeline creates no dead-letter topic: the observer dead-letters nothing
    # (lisa.catalog.dlq is refine's, the step that consumes the catalogue)
    dead_letters = {t.name for t in deployment.all_topics() if t.name.endswith(".dlq")}
    consumed = {c.topic for s in deployment.steps for c in s.consumes}
    assert dead_letters == {f"{t}.dlq" for t in consumed}
    assert "lisa.flows.alerts.dlq" not in dead_letters


def test_flows_reads_every_flow_topic_and_every_dead_letter_topic(grants):
    read = names(grants, TOPIC, READ)
    assert {P + t for t in OBSERVED_TOPICS} <= read
    consumed = {c.topic for s in topology().steps for c in s.consumes}
    dead_letters = {P + dead_letter_topic(t) for t in consumed}
    assert dead_letters <= read
    own = {P + FLOWS_ALERTS, P + FLOWS_STATE}
    side = {P + t for t in SIDE_TOPICS}  # pause/resume commands and retractions, for the view
    assert read == {P + t for t in OBSERVED_TOPICS} | dead_letters | own | side
    assert names(grants, TOPIC, DESCRIBE) == read


def test_flows_writes_its_own_topics_and_nothing_else(grants):
    assert names(grants, TOPIC, WRITE) == {P + FLOWS_ALERTS, P + FLOWS_STATE}
    produced = {p.topic for s in topology().steps for p in s.produces}
    assert not {P + t for t in produced} & names(grants, TOPIC, WRITE)
    assert not any(n.endswith(".dlq") for n in names(grants, TOPIC, WRITE))
    assert {op for _, _, op, _ in grants} <= {READ, WRITE, DESCRIBE, Operation.IDEMPOTENT_WRITE}
    assert (
        ResourceType.CLUSTER,
        CLUSTER,
        Operation.IDEMPOTENT_WRITE,
        PatternType.LITERAL,
    ) in grants
    assert not any(p is PatternType.PREFIXED for *_, p in grants)


def test_flows_commits_in_its_own_group_and_only_describes_the_others(grants):
    assert names(grants, GROUP, READ) == {P + "flows"}
    consumers = {s.name for s in topology().steps if s.consumes}
    assert names(grants, GROUP, DESCRIBE) == {P + "flows"} | {P + n for n in consumers}


def test_the_pipelines_grants_do_not_change_with_the_observer():
    deployment = topology()
    bare = Topology(topics=deployment.topics, steps=deployment.steps)
    with_observer = by_principal(derive(deployment, P))
    without = by_principal(derive(bare, P))
    assert set(with_observer) - set(without) == {"User:flows", "User:campaign"}
    for user, bindings in without.items():
        assert with_observer[user] == bindings, user
