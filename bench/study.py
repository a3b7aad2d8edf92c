"""Orchestration or choreography? The same steps under Temporal and over Kafka, side by side.

``python -m bench.study [--smoke] [--out bench/results/study]`` (also the ``study`` section of
``python -m bench.run``). On the same simulated data, with the same handlers, store and catalogue
code, it measures each mode:

- ``throughput``: a backlog of 30 and 365 daily segments (smoke: 3 and 5). Choreography: every
  service its own process on a broker (``bench.pipeline.run_pipeline``), ingest from this
  process. Orchestration: 2 worker processes of 2 activity slots each (4 handlers at once, as the
  4 services), one workflow per segment (ingest is its first activity) into one catalogue
  workflow. Segments/s, time to catalogue each segment (p50/p99 from the start), CPU seconds
  per segment and peak RSS of every process, the broker JVM and the Temporal server included,
  and this process (ingest, or the Temporal client);
- ``latency``: one segment every 0.5 s into the running pipeline (after the 30-segment run, its
  catalogue not empty): published -> catalogued p50/p99 (choreography: the raw record's
  timestamp to the catalogue's log line; orchestration: the workflow's start to the catalogue's
  fold, so it also pays the raw segment's store write);
- ``step``: the cost of one step that does nothing: the runtime hop over Kafka
  (``bench.hop``: produce -> consume -> produce -> consume, with bare Kafka beside it) against one
  Temporal activity in a workflow (schedule -> worker -> complete -> next workflow task), and a
  local activity;
- ``faults`` (12 segments; smoke 6), each on a fresh run, the fault injected once a third is
  catalogued, the killed process restarted at once (as a supervisor would): SIGKILL of the
  ``estimate`` service vs of a Temporal worker with an activity in flight; SIGKILL of the single
  Kafka broker vs of the Temporal server; SIGKILL of the partition leader of a private 3-node
  KRaft cluster (RF 3, min ISR 2; not in the smoke: three more JVMs cost ~100 s there). Time to
  recover, lost, duplicated, stuck;
- ``campaign``: the hybrid. The choreography (services, catalogue, flow monitor) catalogues a
  30-day and a 365-day file (smoke: 2) cut in days, then ``lisa-choreo campaign reprocess``
  recuts each in half days; the same half-day cuts ingested directly into a fresh copy of the
  same choreography are the baseline. Wall time to the release and its overhead over the baseline,
  where it went (from the workflow's event times), CPU and RSS of every process (Temporal
  server and the command included), the workflow's history events; then a compensated campaign
  (10 days, smoke 2, whose last half day is NaN: its last segment is dead-lettered);
- ``coupling``: a data-quality monitor on conditioned segments added for real to two scratch
  copies of the tree (never this checkout), one per mode, checked (ruff, imports, the handler
  through ``StepHarness``, the workflows in the SDK's sandbox) and counted with ``git diff
  --no-index --stat``;
- ``observability``: ``lisa-choreo process`` and ``lisa-choreo orchestrate`` on 3 segments, then
  headless Chromium screenshots of Zipkin's trace of one segment and of Temporal's web UI page of
  the same segment's workflow.

Everything runs on servers of its own: a Kafka broker and a Temporal dev server on free
loopback ports (state under ``$LISA_CHOREO_HOME/stack``, removed at the end), so the numbers are
this study's alone and the faults hit nobody else. Zipkin is ``LISA_ZIPKIN_URL``'s (started if
none answers). Results: ``study.json``, the PNG plots, the screenshots, and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.data import DAY, Dataset, make_dataset
from bench.fleet import Fleet, Sampler, log_events
from bench.pipeline import Context, run_pipeline, run_steady
from bench.report import Row, table

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("throughput", "latency", "step", "faults", "campaign", "coupling", "observability")
WORKERS, SLOTS = 2, 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class StudyConfig:
    smoke: bool
    sizes: tuple[int, ...] = (30, 365)
    steady_segments: int = 60
    steady_interval_s: float = 0.5
    hop_messages: int = 1000
    hop_rate_hz: float = 50.0
    probe_steps: int = 300
    fault_segments: int = 12
    cluster_fault: bool = True
    campaign_days: tuple[int, ...] = (30, 365)
    compensated_days: int = 10
    """the 3-node leader kill (three more JVMs to start)"""
    parts: tuple[str, ...] = PARTS
    light: bool = False
    """``bench.run --smoke``: throughput on the small size only, nothing else (CI time)."""

    @classmethod
    def make(cls, smoke: bool, light: bool = False) -> StudyConfig:
        if not smoke:
            return cls(smoke)
        return cls(
            smoke,
            sizes=(3,) if light else (3, 5),
            steady_segments=4,
            hop_messages=100,
            hop_rate_hz=100.0,
            probe_steps=30,
            fault_segments=6,
            cluster_fault=False,  # three more JVMs: ~100 s on the shared machine
            campaign_days=(2,),
            compensated_days=2,
            parts=("throughput",) if light else PARTS,
            light=light,
        )


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    from bench.hop import percentile as pct

    return pct(sorted(values), p)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(offsets: tuple[int, ...]) -> int:
    for _ in range(500):
        port = random.randint(20000, 39000)
        if all(_free(port + o) for o in offsets):
            return port
    raise RuntimeError("no free ports")


# -- the study's own servers -----------------------------------------------------------------


class Servers:
    """A private Kafka broker and a private Temporal dev server, on free loopback ports."""

    def __init__(self) -> None:
        from lisa_choreo.localstack import brokers, temporal

        self.node = brokers.KafkaNode(port=free_port((0, 1000)))
        self.temporal = temporal.TemporalServer(free_port((0, 10, 1000)))

    @property
    def bootstrap(self) -> str:
        return self.node.bootstrap

    def up(self) -> None:
        from lisa_choreo.localstack import brokers, temporal

        temporal.launch(self.temporal, say=log)
        brokers.up([self.node])
        temporal.wait_ready(self.temporal)
        log(f"  private broker {self.bootstrap}, Temporal {self.temporal.address}")

    def broker_pid(self) -> int | None:
        from lisa_choreo.localstack import brokers

        return brokers._running_pid(self.node)

    def temporal_pid(self) -> int | None:
        from lisa_choreo.localstack import temporal

        return temporal.running_pid(self.temporal)

    def down(self) -> None:
        from lisa_choreo.localstack import brokers, temporal

        for stop, where in (
            (lambda: brokers.stop(self.node, 30), self.node.state_dir),
            (lambda: temporal.stop(self.temporal), self.temporal.state_dir),
        ):
            with contextlib.suppress(Exception):
                stop()
            shutil.rmtree(where, ignore_errors=True)
        (self.node.state_dir.parent / f"cluster-{self.node.port}.id").unlink(missing_ok=True)


@dataclass
class Study:
    cfg: StudyConfig
    servers: Servers
    workdir: Path
    out: Path
    datasets: dict[str, Dataset] = field(default_factory=dict)
    kept_choreo: Fleet | None = None
    kept_orch: Any = None  # (OrchCase) the small run's workers and open catalogue

    def ctx(self, name: str) -> Context:
        return Context(
            bootstrap=self.servers.bootstrap,
            workdir=self.workdir,
            store_uri=(self.workdir / "store").as_uri(),
            broker_pid=self.servers.broker_pid(),
            log=log,
        )

    def dataset(self, days: int, seed: int) -> Dataset:
        key = f"lines-{days}-{seed}"
        if key not in self.datasets:
            t = time.monotonic()
            self.datasets[key] = make_dataset(
                self.workdir / "data" / f"{key}.h5", days, "lines", seed
            )
            log(f"  dataset {key}: {time.monotonic() - t:.1f} s to simulate")
        return self.datasets[key]


# -- orchestration, measured as bench.pipeline measures the choreography ----------------------


@dataclass
class OrchCase:
    run: Any
    workers: Any
    sampler: Sampler
    client: Any = None

    def stop(self) -> None:
        self.sampler.stop()
        self.workers.terminate()


def _client(study: Study):
    from lisa_choreo.orchestration.worker import connect

    return asyncio.run(connect(study.servers.temporal.address, timeout_s=60))


def orch_case(study: Study, name: str, workers: int = WORKERS, env: dict | None = None) -> OrchCase:
    from lisa_choreo.orchestration.run import OrchestratedRun, Workers
    from lisa_choreo.orchestration.worker import TemporalSettings

    settings = TemporalSettings(address=study.servers.temporal.address)
    run = OrchestratedRun.new(
        study.workdir / name, store_uri=(study.workdir / "store").as_uri(), settings=settings
    )
    pool = Workers(
        run,
        {"LISA_TEMPORAL_MAX_ACTIVITIES": str(SLOTS), "LISA_LOG_LEVEL": "INFO", **(env or {})},
    )
    pool.start(workers)
    sampler = Sampler()
    for proc in pool.procs:
        sampler.watch(proc.name, proc.proc.pid)
    pid = study.servers.temporal_pid()
    if pid:
        sampler.watch("temporal-server", pid)
    sampler.start()
    return OrchCase(run, pool, sampler)


async def _orchestrate_file(case: OrchCase, data: Dataset, stall_s: float = 900.0):
    """Plan (validate) the file, start every workflow, follow the catalogue until all counted."""
    from lisa_choreo.orchestration import run as orch
    from lisa_services.ingest.files import plan_file

    client = await orch.connect(case.run.address, timeout_s=60)
    plan = plan_file(data.path, DAY, 0.0)
    inputs = orch.segment_inputs([plan], case.run, orch.step_policy(), overlap_s=0.0)
    await orch.start_run(client, case.run, inputs, orch.catalogue_params(), orch.step_policy())
    expected = {i.segment_id for i in inputs}
    view = await orch.follow(client, case.run, expected, stall_s, poll_s=0.2)
    return inputs, view


def _proc_stats(sampler: Sampler, n: int) -> dict:
    return {
        k: {
            "peak_rss_mb": st.peak_rss / 2**20,
            "cpu_s": st.cpu_s,
            "cpu_ms_per_segment": 1e3 * st.cpu_s / n,
        }
        for k, st in sampler.stats.items()
    }


def run_orchestrated(study: Study, name: str, data: Dataset, keep: bool = False) -> dict:
    case = orch_case(study, name)
    ok = False
    try:
        log(f"  {name}: {WORKERS} workers x {SLOTS} activities; {data.days} segments")
        case.sampler.mark_start()
        t0, cpu0 = time.time(), time.process_time()
        inputs, view = asyncio.run(_orchestrate_file(case, data))
        client_cpu = time.process_time() - cpu0
        case.sampler.mark_end()
        n = len(inputs)
        times = sorted(view.counted[i.segment_id] for i in inputs)
        wall = times[-1] - t0
        processes = _proc_stats(case.sampler, n)
        processes["client (bench process)"] = {
            "cpu_s": client_cpu,
            "cpu_ms_per_segment": 1e3 * client_cpu / n,
        }
        result = {
            "segments": n,
            "wall_s": wall,
            "segments_per_s": n / wall,
            "cpu_s_total": sum(p["cpu_s"] for p in processes.values()),
            "processes": processes,
            "stacked_at_s": [t - t0 for t in times],
            "catalogue_folds": view.folds,
            "continue_as_new": view.generation,
            "sources": len(view.sources),
            "machine": case.sampler.machine(),
            "activities": _activity_counts(case),
            "rss_mb": {
                k: [(round(t, 2), round(r / 2**20, 1)) for t, r in st.rss_samples]
                for k, st in case.sampler.stats.items()
            },
        }
        ok = True
        return result
    finally:
        if keep and ok:
            study.kept_orch = case
        else:
            case.stop()


def _activity_lines(case: OrchCase) -> list[dict]:
    return [
        dict(r, worker=p.name)
        for p in case.workers.procs
        for r in log_events(p.log_path)
        if str(r.get("event", "")).startswith("activity ")
    ]


def _activity_counts(case: OrchCase) -> dict:
    done = [r for r in _activity_lines(case) if r["event"] == "activity completed"]
    out: dict[str, dict] = {}
    for step in sorted({r["step"] for r in done}):
        mine = [r for r in done if r["step"] == step]
        out[step] = {
            "completed": len(mine),
            "handler_ms_mean": statistics.fmean(r.get("ms", 0.0) for r in mine),
            "retried": sum(r.get("attempt", 1) > 1 for r in mine),
        }
    return out


def _rss(result: dict, name: str) -> float:
    return result["processes"].get(name, {}).get("peak_rss_mb", float("nan"))


def _summary(result: dict, n_key: str = "segments") -> dict:
    lat = result["stacked_at_s"]
    return {
        "segments_per_s": result["segments_per_s"],
        "wall_s": result["wall_s"],
        "cpu_s_per_segment": result["cpu_s_total"] / result[n_key],
        "to_catalogue_p50_s": percentile(lat, 50),
        "to_catalogue_p99_s": percentile(lat, 99),
    }


def throughput(study: Study) -> tuple[dict, list[Row]]:
    out: dict = {}
    rows: list[Row] = []
    for k, size in enumerate(study.cfg.sizes):
        data = study.dataset(size, seed=1)
        keep = k == 0 and "latency" in study.cfg.parts
        order = ("choreography", "orchestration") if k % 2 == 0 else ("orchestration", "choreo")
        res: dict = {}
        for mode in order:
            if mode.startswith("choreo"):
                r, fleet = run_pipeline(study.ctx("c"), f"study-choreo-{size}", data, keep=keep)
                if keep:
                    study.kept_choreo = fleet
                r["processes"] = r.pop("services")
                res["choreography"] = r
            else:
                res["orchestration"] = run_orchestrated(study, f"study-orch-{size}", data, keep)
        c, o = res["choreography"], res["orchestration"]
        out[str(size)] = {
            "choreography": c,
            "orchestration": o,
            "summary": {"choreography": _summary(c), "orchestration": _summary(o)},
        }
        sc, so = (
            out[str(size)]["summary"]["choreography"],
            out[str(size)]["summary"]["orchestration"],
        )
        log(
            f"    {size}: choreography {sc['segments_per_s']:.2f} seg/s, "
            f"orchestration {so['segments_per_s']:.2f} seg/s"
        )
        rows += [
            Row(
                f"{size} seg: segments/s  choreography | orchestration",
                f"{sc['segments_per_s']:.2f} | {so['segments_per_s']:.2f}",
            ),
            Row(
                f"{size} seg: to catalogue p50/p99 s  choreo | orch",
                f"{sc['to_catalogue_p50_s']:.1f}/{sc['to_catalogue_p99_s']:.1f} | "
                f"{so['to_catalogue_p50_s']:.1f}/{so['to_catalogue_p99_s']:.1f}",
            ),
            Row(
                f"{size} seg: CPU s/segment, all processes  choreo | orch",
                f"{sc['cpu_s_per_segment']:.3f} | {so['cpu_s_per_segment']:.3f}",
            ),
            Row(
                f"{size} seg: peak RSS MiB broker | Temporal server",
                f"{_rss(c, 'kafka-broker'):.0f} | {_rss(o, 'temporal-server'):.0f}",
            ),
            Row(
                f"{size} seg: peak RSS MiB, sum of all processes  choreo | orch",
                f"{sum(p.get('peak_rss_mb', 0) for p in c['processes'].values()):.0f} | "
                f"{sum(p.get('peak_rss_mb', 0) for p in o['processes'].values()):.0f}",
            ),
        ]
    return out, rows


# -- latency at a steady rate ----------------------------------------------------------------


def latency(study: Study) -> tuple[dict, list[Row]]:
    cfg = study.cfg
    data = study.dataset(cfg.steady_segments, seed=2)
    out: dict = {}
    fleet = (
        study.kept_choreo
        or run_pipeline(study.ctx("c"), "lat-c", study.dataset(2, 5), keep=True)[1]
    )
    try:
        out["choreography"] = run_steady(study.ctx("c"), fleet, data, cfg.steady_interval_s)
    finally:
        fleet.stop()
        study.kept_choreo = None
    case = study.kept_orch
    if case is None:
        run_orchestrated(study, "lat-o", study.dataset(2, 5), keep=True)
        case = study.kept_orch
    try:
        out["orchestration"] = asyncio.run(_steady_orchestrated(case, data, cfg.steady_interval_s))
    finally:
        case.stop()
        study.kept_orch = None
    c, o = out["choreography"], out["orchestration"]
    rate = 1 / cfg.steady_interval_s
    return out, [
        Row(
            f"latency at {rate:g} seg/s p50/p99 ms  choreo | orch",
            f"{c['p50_s'] * 1e3:.0f}/{c['p99_s'] * 1e3:.0f} | "
            f"{o['p50_s'] * 1e3:.0f}/{o['p99_s'] * 1e3:.0f}",
        )
    ]


async def _steady_orchestrated(case: OrchCase, data: Dataset, interval_s: float) -> dict:
    """One segment workflow started every ``interval_s`` into the kept (open) catalogue."""
    from lisa_choreo.orchestration import run as orch
    from lisa_choreo.orchestration.contract import SEGMENT_WORKFLOW
    from lisa_services.ingest.files import plan_file

    client = await orch.connect(case.run.address, timeout_s=60)
    plan = plan_file(data.path, DAY, 0.0)
    # another file (another seed): its segment ids are new to the kept catalogue
    inputs = orch.segment_inputs([plan], case.run, orch.step_policy(), overlap_s=0.0)
    started: dict[str, float] = {}
    t0 = time.monotonic()
    for k, inp in enumerate(inputs):
        delay = t0 + k * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started[inp.segment_id] = time.time()
        await client.start_workflow(
            SEGMENT_WORKFLOW,
            inp,
            id=case.run.segment_workflow_id(inp.segment_id),
            task_queue=case.run.task_queue,
        )
    view = await orch.follow(client, case.run, set(started), 600.0, poll_s=0.2)
    lat = sorted(view.counted[s] - started[s] for s in started)
    return {
        "segments": len(lat),
        "interval_s": interval_s,
        "latency_s": lat,
        "p50_s": percentile(lat, 50),
        "p99_s": percentile(lat, 99),
        "max_s": lat[-1],
    }


# -- one trivial step ------------------------------------------------------------------------


def step(study: Study) -> tuple[dict, list[Row]]:
    from bench.hop import run_hops

    cfg = study.cfg
    hops = run_hops(
        study.servers.bootstrap, study.workdir / "hop", cfg.hop_messages, cfg.hop_rate_hz, log
    )
    hops.pop("samples_ms", None)
    case = orch_case(study, "probe", workers=1)
    try:
        probe = asyncio.run(_probe(case, cfg.probe_steps))
    finally:
        case.stop()
    out = {"choreography_hop_ms": hops, "orchestration": probe}
    r, a = hops["runtime"], probe["activity_ms"]
    return out, [
        Row(
            "one trivial step p50/p99 ms: Kafka bare | runtime hop",
            f"{hops['bare']['p50']:.1f}/{hops['bare']['p99']:.1f} | {r['p50']:.1f}/{r['p99']:.1f}",
        ),
        Row(
            "one trivial step p50/p99 ms: Temporal activity | local act. mean",
            f"{a['p50']:.1f}/{a['p99']:.1f} | {probe['local_activity_ms_mean']:.2f}",
        ),
    ]


async def _probe(case: OrchCase, steps: int) -> dict:
    from lisa_choreo.orchestration import run as orch
    from lisa_choreo.orchestration.contract import PROBE_WORKFLOW, ProbeInput

    client = await orch.connect(case.run.address, timeout_s=60)
    await client.execute_workflow(  # warm-up: worker caches, sticky queue
        PROBE_WORKFLOW,
        ProbeInput(5),
        id=f"probe-warm-{case.run.run_id}",
        task_queue=case.run.task_queue,
        result_type=list,
    )
    times = await client.execute_workflow(
        PROBE_WORKFLOW,
        ProbeInput(steps),
        id=f"probe-{case.run.run_id}",
        task_queue=case.run.task_queue,
        result_type=list,
    )
    deltas = [1e3 * (b - a) for a, b in itertools.pairwise(times)]
    t = time.perf_counter()
    await client.execute_workflow(
        PROBE_WORKFLOW,
        ProbeInput(steps, local=True),
        id=f"probe-local-{case.run.run_id}",
        task_queue=case.run.task_queue,
        result_type=list,
    )
    local_total = time.perf_counter() - t
    return {
        "steps": steps,
        "activity_ms": {
            "p50": percentile(deltas, 50),
            "p99": percentile(deltas, 99),
            "mean": statistics.fmean(deltas),
        },
        "local_activity_ms_mean": 1e3 * local_total / steps,
        "local_note": "workflow start to result, divided by the steps (one workflow's overhead in)",
    }


# -- faults ----------------------------------------------------------------------------------


def _catalogued(fleet: Fleet) -> dict[str, float]:
    return fleet.stacked()


def _reprocessed_choreo(fleet: Fleet) -> int:
    extra = 0
    for key in fleet.procs:
        subjects = [r.get("subject") for r in fleet.processed(key)]
        extra += len(subjects) - len(set(subjects))
    return extra


class Cluster:
    """A private 3-node KRaft cluster (RF 3, min ISR 2), started for the leader-kill fault only.

    Each node is a combined broker + controller, as ``lisa-choreo stack up --nodes 3`` runs them;
    heap ``HEAP`` each (three JVMs on a shared 2-core machine; the single node keeps the
    stack's default)."""

    HEAP = "512m"

    def __init__(self) -> None:
        from lisa_choreo.localstack import brokers

        self.nodes = brokers.cluster_nodes(free_port((0, 1, 2, 1000, 1001, 1002)), 3)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @contextlib.contextmanager
    def _heap(self):
        before = os.environ.get("LISA_KAFKA_HEAP")
        os.environ["LISA_KAFKA_HEAP"] = self.HEAP
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("LISA_KAFKA_HEAP", None)
            else:
                os.environ["LISA_KAFKA_HEAP"] = before

    def up(self) -> float:
        from lisa_choreo.localstack import brokers

        t = time.monotonic()
        with self._heap():
            brokers.up(self.nodes)
        return time.monotonic() - t

    def restart(self, node) -> None:
        from lisa_choreo.localstack import brokers

        with self._heap():
            brokers.start(node, base_port=self.nodes[0].port)
        brokers.wait_ready([node])

    def pid(self, node) -> int | None:
        from lisa_choreo.localstack import brokers

        return brokers._running_pid(node)

    async def leaders(self, settings, topics: list[str]) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the node id leading it."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([settings.topic(t) for t in topics])
        finally:
            await admin.close()
        return {
            (d["topic"], p["partition"]): p["leader"] for d in described for p in d["partitions"]
        }

    def down(self) -> None:
        from lisa_choreo.localstack import brokers

        for node in self.nodes:
            with contextlib.suppress(Exception):
                brokers.stop(node, 30)
            shutil.rmtree(node.state_dir, ignore_errors=True)
        first = self.nodes[0]
        (first.state_dir.parent / f"cluster-{first.port}.id").unlink(missing_ok=True)


def choreo_fault(study: Study, kind: str, data: Dataset) -> dict:
    """SIGKILL of the estimate service, of the single broker, or of the partition leader of a
    3-node cluster (``cluster``: the leader of ``lisa.segments.conditioned``/0, as the
    reliability test kills), each restarted at once, a third of the way through a backlog."""
    from choreo.topology import ensure_topics
    from lisa_choreo.localstack import brokers
    from lisa_choreo.processes import ServiceProcess
    from lisa_choreo.registry import topology
    from lisa_pipeline.topics import SEGMENTS_CONDITIONED
    from lisa_services.ingest.files import plan_file

    info: dict[str, Any] = {}
    cluster = Cluster() if kind == "cluster" else None
    if cluster is not None:
        info["cluster_up_s"] = cluster.up()
        ctx = Context(
            bootstrap=cluster.bootstrap,
            workdir=study.workdir,
            store_uri=(study.workdir / "store").as_uri(),
            log=log,
        )
    else:
        ctx = study.ctx("c")
    fleet = ctx.fleet(f"fault-{kind}")
    try:
        if cluster is not None:
            specs = topology().all_topics()
            asyncio.run(ensure_topics(fleet.settings, specs, 3, 2))
            fleet.start(LISA_CATALOG_REPLICATION="3")
            for node in cluster.nodes:
                fleet.sampler.watch(f"kafka-node-{node.node_id}", cluster.pid(node))
        else:
            fleet.create_topics()
            fleet.start()
        plan = plan_file(data.path, DAY, 0.0)
        ids = {plan.segment_id(i) for i in range(len(plan.bounds))}
        from bench.pipeline import _ingest

        t0 = time.time()
        _ingest(fleet.settings, ctx.store_uri, data.path)
        _wait(
            lambda: (
                len(_catalogued(fleet)) >= max(1, len(ids) // 3)
                and (kind != "service" or len(fleet.processed("estimate")) < len(ids))
            ),
            600,
            "a third catalogued (and estimate still busy)",
        )
        t_kill = time.time()
        if kind == "service":
            victim = fleet.procs.pop("estimate")
            victim.kill()
            replacement = ServiceProcess(
                "estimate", fleet.dir / "estimate-restarted.log", fleet.env
            ).start()
            fleet.procs["estimate#restarted"] = replacement
            first = _wait(
                lambda: [r["t"] for r in log_events(replacement.log_path, "processed")],
                300,
                "the restarted estimate's first input",
            )
            info["recovery_s"] = min(first) - t_kill
            info["what_recovers"] = "kill -> the restarted estimate finishes its first input"
        else:
            if cluster is not None:
                lead = asyncio.run(cluster.leaders(fleet.settings, [s.name for s in specs]))
                conditioned = fleet.settings.topic(SEGMENTS_CONDITIONED)
                node = cluster.nodes[lead[(conditioned, 0)] - 1]
                info["victim_node"] = node.node_id
                info["victim_led_partitions"] = sum(v == node.node_id for v in lead.values())
                info["partitions"] = len(lead)
                pid = cluster.pid(node)
                t_kill = time.time()
                os.kill(pid, signal.SIGKILL)
                _wait(lambda: cluster.pid(node) is None, 60, "the node gone")
                t_restart = time.time()
                cluster.restart(node)
                fleet.sampler.watch(f"kafka-node-{node.node_id}", cluster.pid(node))
            else:
                pid = study.servers.broker_pid()
                t_kill = time.time()
                os.kill(pid, signal.SIGKILL)
                _wait(lambda: study.servers.broker_pid() is None, 60, "the broker gone")
                t_restart = time.time()
                brokers.start(study.servers.node)
                brokers.wait_ready([study.servers.node])
                fleet.sampler.watch("kafka-broker", study.servers.broker_pid())
            info["server_back_s"] = time.time() - t_kill
            info["restart_to_ready_s"] = time.time() - t_restart
            after = _wait(
                lambda: [t for t in _catalogued(fleet).values() if t > t_kill],
                600,
                "a segment catalogued after the broker's restart",
            )
            info["recovery_s"] = min(after) - t_kill
            info["what_recovers"] = "kill -> next segment catalogued (node restarted at once)"
        stacked = _wait_all(lambda: _catalogued(fleet), ids, 600)
        before = [t for t in stacked.values() if t <= t_kill]
        after_kill = [t for t in stacked.values() if t > t_kill]
        if before and after_kill:  # the catalogue's longest silence across the fault
            info["catalogue_gap_s"] = min(after_kill) - max(before)
        info.update(_outcome_choreo(fleet, ids, stacked, t0))
        if cluster is not None:
            info["all_alive"] = all(p.alive for p in fleet.procs.values())
        return info
    finally:
        fleet.stop()
        if cluster is not None:
            cluster.down()


def _outcome_choreo(fleet: Fleet, ids: set[str], stacked: dict, t0: float) -> dict:
    counted = log_events(fleet.log("catalog"), "segment stacked")
    return {
        "segments": len(ids),
        "lost": len(ids - stacked.keys()),
        "stuck": 0 if ids <= stacked.keys() else len(ids - stacked.keys()),
        # the stack's own count of segments (its "segment stacked" lines) beyond the file's
        "duplicated_in_catalogue": max((r["n_segments"] for r in counted), default=0) - len(ids),
        "stacked_twice": len(counted) - len({r["segment_id"] for r in counted}),
        "reprocessed_step_inputs": _reprocessed_choreo(fleet),
        "wall_s": max(stacked.values()) - t0 if stacked else None,
    }


def orch_fault(study: Study, kind: str, data: Dataset) -> dict:
    """SIGKILL of a worker with an activity in flight (a new one started at once) or of the
    Temporal server (restarted at once), a third of the way through a backlog."""
    from lisa_choreo.localstack import temporal
    from lisa_choreo.orchestration import run as orch

    case = orch_case(study, f"fault-{kind}")
    info: dict[str, Any] = {}
    try:

        async def go() -> Any:
            from lisa_services.ingest.files import plan_file

            client = await orch.connect(case.run.address, timeout_s=60)
            plan = plan_file(data.path, DAY, 0.0)
            inputs = orch.segment_inputs([plan], case.run, orch.step_policy(), overlap_s=0.0)
            await orch.start_run(
                client, case.run, inputs, orch.catalogue_params(), orch.step_policy()
            )
            expected = {i.segment_id for i in inputs}
            third = max(1, len(expected) // 3)
            task = asyncio.create_task(orch.follow(client, case.run, expected, 900.0, 0.2))

            def estimated() -> int:
                return sum(
                    r["event"] == "activity completed" and r["step"] == "estimate"
                    for r in _activity_lines(case)
                )

            t_kill = time.time()
            if kind == "worker":  # once a third went through estimate, a worker running a step
                victim, flying = await _wait_async(
                    lambda: estimated() >= third and _in_flight(case), 900, task
                )
                t_kill = time.time()
                victim.kill()
                case.workers.start(1, wait=False)
                info["killed_activities"] = flying
                info["what_recovers"] = (
                    "kill -> the killed activities completed again on another worker"
                )
            else:  # likewise: mid-run, with activities in flight
                await _wait_async(lambda: estimated() >= third and _in_flight(case), 900, task)
                t_kill = time.time()
                temporal.kill(study.servers.temporal)
                t_restart = time.time()
                await asyncio.to_thread(temporal.up, study.servers.temporal)
                info["server_back_s"] = time.time() - t_kill
                info["restart_to_ready_s"] = time.time() - t_restart
                case.sampler.watch("temporal-server", study.servers.temporal_pid())
                info["what_recovers"] = "kill -> next segment catalogued (server restarted at once)"
            final = await task
            if kind == "worker":
                redone = [
                    r["t"]
                    for r in _activity_lines(case)
                    if r["event"] == "activity completed"
                    and [r["step"], r["segment_id"]] in [k[:2] for k in info["killed_activities"]]
                    and r.get("attempt", 1) > 1
                ]
                info["recovery_s"] = max(redone) - t_kill if redone else None
            else:
                after = [t for t in final.counted.values() if t > t_kill]
                info["recovery_s"] = min(after) - t_kill if after else None
            closed = await orch.close(client, case.run)
            return inputs, closed

        t0 = time.time()
        inputs, final = asyncio.run(go())
        ids = {i.segment_id for i in inputs}
        done = [r for r in _activity_lines(case) if r["event"] == "activity completed"]
        keys = [(r["step"], r.get("segment_id")) for r in done if r["step"] != "stack"]
        info.update(
            {
                "segments": len(ids),
                "lost": len(ids - final.counted.keys() - final.failed.keys()),
                "failed": len(ids & final.failed.keys()),
                "stuck": len(ids - final.counted.keys()),
                "duplicated_in_catalogue": max((s["n_segments"] for s in final.sources), default=0)
                - len(ids),
                "reprocessed_step_inputs": len(keys) - len(set(keys)),
                "wall_s": max(final.counted.values()) - t0,
            }
        )
        return info
    finally:
        case.stop()


def _in_flight(case: OrchCase):
    """(worker, [[step, segment, attempt], ...]) of a live worker running a chain activity."""
    lines = _activity_lines(case)
    for proc in case.workers.alive():
        started, finished = set(), set()
        for r in lines:
            if r["worker"] != proc.name or r["step"] == "stack":
                continue
            key = (r["step"], r.get("segment_id"), r.get("attempt", 1))
            (started if r["event"] == "activity started" else finished).add(key)
        flying = sorted(started - finished, key=str)
        if flying:
            return proc, [list(k) for k in flying]
    return None


async def _wait_async(
    condition: Callable[[], Any], timeout_s: float, run: asyncio.Task | None = None
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if run is not None and run.done():
            raise RuntimeError("the run ended before the fault could be injected")
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)


def _wait_all(read: Callable[[], dict], ids: set[str], timeout_s: float) -> dict:
    """What ``read`` holds once it holds every id, or at the deadline (the rest is stuck)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = read()
        if ids <= got.keys() or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def faults(study: Study) -> tuple[dict, list[Row]]:
    data = study.dataset(study.cfg.fault_segments, seed=4)
    out = {
        "service_sigkill": {
            "choreography": choreo_fault(study, "service", data),
            "orchestration": orch_fault(study, "worker", data),
        },
        "server_sigkill": {
            "choreography": choreo_fault(study, "broker", data),
            "orchestration": orch_fault(study, "server", data),
        },
    }
    if study.cfg.cluster_fault:
        out["cluster_leader_sigkill"] = {
            "choreography": choreo_fault(study, "cluster", data),
            "orchestration": {
                "not_applicable": "the Temporal dev server is one process; a multi-node Temporal "
                "cluster needs its services and a SQL or Cassandra database, not built here"
            },
        }
    else:
        out["cluster_leader_sigkill"] = {"skipped": "smoke: three more JVMs cost over a minute"}
    rows = []

    def f(r: dict) -> str:
        if "recovery_s" not in r:
            return "n/a"
        rec = r.get("recovery_s")
        return (
            f"{rec:.1f} s" if rec is not None else "-"
        ) + f", lost {r['lost']}, dup {r['duplicated_in_catalogue']}, stuck {r['stuck']}"

    for key, what in (
        ("service_sigkill", "SIGKILL estimate service | Temporal worker"),
        ("server_sigkill", "SIGKILL Kafka broker | Temporal server"),
        ("cluster_leader_sigkill", "SIGKILL leader of 3 Kafka nodes | -"),
    ):
        if "choreography" not in out[key]:
            continue
        c, o = out[key]["choreography"], out[key]["orchestration"]
        rows.append(Row(f"{what}: recover, lost, dup, stuck", f"{f(c)} | {f(o)}"))
    return out, rows


# -- the hybrid: a reprocessing campaign orchestrated over the choreography -----------------

HALF_DAY = DAY / 2


def _blank_last_half_day(data: Dataset, path: Path) -> Path:
    """``data`` with its last 12 h all NaN: the half-day cut's last segment is dead-lettered."""
    from lisa_science.ldc import TDIData, read_ldc, write_ldc

    if not path.exists():
        d = read_ldc(str(data.path))
        x, y, z = (getattr(d, c).copy() for c in "xyz")
        for channel in (x, y, z):
            channel[-len(channel) // (2 * data.days) :] = float("nan")
        write_ldc(str(path), TDIData(t0=d.t0, dt=d.dt, x=x, y=y, z=z))
    return path


def _ingest_cut(settings, store_uri: str, path: Path, segment_s: float, revision: str) -> None:
    """``bench.pipeline._ingest`` with another cut: as ``lisa-choreo ingest --revision``."""
    from choreo.store import Store
    from lisa_services.ingest.files import plan_file
    from lisa_services.ingest.publish import publish_file

    plan = plan_file(path, segment_s, 0.0, revision=revision)
    asyncio.run(publish_file(plan, Store(store_uri), settings, 0.0, force=True))


def _cut_ids(path: Path, segment_s: float, revision: str = "") -> list[str]:
    from lisa_services.ingest.files import plan_file

    plan = plan_file(path, segment_s, 0.0, revision=revision)
    return [plan.segment_id(i) for i in range(len(plan.bounds))]


async def _campaign_history(address: str, workflow_id: str) -> dict:
    """The campaign workflow's event history: how many events of each kind, and each
    activity's span (scheduled -> completed) from the events' own timestamps."""
    from temporalio.api.enums.v1 import EventType

    from lisa_choreo.orchestration.worker import connect

    client = await connect(address, timeout_s=60)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    kinds: dict[str, int] = {}
    scheduled: dict[int, tuple[str, float]] = {}
    activities: list[dict] = []
    t_start = t_end = None
    for ev in history.events:
        kind = EventType.Name(ev.event_type).removeprefix("EVENT_TYPE_").lower()
        kinds[kind] = kinds.get(kind, 0) + 1
        t = ev.event_time.ToMicroseconds() / 1e6
        t_start = t if t_start is None else t_start
        t_end = t
        if kind == "activity_task_scheduled":
            name = ev.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[ev.event_id] = (name, t)
        elif kind in ("activity_task_completed", "activity_task_failed"):
            attrs = (
                ev.activity_task_completed_event_attributes
                if kind == "activity_task_completed"
                else ev.activity_task_failed_event_attributes
            )
            name, t0 = scheduled[attrs.scheduled_event_id]
            ok = kind == "activity_task_completed"
            activities.append({"activity": name, "start_s": t0, "s": t - t0, "ok": ok})
    for a in activities:
        a["start_s"] -= t_start or 0.0
    return {
        "events": len(history.events),
        "by_kind": kinds,
        "signals": kinds.get("workflow_execution_signaled", 0),
        "workflow_tasks": kinds.get("workflow_task_completed", 0),
        "workflow_s": (t_end - t_start) if t_start is not None else None,
        "workflow_started_epoch": t_start,
        "workflow_ended_epoch": t_end,
        "activities": activities,
    }


def _run_campaign(
    study: Study, fleet: Fleet, path: Path, wait_s: float, settles: list[str]
) -> dict:
    """``lisa-choreo campaign reprocess`` as an operator runs it, CPU and RSS of every process
    (Temporal server, the command: campaign worker + Kafka bridge, services, broker) sampled
    until the catalogue's own log shows every segment of ``settles`` stacked (the new cut, or
    the restored one): the campaign's signals come from the flow monitor, which may count a
    segment as catalogued before the catalogue has stacked it (``catalogue_lag``)."""
    from lisa_choreo.campaign.contract import workflow_id
    from lisa_services.ingest.files import file_sha256

    env = {
        **os.environ,
        **fleet.env,
        "LISA_TEMPORAL_ADDRESS": study.servers.temporal.address,
        "OTEL_TRACES_EXPORTER": "none",
        "LISA_LOG_LEVEL": "WARNING",
    }
    sampler = Sampler()
    for key, proc in fleet.procs.items():
        if proc.proc is not None:
            sampler.watch(key, proc.proc.pid)
    for name, pid in (
        ("kafka-broker", study.servers.broker_pid()),
        ("temporal-server", study.servers.temporal_pid()),
    ):
        if pid:
            sampler.watch(name, pid)
    cmd = [
        sys.executable,
        "-m",
        "lisa_choreo.cli",
        "campaign",
        "reprocess",
        str(path),
        "--revision",
        "half",
        "--segment-s",
        str(HALF_DAY),
        "--overlap-s",
        "0",
        "--from-segment-s",
        str(DAY),
        "--from-overlap-s",
        "0",
        "--wait-s",
        str(wait_s),
        "--reason",
        "study: recut in half days",
    ]
    err = fleet.dir / f"campaign-{path.stem}.err"
    sampler.start()
    sampler.mark_start()
    t0 = time.time()
    with err.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        sampler.watch("campaign (CLI: worker + bridge)", proc.pid)
        sampler.stats["campaign (CLI: worker + bridge)"].cpu_start = 0.0
        # the command's own CPU once it exited: psutil cannot read a reaped process
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        stdout, _ = proc.communicate(timeout=wait_s + 300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.time() - t0
    at_exit = fleet.stacked()
    stacked = fleet.wait_stacked(set(settles), max(1800.0, wait_s))
    done = max(stacked.values())
    sampler.mark_end()
    sampler.stop()
    lag = {
        "segments": len(settles),
        "stacked_at_command_exit": sum(i in at_exit for i in settles),
        "last_stacked_after_start_s": done - t0,
        "last_stacked_after_command_exit_s": done - (t0 + wall),
    }
    cli = sampler.stats["campaign (CLI: worker + bridge)"]
    cli.cpu_end = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    label = f"{file_sha256(path)[:16]}.half"
    history = asyncio.run(_campaign_history(study.servers.temporal.address, workflow_id(label)))
    processes = _sampled(sampler)
    phases = {  # where the command's time went, from the workflow's own event times
        "command_start_to_workflow_s": history["workflow_started_epoch"] - t0,
        "workflow_s": history["workflow_s"],
        "workflow_end_to_command_exit_s": t0 + wall - history["workflow_ended_epoch"],
    }
    lag["stacked_at_workflow_end"] = sum(
        t <= history["workflow_ended_epoch"] for t in stacked.values()
    )
    acts = history["activities"]
    if acts:
        phases["to_first_activity_s"] = acts[0]["start_s"]
        names = [a["activity"] for a in acts]
        if "campaign-ingest" in names and "campaign-release" in names:
            ingest = acts[names.index("campaign-ingest")]
            release = acts[names.index("campaign-release")]
            phases["wait_for_catalogue_s"] = release["start_s"] - (ingest["start_s"] + ingest["s"])
    return {
        "exit": proc.returncode,
        "phases": phases,
        "stdout": stdout.strip()[-600:],
        "stderr_tail": err.read_text()[-600:],
        "started": t0,
        "wall_s": wall,
        "catalogue_lag": lag,
        "done_s": max(wall, done - t0),
        "history": history,
        "processes": processes,
        "cpu_s_total": sum(p["cpu_s"] for p in processes.values()),
        "machine": sampler.machine(),
    }


def _sampled(sampler: Sampler) -> dict:
    return {
        k: {"cpu_s": st.cpu_s, "peak_rss_mb": st.peak_rss / 2**20}
        for k, st in sampler.stats.items()
    }


def _direct(study: Study, fleet: Fleet, path: Path) -> dict:
    """The same half-day cut ingested straight into a choreography of its own (the baseline:
    the choreography's own processing time of the new cut), CPU sampled as for the campaign.
    Its own: one grid's catalogue state is one Kafka record, and the campaign's catalogue holds
    the half-day cut already (the 1 MB record limit came at ~1500 segments in one grid)."""
    ids = _cut_ids(path, HALF_DAY)
    sampler = Sampler()
    for key, proc in fleet.procs.items():
        if proc.proc is not None:
            sampler.watch(key, proc.proc.pid)
    if study.servers.broker_pid():
        sampler.watch("kafka-broker", study.servers.broker_pid())
    sampler.start()
    sampler.mark_start()
    t0, cpu0 = time.time(), time.process_time()
    _ingest_cut(fleet.settings, fleet.store_uri, path, HALF_DAY, "")
    ingest_cpu = time.process_time() - cpu0
    stacked = fleet.wait_stacked(set(ids), 1800)
    sampler.mark_end()
    sampler.stop()
    processes = _sampled(sampler)
    processes["ingest (bench process)"] = {"cpu_s": ingest_cpu}
    return {
        "segments": len(ids),
        "wall_s": max(stacked.values()) - t0,
        "processes": processes,
        "cpu_s_total": sum(p["cpu_s"] for p in processes.values()),
    }


def _pipeline_with_monitor(ctx: Context, name: str) -> Fleet:
    from bench.fleet import PIPELINE_STEPS

    fleet = ctx.fleet(name)
    fleet.create_topics()
    # the flow monitor's defaults (check every 1 s, offsets every 2 s); its web view on any port
    return fleet.start((*PIPELINE_STEPS, "flows"), LISA_FLOWS_HTTP_PORT="0")


def campaign(study: Study) -> tuple[dict, list[Row]]:
    """The hybrid mode measured: the choreography runs, an operator reprocesses a file; then
    the same cuts ingested directly into a fresh choreography."""
    from bench.pipeline import _ingest

    out: dict = {}
    rows: list[Row] = []
    ctx = study.ctx("c")
    fleet = _pipeline_with_monitor(ctx, "campaign")
    try:
        for days in study.cfg.campaign_days:
            data = study.dataset(days, seed=7)
            old = _cut_ids(data.path, DAY)
            t0 = time.time()
            _ingest(fleet.settings, ctx.store_uri, data.path)
            fleet.wait_stacked(set(old), 1800)
            first = time.time() - t0
            log(f"  campaign {days} days: the day cut catalogued in {first:.1f} s; reprocessing")
            new = _cut_ids(data.path, HALF_DAY, "half")
            run = _run_campaign(study, fleet, data.path, max(600.0, 10.0 * days), new)
            if run["exit"] != 0:
                raise RuntimeError(f"campaign failed: {run['stdout']} {run['stderr_tail']}")
            lag = run["catalogue_lag"]
            log(
                f"  campaign {days} days -> {len(new)} half days: released after "
                f"{run['wall_s']:.1f} s with {lag['stacked_at_command_exit']}/{len(new)} "
                f"stacked, all stacked after {lag['last_stacked_after_start_s']:.1f} s, "
                f"{run['history']['events']} history events"
            )
            out[str(days)] = {
                "days": days,
                "old_segments": len(old),
                "new_segments": len(new),
                "day_cut_catalogued_s": first,
                "campaign": run,
            }
        # compensated: the half-day cut's last segment has no data
        days = study.cfg.compensated_days
        base = study.dataset(days, seed=8)
        path = _blank_last_half_day(base, study.workdir / "data" / f"blank-{days}.h5")
        old = _cut_ids(path, DAY)
        _ingest(fleet.settings, ctx.store_uri, path)
        fleet.wait_stacked(set(old), 1800)
        restored = _cut_ids(path, DAY, "half_restore")
        run = _run_campaign(study, fleet, path, max(600.0, 10.0 * days), restored)
        if run["exit"] != 1:
            raise RuntimeError(f"expected a compensated failure: {run['stdout']}")
        run["restored_catalogued"] = run["catalogue_lag"]["stacked_at_command_exit"]
        out["compensated"] = {"days": days, "old_segments": len(old), "campaign": run}
        log(f"  compensated campaign, {days} days: {run['wall_s']:.1f} s")
    finally:
        fleet.stop()
    fleet = _pipeline_with_monitor(ctx, "direct")
    try:
        for days in study.cfg.campaign_days:
            direct = _direct(study, fleet, study.dataset(days, seed=7).path)
            log(f"  direct ingest of the {days}-day file in half days: {direct['wall_s']:.1f} s")
            r = out[str(days)]
            r["direct"] = direct
            r["overhead_s"] = r["campaign"]["done_s"] - direct["wall_s"]
    finally:
        fleet.stop()
    for days in study.cfg.campaign_days:
        r = out[str(days)]
        run, direct = r["campaign"], r["direct"]
        lag, h = run["catalogue_lag"], run["history"]
        tsrv = run["processes"].get("temporal-server", {})
        n = r["new_segments"]
        rows += [
            Row(
                f"campaign {days} d -> {n} half days: released s (stacked by then) "
                "| all stacked s | direct ingest s",
                f"{run['wall_s']:.1f} ({lag['stacked_at_command_exit']}/{n}) "
                f"| {lag['last_stacked_after_start_s']:.1f} | {direct['wall_s']:.1f}",
            ),
            Row(
                f"campaign {days} d: Temporal CPU s, peak RSS MiB; history events",
                f"{tsrv.get('cpu_s', float('nan')):.2f}, "
                f"{tsrv.get('peak_rss_mb', float('nan')):.0f}; {h['events']} "
                f"({h['signals']} signals)",
            ),
        ]
    run, days = out["compensated"]["campaign"], out["compensated"]["days"]
    rows.append(
        Row(
            f"compensated campaign, {days} d (last half day NaN): wall s; history events",
            f"{run['wall_s']:.1f}; {run['history']['events']}; restored cut stacked at exit "
            f"{run['restored_catalogued']}/{run['catalogue_lag']['segments']}",
        )
    )
    return out, rows


# -- coupling: one new consumer step in each mode --------------------------------------------

DQ_SERVICE = '''"""``dq-monitor``: flags conditioned segments whose noise or usable data stray."""

from __future__ import annotations

import sys

from choreo import Consumes, Emit, Envelope, Produces, Step
from choreo.runner import run_step
from lisa_pipeline.events import QualityFlag, SegmentConditioned
from lisa_pipeline.topics import QUALITY_FLAGS, SEGMENTS_CONDITIONED

step = Step(
    "dq-monitor",
    consumes=[Consumes(SEGMENTS_CONDITIONED, SegmentConditioned)],
    produces=[Produces(QUALITY_FLAGS, QualityFlag)],
    description="flags segments whose PSD strays from the model or with little usable data",
)
RATIO_RANGE = (0.5, 2.0)
MIN_USABLE = 0.9


@step.handler
def monitor(event: Envelope[SegmentConditioned]) -> list[Emit]:
    seg = event.data
    off = [
        f"{b.channel} {b.fmin_hz * 1e3:g}-{b.fmax_hz * 1e3:g} mHz x{b.ratio:.2f}"
        for b in seg.psd_model_ratio
        if not RATIO_RANGE[0] <= b.ratio <= RATIO_RANGE[1]
    ]
    if seg.usable_fraction < MIN_USABLE:
        off.append(f"usable {seg.usable_fraction:.0%}")
    return [Emit(QUALITY_FLAGS, QualityFlag(timing=seg.timing, ok=not off, reasons=off))]


def main() -> int:
    return run_step(step)


if __name__ == "__main__":
    sys.exit(main())
'''

DQ_EVENT = '''

class QualityFlag(Event):
    """The data-quality monitor's verdict on one conditioned segment."""

    ce_type: ClassVar[str] = "lisa.quality.flag.v1"
    timing: SegmentTiming
    ok: bool
    reasons: list[str] = Field(description="what strayed: bands off the model, usable fraction")
'''


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"{path}: anchor {old[:60]!r} not found")
    path.write_text(text.replace(old, new, 1))


def _add_shared_step(tree: Path) -> None:
    """What both modes need: the monitor's service module, its event and its registration."""
    (tree / "services" / "dq_monitor").mkdir()
    (tree / "services" / "dq_monitor" / "__init__.py").write_text("")
    (tree / "services" / "dq_monitor" / "service.py").write_text(DQ_SERVICE)
    events = tree / "shared" / "lisa_pipeline" / "events.py"
    events.write_text(events.read_text() + DQ_EVENT)
    _edit(
        tree / "shared" / "lisa_choreo" / "registry.py",
        "SERVICE_MODULES: dict[str, str] = {name: entry_module(name) for name in PIPELINE}",
        "SERVICE_MODULES: dict[str, str] = {\n"
        "    **{name: entry_module(name) for name in PIPELINE},\n"
        '    "dq-monitor": entry_module("dq-monitor"),  # a side consumer of conditioned segments\n'
        "}",
    )
    pyproject = tree / "pyproject.toml"
    estimate = '    "lisa_services.estimate",\n'
    _edit(pyproject, estimate, '    "lisa_services.dq_monitor",\n' + estimate)  # packages
    condition = '    "lisa_services.condition",\n'
    _edit(  # the independence contract
        pyproject,
        condition + estimate,
        condition + '    "lisa_services.dq_monitor",\n' + estimate,
    )


def _choreography_change(tree: Path) -> None:
    """A side consumer: its topic, declared once; nothing else in the pipeline changes."""
    _add_shared_step(tree)
    topics = tree / "shared" / "lisa_pipeline" / "topics.py"
    text = topics.read_text()
    m = re.search(r"^SOURCES_ESTIMATES = .*$", text, re.M)
    if m is None:
        raise RuntimeError("topics.py: SOURCES_ESTIMATES not found")
    text = text.replace(m.group(0), m.group(0) + '\nQUALITY_FLAGS = "lisa.quality.flags"', 1)
    m = re.search(r"    TopicSpec\(\n        SOURCES_ESTIMATES,.*?\n    \),\n", text, re.S)
    if m is None:
        raise RuntimeError("topics.py: the SOURCES_ESTIMATES spec not found")
    spec = (
        "    TopicSpec(\n        QUALITY_FLAGS,\n        partitions=6,\n"
        "        retention_ms=30 * DAY_MS,\n"
        '        description="the data-quality monitor\'s flag of each conditioned segment",\n'
        "    ),\n"
    )
    text = text.replace(m.group(0), m.group(0) + spec, 1)
    topics.write_text(text)


def _orchestration_change(tree: Path) -> None:
    """The monitor as an activity: registered with the workers and called by the workflow,
    beside gb-search, behind a patch so that workflows already running replay unchanged."""
    _add_shared_step(tree)
    # the flag needs no topic here, but the shared contract module names the topic of the step's
    # declaration: the same one line
    _choreography_topic_line(tree)
    acts = tree / "shared" / "lisa_choreo" / "orchestration" / "activities.py"
    _edit(
        acts,
        "ACTIVITIES = [ingest, *(_step_activity(name) for name in RUNNER_STEPS), stack, forward]",
        'DQ_MONITOR = _step_activity("dq-monitor")\n'
        "ACTIVITIES = [\n"
        "    ingest, *(_step_activity(name) for name in RUNNER_STEPS), DQ_MONITOR, stack, forward\n"
        "]",
    )
    contract = tree / "shared" / "lisa_choreo" / "orchestration" / "contract.py"
    params = "\n\n\n@dataclass\nclass CatalogueParams:"
    _edit(
        contract,
        params,
        "\n    quality: dict[str, Any] | None = None\n"
        '    """The data-quality flag (envelope JSON), for segments started after it."""' + params,
    )
    wf = tree / "shared" / "lisa_choreo" / "orchestration" / "workflows.py"
    chain_step = (
        "                    step, StepInput(event, inp.store_uri), result_type=dict, **options\n"
        "                )\n"
    )
    _edit(
        wf,
        chain_step,
        chain_step + '                if step == "condition" and workflow.patched("dq-monitor"):\n'
        "                    quality = workflow.start_activity(\n"
        '                        "dq-monitor", StepInput(event, inp.store_uri), result_type=dict,\n'
        "                        **options,\n"
        "                    )\n",
    )
    _edit(
        wf,
        '        return SegmentOutcome(inp.segment_id, str(event["id"]))\n',
        "        flag = await quality if quality is not None else None\n"
        '        return SegmentOutcome(inp.segment_id, str(event["id"]), flag)\n',
    )
    _edit(wf, "        step = INGEST\n", "        step = INGEST\n        quality = None\n")


def _choreography_topic_line(tree: Path) -> None:
    topics = tree / "shared" / "lisa_pipeline" / "topics.py"
    text = topics.read_text()
    m = re.search(r"^SOURCES_ESTIMATES = .*$", text, re.M)
    topics.write_text(
        text.replace(m.group(0), m.group(0) + '\nQUALITY_FLAGS = "lisa.quality.flags"', 1)
    )


CHECK = """
import asyncio, sys
from choreo import Envelope
from choreo.testing import StepHarness
from lisa_pipeline.events import BandRatio, SegmentConditioned, SegmentTiming
from choreo.store import ArrayRef
from lisa_services.dq_monitor.service import step
ref = ArrayRef(uri="file:///s/aa/" + "a" * 64 + ".h5", sha256="a" * 64, size_bytes=1, shapes={})
seg = SegmentConditioned(
    timing=SegmentTiming(segment_id="s-1", t0=0.0, dt=5.0, n_samples=17280),
    data=ref, psd=ref, whitened=ref, usable_fraction=0.5, gap_samples=0, glitch_samples=0,
    psd_model_ratio=[BandRatio(channel="A", fmin_hz=2e-3, fmax_hz=5e-3, ratio=3.0)],
)
out = StepHarness(step).deliver("lisa.segments.conditioned", seg)
[flag] = out.events("lisa.quality.flags")
assert not flag.data.ok and len(flag.data.reasons) == 2, flag.data
if sys.argv[1] == "orchestration":
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
    from temporalio.workflow import _Definition
    from lisa_choreo.orchestration import activities
    from lisa_choreo.orchestration.workflows import SegmentWorkflow
    assert "dq-monitor" in {a.__temporal_activity_definition.name for a in activities.ACTIVITIES}
    async def prepare():
        SandboxedWorkflowRunner().prepare_workflow(_Definition.must_from_class(SegmentWorkflow))
    asyncio.run(prepare())
print("ok")
"""


def _diffstat(a: Path, b: Path) -> dict:
    done = subprocess.run(
        ["git", "diff", "--no-index", "--stat=200", "--", str(a), str(b)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    files = []
    for line in lines[:-1]:
        name, _, count = line.partition("|")
        lines_changed = int(count.split()[0]) if count.split()[0].isdigit() else 0  # "Bin"
        files.append({"file": _relative(name.strip(), a, b), "lines": lines_changed})
    summary = lines[-1] if lines else ""
    nums = {k: int(v) for v, k in re.findall(r"(\d+) (file|insertion|deletion)", summary)}
    return {
        "files": nums.get("file", 0),
        "insertions": nums.get("insertion", 0),
        "deletions": nums.get("deletion", 0),
        "per_file": files,
        "stat": done.stdout,
    }


def _relative(name: str, a: Path, b: Path) -> str:
    """A path of ``git diff --stat`` (``.../{base => mode}/x`` or ``/{dev/null => .../mode/x}``)
    relative to the tree."""
    name = name.rstrip("}")
    m = re.search(r"coupling/(?:\{[^}]*=> [^}/]+\}|[^/]+)/(.*)$", name)
    return m.group(1) if m else name


def coupling(study: Study) -> tuple[dict, list[Row]]:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    scratch = study.workdir / "coupling"
    base = scratch / "base"
    for name in files:
        src = ROOT / name
        if src.is_file():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, base / name)
    out: dict = {}
    rows: list[Row] = []
    for mode, change in (
        ("choreography", _choreography_change),
        ("orchestration", _orchestration_change),
    ):
        tree = scratch / mode
        shutil.copytree(base, tree)
        change(tree)
        generated = {}
        if mode == "choreography":  # the schemas and the AsyncAPI document follow (generated)
            gen = _in_tree(tree, [sys.executable, "-m", "lisa_choreo.cli", "schemas"])
            generated = {"command": "lisa-choreo schemas", "returncode": gen.returncode}
        checks = {
            "ruff": _in_tree(
                tree, [sys.executable, "-m", "ruff", "check", "--quiet", "shared", "services"]
            ).returncode,
            "handler_and_wiring": _in_tree(tree, [sys.executable, "-c", CHECK, mode]).returncode,
        }
        shutil.rmtree(tree / ".pp", ignore_errors=True)
        stat = _diffstat(base, tree)
        hand = [f for f in stat["per_file"] if not f["file"].startswith("schemas/")]
        out[mode] = {
            **stat,
            "hand_written": {"files": len(hand), "lines": sum(f["lines"] for f in hand)},
            "generated": generated,
            "checks": checks,
            "other_steps_touched": [
                f["file"]
                for f in hand
                if f["file"].startswith("services/") and "dq_monitor" not in f["file"]
            ],
            "flow_definition_touched": [
                f["file"] for f in hand if f["file"].startswith("shared/lisa_choreo/orchestration/")
            ],
        }
        (study.out / f"coupling-{mode}.stat.txt").write_text(stat["stat"])
        rows.append(
            Row(
                f"new consumer step, {mode}: files, +/- lines (hand-written)",
                f"{stat['files']}, +{stat['insertions']}/-{stat['deletions']} "
                f"({len(hand)} files, {sum(f['lines'] for f in hand)} lines); checks {checks}",
            )
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return out, rows


def _in_tree(tree: Path, cmd: list[str]) -> subprocess.CompletedProcess:
    """``cmd`` with the scratch tree's packages first on the path (lisa_services: services/)."""
    link = tree / ".pp"
    link.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (link / "lisa_services").symlink_to(tree / "services")
    env = {
        **os.environ,
        "PYTHONPATH": f"{tree / 'shared'}:{link}",
        "PYTHONDONTWRITEBYTECODE": "1",  # nothing but the change in the diff
        "RUFF_NO_CACHE": "true",
    }
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log(f"    {' '.join(cmd[:4])} in {tree.name}: {done.stdout[-800:]} {done.stderr[-1500:]}")
    return done


# -- observability ---------------------------------------------------------------------------


def chromium(url: str, png: Path, size: str = "1400,1100", budget_ms: int = 15000) -> bool:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size={size}",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={png}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return done.returncode == 0 and png.exists()


def observability(study: Study) -> tuple[dict, list[Row]]:
    from lisa_choreo.localstack import tracing_ui

    data = study.dataset(3, seed=6)
    zipkin = tracing_ui.ZipkinServer(tracing_ui.default_port())
    started = tracing_ui.launch(zipkin)
    tracing_ui.wait_ready(zipkin)
    env = {
        **os.environ,
        "LISA_KAFKA_BOOTSTRAP_SERVERS": study.servers.bootstrap,
        "LISA_ZIPKIN_URL": zipkin.url,
        "LISA_TEMPORAL_ADDRESS": study.servers.temporal.address,
    }
    env.pop("LISA_KAFKA_TOPIC_PREFIX", None)
    out: dict = {}
    try:
        pdir, odir = study.workdir / "obs-process", study.workdir / "obs-orchestrate"
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "lisa_choreo.cli",
                "process",
                str(data.path),
                "--out",
                str(pdir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        o = subprocess.run(
            [
                sys.executable,
                "-m",
                "lisa_choreo.cli",
                "orchestrate",
                str(data.path),
                "--out",
                str(odir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out["process_exit"], out["orchestrate_exit"] = p.returncode, o.returncode
        segment = json.loads((odir / "run.json").read_text())["expected"][0]
        trace_id = None
        for line in (pdir / "spans.jsonl").read_text().splitlines():
            span = json.loads(line)
            if span.get("attributes", {}).get("lisa.segment_id") == segment:
                trace_id = span["trace_id"]
                break
        run_id = json.loads((odir / "run.json").read_text())["run_id"]
        wid = f"{run_id}-{segment}"
        shots = {
            "zipkin": (
                f"{zipkin.url}/zipkin/traces/{trace_id}",
                study.out / "obs-zipkin-trace.png",
            ),
            "temporal": (
                study.servers.temporal.workflow_page(
                    wid, study.servers.temporal.latest_run_id(wid) or ""
                ),
                study.out / "obs-temporal-workflow.png",
            ),
        }
        time.sleep(3)  # spans leave in batches
        for name, (url, png) in shots.items():
            out[name] = {"url": url, "png": str(png), "ok": chromium(url, png)}
        out["segment"], out["trace_id"], out["workflow_id"] = segment, trace_id, wid
    finally:
        if started:
            tracing_ui.stop(zipkin)
    return out, [
        Row(
            "screenshots: Zipkin trace | Temporal workflow",
            f"{out['zipkin']['ok']} | {out['temporal']['ok']}",
        )
    ]


# -- plots -----------------------------------------------------------------------------------


def plots(out: Path, report: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[str] = []
    colours = {"choreography": "tab:blue", "orchestration": "tab:orange"}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    tp = {
        k: v
        for k, v in report.get("throughput", {}).items()
        if isinstance(v, dict) and "summary" in v
    }
    if tp:
        sizes = list(tp)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for i, (key, label) in enumerate(
            (
                ("segments_per_s", "segments / s"),
                ("cpu_s_per_segment", "CPU s per segment (all)"),
                ("to_catalogue_p99_s", "start -> catalogued p50 / p99 (s)"),
            )
        ):
            ax = axes[i]
            for j, mode in enumerate(colours):
                vals = [tp[s]["summary"][mode][key] for s in sizes]
                xs = [k + (j - 0.5) * 0.38 for k in range(len(sizes))]
                ax.bar(xs, vals, 0.38, label=mode, color=colours[mode], alpha=0.85)
                if key == "to_catalogue_p99_s":
                    p50 = [tp[s]["summary"][mode]["to_catalogue_p50_s"] for s in sizes]
                    ax.scatter(xs, p50, color="black", marker="_", s=200, zorder=3)
            ax.set_xticks(range(len(sizes)), [f"{s} segments" for s in sizes])
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("Backlog of daily segments: same handlers, same data (2 shared cores)")
        save(fig, "study-throughput.png")

        size = sizes[-1]
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        for ax, metric, label in (
            (axes[0], "cpu_ms_per_segment", "CPU ms per segment"),
            (axes[1], "peak_rss_mb", "peak RSS (MiB)"),
        ):
            names, vals, cols = [], [], []
            for mode in colours:
                for name, p in sorted(tp[size][mode]["processes"].items()):
                    if metric in p:
                        names.append(f"{name}")
                        vals.append(p[metric])
                        cols.append(colours[mode])
            ax.barh(range(len(names)), vals, color=cols)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xlabel(label)
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(f"Every process, {size} segments (blue: choreography, orange: orchestration)")
        save(fig, "study-processes.png")

    lat = report.get("latency", {})
    if "choreography" in lat and "orchestration" in lat:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for mode in colours:
            s = sorted(lat[mode]["latency_s"])
            ax.plot(
                [1e3 * v for v in s],
                [(i + 1) / len(s) for i in range(len(s))],
                label=mode,
                color=colours[mode],
            )
        ax.set_xlabel("published -> catalogued (ms)")
        ax.set_ylabel("fraction of segments")
        ax.set_title(f"One segment every {lat['choreography']['interval_s']} s")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        save(fig, "study-latency.png")

    st = report.get("step", {})
    if "orchestration" in st:
        h, o = st["choreography_hop_ms"], st["orchestration"]
        labels = [
            "Kafka bare\nproduce->consume",
            "runtime hop\n(one step)",
            "Temporal\nactivity",
            "Temporal local\nactivity (mean)",
        ]
        p50 = [
            h["bare"]["p50"],
            h["runtime"]["p50"],
            o["activity_ms"]["p50"],
            o["local_activity_ms_mean"],
        ]
        p99 = [
            h["bare"]["p99"],
            h["runtime"]["p99"],
            o["activity_ms"]["p99"],
            o["local_activity_ms_mean"],
        ]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
        ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.set_ylabel("ms per step")
        ax.set_title("One step that does nothing")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "study-step.png")

    fl = report.get("faults", {})
    if "service_sigkill" in fl:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        keys = ["service_sigkill", "server_sigkill"]
        labels = ["SIGKILL service/worker", "SIGKILL broker/server"]
        if "choreography" in fl.get("cluster_leader_sigkill", {}):
            keys.append("cluster_leader_sigkill")
            labels.append("SIGKILL partition leader\n(3 Kafka nodes)")
        for j, mode in enumerate(colours):
            vals = [fl[k].get(mode, {}).get("recovery_s") or 0 for k in keys]
            ax.bar(
                [k + (j - 0.5) * 0.38 for k in range(len(keys))],
                vals,
                0.38,
                label=mode,
                color=colours[mode],
            )
        ax.set_xticks(range(len(keys)), labels, fontsize=8)
        ax.set_ylabel("time to recover (s)")
        ax.set_title("Faults (restarted at once); lost = duplicated = stuck = 0")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "study-faults.png")

    cp = report.get("campaign", {})
    runs = [(k, v) for k, v in cp.items() if isinstance(v, dict) and "direct" in v]
    if runs:
        fig, ax = plt.subplots(figsize=(10, 1.4 + 0.9 * len(runs)))
        ticks = []
        for i, (key, r) in enumerate(runs):
            ph = r["campaign"]["phases"]
            spans = (
                (ph["command_start_to_workflow_s"], "tab:gray"),  # the command's start-up
                (ph["to_first_activity_s"], "navajowhite"),  # waiting for the command's worker
                (ph["workflow_s"] - ph["to_first_activity_s"], "tab:orange"),
                (ph["workflow_end_to_command_exit_s"], "tab:gray"),
                # released, but the catalogue still stacking the new cut
                (r["campaign"]["done_s"] - r["campaign"]["wall_s"], "tab:red"),
            )
            left = 0.0
            for width, colour in spans:
                ax.barh(2 * i, width, 0.7, left=left, color=colour)
                left += width
            ax.barh(2 * i + 0.8, r["direct"]["wall_s"], 0.7, color="tab:blue")
            ticks += [(2 * i, f"campaign, {key} d"), (2 * i + 0.8, f"direct ingest, {key} d")]
        ax.set_yticks([t for t, _ in ticks], [lab for _, lab in ticks], fontsize=8)
        ax.set_xlabel(
            "s  (gray: the command; light: the workflow waits for its worker; orange: its "
            "steps; red: released, the catalogue still stacking the new cut)",
            fontsize=8,
        )
        ax.set_title("Reprocessing a file in half days: campaign vs the same cut ingested directly")
        ax.grid(axis="x", alpha=0.3)
        save(fig, "study-campaign.png")
    return written


# -- the whole study -------------------------------------------------------------------------


def run_study(
    cfg: StudyConfig, out: Path, workdir: Path, keep_work: bool = False
) -> tuple[dict, list[Row]]:
    from lisa_choreo.localstack import temporal

    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": "smoke" if cfg.smoke else "full", "config": _jsonable(cfg)}
    rows: list[Row] = []
    if cfg.light and temporal.cached_binary() is None:
        report["skipped"] = (
            "no Temporal CLI built in $LISA_CHOREO_HOME/temporal/bin (the smoke run does not "
            "build it: `lisa-choreo stack up --orchestrator` or `python -m bench.study` does)"
        )
        return report, [Row("study", "skipped: no Temporal CLI built", "-", "info")]
    t_build = time.monotonic()
    temporal.build(log)
    report["temporal_build_s"] = round(time.monotonic() - t_build, 1)
    servers = Servers()
    study = Study(cfg, servers, workdir, out)
    try:
        servers.up()
        for name in PARTS:
            if name not in cfg.parts:
                continue
            log(f"[study: {name}]")
            t = time.monotonic()
            try:
                result, new = globals()[name](study)
            except Exception as exc:
                traceback.print_exc()
                result, new = (
                    {"error": f"{type(exc).__name__}: {exc}"},
                    [Row(f"study {name}", "failed", "-", "error")],
                )
            result["part_wall_s"] = round(time.monotonic() - t, 1)
            report[name] = result
            rows += new
            log(f"[study: {name}] {result['part_wall_s']} s")
    finally:
        for kept in (study.kept_choreo, study.kept_orch):
            if kept is not None:
                with contextlib.suppress(Exception):
                    kept.stop()
        servers.down()
        if not keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        report["plots"] = plots(out, report)
    except Exception as exc:
        traceback.print_exc()
        report["plots_error"] = repr(exc)
    report["table"] = [r.__dict__ for r in rows]
    (out / "study.json").write_text(json.dumps(report, indent=1, default=str))
    return report, rows


def _jsonable(cfg: StudyConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.study", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--smoke", action="store_true", help="3 and 5 segments: checks, not numbers"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/study"))
    parser.add_argument("--only", nargs="*", choices=PARTS)
    parser.add_argument("--sizes", nargs="+", type=int)
    parser.add_argument("--keep-work", action="store_true")
    args = parser.parse_args(argv)
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    cfg = StudyConfig.make(args.smoke)
    if args.only:
        cfg = replace(cfg, parts=tuple(args.only))
    if args.sizes:
        cfg = replace(cfg, sizes=tuple(args.sizes))
    workdir = Path(tempfile.mkdtemp(prefix="lisa-study-"))
    t0 = time.time()
    report, rows = run_study(cfg, args.out, workdir, args.keep_work)
    report["wall_s"] = round(time.time() - t0, 1)
    (args.out / "study.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"orchestration vs choreography ({report['mode']}), {report['wall_s']} s")
    print(table(rows) if rows else "(no rows)")
    print(f"report: {args.out / 'study.json'}; plots: {', '.join(report.get('plots', []))}")
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
