"""``lisa-choreo orchestrate FILE...``: the main job under the orchestrator.

One run, as ``lisa-choreo process`` runs it under the choreography, with the same files, checks,
handlers, store and catalogue code:

1. **check** every file first (``mainjob.check_files``): a bad one ends the run (exit 2) with
   nothing started;
2. **server**: the Temporal frontend at ``LISA_TEMPORAL_ADDRESS`` if it answers, else the local
   dev server (``lisa_choreo.localstack.temporal``, built once with ``go install``);
3. **workers**: N ``lisa-choreo orchestrate worker`` processes on a private task queue
   (``lisa-<run id>``), store and products folder, so runs never mix (``--workers 0`` uses the
   workers already polling ``LISA_TEMPORAL_TASK_QUEUE`` on the environment's store instead);
4. **start** the run's catalogue workflow, then one segment workflow per segment (ids
   ``<run id>-<segment id>``; starting again is harmless: an id already running is reused);
5. **follow** the catalogue's ``view`` query until every segment is counted or failed; a server
   that stops answering is waited for (the workflows resume where their history stands), no
   progress for ``stall_s`` fails the run;
6. **close** the catalogue (its workflow completes with the final catalogue as its result) and
   stop the workers (SIGTERM: running activities finish), also on failure and Ctrl-C.

stdout holds only the catalogue, in ``lisa-choreo catalog``'s format (``--csv``: the same
columns as ``catalog.csv``); progress and failures go to stderr. Exit 0 when every segment was
catalogued, 1 when one failed or the run did, 2 when a file was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from choreo.settings import StepSettings, home
from choreo.store import Store
from lisa_choreo.orchestration.contract import (
    CATALOGUE_WORKFLOW,
    CLOSE,
    SEGMENT_WORKFLOW,
    VIEW,
    CatalogueInput,
    CatalogueParams,
    CatalogueView,
    SegmentInput,
    StepPolicy,
)
from lisa_choreo.orchestration.worker import TemporalSettings, connect
from lisa_choreo.processes import ServiceProcess

RUN_FILE = "run.json"
EXIT_REFUSED = 2


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class RunFailed(RuntimeError):
    """The run could not finish (no progress, a worker gone, the server gone for good)."""


def step_policy(settings: StepSettings | None = None) -> StepPolicy:
    """The choreography's retry budget and liveness bounds, as Temporal activity options."""
    s = settings or StepSettings()
    return StepPolicy(
        maximum_attempts=1 + s.max_retries,
        initial_interval_s=s.retry_backoff_s,
        maximum_interval_s=s.retry_backoff_max_s,
        start_to_close_s=s.max_poll_interval_ms / 1e3,
        heartbeat_s=s.session_timeout_ms / 1e3,
    )


def catalogue_params(settings: Any = None) -> CatalogueParams:
    from lisa_services.catalog.settings import CatalogSettings

    s = settings or CatalogSettings()
    return CatalogueParams(s.fap, s.merge_bins, s.association_bins, s.max_links)


@dataclass
class OrchestratedRun:
    """One run: its workflows' names, its folder, and how to find it again (``run.json``)."""

    run_id: str
    run_dir: Path
    address: str
    namespace: str
    task_queue: str
    store_uri: str
    files: list[dict[str, Any]] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    outcome: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        out: Path | None = None,
        task_queue: str | None = None,
        store_uri: str | None = None,
        settings: TemporalSettings | None = None,
    ) -> OrchestratedRun:
        """A run folder; a private task queue and store unless given (external workers)."""
        settings = settings or TemporalSettings()
        run_id = uuid.uuid4().hex[:6]
        run_dir = (out or home() / "runs" / f"orchestrate-{run_id}").resolve()
        return cls(
            run_id=run_id,
            run_dir=run_dir,
            address=settings.address,
            namespace=settings.namespace,
            task_queue=task_queue or f"lisa-{run_id}",
            store_uri=store_uri or (run_dir / "store").as_uri(),
        )

    @property
    def catalogue_id(self) -> str:
        return f"catalogue-{self.run_id}"

    def segment_workflow_id(self, segment_id: str) -> str:
        return f"{self.run_id}-{segment_id}"

    @property
    def products_dir(self) -> Path:
        return self.run_dir / "products"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def worker_env(self) -> dict[str, str]:
        return {
            "LISA_TEMPORAL_ADDRESS": self.address,
            "LISA_TEMPORAL_NAMESPACE": self.namespace,
            "LISA_TEMPORAL_TASK_QUEUE": self.task_queue,
            "LISA_STORE_URI": self.store_uri,
            "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
        }

    def save(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / RUN_FILE
        tmp = path.with_name(f".{RUN_FILE}.tmp")
        tmp.write_text(json.dumps({**asdict(self), "run_dir": str(self.run_dir)}, indent=2) + "\n")
        tmp.replace(path)
        return path


def segment_inputs(
    plans: Sequence[Any],
    run: OrchestratedRun,
    policy: StepPolicy,
    chain: Sequence[str] | None = None,
    overlap_s: float | None = None,
) -> list[SegmentInput]:
    """One workflow input per segment of every plan (``FilePlan``), in file order."""
    from lisa_pipeline.stages import RUNNER_STEPS
    from lisa_services.ingest.service import IngestSettings

    overlap = IngestSettings().overlap_s if overlap_s is None else overlap_s
    steps = list(chain or RUNNER_STEPS)
    return [
        SegmentInput(
            segment_id=plan.segment_id(i),
            catalogue_id=run.catalogue_id,
            store_uri=run.store_uri,
            path=str(plan.path),
            sha256=plan.sha256,
            t0=plan.t0,
            dt=plan.dt,
            n_samples=plan.n_samples,
            index=i,
            start=start,
            stop=stop,
            overlap_s=overlap,
            chain=steps,
            policy=policy,
        )
        for plan in plans
        for i, (start, stop) in enumerate(plan.bounds)
    ]


# -- the server and the workers --------------------------------------------------------------


def ensure_server(address: str, log: Callable[[str], None] = say) -> bool:
    """The local dev server started (and built once) unless ``address`` answers. True if
    started here. Only a loopback address is started; another one must answer by itself."""
    from lisa_choreo.localstack import temporal

    host, port = address.rsplit(":", 1)
    server = temporal.TemporalServer(int(port))
    if temporal.probe(server) is not None or host not in ("127.0.0.1", "localhost"):
        return False
    started = temporal.up(server, say=log)
    log(f"Temporal dev server on {server.address}, web UI {server.ui_url}/ (data {server.db_file})")
    return started


class Workers:
    """``lisa-choreo orchestrate worker`` processes, each its own process and log."""

    def __init__(self, run: OrchestratedRun, env: dict[str, str] | None = None) -> None:
        self.run = run
        self.env = {**run.worker_env(), **(env or {})}
        self.procs: list[ServiceProcess] = []

    def start(self, count: int, wait: bool = True) -> list[ServiceProcess]:
        new = []
        for _ in range(count):
            i = len(self.procs)
            proc = ServiceProcess(
                f"worker-{i}",
                self.run.logs_dir / f"worker-{i}.log",
                self.env,
                module="lisa_choreo.orchestration.worker",
            ).start()
            self.procs.append(proc)
            new.append(proc)
        if wait:
            for proc in new:
                proc.wait_ready(120)
        return new

    def alive(self) -> list[ServiceProcess]:
        return [p for p in self.procs if p.alive]

    def terminate(self) -> dict[str, int | None]:
        return {p.name: p.terminate(timeout_s=45) for p in self.procs}


# -- the run ---------------------------------------------------------------------------------


async def start_run(
    client: Any,
    run: OrchestratedRun,
    inputs: Sequence[SegmentInput],
    params: CatalogueParams,
    policy: StepPolicy,
) -> None:
    """The catalogue workflow (reused if running), then every segment workflow."""
    from temporalio.common import WorkflowIDConflictPolicy

    await client.start_workflow(
        CATALOGUE_WORKFLOW,
        CatalogueInput(run.store_uri, params, policy, str(run.products_dir)),
        id=run.catalogue_id,
        task_queue=run.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    semaphore = asyncio.Semaphore(16)

    async def start(inp: SegmentInput) -> None:
        async with semaphore:
            await client.start_workflow(
                SEGMENT_WORKFLOW,
                inp,
                id=run.segment_workflow_id(inp.segment_id),
                task_queue=run.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

    await asyncio.gather(*(start(inp) for inp in inputs))


async def view(client: Any, run: OrchestratedRun) -> CatalogueView:
    handle = client.get_workflow_handle(run.catalogue_id)
    return await handle.query(VIEW, result_type=CatalogueView)


async def follow(
    client: Any,
    run: OrchestratedRun,
    expected: set[str],
    stall_s: float = 600.0,
    poll_s: float = 0.5,
    alive: Callable[[], bool] = lambda: True,
    on_view: Callable[[CatalogueView], None] | None = None,
) -> CatalogueView:
    """Query the catalogue until every expected segment is counted or failed. A server that
    does not answer is waited for (up to ``stall_s`` without progress), as are workers."""
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    last = -1
    progress_at = time.monotonic()
    said_down = False
    printed_at = 0.0
    while True:
        try:
            current = await asyncio.wait_for(view(client, run), timeout=10)
        except (RPCError, WorkflowQueryFailedError, TimeoutError) as exc:
            if not said_down:
                say(f"the orchestrator does not answer ({type(exc).__name__}); waiting")
                said_down = True
            current = None
        if current is not None:
            said_down = False
            if on_view is not None:
                on_view(current)
            done = expected & (current.counted.keys() | current.failed.keys())
            if len(done) != last:
                last = len(done)
                progress_at = time.monotonic()
            if time.monotonic() - printed_at > 2.0 or len(done) == len(expected):
                printed_at = time.monotonic()
                counted = len(expected & current.counted.keys())
                failed = len(expected & current.failed.keys())
                say(
                    f"  {counted}/{len(expected)} catalogued, {failed} failed, "
                    f"{current.pending} pending at the catalogue ({current.folds} folds, "
                    f"{len(current.sources)} sources)"
                )
            if len(done) == len(expected):
                return current
        if not alive():
            raise RunFailed("every worker exited")
        if time.monotonic() - progress_at > stall_s:
            raise RunFailed(f"no progress for {stall_s:.0f} s ({max(last, 0)}/{len(expected)})")
        await asyncio.sleep(poll_s)


async def close(client: Any, run: OrchestratedRun, timeout_s: float = 120.0) -> CatalogueView:
    """Signal the catalogue to finish and take its final view (its workflow's result)."""
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(run.catalogue_id, result_type=CatalogueView)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await handle.signal(CLOSE)
            return await asyncio.wait_for(handle.result(), timeout=30)
        except (RPCError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


async def orchestrate(
    run: OrchestratedRun,
    inputs: Sequence[SegmentInput],
    stall_s: float = 600.0,
    alive: Callable[[], bool] = lambda: True,
    params: CatalogueParams | None = None,
    policy: StepPolicy | None = None,
) -> CatalogueView:
    """Start the run's workflows, follow them to the end, close the catalogue."""
    client = await connect(run.address, run.namespace, timeout_s=60)
    await start_run(client, run, inputs, params or catalogue_params(), policy or step_policy())
    expected = {inp.segment_id for inp in inputs}
    await follow(client, run, expected, stall_s, alive=alive)
    return await close(client, run)


def sources_of(final: CatalogueView) -> list[Any]:
    from lisa_pipeline.events import CatalogSource

    return sorted(
        (CatalogSource.model_validate(s) for s in final.sources),
        key=lambda s: (s.frequency_hz, s.source_id),
    )


def main(
    files: Sequence[Path],
    workers: int = 2,
    max_activities: int | None = None,
    segment_s: float | None = None,
    out: Path | None = None,
    stall_s: float = 600.0,
    as_csv: bool = False,
    task_queue: str | None = None,
) -> int:
    from lisa_choreo.catalogue import format_catalogue
    from lisa_choreo.mainjob import FileRefused, check_files, describe_plan
    from lisa_choreo.records import printable
    from lisa_pipeline.products import csv_text

    say(f"checking {len(files)} file(s)")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            plans = check_files(files, segment_s)
    except FileRefused as exc:
        say(printable(f"lisa-choreo: refused {exc.path}: {exc.reason}"))
        say("   nothing was started")
        return EXIT_REFUSED
    for plan in plans:
        say(f"   {describe_plan(plan)}")
    settings = TemporalSettings()
    external = workers == 0
    run = OrchestratedRun.new(
        out,
        task_queue=(task_queue or settings.task_queue) if external else task_queue,
        store_uri=Store().uri if external else None,
        settings=settings,
    )
    ensure_server(run.address)
    inputs = segment_inputs(plans, run, step_policy())
    run.files = [
        {"path": str(p.path), "sha256": p.sha256, "segments": len(p.bounds)} for p in plans
    ]
    run.expected = [inp.segment_id for inp in inputs]
    run.save()
    say(f"run folder: {run.run_dir}; task queue {run.task_queue}; catalogue {run.catalogue_id}")
    pool = Workers(
        run, {"LISA_TEMPORAL_MAX_ACTIVITIES": str(max_activities)} if max_activities else None
    )
    final: CatalogueView | None = None
    failure: str | None = None
    t0 = time.monotonic()
    try:
        if not external:
            say(f"starting {workers} worker process(es) (logs in {run.logs_dir})")
            pool.start(workers)
        alive = (lambda: bool(pool.alive())) if not external else (lambda: True)
        final = asyncio.run(orchestrate(run, inputs, stall_s, alive))
    except (RunFailed, ConnectionError) as exc:
        failure = str(exc)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        exit_codes = pool.terminate()
        run.outcome = {
            "failure": failure,
            "elapsed_s": round(time.monotonic() - t0, 1),
            "worker_exit_codes": exit_codes,
        }
        run.save()
    if final is None:
        say(f"the run FAILED: {failure}")
        return 1
    sources = sources_of(final)
    print(csv_text(sources) if as_csv else format_catalogue(sources), end="" if as_csv else "\n")
    sys.stdout.flush()
    failed = {k: v for k, v in final.failed.items() if k in set(run.expected)}
    for segment, f in sorted(failed.items()):
        say(printable(f"failed: {segment} at {f.step}: {f.reason}: {f.message[:200]}"))
    run.outcome.update({"sources": len(sources), "failed": len(failed)})
    run.save()
    say(
        f"{len(final.counted)} segment(s) catalogued, {len(failed)} failed, in "
        f"{run.outcome['elapsed_s']} s; products in {run.products_dir}; workflows on "
        f"{run.address} (task queue {run.task_queue})"
    )
    return 0 if not failed else 1
