"""``lisa-choreo orchestrate FILE... [--csv]`` and ``lisa-choreo orchestrate worker``: the main job
under the Temporal orchestrator (the other side of ``docs/orchestration-vs-choreography.md``).

``orchestrate FILE``: checks the files, starts the local Temporal dev server if none answers on
``LISA_TEMPORAL_ADDRESS`` (built once with ``go install``), starts ``--workers`` worker processes,
runs one workflow per segment (ingest -> condition -> gb-search -> estimate, the services'
handlers as activities) into a catalogue workflow (the catalog service's stacking code), and
prints the catalogue as ``lisa-choreo catalog`` does (``--csv``: the same columns). See
``lisa_choreo.orchestration``.

``orchestrate worker``: one worker process polling ``LISA_TEMPORAL_TASK_QUEUE``; start several,
kill any. (A file named ``worker`` is given as ``./worker``.)

Both end with ``os._exit``: the SDK's Rust runtime threads can crash a finalizing interpreter of
a short-lived client (temporalio/sdk-python#300), which would turn a good run's exit status into
a segfault's.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "orchestrate",
        help="the main job under Temporal (workflows per segment); `orchestrate worker`: a worker",
        description="Run the pipeline on LDC/Radler files under the Temporal orchestrator and "
        "print the catalogue. Exit 0: every segment catalogued; 1: a segment or the run "
        "failed; 2: a file was refused. `lisa-choreo orchestrate worker` runs one worker process.",
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="files, or `worker`")
    p.add_argument("--csv", action="store_true", help="the catalogue as CSV (catalog.csv columns)")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes to start (default 2); 0: use the workers already polling "
        "LISA_TEMPORAL_TASK_QUEUE, on the environment's LISA_STORE_URI",
    )
    p.add_argument(
        "--max-activities",
        type=int,
        help="activities at once per worker (default $LISA_TEMPORAL_MAX_ACTIVITIES, else 2)",
    )
    p.add_argument("--task-queue", help="task queue (default: a private one per run)")
    p.add_argument("--segment-s", type=float, help="segment duration in seconds (default 86400)")
    p.add_argument("--out", type=Path, help="run folder (default $LISA_CHOREO_HOME/runs/...)")
    p.add_argument(
        "--stall-s", type=float, default=600.0, help="give up after this long without progress"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from lisa_choreo.localstack.brokers import StackError

    code = 0
    try:
        if [str(f) for f in args.files] == ["worker"]:
            from lisa_choreo.orchestration import worker

            code = worker.main(args.task_queue, args.max_activities)
        else:
            from lisa_choreo.orchestration import run as orchestration

            code = orchestration.main(
                args.files,
                workers=args.workers,
                max_activities=args.max_activities,
                segment_s=args.segment_s,
                out=args.out,
                stall_s=args.stall_s,
                as_csv=args.csv,
                task_queue=args.task_queue,
            )
    except StackError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
