"""The orchestrated mode's workflows: one per segment, one per catalogue, and a probe.

Workflow code is replayed from its history on whichever worker holds it, so it must be
deterministic: no numpy, no I/O, no clock but ``workflow.now()``. Every array operation is an
activity (``activities.py``: the services' own handlers and the catalogue's stacking code); the
workflows only route envelopes (JSON) and keep the catalogue's state as JSON. The one import
besides the SDK, the data model, is passed through the sandbox as the SDK's documentation asks.

``SegmentWorkflow`` (id ``<run>-<segment id>``): ingest -> condition -> gb-search -> estimate,
each an activity with the choreography's retry budget and liveness bound (``StepPolicy``), then a
signal carrying the estimates to the catalogue. A step that gives up (a ``PermanentError``, or
retries exhausted) signals ``segment_failed`` instead and fails the workflow: the dead letter of
this mode, visible in the UI with its reason.

Where the catalogue's state lives: a long-lived ``CatalogueWorkflow`` (an "entity" workflow)
that receives every segment's estimates as a signal and holds the per-grid ``GridStack`` (as the
JSON the faust table holds, ``GridStack.to_json()``). Chosen over a per-file workflow holding the
stack because:

1. the catalogue stacks *every* segment ever seen, across files (30 daily files feed one
   catalogue in a continuous chain): a per-file workflow would need a second, cross-file level
   anyway, and its results would have to be merged somewhere;
2. its durability is Temporal's: a signal is written to the catalogue's history before the
   sender's command completes, so a segment cannot be lost between the two workflows; the stack
   is the result of the last ``stack`` activity, recorded in the history, so a worker that dies
   loses nothing (another replays the history and has the same state), and the server's own
   database (SQLite for the dev server) keeps the history across a server crash. No file holds
   catalogue state (``catalog.csv``/``.h5`` are products, rewritten from it);
3. it keeps the choreography's idempotence: the set of counted segment ids lives in the same
   state, so a segment signalled twice (a retried segment workflow, a re-run file) is ignored,
   as the faust catalogue ignores a redelivered record;
4. one writer per catalogue, like one faust partition per grid: folds are sequential, in
   arrival order, so two segments can never race on the stack.

Stacking itself happens in the ``stack`` activity (``lisa_services.catalog.state.stack_segment``
and ``GridStack.catalogue``, the catalog service's code), on a batch of the segments signalled
since the last fold: the state goes in, the new state comes out. That costs the history ~2 x the
state (~150-250 KB) per fold, so the workflow continues as new when the server suggests it,
carrying state, counted ids, failures and pending signals to the next run (same workflow id).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from lisa_choreo.orchestration.contract import (
        ADD_SEGMENT,
        CATALOGUE_WORKFLOW,
        CLOSE,
        FORWARD,
        INGEST,
        PROBE_WORKFLOW,
        SEGMENT_FAILED,
        SEGMENT_WORKFLOW,
        STACK,
        VIEW,
        CatalogueCarry,
        CatalogueInput,
        CatalogueView,
        ProbeInput,
        SegmentFailure,
        SegmentInput,
        SegmentOutcome,
        StackInput,
        StackOutput,
        StepInput,
        segment_of,
    )


def _failure(segment_id: str, step: str, exc: ActivityError) -> SegmentFailure:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return SegmentFailure(segment_id, step, cause.type or "error", cause.message)
    return SegmentFailure(segment_id, step, type(cause).__name__, str(cause))


@workflow.defn(name=SEGMENT_WORKFLOW)
class SegmentWorkflow:
    """One segment through the chain, then into the catalogue."""

    @workflow.run
    async def run(self, inp: SegmentInput) -> SegmentOutcome:
        options = inp.policy.options()
        catalogue = workflow.get_external_workflow_handle(inp.catalogue_id)
        step = INGEST
        try:
            event = await workflow.execute_activity(INGEST, inp, result_type=dict, **options)
            for step in inp.chain:
                event = await workflow.execute_activity(
                    step, StepInput(event, inp.store_uri), result_type=dict, **options
                )
        except ActivityError as exc:
            failure = _failure(inp.segment_id, step, exc)
            await catalogue.signal(SEGMENT_FAILED, failure)
            raise ApplicationError(
                f"{step}: {failure.reason}: {failure.message}",
                type=failure.reason,
                non_retryable=True,
            ) from exc
        await catalogue.signal(ADD_SEGMENT, event)
        return SegmentOutcome(inp.segment_id, str(event["id"]))


@workflow.defn(name=CATALOGUE_WORKFLOW)
class CatalogueWorkflow:
    """The catalogue: folds signalled segments into the stack, one batch at a time."""

    def __init__(self) -> None:
        self._carry = CatalogueCarry()
        self._closing = False

    @workflow.run
    async def run(self, inp: CatalogueInput) -> CatalogueView:
        if inp.carry is not None:
            self._carry = inp.carry
        carry = self._carry
        while True:
            await workflow.wait_condition(lambda: bool(carry.pending) or self._closing)
            batch = self._take(inp.max_batch)
            if batch:
                await self._fold(inp, batch)
            if self._closing and not carry.pending:
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not carry.pending:
                    return self.view()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                carry.generation += 1
                workflow.continue_as_new(replace(inp, carry=carry))

    def _take(self, limit: int) -> list[dict]:
        """Up to ``limit`` pending segments, each once, none already counted."""
        carry = self._carry
        batch: dict[str, dict] = {}
        rest = []
        for event in carry.pending:
            segment = segment_of(event)
            if segment in carry.counted or segment in batch:
                continue  # a duplicate: counted already, as the faust catalogue would ignore it
            if len(batch) < limit:
                batch[segment] = event
            else:
                rest.append(event)
        carry.pending = rest
        return list(batch.values())

    async def _fold(self, inp: CatalogueInput, batch: list[dict]) -> None:
        carry = self._carry
        try:
            out = await workflow.execute_activity(
                STACK,
                StackInput(carry.state, batch, inp.store_uri, inp.params, inp.products_dir),
                result_type=StackOutput,
                **inp.policy.options(),
            )
        except ActivityError as exc:  # the batch is refused, the catalogue goes on
            for event in batch:
                segment = segment_of(event)
                carry.failed[segment] = _failure(segment, STACK, exc)
            return
        now = workflow.now().timestamp()
        carry.state = out.state
        carry.sources = out.sources
        for segment in out.stacked:
            carry.counted[segment] = now
        for failure in out.rejected:
            carry.failed[failure.segment_id] = failure
        carry.folds += 1

    @workflow.signal(name=ADD_SEGMENT)
    def add_segment(self, event: dict) -> None:
        self._carry.pending.append(event)

    @workflow.signal(name=SEGMENT_FAILED)
    def segment_failed(self, failure: SegmentFailure) -> None:
        if failure.segment_id not in self._carry.counted:
            self._carry.failed[failure.segment_id] = failure

    @workflow.signal(name=CLOSE)
    def close(self) -> None:
        self._closing = True

    @workflow.query(name=VIEW)
    def view(self) -> CatalogueView:
        carry = self._carry
        return CatalogueView(
            sources=carry.sources,
            counted=carry.counted,
            failed=carry.failed,
            pending=len(carry.pending),
            folds=carry.folds,
            generation=carry.generation,
            closed=self._closing,
        )


@workflow.defn(name=PROBE_WORKFLOW)
class ProbeWorkflow:
    """``steps`` activities that do nothing, in sequence: what one orchestrated step costs.

    Returns ``workflow.now()`` before the first and after each (regular activities; a local
    activity completes inside the workflow task, so its clock does not move: time it outside)."""

    @workflow.run
    async def run(self, inp: ProbeInput) -> list[float]:
        times = [workflow.now().timestamp()]
        for i in range(inp.steps):
            if inp.local:
                await workflow.execute_local_activity(
                    FORWARD, i, start_to_close_timeout=timedelta(seconds=10)
                )
            else:
                await workflow.execute_activity(
                    FORWARD, i, start_to_close_timeout=timedelta(seconds=30)
                )
            times.append(workflow.now().timestamp())
        return times
