"""The pipeline's services as separate processes on a private topic prefix, watched from outside.

A ``Fleet`` starts steps with ``lisa_choreo.processes.ServiceProcess`` (``lisa-choreo run``, as
the demo and the tests do), samples every process's RSS and CPU time with psutil, and reads the
services' own JSON log lines (``processed`` from the step runner, ``segment stacked`` from the
catalogue) to time each input through each step.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from choreo.logs import read_log_events
from choreo.settings import KafkaSettings
from choreo.topology import TopicSpec, ensure_topics
from lisa_choreo.processes import ServiceProcess

PIPELINE_STEPS = ("condition", "gb-search", "estimate", "catalog")


def log_events(path: Path, event: str | None = None) -> list[dict]:
    """The JSON lines of a service log (those named ``event`` only), with ``t`` in epoch s."""
    out = read_log_events(path, event)
    for rec in out:
        if "timestamp" in rec:
            rec["t"] = datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
    return out


@dataclass
class ProcStats:
    name: str
    pid: int
    peak_rss: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0

    @property
    def cpu_s(self) -> float:
        return max(self.cpu_end - self.cpu_start, 0.0)


class Sampler:
    """Samples RSS of the given processes every ``period_s`` in a thread."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.stats: dict[str, ProcStats] = {}
        self._procs: dict[str, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0 = self.t1 = time.time()
        self.busy = [0.0, 0.0]
        self.self_cpu = [0.0, 0.0]

    def watch(self, name: str, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return
        self._procs[name] = proc
        self.stats[name] = ProcStats(name, pid)

    def _cpu(self, proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    @staticmethod
    def _busy() -> float:
        """CPU seconds the whole machine (every core, every tenant) spent busy so far."""
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    def machine(self) -> dict:
        """How busy the machine was between the marks, and how much of it was not ours
        (the watched processes and this one): a shared 2-core machine gives what it has left."""
        wall = max(self.t1 - self.t0, 1e-9)
        ours = sum(st.cpu_s for st in self.stats.values()) + (self.self_cpu[1] - self.self_cpu[0])
        busy = self.busy[1] - self.busy[0]
        return {
            "cores": psutil.cpu_count(),
            "busy_cores": busy / wall,
            "our_cores": ours / wall,
            "others_cores": max(busy - ours, 0.0) / wall,
        }

    def mark_start(self) -> None:
        """CPU counted from now (start-up excluded) and RSS peaks reset."""
        self.t0 = time.time()
        self.busy = [self._busy(), 0.0]
        self.self_cpu = [time.process_time(), 0.0]
        for name, proc in self._procs.items():
            self.stats[name].cpu_start = self._cpu(proc)
            self.stats[name].peak_rss = 0
            self.stats[name].rss_samples.clear()

    def mark_end(self) -> None:
        self.t1 = time.time()
        self.busy[1] = self._busy()
        self.self_cpu[1] = time.process_time()
        for name, proc in self._procs.items():
            self.stats[name].cpu_end = self._cpu(proc)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for name, proc in list(self._procs.items()):
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                st = self.stats[name]
                st.peak_rss = max(st.peak_rss, rss)
                st.rss_samples.append((now - self.t0, rss))
            self._stop.wait(self.period_s)

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def tracing_env(mode: str, zipkin_spans_url: str | None) -> dict[str, str]:
    if mode == "none":
        return {"OTEL_TRACES_EXPORTER": "none"}
    if mode == "zipkin":
        assert zipkin_spans_url, "zipkin tracing needs the spans endpoint"
        return {
            "OTEL_TRACES_EXPORTER": "zipkin_json",
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin_spans_url,
        }
    raise ValueError(mode)


class Fleet:
    """Services of one benchmark case: own topic prefix, own LISA_CHOREO_HOME, a shared store."""

    def __init__(
        self,
        bootstrap: str,
        workdir: Path,
        name: str,
        store_uri: str,
        tracing: str = "none",
        zipkin_spans_url: str | None = None,
        prefix: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.prefix = prefix or f"bench-{name}-{uuid.uuid4().hex[:6]}."
        self.settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=self.prefix)
        self.dir = workdir / f"{name}-{uuid.uuid4().hex[:4]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_uri = store_uri
        self.env = {
            "LISA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LISA_KAFKA_TOPIC_PREFIX": self.prefix,
            "LISA_STORE_URI": store_uri,
            "LISA_CHOREO_HOME": str(self.dir / "home"),
            "LISA_LOG_LEVEL": "INFO",  # the runner's "processed" lines time each step
            "OTEL_METRICS_EXPORTER": "none",
            "LISA_METRICS_PORT": "",  # replicas would fight over one scrape port
            **tracing_env(tracing, zipkin_spans_url),
            **(env or {}),
        }
        self.procs: dict[str, ServiceProcess] = {}
        self.sampler = Sampler()

    def create_topics(self, specs: list[TopicSpec] | None = None) -> None:
        if specs is None:
            from lisa_choreo.registry import topology

            specs = topology().all_topics()
        asyncio.run(ensure_topics(self.settings, specs))

    def start(
        self,
        services: tuple[str, ...] = PIPELINE_STEPS,
        replicas: int | dict[str, int] = 1,
        **env: str,
    ) -> Fleet:
        """Start the services (``replicas`` of each, or per name) and wait until each is up."""
        started = []
        for name in services:
            count = replicas if isinstance(replicas, int) else replicas.get(name, 1)
            for r in range(count):
                key = name if count == 1 else f"{name}#{r}"
                proc = ServiceProcess(name, self.dir / f"{key}.log", {**self.env, **env})
                self.procs[key] = proc.start()
                started.append(proc)
        for proc in started:
            proc.wait_ready(240)
        for key, proc in self.procs.items():
            if proc.proc is not None and key not in self.sampler.stats:
                self.sampler.watch(key, proc.proc.pid)
        if self.sampler._thread is None:
            self.sampler.start()
        return self

    def log(self, key: str) -> Path:
        return self.procs[key].log_path

    def stacked(self) -> dict[str, float]:
        """segment id -> when the catalogue logged it stacked (epoch s)."""
        return {r["segment_id"]: r["t"] for r in log_events(self.log("catalog"), "segment stacked")}

    def processed(self, key: str) -> list[dict]:
        return log_events(self.log(key), "processed")

    def wait_stacked(self, ids: set[str], timeout_s: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while True:
            done = self.stacked()
            if ids <= done.keys():
                return {k: done[k] for k in ids}
            for key, proc in self.procs.items():
                if not proc.alive:
                    raise RuntimeError(f"{key} exited; see {proc.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: {len(ids & done.keys())}/{len(ids)} segments stacked "
                    f"after {timeout_s:.0f} s; logs in {self.dir}"
                )
            time.sleep(0.2)

    def wait_processed(self, key_prefix: str, subjects: set[str], timeout_s: float) -> list[dict]:
        """The ``processed`` lines of every replica whose key starts with ``key_prefix``, once
        every subject (segment id) has one (a rebalance may process some twice)."""
        deadline = time.monotonic() + timeout_s
        count = len(subjects)
        while True:
            lines = [
                dict(r, replica=k)
                for k in self.procs
                if k.split("#")[0] == key_prefix
                for r in self.processed(k)
            ]
            if subjects <= {r.get("subject") for r in lines}:
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: {len(lines)}/{count} processed by {key_prefix} "
                    f"after {timeout_s:.0f} s; logs in {self.dir}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self.sampler.stop()
        for proc in self.procs.values():
            proc.terminate(timeout_s=30)


def step_timing(lines: list[dict]) -> dict:
    """Throughput of one step from its ``processed`` lines (each carries its handling ``ms``)."""
    if not lines:
        return {"events": 0}
    ends = sorted(r["t"] for r in lines)
    first_start = min(r["t"] - r.get("ms", 0.0) / 1e3 for r in lines)
    busy_ms = sum(r.get("ms", 0.0) for r in lines)
    span = max(ends[-1] - first_start, 1e-9)
    return {
        "events": len(lines),
        "span_s": span,
        "events_per_s": len(lines) / span,
        "handler_ms_mean": busy_ms / len(lines),
        "handler_capacity_per_s": len(lines) / (busy_ms / 1e3) if busy_ms else None,
    }
