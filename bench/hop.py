"""Per-hop cost: one hop of the runtime beside the same hop in plain aiokafka, in one run.

Three paths are fed by the same producer in this process, one message on each per tick (in a
shuffled order), and read back by the same consumer here:

- ``bare``: produce -> topic -> consume (the broker's own produce-to-consume latency);
- ``echo``: produce -> topic -> a separate process with a plain aiokafka consumer that re-produces
  each record untouched with a plain aiokafka producer -> topic -> consume (a hop, bare);
- ``runtime``: the same hop through a step run by ``choreo.runner`` in its own process (decode and
  validate the CloudEvent and its pydantic body, CONSUMER and PRODUCER spans, handler in a worker
  thread, acks=all idempotent producer; a batch's acks and commit settle while the next batch is
  fetched and handled);
- ``runtime_serial``: the same runtime with ``LISA_STEP_SETTLE_BEHIND=false``, the former cycle
  (wait for the acks, commit, then the next batch): the change measured side by side;
- ``runtime_baseline`` (with ``baseline=<git ref>``, ``python -m bench.run --hop-baseline REF``):
  the same step run by the ``choreo`` runtime of another commit (its ``shared/`` extracted with
  ``git archive`` and put first on the server's ``PYTHONPATH``), so that a change to the runtime
  is measured against its predecessor in one run, on the same broker and the same load.

The body is a real ``SegmentRaw`` event (~1 KB of JSON, the CloudEvents headers beside it), so
decoding and validation cost what they cost in the pipeline.

``python -m bench.hop runtime|echo`` is the process that serves a path.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from choreo import Consumes, Emit, Envelope, Produces, Step, codec, derive_event_id
from choreo.settings import KafkaSettings
from choreo.store import ArrayRef
from choreo.topology import TopicSpec, ensure_topics
from lisa_pipeline.events import SegmentRaw, SegmentTiming

RUNTIME_IN, RUNTIME_OUT = "bench.hop.runtime.in", "bench.hop.runtime.out"
SERIAL_IN, SERIAL_OUT = "bench.hop.serial.in", "bench.hop.serial.out"
ECHO_IN, ECHO_OUT = "bench.hop.echo.in", "bench.hop.echo.out"
BASE_IN, BASE_OUT = "bench.hop.baseline.in", "bench.hop.baseline.out"
BARE = "bench.hop.bare"
PARTITIONS = 3
PATHS = {
    "bare": (BARE, BARE),
    "echo": (ECHO_IN, ECHO_OUT),
    "runtime": (RUNTIME_IN, RUNTIME_OUT),
    "runtime_serial": (SERIAL_IN, SERIAL_OUT),
}
BASELINE_PATH = {"runtime_baseline": (BASE_IN, BASE_OUT)}


def forwarding_step(name: str, topic_in: str, topic_out: str) -> Step:
    """A step that forwards raw segments unchanged: one hop of the runtime, nothing else."""
    step = Step(
        name,
        consumes=[Consumes(topic_in, SegmentRaw)],
        produces=[Produces(topic_out, SegmentRaw)],
        description="forwards raw segments unchanged: one hop of the runtime, nothing else",
    )

    @step.handler
    def forward(event: Envelope[SegmentRaw]) -> list[Emit]:
        return [Emit(topic_out, event.data)]

    return step


step = forwarding_step("bench-hop", RUNTIME_IN, RUNTIME_OUT)
serial_step = forwarding_step("bench-hop-serial", SERIAL_IN, SERIAL_OUT)
baseline_step = forwarding_step("bench-hop-baseline", BASE_IN, BASE_OUT)


def topics() -> list[TopicSpec]:
    names = [BARE, ECHO_IN, ECHO_OUT, RUNTIME_IN, RUNTIME_OUT, RUNTIME_IN + ".dlq"]
    names += [SERIAL_IN, SERIAL_OUT, SERIAL_IN + ".dlq"]
    names += [BASE_IN, BASE_OUT, BASE_IN + ".dlq"]
    return [TopicSpec(n, partitions=PARTITIONS, retention_ms=3_600_000) for n in names]


def sample_event(i: int) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """A raw segment's event as ingest publishes it (claim check, timing, provenance)."""
    sha = "3f" * 32
    seg = f"{sha[:16]}-{i:05d}"
    body = SegmentRaw(
        timing=SegmentTiming(segment_id=seg, t0=86_400.0 * i, dt=5.0, n_samples=17_280),
        index=i,
        source_file="/data/lisa/ldc2a/spritz-vgb-year-1/LDC2_spritz_vgb_training_v2.h5",
        source_sha256=sha,
        overlap_s=0.0,
        data=ArrayRef(
            uri=f"file:///var/lib/lisa-choreo/store/{sha[:2]}/{sha}.h5",
            sha256=sha,
            size_bytes=417_920,
            shapes={"X": [17_280], "Y": [17_280], "Z": [17_280]},
        ),
        nan_fraction=0.0,
    )
    env = Envelope(
        id=derive_event_id(sha, "ingest", i),
        source="ingest",
        data=body,
        correlation_id=derive_event_id(sha, "ingest", i),
        subject=seg,
        key=seg,
    )
    return codec.encode(env)


# -- the serving processes --------------------------------------------------------------------


async def _echo(settings: KafkaSettings) -> None:
    """Plain aiokafka: consume, re-produce untouched (no validation, no spans, auto-commit)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(**settings.client_options())
    consumer = AIOKafkaConsumer(
        settings.topic(ECHO_IN),
        **settings.client_options(),
        group_id=settings.topic("bench-echo"),
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()
    announced = False
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            if not announced and consumer.assignment():
                print("echo assigned", flush=True)
                announced = True
            for records in batch.values():
                for r in records:
                    await producer.send(
                        settings.topic(ECHO_OUT), value=r.value, key=r.key, headers=list(r.headers)
                    )
    finally:
        await consumer.stop()
        await producer.stop()


def serve(mode: str) -> int:
    if mode in ("runtime", "runtime_serial", "runtime_baseline"):
        import choreo
        from choreo.runner import run_step

        # which runtime serves this path: the baseline's must not be the working tree's
        print(f"choreo from {Path(choreo.__file__).resolve().parent}", flush=True)
        steps = {"runtime": step, "runtime_serial": serial_step, "runtime_baseline": baseline_step}
        return run_step(steps[mode])
    asyncio.run(_echo(KafkaSettings()))
    return 0


# -- the measurement ----------------------------------------------------------------------------


def _start(
    mode: str, env: dict[str, str], log: Path, baseline: Path | None = None
) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    path = str(root)
    if mode == "runtime_serial":
        env = {**env, "LISA_STEP_SETTLE_BEHIND": "false"}
    if mode == "runtime_baseline" and baseline is not None:
        # first on the path: the editable install's finder only answers what sys.path does not
        path = f"{baseline / 'shared'}{os.pathsep}{root}"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.hop", mode],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            env={**os.environ, **env, "PYTHONPATH": path},
        )


def extract_baseline(ref: str, dest: Path) -> str:
    """``shared/`` of commit ``ref`` under ``dest`` (``git archive``: no worktree, no checkout
    of this repository touched); returns the commit's full hash."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "shared"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def _wait_log(proc: subprocess.Popen, log: Path, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"hop server exited; see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not in {log} after {timeout_s} s")
        time.sleep(0.1)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least p % of samples at or below."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "p99_9": percentile(values, 99.9),
        "max": max(values),
        "n": len(values),
    }


async def _measure(
    settings: KafkaSettings,
    n: int,
    rate_hz: float,
    paths: dict | None = None,
    stagger: bool = True,
) -> dict[str, list[float]]:
    """Send ``n`` messages per path (name -> (input topic, output topic)) at ``rate_hz``; the
    produce -> consume latency of each, in seconds.

    ``stagger``: within a tick the paths' messages leave at evenly spaced instants (in a shuffled
    order) instead of back to back. Back to back, every hop process wakes at the same instant
    and, on two cores, each path's latency includes the other paths' CPU (three runtimes at ~2
    ms a message); staggered, a path meets the others' work only as often as real traffic
    would."""
    paths = paths or PATHS
    payloads = [sample_event(i) for i in range(n)]
    producer = AIOKafkaProducer(**settings.client_options(), acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(**settings.client_options(), group_id=None)
    await producer.start()
    await consumer.start()
    outs = {settings.topic(out): name for name, (_, out) in paths.items()}
    parts = [TopicPartition(t, p) for t in outs for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    sent: dict[bytes, float] = {}
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    expected = n * len(paths)
    done = asyncio.Event()

    async def receive() -> None:
        got = 0
        while got < expected:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    t = sent.pop(r.key, None)
                    if t is not None:
                        latencies[outs[r.topic]].append(now - t)
                        got += 1
        done.set()

    receiver = asyncio.create_task(receive())
    rng = random.Random(7)
    start = time.perf_counter()
    for i, (_, value, headers) in enumerate(payloads):
        delay = start + i / rate_hz - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        order = list(paths.items())
        rng.shuffle(order)
        for j, (name, (topic_in, _)) in enumerate(order):
            if stagger and j:
                delay = start + (i + j / len(order)) / rate_hz - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            key = f"{name}-{i}".encode()
            sent[key] = time.perf_counter()
            await producer.send(settings.topic(topic_in), value=value, key=key, headers=headers)
    try:
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        receiver.cancel()
    await producer.stop()
    await consumer.stop()
    return latencies


def run_hops(
    bootstrap: str,
    workdir: Path,
    n: int,
    rate_hz: float,
    log=print,
    baseline: str | None = None,
    stagger: bool = True,
) -> dict:
    """The hop paths side by side; ``baseline``: a git ref whose runtime serves one more path,
    ``runtime_baseline``; ``stagger``: see ``_measure``."""
    import uuid

    prefix = f"bench-hop-{uuid.uuid4().hex[:6]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    asyncio.run(ensure_topics(settings, topics()))
    workdir.mkdir(parents=True, exist_ok=True)
    paths = dict(PATHS)
    servers = ["runtime", "runtime_serial", "echo"]
    baseline_dir = workdir / "baseline"
    commit = None
    if baseline is not None:
        commit = extract_baseline(baseline, baseline_dir)
        paths.update(BASELINE_PATH)
        servers.append("runtime_baseline")
    env = {
        "LISA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LISA_KAFKA_TOPIC_PREFIX": prefix,
        "OTEL_TRACES_EXPORTER": "none",
        "LISA_LOG_LEVEL": "WARNING",  # no log line per record: the hop, not the logging
        "OTEL_METRICS_EXPORTER": "none",
        "LISA_METRICS_PORT": "",
    }
    logs = {m: workdir / f"hop-{m}.log" for m in servers}
    procs = {m: _start(m, env, logs[m], baseline_dir) for m in logs}
    try:
        # WARNING hides "step started": wait for the runtime's group via a probe message instead
        _wait_log(procs["echo"], logs["echo"], "echo assigned")
        if commit is not None:
            _wait_log(procs["runtime_baseline"], logs["runtime_baseline"], "choreo from")
            served = logs["runtime_baseline"].read_text(errors="replace")
            if str(baseline_dir.resolve()) not in served:
                raise RuntimeError(f"the baseline path runs the working tree's runtime: {served}")
        asyncio.run(_warm_up(settings, paths))
        log(f"  hops: {n} messages per path at {rate_hz:g} Hz ({', '.join(paths)})")
        import psutil

        handles = {m: psutil.Process(p.pid) for m, p in procs.items()}
        cpu0 = {m: _cpu(h) for m, h in handles.items()}
        lat = asyncio.run(_measure(settings, n, rate_hz, paths, stagger))
        cpu = {m: 1e3 * (_cpu(h) - cpu0[m]) / n for m, h in handles.items()}
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    result = {name: percentiles([1e3 * v for v in values]) for name, values in lat.items()}
    result["cpu_ms_per_message"] = cpu
    result["n"] = n
    result["rate_hz"] = rate_hz
    result["staggered"] = stagger
    result["body_bytes"] = len(sample_event(0)[1])
    result["header_bytes"] = sum(len(k) + len(v) for k, v in sample_event(0)[2])
    result["samples_ms"] = {k: [round(1e3 * v, 3) for v in vs] for k, vs in lat.items()}
    if commit is not None:
        result["baseline_commit"] = commit
    return result


def _cpu(proc) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def _warm_up(settings: KafkaSettings, paths: dict, timeout_s: float = 120) -> None:
    """Three messages through each hop, so groups are joined and connections open."""
    lat = await asyncio.wait_for(_measure(settings, 3, 20.0, paths), timeout_s)
    if min(len(v) for v in lat.values()) < 3:
        raise RuntimeError(f"warm-up lost messages: { {k: len(v) for k, v in lat.items()} }")


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
