"""The campaign's pure parts: segment ids of a reprocessed cut, the campaign a segment belongs
to, what the bridge tells a campaign of a flow, and the refusal of unusable revisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lisa_choreo.campaign.bridge import outcome
from lisa_choreo.campaign.contract import SEGMENT_CATALOGUED, SEGMENT_DEAD, campaign_of
from lisa_pipeline.events import FlowDeath, FlowMark, FlowSnapshot
from lisa_science.ldc import TDIData, write_ldc
from lisa_services.ingest.files import check_revision, plan_file

SHA16 = "0123456789abcdef"


def test_first_cuts_belong_to_no_campaign_and_restored_cuts_to_their_campaign():
    assert campaign_of(f"{SHA16}-00003") is None
    assert campaign_of(f"{SHA16}.half-00003") == f"campaign-{SHA16}.half"
    assert campaign_of(f"{SHA16}.half_restore-00000") == f"campaign-{SHA16}.half"
    for hostile in ("", "-", f"{SHA16}.half-", f"{SHA16}.half-x1", "no-dash.here"):
        assert campaign_of(hostile) is None


@pytest.mark.parametrize("revision", ["a-b", "a.b", "x" * 33, "é", "a b", "../x"])
def test_a_revision_that_would_break_segment_ids_is_refused(revision):
    with pytest.raises(ValueError, match="revision"):
        check_revision(revision)


def test_a_revision_gives_new_ids_and_keeps_the_first_cut_s(tmp_path: Path):
    n = 2 * 8640
    rng = np.random.default_rng(1)
    path = tmp_path / "two-days.h5"
    write_ldc(
        str(path),
        TDIData(t0=0.0, dt=10.0, x=rng.normal(size=n), y=rng.normal(size=n), z=rng.normal(size=n)),
    )
    first = plan_file(path, 86_400.0, 0.0)
    again = plan_file(path, 43_200.0, 0.0, revision="half")
    sha16 = first.sha256[:16]
    assert [first.segment_id(i) for i in range(2)] == [f"{sha16}-00000", f"{sha16}-00001"]
    assert again.segment_id(3) == f"{sha16}.half-00003"
    assert first.identity != again.identity
    assert campaign_of(again.segment_id(0)) == f"campaign-{sha16}.half"


def _mark(stage: str) -> FlowMark:
    return FlowMark(stage=stage, at_ms=1, service="s", topic="t", partition=0, offset=0)


def test_the_bridge_speaks_of_catalogued_and_dead_lettered_flows_only():
    base = {"segment_id": f"{SHA16}.half-00001", "correlation_id": "c"}
    moving = FlowSnapshot(**base, marks=[_mark("raw"), _mark("conditioned")])
    assert outcome(moving) is None
    done = FlowSnapshot(**base, marks=[_mark("raw"), _mark("catalogued")])
    assert outcome(done) == (SEGMENT_CATALOGUED, "")
    death = FlowDeath(
        stage="conditioned", service="condition", reason="no-data", ref="x/0/1", at_ms=2
    )
    dead = FlowSnapshot(**base, marks=[_mark("raw")], death=death)
    assert outcome(dead) == (SEGMENT_DEAD, "condition: no-data")


def test_the_campaign_may_do_what_it_declares_and_nothing_else():
    from lisa_choreo.registry import topology
    from lisa_choreo.security.acls import Operation, by_principal, derive

    grants = {
        (b.resource_type.name, b.resource_name, b.operation)
        for b in by_principal(derive(topology(), "p."))["User:campaign"]
    }
    writes = {name for kind, name, op in grants if kind == "TOPIC" and op is Operation.WRITE}
    reads = {name for kind, name, op in grants if kind == "TOPIC" and op is Operation.READ}
    assert writes == {"p.lisa.segments.raw", "p.lisa.retractions", "p.lisa.catalog.releases"}
    assert reads == {"p.lisa.catalog", "p.lisa.flows.state", "p.catalog-stacks-changelog"}
    assert ("TRANSACTIONAL_ID", "p.ingest-", Operation.WRITE) in grants
    assert not [g for g in grants if g[0] == "GROUP"]  # it reads without a consumer group
