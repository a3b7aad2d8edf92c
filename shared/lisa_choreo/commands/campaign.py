"""``lisa-choreo campaign reprocess FILE --revision R`` and ``lisa-choreo campaign worker``: the
hybrid mode, a reprocessing campaign orchestrated by Temporal on top of the choreography.

``reprocess``: retract the file's old cut, ingest it again with the new settings under revision
``R`` (new segment ids ``<sha256[:16]>.R-<index>``), wait until the catalogue has counted every
new segment (signals from the flow monitor's ``lisa.flows.state``), publish a catalogue release
on ``lisa.catalog.releases``; if a step fails, undo what was done (see
``lisa_choreo.campaign.workflow``). The step services and the flow monitor must be running (the
campaign adds no step: it publishes to their topics). The workflow id is ``campaign-<sha16>.R``:
running the same command again attaches to the campaign instead of starting another. Unless
``--no-worker``, the command runs a campaign worker (the workflow's worker and the Kafka bridge)
for as long as it waits; if it is killed, the campaign waits in Temporal for the next worker.
Exit 0: released; 1: failed and compensated; 2: refused (bad file or settings, no server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaign",
        help="reprocess a file as a compensable campaign orchestrated by Temporal (hybrid mode)",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("reprocess", help="retract a file's old cut, re-ingest it, release")
    r.add_argument("file", type=Path, metavar="FILE")
    r.add_argument("--revision", required=True, help="the new cut's label (letters, digits, _)")
    r.add_argument("--segment-s", type=float, help="new segment duration (default ingest's)")
    r.add_argument("--overlap-s", type=float, help="new overlap (default ingest's)")
    r.add_argument("--from-revision", default="", help="the old cut's revision (default none)")
    r.add_argument("--from-segment-s", type=float, help="old segment duration (default ingest's)")
    r.add_argument("--from-overlap-s", type=float, help="old overlap (default ingest's)")
    r.add_argument("--reason", default="", help="why (kept with the retractions)")
    r.add_argument(
        "--wait-s",
        type=float,
        default=600.0,
        help="give up if the catalogue has not counted the new cut after this long (default 600)",
    )
    r.add_argument("--no-worker", action="store_true", help="rely on running campaign workers")
    r.add_argument("--detach", action="store_true", help="start (or find) the campaign, return")
    verbs.add_parser("worker", help="a campaign worker (workflows, activities, Kafka bridge)")
    p.set_defaults(func=run)


def _input(args: argparse.Namespace):
    from lisa_choreo.campaign.contract import RESTORE_SUFFIX, CampaignInput, Cut
    from lisa_choreo.commands.step import requested_by
    from lisa_services.ingest.files import check_revision, file_sha256
    from lisa_services.ingest.service import IngestSettings

    ingest = IngestSettings()

    def pick(value, default):
        return default if value is None else value

    for revision in (args.revision, args.from_revision):
        check_revision(revision)
    if not args.revision:
        raise ValueError("--revision must not be empty: a reprocessing is a new cut")
    if args.revision == args.from_revision:
        raise ValueError("--revision must differ from --from-revision")
    if args.revision.endswith(RESTORE_SUFFIX):
        raise ValueError(f"--revision: {RESTORE_SUFFIX!r} ends the revisions compensation makes")
    old = Cut(
        pick(args.from_segment_s, ingest.segment_s),
        pick(args.from_overlap_s, ingest.overlap_s),
        args.from_revision,
    )
    new = Cut(pick(args.segment_s, ingest.segment_s), pick(args.overlap_s, ingest.overlap_s))
    new.revision = args.revision
    return CampaignInput(
        path=str(args.file.resolve()),
        sha256=file_sha256(args.file),
        old=old,
        new=new,
        restore_revision=f"{args.revision}{RESTORE_SUFFIX}",
        reason=args.reason,
        requested_by=requested_by(),
        wait_s=args.wait_s,
    )


async def _reprocess(args: argparse.Namespace, inp) -> int:
    from temporalio.client import WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from lisa_choreo.campaign.contract import (
        CAMPAIGN_WORKFLOW,
        PROGRESS,
        TASK_QUEUE,
        CampaignProgress,
        CampaignResult,
        workflow_id,
    )
    from lisa_choreo.orchestration.worker import TemporalSettings, connect

    temporal = TemporalSettings()
    client = await connect(temporal.address, temporal.namespace, temporal.connect_timeout_s)
    label = f"{inp.sha256[:16]}.{inp.new.revision}"
    try:  # running: attach to it; ended: a revision is used once, report how it ended
        handle = await client.start_workflow(
            CAMPAIGN_WORKFLOW,
            inp,
            id=workflow_id(label),
            task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            result_type=CampaignResult,
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(workflow_id(label), result_type=CampaignResult)
        print(f"campaign {handle.id} has ended; its outcome:", file=sys.stderr, flush=True)
    else:
        print(f"campaign {handle.id}", file=sys.stderr, flush=True)
    if args.detach:
        return 0
    stop = asyncio.Event()
    serving = None
    if not args.no_worker:
        from lisa_choreo.campaign.worker import serve

        serving = asyncio.create_task(serve(client, stop))
    result_task = asyncio.ensure_future(handle.result())
    said = None
    try:
        while not result_task.done():
            await asyncio.wait({result_task}, timeout=2.0)
            if serving is not None and serving.done():
                serving.result()  # a crashed worker: raise its error
            try:
                progress = await handle.query(PROGRESS, result_type=CampaignProgress)
            except Exception:
                continue
            line = f"{progress.step}: {progress.catalogued}/{progress.expected} catalogued"
            if line != said:
                print(line, file=sys.stderr, flush=True)
                said = line
        try:
            result = result_task.result()
        except WorkflowFailureError as exc:
            cause = exc.cause
            print(f"lisa-choreo: campaign failed: {getattr(cause, 'message', cause)}")
            return 1
    finally:
        stop.set()
        if serving is not None:
            await asyncio.gather(serving, return_exceptions=True)
    release = result.release
    print(
        f"released {release.release_id}: {release.n_sources} source(s), "
        f"{len(result.plan.new_ids)} segment(s) counted, {len(result.plan.old_ids)} retracted, "
        f"csv sha256 {release.csv_sha256[:16]}, {release.topic}/{release.partition}/"
        f"{release.offset}"
    )
    return 0


async def _worker() -> int:
    import signal

    from lisa_choreo.campaign.worker import serve
    from lisa_choreo.orchestration.worker import TemporalSettings, connect

    temporal = TemporalSettings()
    client = await connect(temporal.address, temporal.namespace, temporal.connect_timeout_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(client, stop)
    return 0


def run(args: argparse.Namespace) -> int:
    from choreo.logs import configure_logging
    from lisa_science.ldc import LDCFormatError

    code = 2
    try:
        if args.verb == "worker":
            configure_logging("campaign-worker")
            code = asyncio.run(_worker())
        else:
            try:
                inp = _input(args)
            except (ValueError, OSError, LDCFormatError) as exc:
                print(f"lisa-choreo: {exc}", file=sys.stderr)
                code = 2
            else:
                code = asyncio.run(_reprocess(args, inp))
    except ConnectionError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK's runtime threads vs a finalizing interpreter (sdk-python#300)
