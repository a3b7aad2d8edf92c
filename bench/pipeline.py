"""(b) of the comparison, end-to-end latency, tracing overhead and scaling: the real services,
each its own process, on the real broker.

Ingest runs in this process through ``lisa_services.ingest.publish.publish_file`` (what the
ingest CLI and service call), so its start and its commit are timed exactly; a segment is done
when the catalogue logs it stacked (after its source updates are acknowledged and its table value is
written).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.data import DAY, Dataset, split_days
from bench.fleet import PIPELINE_STEPS, Fleet, log_events, step_timing
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from choreo.store import Store
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from lisa_services.ingest.files import plan_file
from lisa_services.ingest.publish import publish_file

INPUT_TOPIC = {
    "condition": SEGMENTS_RAW,
    "gb-search": SEGMENTS_CONDITIONED,
    "estimate": CANDIDATES_GB,
    "catalog": SOURCES_ESTIMATES,
}


@dataclass
class Context:
    """What every case shares: the broker, the work dir, the store, Zipkin, the broker's pid."""

    bootstrap: str
    workdir: Path
    store_uri: str
    zipkin_spans_url: str | None = None
    broker_pid: int | None = None
    log: Callable[[str], None] = print

    def fleet(self, name: str, tracing: str = "none", **kw) -> Fleet:
        return Fleet(
            self.bootstrap,
            self.workdir,
            name,
            self.store_uri,
            tracing=tracing,
            zipkin_spans_url=self.zipkin_spans_url,
            **kw,
        )


def _ingest(settings: KafkaSettings, store_uri: str, path: Path) -> list[str]:
    plan = plan_file(path, DAY, 0.0)
    # force: the store (and its ingest ledger) is shared by every case of a run
    result = asyncio.run(publish_file(plan, Store(store_uri), settings, 0.0, force=True))
    return result.segment_ids


def _service_stats(fleet: Fleet, n: int) -> dict:
    out = {}
    for key, st in fleet.sampler.stats.items():
        entry: dict = {
            "peak_rss_mb": st.peak_rss / 2**20,
            "cpu_s": st.cpu_s,
            "cpu_ms_per_segment": 1e3 * st.cpu_s / n,
        }
        if key in fleet.procs and key.split("#")[0] != "catalog":
            entry.update(step_timing(fleet.processed(key)))
        out[key] = entry
    for name in {k.split("#")[0] for k in out if "#" in k}:  # replicas: the step as a whole
        keys = [k for k in out if k.split("#")[0] == name]
        lines = [r for k in keys for r in fleet.processed(k)]
        out[name] = {
            "replicas": len(keys),
            "peak_rss_mb": max(out[k]["peak_rss_mb"] for k in keys),
            "cpu_s": sum(out[k]["cpu_s"] for k in keys),
            "cpu_ms_per_segment": sum(out[k]["cpu_ms_per_segment"] for k in keys),
            **step_timing(lines),
        }
    return out


def run_pipeline(
    ctx: Context,
    name: str,
    data: Dataset,
    tracing: str = "none",
    keep: bool = False,
    timeout_s: float = 1800.0,
    on_started: Callable[[Fleet], object] | None = None,
    replicas: dict[str, int] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[dict, Fleet]:
    """Backlog throughput: one file ingested at once, time until the catalogue stacked it all.

    Returns the result and the fleet (stopped unless ``keep``)."""
    fleet = ctx.fleet(name, tracing, env=env)
    ok = False
    try:
        fleet.create_topics()
        fleet.start(replicas=replicas or 1)
        if ctx.broker_pid:
            fleet.sampler.watch("kafka-broker", ctx.broker_pid)
        ctx.log(f"  {name}: {len(fleet.procs)} services up ({tracing=}); {data.days} segments")
        if on_started is not None:
            on_started(fleet)
        fleet.sampler.mark_start()
        t0, cpu0 = time.time(), time.process_time()
        ids = _ingest(fleet.settings, ctx.store_uri, data.path)
        t_published = time.time()
        ingest_cpu = time.process_time() - cpu0
        stacked = fleet.wait_stacked(set(ids), timeout_s)
        fleet.sampler.mark_end()
        t_end = max(stacked.values())
        wall = t_end - t0
        n = len(ids)
        services = _service_stats(fleet, n)
        services["ingest (bench process)"] = {
            "cpu_s": ingest_cpu,
            "cpu_ms_per_segment": 1e3 * ingest_cpu / n,
            "events_per_s": n / (t_published - t0),
        }
        times = sorted(stacked.values())
        first_stacked = times[0]
        services.setdefault("catalog", {}).update(
            {
                "events": n,
                "events_per_s": (n - 1) / (times[-1] - first_stacked) if n > 1 else None,
            }
        )
        total_cpu = sum(s.get("cpu_s", 0.0) for s in services.values())
        result = {
            "segments": n,
            "samples_per_segment": data.samples_per_segment,
            "tracing": tracing,
            "wall_s": wall,
            "ingest_s": t_published - t0,
            "first_stacked_after_s": first_stacked - t0,
            "segments_per_s": n / wall,
            "samples_per_s": n * data.samples_per_segment / wall,
            "cpu_s_total": total_cpu,
            "machine": fleet.sampler.machine(),
            "services": services,
            "stacked_at_s": [t - t0 for t in times],
            "rss_mb": {
                k: [(round(t, 2), round(r / 2**20, 1)) for t, r in st.rss_samples]
                for k, st in fleet.sampler.stats.items()
            },
        }
        ok = True
        return result, fleet
    finally:
        if not (keep and ok):
            fleet.stop()


def run_steady(
    ctx: Context, fleet: Fleet, data: Dataset, interval_s: float, timeout_s: float = 600.0
) -> dict:
    """End-to-end latency at a steady input rate: one daily file every ``interval_s``."""
    files = split_days(data, ctx.workdir / f"days-{data.path.stem}")
    plans = [plan_file(p, DAY, 0.0) for p in files]  # validation is not part of the latency
    store = Store(ctx.store_uri)
    ctx.log(f"  steady input: {len(plans)} segments, one every {interval_s} s")

    async def feed() -> list[str]:
        ids: list[str] = []
        start = time.monotonic()
        for k, plan in enumerate(plans):
            delay = start + k * interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result = await publish_file(plan, store, fleet.settings, 0.0, force=True)
            ids += result.segment_ids
        return ids

    t0 = time.time()
    ids = asyncio.run(feed())
    t_fed = time.time()
    stacked = fleet.wait_stacked(set(ids), timeout_s)

    async def raw_times() -> dict[str, float]:
        async with TopicReader(fleet.settings, [SEGMENTS_RAW]) as reader:
            records = await reader.snapshot()
        return {r.key.decode(): r.timestamp / 1e3 for r in records if r.key.decode() in stacked}

    published = asyncio.run(raw_times())
    latencies = sorted(stacked[i] - published[i] for i in ids)
    return {
        "segments": len(ids),
        "interval_s": interval_s,
        "achieved_rate_per_s": (len(ids) - 1) / (t_fed - t0) if len(ids) > 1 else None,
        "latency_s": latencies,
        "p50_s": _pct(latencies, 50),
        "p99_s": _pct(latencies, 99),
        "max_s": latencies[-1],
        "per_segment": [
            {"segment_id": i, "published": published[i] - t0, "stacked": stacked[i] - t0}
            for i in ids
        ],
    }


def _pct(values: list[float], p: float) -> float:
    from bench.hop import percentile

    return percentile(values, p)


def run_tracing(ctx: Context, data: Dataset, reps: int, baseline: dict | None = None) -> dict:
    """The same dataset with tracing off and exporting to Zipkin, alternating, ``reps`` each.

    ``baseline``: a tracing-off run of the same dataset made already (smoke mode saves a fleet)."""
    runs: dict[str, list[dict]] = {"none": [], "zipkin": []}
    if baseline is not None:
        runs["none"].append({k: baseline[k] for k in ("segments_per_s", "wall_s", "cpu_s_total")})
    for rep in range(reps):
        order = ("none", "zipkin") if rep % 2 == 0 else ("zipkin", "none")
        if baseline is not None:
            order = ("zipkin",)
        for mode in order:
            result, _ = run_pipeline(ctx, f"tracing-{mode}-{rep}", data, tracing=mode)
            runs[mode].append(
                {
                    "segments_per_s": result["segments_per_s"],
                    "wall_s": result["wall_s"],
                    "cpu_s_total": result["cpu_s_total"],
                }
            )
            ctx.log(f"    {mode}: {result['segments_per_s']:.2f} segments/s")
    none = statistics.median(r["segments_per_s"] for r in runs["none"])
    zipkin = statistics.median(r["segments_per_s"] for r in runs["zipkin"])
    cpu_none = statistics.median(r["cpu_s_total"] for r in runs["none"])
    cpu_zipkin = statistics.median(r["cpu_s_total"] for r in runs["zipkin"])
    return {
        "segments": data.days,
        "reps": reps,
        "runs": runs,
        "throughput_none": none,
        "throughput_zipkin": zipkin,
        "overhead": 1 - zipkin / none,
        "cpu_overhead": cpu_zipkin / cpu_none - 1,
    }


def _subject(record) -> str:
    return next(v.decode() for k, v in record.headers if k == "ce_subject")


def _assignments(fleet: Fleet, step: str) -> dict[str, set[str]]:
    latest: dict[str, set[str]] = {}
    for key in fleet.procs:
        if key.split("#")[0] != step:
            continue
        lines = [
            r
            for r in log_events(fleet.log(key))
            if r.get("event") in ("partitions assigned", "partitions revoked")
        ]
        assigned = [r for r in lines if r["event"] == "partitions assigned"]
        latest[key] = set(assigned[-1]["partitions"]) if assigned else set()
    return latest


def run_replicas(
    ctx: Context, source: KafkaSettings, step: str, replicas: int, count: int, timeout_s=900.0
) -> dict:
    """Throughput of ``step`` alone with ``replicas`` processes, on a backlog of ``count`` of the
    inputs a previous run left on ``source``'s topic, copied in one transaction once every
    replica holds its partitions (so no rebalance happens mid-measurement)."""
    topic = INPUT_TOPIC[step]

    async def read_backlog():
        async with TopicReader(source, [topic]) as reader:
            records = await reader.snapshot()
        return sorted(records, key=lambda r: r.timestamp)[:count]

    backlog = asyncio.run(read_backlog())
    fleet = ctx.fleet(f"scale-{step}-{replicas}")
    try:
        fleet.create_topics()
        fleet.start((step,), replicas=replicas)
        n_parts = 6
        deadline = time.monotonic() + 120
        while True:
            owned = _assignments(fleet, step)
            union = set().union(*owned.values())
            if len(union) == n_parts and all(owned.values()) and len(owned) == replicas:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{step}: partitions not assigned to {replicas} replicas")
            time.sleep(0.2)
        time.sleep(1.0)  # let a rebalance that is still settling show itself
        ctx.log(f"  {step} x{replicas}: partitions {owned}; copying {len(backlog)} inputs")

        async def copy() -> float:
            producer = AIOKafkaProducer(
                **fleet.settings.client_options(),
                transactional_id=f"{fleet.prefix}backlog",
                acks="all",
                enable_idempotence=True,
                max_request_size=2_000_000,
            )
            await producer.start()
            try:
                async with producer.transaction():
                    futures = [
                        await producer.send(
                            fleet.settings.topic(topic),
                            value=r.value,
                            key=r.key,
                            headers=list(r.headers),
                        )
                        for r in backlog
                    ]
                    await asyncio.gather(*futures)
                return time.time()
            finally:
                await producer.stop()

        subjects = {_subject(r) for r in backlog}
        fleet.sampler.mark_start()
        t_commit = asyncio.run(copy())
        lines = fleet.wait_processed(step, subjects, timeout_s)
        fleet.sampler.mark_end()
        t_last = max(r["t"] for r in lines)
        per_replica = {}
        for key in fleet.procs:
            mine = [r for r in lines if r["replica"] == key]
            moves = [
                r
                for r in log_events(fleet.log(key))
                if r.get("event") == "partitions revoked" and r["t"] > t_commit
            ]
            per_replica[key] = {
                "events": len(mine),
                "cpu_s": fleet.sampler.stats[key].cpu_s,
                "handler_ms_mean": sum(r.get("ms", 0) for r in mine) / max(len(mine), 1),
                "partitions_at_start": sorted(owned.get(key, ())),
                "revocations_during_run": len(moves),
            }
        n = len(subjects)
        return {
            "step": step,
            "replicas": replicas,
            "events": n,
            "processed_twice": len(lines) - n,
            "wall_s": t_last - t_commit,
            "events_per_s": n / (t_last - t_commit),
            "cpu_ms_per_event": 1e3 * sum(r["cpu_s"] for r in per_replica.values()) / n,
            "per_replica": per_replica,
            "machine": fleet.sampler.machine(),
        }
    finally:
        fleet.stop()


PIPELINE = PIPELINE_STEPS
