"""The ACLs derived from the declarations (no broker): exact sets, no wildcard, a read-only
operator except the replay writes."""

from __future__ import annotations

import pytest

from choreo.step import Consumes, Produces, Step
from choreo.topology import TopicSpec, Topology
from lisa_choreo.registry import topology
from lisa_choreo.security.acls import (
    CLUSTER,
    AclBinding,
    Operation,
    PatternType,
    ResourceType,
    by_principal,
    check,
    derive,
    principals,
)

P = "p1."
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
READ, WRITE, DESCRIBE, CREATE = (
    Operation.READ,
    Operation.WRITE,
    Operation.DESCRIBE,
    Operation.CREATE,
)


def grants(bindings: list[AclBinding], user: str) -> set[tuple]:
    return {
        (b.resource_type, b.pattern_type, b.resource_name, b.operation)
        for b in bindings
        if b.principal == f"User:{user}"
    }


@pytest.fixture(scope="module")
def plan() -> list[AclBinding]:
    return derive(topology(), P)


def test_condition_gets_its_input_output_dead_letters_group_and_nothing_else(plan):
    assert grants(plan, "condition") == {
        (TOPIC, LIT, "p1.lisa.segments.raw", READ),
        (TOPIC, LIT, "p1.lisa.segments.raw", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.segments.raw.dlq", WRITE),
        (TOPIC, LIT, "p1.lisa.segments.raw.dlq", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.segments.conditioned", WRITE),
        (TOPIC, LIT, "p1.lisa.segments.conditioned", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.control", READ),  # pause/resume commands
        (TOPIC, LIT, "p1.lisa.control", DESCRIBE),
        (GROUP, LIT, "p1.condition", READ),
        (GROUP, LIT, "p1.condition", DESCRIBE),
        (ResourceType.CLUSTER, LIT, CLUSTER, Operation.IDEMPOTENT_WRITE),
    }


def test_catalog_gets_its_faust_internal_topics_and_its_group(plan):
    assert grants(plan, "catalog") == {
        (TOPIC, LIT, "p1.lisa.sources.estimates", READ),
        (TOPIC, LIT, "p1.lisa.sources.estimates", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.sources.estimates.dlq", WRITE),
        (TOPIC, LIT, "p1.lisa.sources.estimates.dlq", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.retractions", READ),
        (TOPIC, LIT, "p1.lisa.retractions", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.retractions.dlq", WRITE),
        (TOPIC, LIT, "p1.lisa.retractions.dlq", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.sources.refined", READ),  # refine's parameters -> products
        (TOPIC, LIT, "p1.lisa.sources.refined", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.sources.refined.dlq", WRITE),
        (TOPIC, LIT, "p1.lisa.sources.refined.dlq", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.control", READ),  # pause/resume commands
        (TOPIC, LIT, "p1.lisa.control", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.catalog", WRITE),
        (TOPIC, LIT, "p1.lisa.catalog", DESCRIBE),
        # faust: <app id>-by-grid, <app id>-stacks-changelog, <app id>-__assignor-__leader
        (TOPIC, PRE, "p1.catalog-", READ),
        (TOPIC, PRE, "p1.catalog-", WRITE),
        (TOPIC, PRE, "p1.catalog-", DESCRIBE),
        (TOPIC, PRE, "p1.catalog-", CREATE),
        (GROUP, LIT, "p1.catalog", READ),  # faust's group id is the app id
        (GROUP, LIT, "p1.catalog", DESCRIBE),
        (ResourceType.CLUSTER, LIT, CLUSTER, Operation.IDEMPOTENT_WRITE),
    }


def test_ingest_writes_raw_segments_in_transactions_under_its_prefix(plan):
    assert grants(plan, "ingest") == {
        (TOPIC, LIT, "p1.lisa.segments.raw", WRITE),
        (TOPIC, LIT, "p1.lisa.segments.raw", DESCRIBE),
        (ResourceType.TRANSACTIONAL_ID, PRE, "p1.ingest-", WRITE),
        (ResourceType.TRANSACTIONAL_ID, PRE, "p1.ingest-", DESCRIBE),
        (ResourceType.CLUSTER, LIT, CLUSTER, Operation.IDEMPOTENT_WRITE),
    }


def test_every_service_reads_only_what_it_consumes_and_writes_only_what_it_may(plan):
    deployment = topology()
    for step in deployment.steps:
        g = grants(plan, step.name)
        read = {name for t, _, name, op in g if t is TOPIC and op is READ}
        written = {name for t, _, name, op in g if t is TOPIC and op is WRITE}
        internal = {P + "catalog-"} if step.name == "catalog" else set()
        control = {P + "lisa.control"} if step.consumes else set()  # pause/resume commands
        # refine looks up segments on the search's topic without a group: read-only
        lookup = {P + "lisa.candidates.gb"} if step.name == "refine" else set()
        assert read - internal - control - lookup == {P + c.topic for c in step.consumes}
        assert written - internal == {P + p.topic for p in step.produces} | {
            P + c.topic + ".dlq" for c in step.consumes
        }


def test_the_operator_reads_everything_declared_and_writes_only_replay_targets(plan):
    g = grants(plan, "operator")
    every = {P + t.name for t in topology().all_topics()}
    internal = P + "catalog-"  # read-only, prefixed: `process` counts catalogued segments there
    assert {n for t, _, n, op in g if t is TOPIC and op is READ} == every | {internal}
    assert {n for t, _, n, op in g if t is TOPIC and op is DESCRIBE} == every | {internal}
    consumed = {P + c.topic for s in topology().steps for c in s.consumes}
    # decided: `dlq replay` writes a letter back to its original topic, a consumed one, except
    # lisa.catalog (refine consumes it, but its one writer is the catalogue)
    replayable = consumed - {P + "lisa.catalog"}
    assert {n for t, _, n, op in g if t is TOPIC and op is WRITE} == replayable | {
        P + "lisa.control"
    }
    assert not any(n.endswith(".dlq") for t, _, n, op in g if op is WRITE)
    groups = {(n, op) for t, _, n, op in g if t is GROUP}
    assert groups == {(P + s.name, DESCRIBE) for s in topology().steps if s.consumes}
    assert {op for t, _, _, op in g if t is ResourceType.CLUSTER} == {
        DESCRIBE,
        Operation.IDEMPOTENT_WRITE,  # replay's producer is idempotent
    }
    ops = {op for *_, op in g}
    assert ops <= {READ, DESCRIBE, WRITE, Operation.IDEMPOTENT_WRITE}
    assert {n for _, p, n, _ in g if p is PRE} == {internal}


def test_no_wildcard_and_allow_only(plan):
    assert plan == sorted(set(plan))
    for b in plan:
        assert "*" not in b.resource_name
        assert b.principal.startswith("User:")
        assert not b.principal.endswith("*")
        assert b.permission.name == "ALLOW"
        assert b.host == "*"  # any client host: the broker listens on loopback only
    assert set(by_principal(plan)) == {f"User:{n}" for n in principals(topology())}
    assert "User:admin" not in by_principal(plan)  # the super user needs none


def test_an_empty_prefix_still_names_every_resource():
    plan = derive(topology(), "")
    assert all(b.resource_name for b in plan)
    assert (TOPIC, PRE, "catalog-", CREATE) in grants(plan, "catalog")
    with pytest.raises(ValueError, match="wildcard"):
        check([AclBinding("User:x", TOPIC, "*", LIT, READ)])
    with pytest.raises(ValueError, match="wildcard"):
        check([AclBinding("User:x", TOPIC, "", PRE, READ)])


def test_a_new_declaration_changes_the_plan_and_nothing_else():
    """Least privilege follows the declarations: a side consumer added to the topology gets
    exactly its input, its dead letters and its group."""
    spec = TopicSpec("t.in")
    out = TopicSpec("t.out")
    step = Step("monitor", consumes=[Consumes("t.in")], produces=[Produces("t.out")])
    plan = derive(Topology(topics=(spec, out), steps=(step,)), "")
    assert grants(plan, "monitor") == {
        (TOPIC, LIT, "t.in", READ),
        (TOPIC, LIT, "t.in", DESCRIBE),
        (TOPIC, LIT, "t.in.dlq", WRITE),
        (TOPIC, LIT, "t.in.dlq", DESCRIBE),
        (TOPIC, LIT, "t.out", WRITE),
        (TOPIC, LIT, "t.out", DESCRIBE),
        (TOPIC, LIT, "lisa.control", READ),  # every consumer follows pause/resume
        (TOPIC, LIT, "lisa.control", DESCRIBE),
        (GROUP, LIT, "monitor", READ),
        (GROUP, LIT, "monitor", DESCRIBE),
        (ResourceType.CLUSTER, LIT, CLUSTER, Operation.IDEMPOTENT_WRITE),
    }
    assert set(by_principal(plan)) == {"User:monitor", "User:operator"}


def test_refine_reads_the_catalogue_and_looks_segments_up_on_the_search_topic(plan):
    assert grants(plan, "refine") == {
        (TOPIC, LIT, "p1.lisa.catalog", READ),
        (TOPIC, LIT, "p1.lisa.catalog", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.catalog.dlq", WRITE),
        (TOPIC, LIT, "p1.lisa.catalog.dlq", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.candidates.gb", READ),  # group-less lookup of claim checks
        (TOPIC, LIT, "p1.lisa.candidates.gb", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.sources.refined", WRITE),
        (TOPIC, LIT, "p1.lisa.sources.refined", DESCRIBE),
        (TOPIC, LIT, "p1.lisa.control", READ),
        (TOPIC, LIT, "p1.lisa.control", DESCRIBE),
        (GROUP, LIT, "p1.refine", READ),
        (GROUP, LIT, "p1.refine", DESCRIBE),
        (ResourceType.CLUSTER, LIT, CLUSTER, Operation.IDEMPOTENT_WRITE),
    }
