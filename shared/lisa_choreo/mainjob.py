"""The main job on the user's own files: ``lisa-choreo process FILE...`` (and the demo, which is
``simulate`` followed by this).

One run:

1. **check** every file before anything starts (``lisa_services.ingest.files.plan_file``: the
   dataset and its layout, shape, regular monotonic time, finite values, enough data for one
   segment): a bad file stops the job at once, naming the file and the reason (exit 2), with
   nothing started and nothing to clean up;
2. **stack**: the configured Kafka cluster if it answers, else the local stack (Kafka, and Zipkin
   for the traces; the job goes on without a tracing UI if Zipkin cannot start);
3. **services**: ``condition``, ``gb-search``, ``estimate`` and ``catalog``, each its own process
   (``ServiceProcess``, ready when its ``/readyz`` says so), on a private topic prefix
   (``process-<id>.``), store, products folder and catalogue state, so runs never mix;
4. **ingest** through the ingest service's own publish path (``publish_file``: the segments of a
   file stored and published in one Kafka transaction), from this process. Not through the inbox
   watcher, because (a) the files were checked in step 1 and a refusal there is immediate and
   synchronous, where the inbox reports it later as a file in ``rejected/`` that the job would
   have to poll for while services run; (b) the user's files are read where they are, not copied
   (gigabytes) into an inbox and moved to ``done/``; (c) each file is validated once, and the job
   knows from the plans how many segments to expect, which gives progress its denominator.
   Spans of this ingest go where the services' go, so one segment's trace still starts here;
5. **follow** the stage counts on the topics (``lisa_choreo.progress``) until every segment is
   catalogued or dead-lettered; a service that dies, a failed ingest or no progress for
   ``stall_s`` ends the run as failed;
6. **stop** every service (SIGTERM, drain, commit; SIGKILL at the deadline) in a ``finally``:
   also on Ctrl-C and on failure;
7. **collect** the catalogue, the dead letters with their reasons and the pictures' data, draw
   the pictures beside the products, and say where the products, logs, traces and pictures are.

``<run dir>/run.json`` keeps what is needed to read the run again (topic prefix, bootstrap
servers, store URI, the catalogue's threshold): ``lisa-choreo plot RUN_DIR`` redraws the
pictures from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from rich.console import Console

from choreo import codec
from choreo.errors import DecodeError, PermanentError, TransientError
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings, home
from choreo.store import Store
from lisa_choreo import pictures
from lisa_choreo.localstack import brokers, tracing_ui
from lisa_choreo.processes import ServiceProcess
from lisa_choreo.progress import (
    CATALOG_CHANGELOG,
    LABELS,
    STAGE_TOPICS,
    Display,
    OffsetReader,
    Tracker,
    format_duration,
    task_bar,
)
from lisa_pipeline.events import (
    REFINED_FIELDS,
    CatalogSource,
    SegmentConditioned,
    SourceEstimates,
)
from lisa_pipeline.stages import CONSUMERS, SOURCE_STEPS, STAGES
from lisa_pipeline.topics import CATALOG, SOURCES_REFINED
from lisa_science.ldc import LDCFormatError
from lisa_science.stacking import StackState
from lisa_services.catalog.settings import CatalogSettings
from lisa_services.ingest.files import FilePlan, plan_file
from lisa_services.ingest.service import IngestSettings

SERVICES: tuple[str, ...] = (*CONSUMERS, *SOURCE_STEPS)
"""The services run as processes: every stage but ingest, which this process does itself, and
the per-source steps after the catalogue (refine)."""
DRAINS: tuple[tuple[str, str], ...] = (("refine", CATALOG), ("catalog", SOURCES_REFINED))
"""(service, topic) whose backlog the job waits out once every segment is catalogued: refine
fits the catalogue's last updates, then the catalogue writes the refined parameters into its
products."""
RUN_FILE = "run.json"
EXIT_REFUSED = 2


class FileRefused(Exception):
    """A file the job will not ingest: which one and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class JobFailed(RuntimeError):
    """The run could not finish (a service died, ingest failed, no progress)."""


class Sections:
    """Numbered headings (``1. stack up: ...``) and indented lines under them, on stdout."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, text: str) -> None:
        self.n += 1
        print(f"{self.n}. {text}", flush=True)

    @staticmethod
    def line(text: str) -> None:
        print(f"   {text}", flush=True)


# -- 1. check --------------------------------------------------------------------------------


def check_files(paths: Sequence[Path], segment_s: float | None = None) -> list[FilePlan]:
    """A plan (validated, cut into segments) per distinct file, in order; ``FileRefused`` for the
    first file that cannot be ingested. The same content given twice is planned once."""
    settings = IngestSettings()
    segment = segment_s or settings.segment_s
    if not segment > 0:
        raise FileRefused(Path("--segment-s"), f"must be > 0, got {segment}")
    plans: list[FilePlan] = []
    seen: dict[str, Path] = {}
    with task_bar(transient=True) as bar:
        task = bar.add_task("checking files", total=sum(_size(p) for p in paths) or 1)
        for path in paths:
            bar.update(task, description=f"checking {path.name}")
            if not path.exists():
                raise FileRefused(path, "no such file")
            if not path.is_file():
                raise FileRefused(path, "not a regular file")
            try:
                plan = plan_file(path, segment, settings.overlap_s)
            except LDCFormatError as exc:
                raise FileRefused(path, str(exc)) from None
            bar.advance(task, _size(path))
            if plan.sha256 in seen:
                Sections.line(f"{path}: same content as {seen[plan.sha256]}, ingested once")
                continue
            seen[plan.sha256] = path
            plans.append(plan)
    return plans


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def describe_plan(plan: FilePlan) -> str:
    days = plan.n_samples * plan.dt / 86_400
    return (
        f"{plan.path}: {plan.n_samples} samples at dt = {plan.dt:g} s ({days:.3g} days from "
        f"t0 = {plan.t0:g} s) -> {len(plan.bounds)} segment(s)"
    )


# -- 2. stack --------------------------------------------------------------------------------


def _secure_files():
    from lisa_choreo.security import credentials

    return credentials.SecureFiles(credentials.secure_dir())


def is_secure(kafka: KafkaSettings) -> bool:
    return brokers.formatted_secure(int(kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)[1]))


def stack_up(kafka: KafkaSettings) -> tracing_ui.ZipkinServer | None:
    """The cluster ``kafka`` names if it answers, else the local stack started; Zipkin if it
    answers or can start (None: spans go to a JSON-lines file only)."""
    zipkin: tracing_ui.ZipkinServer | None = tracing_ui.ZipkinServer(tracing_ui.default_port())
    try:
        tracing_ui.launch(zipkin)  # starts in the background while Kafka comes up
    except brokers.StackError as exc:
        Sections.line(f"no tracing UI ({exc}); spans go to a JSON-lines file")
        zipkin = None
    port = int(kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    if brokers.formatted_secure(port):  # `stack up --secure` made this home's stack
        node = brokers.KafkaNode(port=port, secure=True)
        kafka = node.admin_settings()
    else:
        node = brokers.KafkaNode(port=port)
    if asyncio.run(brokers.probe(kafka.bootstrap_servers, 5.0, kafka)) is None:
        brokers.up([node])
    if zipkin is not None:
        try:
            tracing_ui.wait_ready(zipkin)
        except brokers.StackError as exc:
            Sections.line(f"no tracing UI ({exc}); spans go to a JSON-lines file")
            zipkin = None
    return zipkin


# -- the run and its record ------------------------------------------------------------------


def run_store_uri(run_dir: Path, name: str) -> str:
    """A run's own store, so runs never mix: ``<run_dir>/store``, or with ``LISA_STORE_URI`` on
    an object store (``s3://bucket/prefix``), the run's sub-prefix ``<prefix>/runs/<name>``."""
    root = os.environ.get("LISA_STORE_URI", "")
    if root.startswith("s3://"):
        return f"{Store(root).uri}/runs/{name}"
    return (run_dir / "store").as_uri()


@dataclass
class Run:
    """One run: where it lives and how to read it again (``run.json``)."""

    run_id: str
    kind: str
    run_dir: Path
    topic_prefix: str
    bootstrap_servers: str
    store_uri: str
    catalog_fap: float
    merge_bins: int
    zipkin_url: str | None = None
    secure: bool = False
    """The cluster runs ``stack up --secure``: every process uses its own principal."""
    segment_s: float = 86_400.0
    files: list[dict[str, Any]] = field(default_factory=list)
    expected: int = 0
    truth_hz: list[float] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    outcome: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, kind: str, out: Path | None = None) -> Run:
        run_id = uuid.uuid4().hex[:6]
        run_dir = (out or home() / "runs" / f"{kind}-{run_id}").resolve()
        catalog = CatalogSettings()
        return cls(
            run_id=run_id,
            kind=kind,
            run_dir=run_dir,
            topic_prefix=f"{kind}-{run_id}.",
            bootstrap_servers=KafkaSettings().bootstrap_servers,
            store_uri=run_store_uri(run_dir, f"{kind}-{run_id}"),
            catalog_fap=catalog.fap,
            merge_bins=catalog.merge_bins,
            secure=is_secure(KafkaSettings()),
        )

    @property
    def products_dir(self) -> Path:
        return self.run_dir / "products"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def spans_path(self) -> Path:
        return self.run_dir / "spans.jsonl"

    def kafka(self, principal: str = "operator") -> KafkaSettings:
        """Client settings on this run's cluster and topic prefix: on a secure stack those of
        ``principal`` (the read-only operator for the tools, ``ingest`` to publish, ``admin`` to
        create topics and ACLs); else the environment's."""
        if self.secure:
            return _secure_files().client_settings(
                principal, self.bootstrap_servers, self.topic_prefix
            )
        return KafkaSettings().model_copy(
            update={"bootstrap_servers": self.bootstrap_servers, "topic_prefix": self.topic_prefix}
        )

    def store(self) -> Store:
        return Store(self.store_uri)

    def tracing_env(self) -> dict[str, str]:
        """Spans to Zipkin when there is one, and always a JSON-lines copy in the run folder
        (it keeps the catalogue's span links, and the queue waits the pictures show)."""
        env = {"LISA_OTEL_JSONL_PATH": str(self.spans_path), "OTEL_BSP_SCHEDULE_DELAY": "500"}
        if self.zipkin_url is None:
            return {**env, "OTEL_TRACES_EXPORTER": "jsonl"}
        zenv = tracing_ui.otel_env(self.zipkin_url)
        return {**env, **zenv, "OTEL_TRACES_EXPORTER": zenv["OTEL_TRACES_EXPORTER"] + ",jsonl"}

    def service_env(self, service: str) -> dict[str, str]:
        """A service's environment: on a secure stack its own principal, whose password file
        it reads (never a password in an environment listing)."""
        credentials = (
            _secure_files().client_env(service, self.bootstrap_servers, self.topic_prefix)
            if self.secure
            else {}
        )
        return {
            **credentials,
            "LISA_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "LISA_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "LISA_STORE_URI": self.store_uri,
            "LISA_CATALOG_PRODUCTS_DIR": str(self.products_dir),
            "LISA_CATALOG_DATA_DIR": str(self.run_dir / "catalog-state"),
            "LISA_CATALOG_FAP": repr(self.catalog_fap),
            "LISA_CATALOG_MERGE_BINS": str(self.merge_bins),
            **self.tracing_env(),
        }

    def save(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {**asdict(self), "run_dir": str(self.run_dir)}
        path = self.run_dir / RUN_FILE
        tmp = path.with_name(f".{RUN_FILE}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Run:
        """A past run from its ``run.json``; ``FileNotFoundError``/``ValueError`` if unreadable."""
        path = run_dir / RUN_FILE
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"{path}: not a run record")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in record.items() if k in known}
        values["run_dir"] = run_dir.resolve()
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None


@dataclass
class JobResult:
    run: Run
    settled: bool = False
    failure: str | None = None
    elapsed_s: float = 0.0
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    catalogue: list[CatalogSource] = field(default_factory=list)
    dead_letters: list[Any] = field(default_factory=list)
    pictures: list[pictures.Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0: every segment catalogued and every service stopped cleanly; 1 otherwise (a
        failure, a time-out, dead letters)."""
        clean = all(c == 0 for c in self.exit_codes.values())
        return 0 if self.settled and not self.dead_letters and clean else 1


# -- 3-6. services, ingest, follow, stop ------------------------------------------------------


def execute(
    run: Run,
    plans: Sequence[FilePlan],
    say: Sections,
    stall_s: float = 600.0,
    console: Console | None = None,
) -> JobResult:
    """Services up, ingest, follow until settled, services down (always), then collect."""
    from choreo.topology import ensure_topics
    from lisa_choreo.registry import topology

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the run reports its failures
    run.files = [
        {"path": str(p.path), "sha256": p.sha256, "segments": len(p.bounds), "dt": p.dt}
        for p in plans
    ]
    run.expected = sum(len(p.bounds) for p in plans)
    run.save()
    deployment = topology()
    asyncio.run(ensure_topics(run.kafka("admin"), deployment.all_topics()))
    if run.secure:  # this run's prefix gets the ACLs its declarations imply, nothing more
        from lisa_choreo.security import acl_admin, acls

        asyncio.run(
            acl_admin.create_acls(run.kafka("admin"), acls.derive(deployment, run.topic_prefix))
        )
    services = [ServiceProcess(n, run.logs_dir / f"{n}.log", run.service_env(n)) for n in SERVICES]
    result = JobResult(run)
    say(f"starting {', '.join(SERVICES)}, each its own process (logs in {run.logs_dir})")
    t0 = time.monotonic()
    try:
        for svc in services:
            svc.start()
        for svc in services:
            svc.wait_ready(120)
        names = ", ".join(Path(f["path"]).name for f in run.files)
        say(
            f"ingesting {names} ({run.expected} segment(s)) on topics '{run.topic_prefix}*'; "
            "progress:"
        )
        display = Display(console or Console(), live=None)
        asyncio.run(_ingest_and_follow(run, plans, run.kafka(), services, display, stall_s))
        Sections.line("every segment catalogued; waiting for refine and the products to settle")
        asyncio.run(_drain(run.kafka(), services, stall_s))
        result.settled = True
    except JobFailed as exc:
        result.failure = str(exc)
        Sections.line(f"FAILED: {exc}")
    except (RuntimeError, TimeoutError) as exc:  # a service that would not start
        result.failure = str(exc)
        Sections.line(f"FAILED: {exc}")
    except KeyboardInterrupt:
        Sections.line("interrupted: stopping the services")
        raise
    finally:
        result.exit_codes = {svc.name: svc.terminate() for svc in services}
        result.elapsed_s = time.monotonic() - t0
        run.outcome = {
            "settled": result.settled,
            "failure": result.failure,
            "exit_codes": result.exit_codes,
            "elapsed_s": round(result.elapsed_s, 1),
        }
        run.save()
    _collect_results(run, result)
    return result


async def _publish_all(plans: Sequence[FilePlan], run: Run, kafka: KafkaSettings) -> None:
    from lisa_services.ingest.publish import publish_file

    overlap = IngestSettings().overlap_s
    store = run.store()
    for plan in plans:
        # force: this run's topics are new, whatever an earlier run into the same folder did
        await publish_file(plan, store, kafka, overlap, force=True)


def _configure_ingest_tracing(run: Run):
    """This process publishes as the ``ingest`` service: its spans go where the services' go."""
    from choreo.tracing import configure_tracing

    os.environ.update(run.tracing_env())
    return configure_tracing("ingest")


async def _ingest_and_follow(
    run: Run,
    plans: Sequence[FilePlan],
    kafka: KafkaSettings,
    services: Sequence[ServiceProcess],
    display: Display,
    stall_s: float,
    poll_s: float = 1.0,
) -> None:
    provider = _configure_ingest_tracing(run)
    tracker = Tracker(run.expected, started=time.monotonic())
    ingest = asyncio.create_task(_publish_all(plans, run, run.kafka("ingest")))
    try:
        async with OffsetReader(kafka) as reader:
            with display:
                while True:
                    tracker.update(await reader.counts(run.expected))
                    display.update(tracker)
                    if ingest.done() and ingest.exception() is not None:
                        exc = ingest.exception()
                        raise JobFailed(f"ingest failed: {type(exc).__name__}: {exc}")
                    if tracker.done:
                        break
                    if dead := [s for s in services if not s.alive]:
                        svc = dead[0]
                        code = svc.proc.returncode if svc.proc else None
                        raise JobFailed(f"{svc.name} exited ({code}); see {svc.log_path}")
                    if tracker.idle_s > stall_s:
                        raise JobFailed(
                            f"no progress for {format_duration(tracker.idle_s)} "
                            f"({tracker.now.finished}/{run.expected} segments through)"
                        )
                    await asyncio.sleep(poll_s)
    finally:
        if not ingest.done():
            ingest.cancel()
        with contextlib.suppress(BaseException):
            await ingest
        provider.force_flush(5000)


async def _drain(
    kafka: KafkaSettings,
    services: Sequence[ServiceProcess],
    stall_s: float,
    poll_s: float = 1.0,
    settle_polls: int = 2,
) -> None:
    """Wait until each service of ``DRAINS`` has committed its topic to the end, the same for
    ``settle_polls`` polls in a row (what refine publishes moves the catalogue's end); fail if
    a service dies or nothing moves for ``stall_s``."""
    from aiokafka.admin import AIOKafkaAdminClient

    from lisa_choreo.accounting import topic_offsets

    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        last, changed, settled = None, time.monotonic(), 0
        while True:
            if dead := [s for s in services if not s.alive]:
                raise JobFailed(f"{dead[0].name} exited; see {dead[0].log_path}")
            lags = []
            for service, topic in DRAINS:
                _, end = await topic_offsets(kafka, [topic])
                committed = await admin.list_consumer_group_offsets(kafka.topic(service))
                for tp, last_offset in end.items():
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lags.append(max(0, last_offset - done))
            state = (tuple(lags),)
            if state != last:
                last, changed = state, time.monotonic()
            settled = settled + 1 if not any(lags) else 0
            if settled >= settle_polls:
                return
            if time.monotonic() - changed > stall_s:
                raise JobFailed(f"refine made no progress for {format_duration(stall_s)}")
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()


# -- 7. collect ------------------------------------------------------------------------------


def _collect_results(run: Run, result: JobResult) -> None:
    from lisa_choreo.catalogue import read_catalogue
    from lisa_choreo.dlq_admin import read_dead_letters

    kafka = run.kafka()
    try:
        result.catalogue = asyncio.run(read_catalogue(kafka))
    except LookupError as exc:
        result.notes.append(f"catalogue unreadable: {exc}")
    result.dead_letters = asyncio.run(read_dead_letters(kafka))
    try:
        data = collect(run)
        result.pictures = pictures.draw_all(data, run.products_dir)
    except Exception as exc:  # pictures are a bonus: never lose the run's answer over them
        result.notes.append(f"pictures not drawn: {type(exc).__name__}: {exc}")
    run.outcome.update(
        {
            "sources": len(result.catalogue),
            "dead_letters": len(result.dead_letters),
            "pictures": [str(p.path) for p in result.pictures],
        }
    )
    run.save()


async def _snapshot(kafka: KafkaSettings, topic: str) -> list[Any]:
    try:
        async with TopicReader(kafka, [topic]) as reader:
            return await reader.snapshot()
    except LookupError:
        return []


def _decode(record: Any, model: type) -> Any | None:
    try:
        return codec.decode(record.key, record.value, record.headers, {model.ce_type: model}).data
    except DecodeError:
        return None


def _subject(record: Any) -> str | None:
    return codec.header_map(record.headers).get("ce_subject")


def _first_times(records: Sequence[Any], key: Callable[[Any], str | None]) -> dict[str, int]:
    """Segment id -> the earliest record timestamp (ms) among its records (a redelivered
    duplicate comes later)."""
    out: dict[str, int] = {}
    for r in records:
        k = key(r)
        if k and r.timestamp is not None and r.timestamp >= 0:
            out[k] = min(out.get(k, r.timestamp), r.timestamp)
    return out


def _changelog_segment(record: Any) -> str | None:
    """The segment a changelog record added: the last of the value's ``segments``."""
    try:
        value = json.loads(record.value)
        return str(value["segments"][-1]) if value.get("segments") else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def queue_waits(spans_path: Path, kafka: KafkaSettings) -> dict[str, list[float]]:
    """Stage label -> the ``lisa.queue_wait_ms`` of each consumer span of that stage's service on
    its input topic (the catalog's internal by-grid hop is left out)."""
    wanted = {
        f"process {kafka.topic(s.consumes)}": s.reached for s in STAGES if s.consumes is not None
    }
    out: dict[str, list[float]] = {s.reached: [] for s in STAGES if s.consumes is not None}
    try:
        lines = spans_path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            span = json.loads(line)
            label = wanted.get(span["name"])
            wait = span["attributes"].get("lisa.queue_wait_ms")
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if label is not None and isinstance(wait, int | float):
            out[label].append(float(wait))
    return out


def hop_latencies(times: dict[str, dict[str, int]]) -> dict[str, list[float]]:
    """Stage label -> per segment, its record timestamp minus the previous stage's (ms)."""
    out: dict[str, list[float]] = {}
    for prev, label in itertools.pairwise(LABELS):
        before, after = times.get(prev, {}), times.get(label, {})
        out[label] = [float(after[s] - before[s]) for s in after if s in before]
    return out


def read_catalog_h5(path: Path) -> list[CatalogSource]:
    """The catalogue product the catalog service writes (``catalog.h5``): one source per row."""
    with h5py.File(path, "r") as f:
        cols = {name: f[name][()] for name in f}
    out = []
    for i in range(len(cols.get("source_id", []))):
        amplitude = float(cols["mean_amplitude"][i])
        out.append(
            CatalogSource(
                source_id=cols["source_id"][i].decode(),
                frequency_hz=float(cols["frequency_hz"][i]),
                frequency_bin=int(cols["frequency_bin"][i]),
                sigma_frequency_hz=float(cols["sigma_frequency_hz"][i]),
                stacked_statistic=float(cols["stacked_statistic"][i]),
                stacked_snr=float(cols["stacked_snr"][i]),
                fap=float(cols["fap"][i]),
                n_segments=int(cols["n_segments"][i]),
                n_estimates=int(cols["n_estimates"][i]),
                mean_amplitude=None if np.isnan(amplitude) else amplitude,
                **{  # the refine step's columns, where the product has them
                    name: float(cols[name][i])
                    for name in REFINED_FIELDS
                    if name in cols and np.isfinite(cols[name][i])
                },
            )
        )
    return out


def collect(run: Run) -> pictures.RunData:
    """What the pictures show, read again from the run's topics, store, products and spans."""
    return asyncio.run(_collect(run))


async def _collect(run: Run) -> pictures.RunData:
    kafka = run.kafka()
    records = {label: await _snapshot(kafka, topic) for label, topic in STAGE_TOPICS.items()}
    times = {
        label: _first_times(
            recs, _changelog_segment if STAGE_TOPICS[label] == CATALOG_CHANGELOG else _subject
        )
        for label, recs in records.items()
    }
    quality: dict[str, pictures.SegmentQuality] = {}
    for r in records["conditioned"]:
        ev = _decode(r, SegmentConditioned)
        if ev is None or ev.timing.segment_id in quality:
            continue
        quality[ev.timing.segment_id] = pictures.SegmentQuality(
            segment_id=ev.timing.segment_id,
            t0=ev.timing.t0,
            duration_s=ev.timing.duration,
            ratios=tuple(
                pictures.BandRatio(b.channel, b.fmin_hz, b.fmax_hz, b.ratio)
                for b in ev.psd_model_ratio
            ),
            gap_samples=ev.gap_samples,
            glitch_samples=ev.glitch_samples,
            usable_fraction=ev.usable_fraction,
        )
    stacks = await asyncio.to_thread(_stacks, records["estimated"], run.store())
    catalog_h5 = run.products_dir / "catalog.h5"
    if catalog_h5.exists():
        sources: list[CatalogSource] = read_catalog_h5(catalog_h5)
    else:
        from lisa_choreo.catalogue import read_catalogue

        sources = await read_catalogue(kafka)
    return pictures.RunData(
        stacks=stacks,
        sources=sources,
        fap=run.catalog_fap,
        merge_bins=run.merge_bins,
        truth_hz=run.truth_hz,
        quality=list(quality.values()),
        hop_ms=hop_latencies(times),
        queue_wait_ms=queue_waits(run.spans_path, kafka),
        title=f"{run.kind}-{run.run_id}",
    )


def _stacks(estimates: Sequence[Any], store: Store) -> list[pictures.Stack]:
    """The stacked statistic per frequency grid, summed again from every segment's statistic in
    the store (``SourceEstimates.statistic``), each segment once, as the catalogue stacks it."""
    grids: dict[tuple, dict[str, Any]] = {}
    for r in estimates:
        ev = _decode(r, SourceEstimates)
        if ev is None:
            continue
        key = (ev.timing.dt, ev.timing.n_samples, tuple(ev.statistic.shapes.get("f", [])))
        grid = grids.setdefault(key, {"segments": set(), "state": None, "f": None, "n": 0})
        if ev.timing.segment_id in grid["segments"]:
            continue
        try:
            arrays = store.get(ev.statistic, ["f", "stat"])
        except (PermanentError, TransientError):
            continue  # gone from the store: the picture shows the rest
        if grid["state"] is None:
            grid["state"] = StackState.empty(arrays["f"].size)
            grid["f"] = np.asarray(arrays["f"], dtype=np.float64)
            grid["n"] = ev.n_independent_bins
        grid["state"] = grid["state"].add(arrays["stat"])
        grid["segments"].add(ev.timing.segment_id)
    out = []
    for (dt, n, _), grid in sorted(grids.items(), key=lambda kv: -len(kv[1]["segments"])):
        if grid["state"] is None:
            continue
        out.append(
            pictures.Stack(
                f=grid["f"],
                total=grid["state"].total,
                count=grid["state"].count,
                n_independent_bins=grid["n"],
                segments=len(grid["segments"]),
                label=f"{n * dt / 3600:g} h segments at dt = {dt:g} s",
            )
        )
    return out


# -- the answer ------------------------------------------------------------------------------


def print_catalogue(result: JobResult, say: Sections) -> None:
    from lisa_choreo.catalogue import format_catalogue, format_refined

    say("the catalogue:")
    print(format_catalogue(result.catalogue), flush=True)
    print("   physical parameters (refine: coherent fit over each source's segments):")
    print(format_refined(result.catalogue), flush=True)


def print_outcome(result: JobResult, say: Sections) -> None:
    """Dead letters with their reasons; where the products, pictures, logs and traces are."""
    from lisa_choreo.records import printable

    run = result.run
    if result.dead_letters:
        say(f"dead letters: {len(result.dead_letters)}")
        for d in result.dead_letters:
            s = d.summary()
            Sections.line(
                printable(
                    f"{s['ref']:<40} {s['subject'] or s['event_id']:<24} {s['reason']:<18} "
                    f"{s['service']:<10} {s['error'][:100]}"
                )
            )
        Sections.line(
            f"replay after a fix: LISA_KAFKA_TOPIC_PREFIX={run.topic_prefix} "
            "lisa-choreo dlq replay --reason REASON"
        )
    else:
        say("dead letters: none")
    say("products, pictures, logs and traces:")
    Sections.line(f"products: {run.products_dir} (catalog.csv, catalog.h5); store: {run.store_uri}")
    for p in result.pictures:
        Sections.line(f"picture: {p.path}  ({p.what})")
    for note in result.notes:
        Sections.line(note)
    Sections.line(f"logs: {run.logs_dir} ({', '.join(f'{n}.log' for n in SERVICES)})")
    if run.zipkin_url:
        Sections.line(f"traces: {run.zipkin_url}/zipkin/ (and {run.spans_path})")
    else:
        Sections.line(f"traces: {run.spans_path}")
    segment = next((s for c in result.catalogue for s in c.contributing_segments), None)
    if segment:
        Sections.line(
            f"follow one segment: LISA_KAFKA_TOPIC_PREFIX={run.topic_prefix} "
            f"lisa-choreo trace {segment}"
        )
    Sections.line(
        f"run record: {run.run_dir / RUN_FILE} (redraw the pictures: lisa-choreo plot "
        f"{run.run_dir})"
    )
    Sections.line(
        f"took {format_duration(result.elapsed_s)}; services exited with {result.exit_codes}; "
        f"topics are prefixed '{run.topic_prefix}'"
    )
    if result.failure:
        Sections.line(f"the run FAILED: {result.failure}")
    Sections.line("the stack keeps running; stop it with: lisa-choreo stack down")


# -- the command -----------------------------------------------------------------------------


def main(
    files: Sequence[Path],
    segment_s: float | None = None,
    out: Path | None = None,
    stall_s: float = 600.0,
) -> int:
    """``lisa-choreo process``: exit 0 when every segment was catalogued, 1 when the run failed
    or dead-lettered something, 2 when a file was refused (nothing started)."""
    import sys

    from lisa_choreo.records import printable

    say = Sections()
    say(f"checking {len(files)} file(s)")
    try:
        plans = check_files(files, segment_s)
    except FileRefused as exc:
        print(printable(f"lisa-choreo: refused {exc.path}: {exc.reason}"), file=sys.stderr)
        print("   nothing was started", flush=True)
        return EXIT_REFUSED
    for plan in plans:
        Sections.line(describe_plan(plan))
    kafka = KafkaSettings()
    say(f"stack up: Kafka on {kafka.bootstrap_servers}, Zipkin for traces")
    zipkin = stack_up(kafka)
    run = Run.new("process", out)
    run.zipkin_url = zipkin.url if zipkin else None
    run.segment_s = segment_s or IngestSettings().segment_s
    Sections.line(f"run folder: {run.run_dir}")
    result = execute(run, plans, say, stall_s)
    print_catalogue(result, say)
    print_outcome(result, say)
    return result.exit_code
