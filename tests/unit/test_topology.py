"""The topology declaration: validation, dead-letter topics, the graph, topic configs."""

from typing import ClassVar

import pytest

from choreo import Consumes, Event, Produces, Step
from choreo.topology import TopicSpec, Topology
from lisa_choreo.registry import SERVICE_MODULES, load_service, topology


class A(Event):
    ce_type: ClassVar[str] = "test.a.v1"


class B(Event):
    ce_type: ClassVar[str] = "test.b.v1"


def _step(consumes="in", produces="out"):
    return Step("s", consumes=[Consumes(consumes, A)], produces=[Produces(produces, B)])


def test_undeclared_topic_is_an_error():
    with pytest.raises(ValueError, match="undeclared topic 'missing'"):
        Topology(topics=(TopicSpec("in"), TopicSpec("out")), steps=(_step(produces="missing"),))


def test_every_consumed_topic_gets_a_dead_letter_topic():
    topo = Topology(topics=(TopicSpec("in"), TopicSpec("out")), steps=(_step(),))
    names = [t.name for t in topo.all_topics()]
    assert names == ["in", "out", "in.dlq"]
    assert list(topo.edges()) == [("in", "s", "test.a.v1"), ("s", "out", "test.b.v1")]


def test_compacted_topics_have_no_time_retention():
    assert TopicSpec("c", compacted=True).config(2) == {
        "min.insync.replicas": "2",
        "cleanup.policy": "compact",
    }
    assert TopicSpec("r", retention_ms=5).config(1)["retention.ms"] == "5"


def test_step_checks_what_it_may_emit():
    step = _step()
    assert step.may_emit("out", B())
    assert not step.may_emit("out", A())
    assert not step.may_emit("in", B())


def test_the_deployment_topology_is_consistent():
    topo = topology()  # raises if a step uses a topic the declaration lacks
    names = {t.name for t in topo.all_topics()}
    for name in SERVICE_MODULES:
        module = load_service(name)
        assert module.step.handle is not None or hasattr(module, "main"), name
    for step in topo.steps:
        for c in step.consumes:
            assert c.topic + ".dlq" in names
