"""The reprocessing campaign: a saga over the choreography, orchestrated by Temporal.

Steps, each an activity (``activities.py``), each undone by a compensation if a later one fails:

1. ``plan``: the segment ids of the file's old cut and of the new one;
2. ``retract`` the old cut (``lisa.retractions``: the catalogue subtracts those segments) —
   undone by re-ingesting the old data under ``restore_revision``;
3. ``ingest`` the new cut (``lisa.segments.raw``: the step services do the rest, as for any
   file) — undone by retracting the new cut;
4. wait until the catalogue has counted every new segment: the bridge signals each segment the
   flow monitor sees catalogued or dead-lettered (``lisa.flows.state``); one dead letter, or
   ``wait_s`` without the last one, fails the campaign; then ``confirm`` reads the catalogue's
   own state (its table changelog) until it counts every new segment and no old one: the
   monitor's "catalogued" is the catalogue's input commit, made by its router before stacking
   (a 365-day recut was released with 112 of 730 new segments stacked before this check);
5. ``release``: once the catalogue no longer counts any old segment, publish the catalogue on
   ``lisa.catalog.releases``.

Compensation runs the undo steps in reverse order (retract the new cut first, so its stragglers
are never counted; then restore the old data and wait until the catalogue counted it again), then
fails the workflow with the original reason: the catalogue is back to what it held before,
under new ids, and no release was published.

Why a workflow for this and not for the hot path: the study (``docs/orchestration-vs-
choreography.md``) measured 100 ms per orchestrated step against 5-7 ms per hop, but a campaign
has five steps over minutes to days, needs its progress queryable, must survive a crash of
anything (the state is the workflow's history) and must undo half-done work: Temporal's job.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from lisa_choreo.campaign.contract import (
        CAMPAIGN_WORKFLOW,
        CONFIRM,
        INGEST,
        PLAN,
        PROGRESS,
        RELEASE,
        RETRACT,
        SEGMENT_CATALOGUED,
        SEGMENT_DEAD,
        CampaignInput,
        CampaignPlan,
        CampaignProgress,
        CampaignResult,
        ConfirmInput,
        Cut,
        DeadLetter,
        IngestInput,
        ReleaseInput,
        ReleaseOutput,
        RetractInput,
        activity_options,
    )


class CampaignFailed(Exception):
    """A step of the campaign failed: compensate, then fail the workflow with this reason."""


@workflow.defn(name=CAMPAIGN_WORKFLOW)
class ReprocessCampaign:
    def __init__(self) -> None:
        self._catalogued: set[str] = set()
        self._dead: dict[str, str] = {}
        self._expected: set[str] = set()
        self._step = "plan"
        self._compensations: list[str] = []

    @workflow.run
    async def run(self, inp: CampaignInput) -> CampaignResult:
        options = activity_options(inp.attempts)
        plan = await workflow.execute_activity(PLAN, inp, result_type=CampaignPlan, **options)
        undo: list[tuple[str, Cut | None]] = []
        try:
            self._step = "retract"
            await self._retract(inp, plan.old_ids, inp.reason or "reprocessed", options)
            undo.append(
                ("restore", Cut(inp.old.segment_s, inp.old.overlap_s, inp.restore_revision))
            )
            self._step = "ingest"
            undo.append(("retract-new", None))  # before ingesting: a half-published cut too
            await self._ingest(inp, inp.new, options)
            self._step = "wait"
            await self._wait_for(plan.new_ids, inp.wait_s)
            await self._confirm(plan.new_ids, plan.old_ids, inp.wait_s, options)
            self._step = "release"
            release = await workflow.execute_activity(
                RELEASE,
                ReleaseInput(
                    workflow.info().workflow_id,
                    inp.path,
                    inp.sha256,
                    inp.new,
                    plan.new_ids,
                    plan.old_ids,
                    inp.requested_by,
                    inp.wait_s,
                ),
                result_type=ReleaseOutput,
                **options,
            )
        except (ActivityError, CampaignFailed) as exc:
            failure = f"{self._step}: {_reason(exc)}"
            workflow.logger.warning("campaign failed, compensating: %s", failure)
            await self._compensate(inp, plan, undo, options)
            raise ApplicationError(
                f"campaign failed at {failure}; compensated: {', '.join(self._compensations)}",
                type="campaign-compensated",
                non_retryable=True,
            ) from exc
        self._step = "released"
        return CampaignResult("released", release, plan, compensations=[])

    async def _retract(self, inp: CampaignInput, ids: list[str], reason: str, options) -> None:
        await workflow.execute_activity(
            RETRACT, RetractInput(ids, reason, inp.path, inp.requested_by), **options
        )

    async def _ingest(self, inp: CampaignInput, cut: Cut, options) -> list[str]:
        return await workflow.execute_activity(
            INGEST, IngestInput(inp.path, inp.sha256, cut), result_type=list[str], **options
        )

    async def _wait_for(self, ids: list[str], wait_s: float) -> None:
        self._expected = set(ids)

        def settled() -> bool:
            return self._expected <= self._catalogued or bool(self._expected & self._dead.keys())

        try:
            await workflow.wait_condition(settled, timeout=timedelta(seconds=wait_s))
        except TimeoutError as exc:
            missing = len(self._expected - self._catalogued)
            raise CampaignFailed(
                f"{missing} segment(s) not catalogued after {wait_s:.0f} s"
            ) from exc
        dead = sorted(self._expected & self._dead.keys())
        if dead:
            raise CampaignFailed(f"{dead[0]} dead-lettered: {self._dead[dead[0]]}")

    async def _compensate(self, inp: CampaignInput, plan: CampaignPlan, undo, options) -> None:
        self._step = "compensating"
        for action, cut in reversed(undo):
            if action == "retract-new":
                await self._retract(
                    inp, plan.new_ids, "campaign failed: new cut withdrawn", options
                )
                self._compensations.append(f"retracted {len(plan.new_ids)} new segment(s)")
            elif action == "restore" and cut is not None:
                restored = await self._ingest(inp, cut, options)
                self._compensations.append(f"re-ingested the old cut as {len(restored)} segment(s)")
                try:
                    await self._wait_for(restored, inp.wait_s)
                    await self._confirm(restored, plan.new_ids, inp.wait_s, options)
                except (CampaignFailed, ActivityError) as exc:  # reported: an operator must look
                    self._compensations.append(f"restore incomplete: {exc}")
                else:
                    self._compensations.append("restored cut catalogued")

    async def _confirm(self, counted: list[str], gone: list[str], wait_s: float, options) -> None:
        """The flow monitor's verdict is the catalogue's input commit; its own state is the
        proof: wait until it counts the new segments and none of the retracted ones."""
        await workflow.execute_activity(
            CONFIRM, ConfirmInput(counted, gone, wait_s), result_type=int, **options
        )

    @workflow.signal(name=SEGMENT_CATALOGUED)
    def segment_catalogued(self, segment_id: str) -> None:
        self._catalogued.add(segment_id)

    @workflow.signal(name=SEGMENT_DEAD)
    def segment_dead_lettered(self, letter: DeadLetter) -> None:
        self._dead[letter.segment_id] = letter.reason

    @workflow.query(name=PROGRESS)
    def progress(self) -> CampaignProgress:
        return CampaignProgress(
            self._step,
            len(self._expected),
            len(self._expected & self._catalogued),
            {s: r for s, r in self._dead.items() if s in self._expected},
            list(self._compensations),
        )


def _reason(exc: BaseException) -> str:
    cause = exc.cause if isinstance(exc, ActivityError) else None
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    return str(cause or exc)
