"""The main job: stack up, simulate a dataset with the verification binaries, every service as
its own process, ingest through the inbox, follow progress until the catalogue settles, and print
the catalogue beside the injected truth.

Each run gets its own topic prefix (``demo-<id>.``), store and products, so runs never mix.
"""

from __future__ import annotations

import asyncio
import csv
import shutil
import time
import uuid
from importlib import resources
from pathlib import Path

from choreo.settings import KafkaSettings, home
from choreo.topology import ensure_topics
from lisa_choreo.accounting import topic_offsets
from lisa_choreo.localstack import brokers, tracing_ui
from lisa_choreo.processes import ServiceProcess
from lisa_choreo.registry import topology
from lisa_choreo.simfile import DAY, simulate
from lisa_pipeline.topics import (
    CANDIDATES_GB,
    SEGMENTS_CONDITIONED,
    SEGMENTS_RAW,
    SOURCES_ESTIMATES,
)
from lisa_science.ldc import read_truth

SERVICES = ("ingest", "condition", "gb-search", "estimate", "catalog")
FLOW = (SEGMENTS_RAW, SEGMENTS_CONDITIONED, CANDIDATES_GB, SOURCES_ESTIMATES)


def reference_snr() -> dict[str, dict[str, float]]:
    """Optimal SNRs of the verification binaries (shared reference table, not our output)."""
    text = resources.files("lisa_science.data").joinpath("verification_snr_scird.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["name"]: {k: float(v) for k, v in r.items() if k != "name"} for r in rows}


def _sizes(kafka: KafkaSettings) -> dict[str, int]:
    begin, end = asyncio.run(topic_offsets(kafka, [*FLOW, *(t + ".dlq" for t in FLOW)]))
    sizes: dict[str, int] = {}
    for tp, last in end.items():
        name = tp.topic.removeprefix(kafka.topic_prefix)
        sizes[name] = sizes.get(name, 0) + last - begin[tp]
    return sizes


def _tracing_env(run_dir: Path, zipkin: tracing_ui.ZipkinServer | None) -> dict[str, str]:
    """Spans to Zipkin (and a JSON-lines copy, which keeps the catalogue's span links)."""
    env = {"LISA_OTEL_JSONL_PATH": str(run_dir / "spans.jsonl"), "OTEL_BSP_SCHEDULE_DELAY": "500"}
    if zipkin is None:
        return {**env, "OTEL_TRACES_EXPORTER": "jsonl"}
    zenv = tracing_ui.otel_env(zipkin.url)
    return {**env, **zenv, "OTEL_TRACES_EXPORTER": zenv["OTEL_TRACES_EXPORTER"] + ",jsonl"}


def main(days: int = 30, seed: int = 1, timeout_s: float = 900.0) -> int:
    from lisa_choreo.catalogue import format_catalogue, read_catalogue

    kafka = KafkaSettings()
    port = int(kafka.bootstrap_servers.rsplit(":", 1)[1])
    print(f"1. stack up: Kafka on {kafka.bootstrap_servers}, Zipkin for traces", flush=True)
    zipkin: tracing_ui.ZipkinServer | None = tracing_ui.ZipkinServer(
        tracing_ui.default_port()
    )
    try:
        tracing_ui.launch(zipkin)
        brokers.up([brokers.KafkaNode(port=port)])
        tracing_ui.wait_ready(zipkin)
    except brokers.StackError as exc:  # the pipeline still runs, without a tracing UI
        print(f"   no tracing UI ({exc}); spans go to a JSON-lines file")
        zipkin = None
    run_id = uuid.uuid4().hex[:6]
    run_dir = home() / "runs" / f"demo-{run_id}"
    kafka = kafka.model_copy(update={"topic_prefix": f"demo-{run_id}."})
    asyncio.run(ensure_topics(kafka, topology().all_topics()))
    env = {
        "LISA_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "LISA_STORE_URI": (run_dir / "store").as_uri(),
        "LISA_INGEST_INBOX": str(run_dir / "inbox"),
        "LISA_CATALOG_PRODUCTS_DIR": str(run_dir / "products"),
        **_tracing_env(run_dir, zipkin),
    }
    dataset = run_dir / f"lisa-vb-{days}d.h5"
    print(
        f"2. simulating {days} days at dt = 5 s with the 16 verification binaries ...", flush=True
    )
    t0 = time.monotonic()
    simulate(dataset, days * DAY, 5.0, "analytic", "verification", seed)
    print(f"   {dataset} ({dataset.stat().st_size / 1e6:.0f} MB, {time.monotonic() - t0:.0f} s)")
    services = [ServiceProcess(n, run_dir / "logs" / f"{n}.log", env) for n in SERVICES]
    print(f"3. starting {', '.join(SERVICES)}, each its own process (logs in {run_dir}/logs)")
    for svc in services:
        svc.start()
    try:
        for svc in services:
            svc.wait_ready(120)
        (run_dir / "inbox").mkdir(parents=True, exist_ok=True)
        shutil.copy(dataset, run_dir / "inbox" / f".{dataset.name}")
        (run_dir / "inbox" / f".{dataset.name}").rename(run_dir / "inbox" / dataset.name)
        print(
            "4. dropped the file in the ingest inbox; progress (raw, conditioned, candidates, "
            "estimates, dead letters):",
            flush=True,
        )
        settled = _follow(kafka, days, timeout_s)
        catalogue = _settled_catalogue(kafka, days, read_catalogue)
    finally:
        codes = {svc.name: svc.terminate() for svc in services}
    print("5. the catalogue:")
    print(format_catalogue(catalogue))
    print("   beside the injected truth (30-day optimal SNR from the reference table):")
    _compare(catalogue, read_truth(str(dataset)), days)
    print(f"6. products: {run_dir / 'products'} (catalog.csv, catalog.h5); store: {run_dir}/store")
    print(f"   services exited with {codes}; topics are prefixed '{kafka.topic_prefix}'")
    if catalogue and catalogue[0].contributing_segments:
        segment = catalogue[0].contributing_segments[0]
        print(
            f"   follow one segment: LISA_KAFKA_TOPIC_PREFIX={kafka.topic_prefix} "
            f"lisa-choreo trace {segment}"
        )
    if zipkin is not None:
        print(f"   traces in the UI: {zipkin.url}/zipkin/")
    print("   stop the stack with: lisa-choreo stack down")
    return 0 if settled and all(c == 0 for c in codes.values()) else 1


def _settled_catalogue(kafka: KafkaSettings, days: int, read, timeout_s: float = 30.0) -> list:
    """The catalogue once its sources have stacked every segment (the catalog service is the
    last hop: its updates land shortly after the last estimate)."""
    deadline = time.monotonic() + timeout_s
    catalogue = asyncio.run(read(kafka))
    while time.monotonic() < deadline and (
        not catalogue or min(s.n_segments for s in catalogue) < days
    ):
        time.sleep(0.5)
        catalogue = asyncio.run(read(kafka))
    return catalogue


def _follow(kafka: KafkaSettings, days: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        sizes = _sizes(kafka)
        counts = [sizes.get(t, 0) for t in FLOW]
        dead = sum(v for k, v in sizes.items() if k.endswith(".dlq"))
        # transaction markers occupy offsets in the raw topic: cap at the segment count
        counts[0] = min(counts[0], days)
        if counts != last:
            print(
                f"   {counts[0]:>4} {counts[1]:>4} {counts[2]:>4} {counts[3]:>4}   {dead}",
                flush=True,
            )
            last = counts
        if counts[3] + dead >= days:
            return True
        time.sleep(1)
    print("   timed out waiting for the flow to settle")
    return False


def _compare(catalogue: list, truth: list[dict], days: int) -> None:
    ref = reference_snr()

    def expected(f_hz: float) -> float | None:
        """The reference table names sources briefly: match them by frequency."""
        for row in ref.values():
            if abs(row["f_mHz"] * 1e-3 - f_hz) < 1e-6 and days == 30:
                return row["snr_30d"]
        return None

    bin_hz = 1 / DAY
    print(
        f"   {'injected':<26} {'f (mHz)':>8} {'found':>11} {'df (bins)':>10} {'SNR':>6} "
        f"{'expected':>9}"
    )
    for src in sorted(truth, key=lambda s: -(expected(s["f"]) or 0)):
        match = min(catalogue, key=lambda c: abs(c.frequency_hz - src["f"]), default=None)
        found = match is not None and abs(match.frequency_hz - src["f"]) <= bin_hz
        want = expected(src["f"])
        print(
            f"   {src['name'][:26]:<26} {src['f'] * 1e3:8.4f} "
            f"{(match.source_id if found else '-'):>11} "
            f"{((match.frequency_hz - src['f']) / bin_hz if found else float('nan')):10.2f} "
            f"{(match.stacked_snr if found else float('nan')):6.1f} "
            f"{(f'{want:.1f}' if want else '-'):>9}"
        )
    extra = [c for c in catalogue if all(abs(c.frequency_hz - s["f"]) > bin_hz for s in truth)]
    print(f"   catalogued sources not injected: {len(extra)}")
