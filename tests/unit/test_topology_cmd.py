"""``lisa-choreo topology``: every service, topic, event type and dead-letter path is shown."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest

from choreo import Consumes, Event, Produces, Step
from choreo.topology import TopicSpec, Topology
from lisa_choreo.commands.topology import render_mermaid, render_text
from lisa_choreo.registry import topology


class A(Event):
    ce_type: ClassVar[str] = "test.a.v1"


class B(Event):
    ce_type: ClassVar[str] = "test.b.v1"


def test_text_lists_every_service_and_topic_with_their_flows() -> None:
    topo = topology()
    text = render_text(topo)
    for step in topo.steps:
        assert re.search(rf"^  {re.escape(step.name)}\b", text, re.M), step.name
        for c in step.consumes:
            assert re.search(rf"consumes {re.escape(c.topic)} +{c.types[0].ce_type}", text)
            assert re.search(rf"rejects  {re.escape(c.topic)}\.dlq +dead letters", text)
        for p in step.produces:
            assert re.search(rf"produces {re.escape(p.topic)} +{p.types[0].ce_type}", text)
    for spec in topo.all_topics():
        assert re.search(rf"^  {re.escape(spec.name)} +\d+ partitions?, ", text, re.M), spec.name


def test_text_of_a_small_graph_reads_naturally() -> None:
    topo = Topology(
        topics=(TopicSpec("in", partitions=2), TopicSpec("out", compacted=True)),
        steps=(Step("s", consumes=[Consumes("in", A)], produces=[Produces("out", B)]),),
    )
    assert render_text(topo).splitlines() == [
        "services",
        "  s",
        "    consumes in          test.a.v1",
        "    produces out         test.b.v1",
        "    rejects  in.dlq      dead letters",
        "topics",
        "  in          2 partitions, 7 d        - -> s",
        "  out         6 partitions, compacted  s -> -",
        "  in.dlq      1 partition, 30 d        s -> -",
    ]


def test_mermaid_has_every_node_and_edge_and_only_declared_nodes() -> None:
    topo = topology()
    chart = render_mermaid(topo)
    lines = chart.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = dict(re.findall(r'^  (\w+)(?:\[\(|\(\[)"([^"]+)"', chart, re.M))
    assert set(nodes.values()) == {s.name for s in topo.steps} | {t.name for t in topo.all_topics()}
    edges = re.findall(r'^  (\w+) (-->|-\.->)\|"([^"]+)"\| (\w+)$', chart, re.M)
    assert all(a in nodes and b in nodes for a, _, _, b in edges)
    named = {(nodes[a], arrow, label, nodes[b]) for a, arrow, label, b in edges}
    for step in topo.steps:
        for c in step.consumes:
            label = ", ".join(t.ce_type for t in c.types)
            assert (c.topic, "-->", label, step.name) in named
            assert (step.name, "-.->", "dead letters", c.topic + ".dlq") in named
        for p in step.produces:
            label = ", ".join(t.ce_type for t in p.types)
            assert (step.name, "-->", label, p.topic) in named
    assert len(edges) == len(named)


def test_mermaid_ids_stay_unique_when_names_differ_only_in_punctuation() -> None:
    topo = Topology(
        topics=(TopicSpec("a.b"), TopicSpec("a_b"), TopicSpec('q"x')),
        steps=(Step("a-b", consumes=[Consumes("a.b", A)], produces=[Produces("a_b", B)]),),
    )
    chart = render_mermaid(topo)
    ids = re.findall(r"^  (\w+)(?:\[\(|\(\[)", chart, re.M)
    assert len(ids) == len(set(ids)) == 5  # three topics, one dlq, one service
    assert '"q#quot;x"' in chart


@pytest.mark.parametrize("fmt", ["text", "mermaid"])
def test_command_prints_the_graph(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    from lisa_choreo.cli import main

    assert main(["topology", "--format", fmt]) == 0
    out = capsys.readouterr().out
    expected = render_mermaid(topology()) if fmt == "mermaid" else render_text(topology())
    assert out == expected
