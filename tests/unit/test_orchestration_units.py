"""The orchestrated mode's pure parts, without a Temporal server: the retry policy taken from the
choreography's settings, the failure mapping of a step's outcome, the catalogue's fold against
the catalog service's own stacking, the workflows' determinism guards, the launcher's command.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from temporalio.exceptions import ApplicationError

from choreo import Consumes, Emit, Envelope, PermanentError, Produces, Step, TransientError
from choreo.settings import StepSettings
from choreo.store import Store
from choreo.testing import StepHarness
from lisa_choreo.orchestration import activities
from lisa_choreo.orchestration.contract import (
    CatalogueParams,
    StackInput,
    segment_of,
)
from lisa_choreo.orchestration.run import catalogue_params, step_policy
from lisa_choreo.orchestration.workflows import CatalogueWorkflow
from lisa_pipeline.events import SegmentTiming, SourceEstimates
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.catalog.state import stack_segment
from tests.toy.events import NUMBERS, SQUARES, Number, Square

# -- the choreography's budget, in Temporal's terms --------------------------------------------


def test_step_policy_is_the_choreographys_retry_budget_and_liveness_bounds():
    settings = StepSettings(
        max_retries=3,
        retry_backoff_s=0.25,
        retry_backoff_max_s=8.0,
        session_timeout_ms=12_000,
        max_poll_interval_ms=200_000,
    )
    policy = step_policy(settings)
    assert policy.maximum_attempts == 4  # the first attempt and 3 retries
    retry = policy.retry()
    assert retry.initial_interval == timedelta(seconds=0.25)
    assert retry.maximum_interval == timedelta(seconds=8.0)
    assert retry.backoff_coefficient == 2.0  # choreo.retry doubles too
    assert retry.maximum_attempts == 4
    options = policy.options()
    assert options["heartbeat_timeout"] == timedelta(seconds=12)  # the session timeout
    assert options["start_to_close_timeout"] == timedelta(seconds=200)  # max poll interval


def test_catalogue_params_are_the_catalog_services_settings():
    s = CatalogSettings(fap=1e-4, merge_bins=3, association_bins=2, max_links=7)
    assert catalogue_params(s) == CatalogueParams(1e-4, 3, 2, 7)


# -- a step's outcome as Temporal sees it ----------------------------------------------------

toy = Step("toy-orchestrated", [Consumes(NUMBERS, Number)], [Produces(SQUARES, Square)])
FAILURES = {13: PermanentError("unlucky", "13 is refused"), 7: TransientError("store away")}


@toy.handler
def _square(event: Envelope[Number]) -> list[Emit]:
    n = event.data.value
    if n in FAILURES:
        raise FAILURES[n]
    if n < 0:
        raise ValueError("negative")
    return [Emit(SQUARES, Square(value=n, square=n * n))]


def _event(n: int) -> dict:
    return activities.envelope_json(Envelope.root(Number(value=n), source="test", subject=f"n{n}"))


@pytest.fixture
def toy_harness() -> StepHarness:
    return StepHarness(toy, StepSettings(max_retries=0))


def test_a_step_output_is_the_runtime_envelope_with_a_derived_id(toy_harness):
    event = _event(4)
    out = activities.run_harness(toy_harness, event)
    assert out["data"] == {"value": 4, "square": 16}
    assert out["type"] == Square.ce_type
    assert out["causation_id"] == event["id"]
    assert out["correlation_id"] == event["correlation_id"]
    assert out["subject"] == "n4"
    again = activities.run_harness(toy_harness, event)
    assert again["id"] == out["id"]  # derived from the input: a retry gives the same event


def test_a_permanent_error_is_a_non_retryable_failure_named_by_its_reason(toy_harness):
    with pytest.raises(ApplicationError) as info:
        activities.run_harness(toy_harness, _event(13))
    assert info.value.non_retryable
    assert info.value.type == "unlucky"
    assert "13 is refused" in info.value.message


def test_a_handler_bug_is_dead_lettered_there_and_non_retryable_here(toy_harness):
    with pytest.raises(ApplicationError) as info:
        activities.run_harness(toy_harness, _event(-1))
    assert info.value.non_retryable
    assert info.value.type == "handler-error"


def test_a_transient_error_is_retryable_and_the_harness_tries_once(toy_harness):
    with pytest.raises(ApplicationError) as info:
        activities.run_harness(toy_harness, _event(7))
    assert not info.value.non_retryable  # Temporal retries it with the StepPolicy
    assert info.value.type == activities.TRANSIENT


def test_an_event_of_an_undeclared_type_is_refused_for_good(toy_harness):
    wrong = {**_event(2), "type": "lisa.something.else.v1"}
    with pytest.raises(ApplicationError) as info:
        activities.run_harness(toy_harness, wrong)
    assert info.value.non_retryable
    assert info.value.type == "unknown-type"
    invalid = {**_event(2), "data": {"value": "two"}}
    with pytest.raises(ApplicationError) as info:
        activities.run_harness(toy_harness, invalid)
    assert info.value.type == "schema-invalid"


def test_envelope_json_round_trips():
    env = Envelope.root(Number(value=5), source="test", subject="five")
    back = activities.envelope_of(activities.envelope_json(env), {Number.ce_type: Number})
    assert back == env


# -- the catalogue's fold is the catalog service's stacking -----------------------------------

N_BINS = 400
PARAMS = CatalogueParams(fap=1e-3, merge_bins=2, association_bins=1, max_links=8)


def _segments(store: Store, count: int, seed: int = 3, bins: int = N_BINS) -> list[dict]:
    """Statistic spectra (chi2 with 4 dof, a loud line in bin 120) stored as gb-search stores
    them, and the estimates events that name them."""
    rng = np.random.default_rng(seed)
    f = 1e-4 + np.arange(bins) * 5.787e-6
    events = []
    for i in range(count):
        stat = rng.chisquare(4, bins)
        stat[120] += 60.0
        ref = store.put({"f": f, "stat": stat})
        body = SourceEstimates(
            timing=SegmentTiming(segment_id=f"seg-{i:03d}", t0=86_400.0 * i, dt=5.0, n_samples=99),
            statistic=ref,
            n_independent_bins=bins // 2,
            estimates=[],
        )
        env = Envelope.root(body, source="estimate", subject=body.timing.segment_id)
        events.append(activities.envelope_json(env))
    return events


def _settings() -> CatalogSettings:
    return CatalogSettings(
        fap=PARAMS.fap,
        merge_bins=PARAMS.merge_bins,
        association_bins=PARAMS.association_bins,
        max_links=PARAMS.max_links,
    )


def test_folding_in_batches_equals_the_catalog_services_stacking(tmp_path: Path):
    store = Store((tmp_path / "store").as_uri())
    events = _segments(store, 6)
    # the catalog service's way: one segment at a time through stack_segment
    stack = None
    for e in events:
        body = SourceEstimates.model_validate(e["data"])
        arrays = store.get(body.statistic, ["f", "stat"])
        stack = stack_segment(stack, body, arrays["f"], arrays["stat"], None, _settings())
    expected = stack.catalogue(PARAMS.association_bins)
    # the orchestrated way: folds of 4 then 2 (and a duplicate), state carried between them
    uri = store.root.as_uri()
    first = activities.fold(StackInput({}, events[:4], uri, PARAMS, str(tmp_path / "p")))
    second = activities.fold(StackInput(first.state, [events[1], *events[4:]], uri, PARAMS))
    assert first.stacked == [segment_of(e) for e in events[:4]]
    assert second.stacked == [segment_of(e) for e in events[4:]]  # seg-001 again: ignored
    assert [s["frequency_bin"] for s in second.sources] == [s.frequency_bin for s in expected]
    for got, want in zip(second.sources, expected, strict=True):
        assert got["stacked_statistic"] == pytest.approx(want.stacked_statistic, rel=1e-12)
        assert got["n_segments"] == want.n_segments == 6
    assert (tmp_path / "p" / "catalog.csv").exists()  # the products, written as the service does


def test_a_segment_on_another_grid_is_rejected_and_the_rest_stacked(tmp_path: Path):
    store = Store((tmp_path / "store").as_uri())
    good = _segments(store, 2)
    odd = _segments(store, 1, seed=9)[0]
    odd_body = SourceEstimates.model_validate(odd["data"])
    arrays = store.get(odd_body.statistic, ["f", "stat"])
    shifted = store.put({"f": arrays["f"] * 1.01, "stat": arrays["stat"]})  # same size, other f
    odd["data"]["statistic"] = shifted.model_dump(mode="json")
    odd["data"]["timing"]["segment_id"] = "seg-odd"
    out = activities.fold(StackInput({}, [*good, odd], store.root.as_uri(), PARAMS))
    assert out.stacked == ["seg-000", "seg-001"]
    [failure] = out.rejected
    assert (failure.segment_id, failure.step, failure.reason) == (
        "seg-odd",
        "stack",
        "grid-mismatch",
    )


def test_the_catalogue_takes_each_pending_segment_once():
    wf = CatalogueWorkflow()
    seg = [{"data": {"timing": {"segment_id": s}}} for s in ("a", "b", "a", "c", "d")]
    wf._carry.pending = list(seg)
    wf._carry.counted = {"c": 1.0}
    batch = wf._take(limit=1)
    assert [segment_of(e) for e in batch] == ["a"]
    assert [segment_of(e) for e in wf._carry.pending] == ["b", "d"]  # a again and c: dropped


# -- determinism guards ----------------------------------------------------------------------


def test_workflow_code_imports_no_numpy_and_no_service():
    code = (
        "import sys, lisa_choreo.orchestration.workflows; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'scipy', 'h5py', 'lisa_services', 'lisa_science')]; "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_workflows_load_in_the_sdks_sandbox():
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
    from temporalio.workflow import _Definition

    from lisa_choreo.orchestration.workflows import ProbeWorkflow, SegmentWorkflow

    runner = SandboxedWorkflowRunner()

    async def prepare() -> None:  # what a worker does with each workflow class at start
        for cls in (SegmentWorkflow, CatalogueWorkflow, ProbeWorkflow):
            runner.prepare_workflow(_Definition.must_from_class(cls))  # raises if restricted

    asyncio.run(prepare())


# -- the launcher ----------------------------------------------------------------------------


def test_the_dev_server_listens_on_loopback_with_its_data_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LISA_CHOREO_HOME", str(tmp_path))
    from lisa_choreo.localstack import temporal

    server = temporal.TemporalServer(17_000)
    cmd = server.command(Path("/opt/temporal"))
    assert cmd[:3] == ["/opt/temporal", "server", "start-dev"]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert args["--ip"] == "127.0.0.1"
    assert (args["--port"], args["--ui-port"], args["--http-port"]) == ("17000", "18000", "17010")
    assert Path(args["--db-filename"]).is_relative_to(tmp_path / "stack")
    assert temporal.install_command()[-1] == f"{temporal.CLI_MODULE}@{temporal.CLI_VERSION}"


def test_the_built_cli_is_cached_per_pinned_version(tmp_path, monkeypatch):
    monkeypatch.setenv("LISA_CHOREO_HOME", str(tmp_path))
    from lisa_choreo.localstack import temporal

    assert temporal.cached_binary() is None
    binary = temporal.binary_path()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (binary.parent / ".version").write_text(f"{temporal.CLI_MODULE}@v0.0.1\n")
    assert temporal.cached_binary() is None  # another version: rebuilt
    (binary.parent / ".version").write_text(f"{temporal.CLI_MODULE}@{temporal.CLI_VERSION}\n")
    assert temporal.cached_binary() == binary
    assert temporal.build() == binary  # no go needed once cached


def test_the_cli_lists_orchestrate():
    from lisa_choreo.cli import build_parser

    args = build_parser().parse_args(["orchestrate", "a.h5", "--csv", "--workers", "3"])
    assert args.files == [Path("a.h5")]
    assert args.csv
    assert args.workers == 3
    assert build_parser().parse_args(["orchestrate", "worker"]).files == [Path("worker")]
