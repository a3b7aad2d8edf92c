"""The main job, toy edition: stack up, two steps as processes, numbers in, descriptions out."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from choreo import Envelope, codec
from choreo.publisher import Publisher, make_producer
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from choreo.topology import ensure_topics
from choreo.tracing import configure_tracing
from lisa_choreo import stack, traceview
from lisa_choreo.paths import home
from lisa_choreo.processes import ServiceProcess
from lisa_choreo.topology import topology
from services.toy.events import DESCRIPTIONS, NUMBERS, Description, Number


async def _run_chain(kafka: KafkaSettings, count: int, run_id: str, timeout_s: float) -> dict:
    results: dict[str, Description] = {}
    async with TopicReader(kafka, [DESCRIPTIONS], from_beginning=False) as reader:
        producer = make_producer(kafka, f"demo-{run_id}")
        await producer.start()
        try:
            await Publisher(producer, kafka).publish(
                [
                    (
                        NUMBERS,
                        Envelope.root(
                            Number(value=i), source="lisa-choreo-demo", subject=f"{run_id}-{i}"
                        ),
                    )
                    for i in range(count)
                ]
            )
        finally:
            await producer.stop()
        deadline = time.monotonic() + timeout_s
        async for record in reader.records(idle_timeout_s=timeout_s):
            env = codec.decode(
                record.key, record.value, record.headers, {Description.ce_type: Description}
            )
            if env.subject and env.subject.startswith(run_id):
                results[env.subject] = env.data
            if len(results) == count or time.monotonic() > deadline:
                break
    return results


def main(count: int = 5, timeout_s: float = 120.0) -> int:
    kafka = KafkaSettings()
    port = int(kafka.bootstrap_servers.rsplit(":", 1)[1])
    print(f"1. bringing the stack up on {kafka.bootstrap_servers} ...", flush=True)
    stack.up([stack.KafkaNode(port=port)])
    asyncio.run(ensure_topics(kafka, topology().all_topics()))
    run_id = uuid.uuid4().hex[:8]
    run_dir = home() / "runs" / f"demo-{run_id}"
    spans_path = run_dir / "spans.jsonl"
    env = {
        "OTEL_TRACES_EXPORTER": "jsonl",
        "LISA_OTEL_JSONL_PATH": str(spans_path),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    os.environ.update(env)  # the demo's own publisher is the root of every trace
    provider = configure_tracing("lisa-choreo-demo")
    services = [
        ServiceProcess(n, run_dir / f"{n}.log", env) for n in ("toy-square", "toy-describe")
    ]
    print(f"2. starting {', '.join(s.name for s in services)} as separate processes", flush=True)
    for svc in services:
        svc.start()
    try:
        for svc in services:
            svc.wait_for_log("step started")
        print(f"3. publishing {count} numbers on {NUMBERS}; waiting on {DESCRIPTIONS}", flush=True)
        t0 = time.monotonic()
        results = asyncio.run(_run_chain(kafka, count, run_id, timeout_s))
        elapsed = time.monotonic() - t0
    finally:
        codes = {svc.name: svc.terminate() for svc in services}
        provider.shutdown()
    for subject in sorted(results, key=lambda s: int(s.rsplit("-", 1)[1])):
        print(f"   {subject}: {results[subject].text}")
    print(f"   {len(results)}/{count} results in {elapsed:.2f} s; services exited with {codes}")
    traces = traceview.by_trace(traceview.read_jsonl(spans_path))
    full = [
        s for s in traces.values() if {x["service"] for x in s} >= {"toy-square", "toy-describe"}
    ]
    if full:
        print(f"4. one segment's trace ({len(full)} complete traces recorded):")
        for line in traceview.render(full[0]):
            print("   " + line)
    print(f"   logs and spans: {run_dir}\n   stop the broker with: lisa-choreo stack down")
    return 0 if len(results) == count and all(c == 0 for c in codes.values()) else 1
