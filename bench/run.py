"""``python -m bench.run [--smoke] [--out bench/results]``: every measurement, side by side.

Sections (keys of the JSON report):

- ``kernel``: the search kernel's time per one-day segment against numpy's FFT floor;
- ``in_process``: the pipeline's kernels in one process (no broker), per step, against the
  chain's FFT floor (the kernel section's);
- ``hop``: produce -> consume latency of one runtime hop beside plain aiokafka;
- ``choreography_vs_in_process``: the same kernels on the same data, (a) sequentially in one
  process without Kafka, (b) through every service as its own process on the broker;
- ``catalogue_growth``: the catalogue's CPU per segment and RSS from 35 to 3650 segments, alone;
- ``end_to_end``: raw segment published -> catalogue updated, at a steady input rate;
- ``tracing``: throughput with spans exported to Zipkin against tracing disabled;
- ``scaling``: the slowest step with 1 and 2 replicas; throughput and peak RSS per service as the
  dataset grows;
- ``recovery``: SIGKILL of each step -> first input processed by its replacement, SIGTERM of one
  of two replicas -> first input processed by the other, before and after static membership;
- ``study``: the same steps under Temporal and over Kafka, side by side (``bench/study.py``).

The broker is ``LISA_KAFKA_BOOTSTRAP_SERVERS`` (started with ``lisa_choreo.localstack.brokers`` on
that port when nothing answers, stopped at the end); Zipkin is ``--zipkin-url``
(``LISA_ZIPKIN_URL``), started likewise. Neither is probed or started when only sections that
need no broker run (``LOCAL_SECTIONS``), nor Zipkin without the tracing section. Every case runs
on its own topic prefix, so a shared broker is not disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from bench.fleet import PIPELINE_STEPS
from bench.report import Row, plots, table, write_json

SECTIONS = (
    "kernel",
    "in_process",
    "hop",
    "choreography_vs_in_process",
    "catalogue_growth",
    "end_to_end",
    "tracing",
    "scaling",
    "recovery",
    "study",
)


LOCAL_SECTIONS = frozenset({"kernel", "in_process", "catalogue_growth"})
"""Sections that need neither the broker nor Zipkin: run alone, they start neither."""
ZIPKIN_SECTIONS = frozenset({"tracing"})


class Config:
    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.sizes = (3, 6) if smoke else (30, 365)
        self.hop_messages, self.hop_rate_hz = (200, 100.0) if smoke else (2000, 50.0)
        self.e2e_segments, self.e2e_interval_s = (4, 0.5) if smoke else (60, 0.5)
        self.tracing_days, self.tracing_reps = (3, 1) if smoke else (60, 2)
        self.scaling_backlog = 6 if smoke else 120
        self.kernel_rounds = 3 if smoke else 15
        self.growth_segments = 40 if smoke else 3650  # the catalogue alone: ten years, daily
        # smoke: the defaults only, one step, one round (the former configuration waits 30 s)
        self.recovery_modes = ("after",) if smoke else ("before", "after")
        self.recovery_steps = ("condition",) if smoke else PIPELINE_STEPS
        self.recovery_rounds = 1 if smoke else 2
        self.hop_baseline: str | None = None  # a git ref whose runtime is measured beside
        self.hop_stagger = True  # the paths' messages at distinct instants of a tick


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def environment() -> dict:
    """What the numbers were measured on: cores, load, and who else was using the CPU."""
    me = os.getpid()
    busy = []
    for p in psutil.process_iter(["pid", "name", "cmdline", "cpu_percent"]):
        try:
            if p.info["pid"] == me:
                continue
            pct = p.cpu_percent(interval=None)
            busy.append((p, pct))
        except psutil.Error:
            continue
    time.sleep(1.0)
    others = []
    for p, _ in busy:
        try:
            pct = p.cpu_percent(interval=None)
            if pct >= 5.0:
                others.append(
                    {
                        "pid": p.pid,
                        "cpu_percent": pct,
                        "cmd": " ".join(p.info["cmdline"] or [p.info["name"]])[:120],
                    }
                )
        except psutil.Error:
            continue
    return {
        "cpus_logical": psutil.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1_5_15": os.getloadavg(),
        "busy_processes_at_start": sorted(others, key=lambda o: -o["cpu_percent"])[:12],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _broker(bootstrap: str) -> tuple[list, int | None]:
    from lisa_choreo.localstack import brokers

    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    node = brokers.KafkaNode(port=port)
    started = []
    if asyncio.run(brokers.probe(bootstrap, 3.0)) is None:
        log(f"starting a Kafka broker on {bootstrap}")
        started = brokers.up([node])
    pid = brokers._running_pid(node)  # our JVM's pid when the stack of LISA_CHOREO_HOME runs it
    return started, pid


def _zipkin(url: str) -> tuple[object | None, bool, str | None]:
    from lisa_choreo.localstack import tracing_ui

    server = tracing_ui.ZipkinServer(port=urlsplit(url).port or 9411)
    try:
        started = tracing_ui.launch(server)
        tracing_ui.wait_ready(server)
    except Exception as exc:  # tracing is one section; the rest still runs
        return None, False, f"{type(exc).__name__}: {exc}"
    return server, started, None


def _section(report: dict, rows: list[Row], name: str, fn: Callable[[], tuple[dict, list[Row]]]):
    log(f"[{name}]")
    t = time.monotonic()
    load0 = os.getloadavg()[0]
    try:
        result, new_rows = fn()
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
        new_rows = [Row(name, "failed", "-", "error")]
    result["section_wall_s"] = round(time.monotonic() - t, 1)
    result["load_average_1min"] = [load0, os.getloadavg()[0]]
    report[name] = result
    rows += new_rows
    log(f"[{name}] {result['section_wall_s']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--zipkin-url", default=os.environ.get("LISA_ZIPKIN_URL", "http://127.0.0.1:9411")
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy every service of the largest choreography run and (a)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep logs, data and store")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run these sections only")
    parser.add_argument(
        "--sizes",
        nargs=2,
        type=int,
        metavar=("SMALL", "LARGE"),
        help="segments of the two datasets (default 30 365; smoke 3 6)",
    )
    parser.add_argument(
        "--hop-baseline",
        metavar="REF",
        help="hop: also run the step on the choreo runtime of this git commit (before/after)",
    )
    parser.add_argument(
        "--hop-burst",
        action="store_true",
        help="hop: send a tick's messages to every path back to back (the former way; default: "
        "at evenly spaced instants)",
    )
    args = parser.parse_args(argv)

    import structlog

    from choreo.settings import KafkaSettings

    # the library's own log lines (topics created, file ingested) go to stderr: stdout is the table
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    cfg = Config(args.smoke)
    if args.sizes:
        cfg.sizes = tuple(sorted(args.sizes))
    cfg.hop_baseline = args.hop_baseline
    cfg.hop_stagger = not args.hop_burst
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lisa-bench-"))
    bootstrap = KafkaSettings().bootstrap_servers
    t_start = time.time()
    report: dict = {
        "mode": "smoke" if args.smoke else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "bootstrap": bootstrap,
        "environment": environment(),
    }
    rows: list[Row] = []
    wanted = args.only or SECTIONS
    started_kafka, broker_pid = [], None
    if not set(wanted) <= LOCAL_SECTIONS:
        started_kafka, broker_pid = _broker(bootstrap)
    zipkin, started_zipkin, zipkin_error = None, False, "not needed by the sections run"
    if set(wanted) & ZIPKIN_SECTIONS:
        zipkin, started_zipkin, zipkin_error = _zipkin(args.zipkin_url)
    from bench import sections
    from bench.pipeline import Context

    ctx = Context(
        bootstrap=bootstrap,
        workdir=workdir,
        store_uri=(workdir / "store").as_uri(),
        zipkin_spans_url=zipkin.spans_endpoint if zipkin else None,
        broker_pid=broker_pid,
        log=log,
    )
    state = sections.State(cfg, ctx, args.out, args.profile, zipkin_error)
    try:
        for name in SECTIONS:
            if name in wanted:
                _section(report, rows, name, getattr(sections, name)(state))
    finally:
        if state.kept is not None:  # the steady-rate case did not run: stop what it would reuse
            state.kept.stop()
        if started_zipkin and zipkin is not None:
            from lisa_choreo.localstack import tracing_ui

            tracing_ui.stop(zipkin)
        if started_kafka:
            from lisa_choreo.localstack import brokers

            brokers.down(started_kafka)
        if not args.keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work dir kept: {workdir}")
    report["wall_s"] = round(time.time() - t_start, 1)
    report["load_average_at_end"] = os.getloadavg()
    write_json(args.out / "report.json", report, rows)
    try:
        report["plots"] = plots(args.out, report)
    except Exception as exc:  # a plot must not lose the numbers
        traceback.print_exc()
        report["plots_error"] = repr(exc)
    write_json(args.out / "report.json", report, rows)
    cpus = report["environment"]["cpus_logical"]
    print(
        f"lisa-choreo benchmark ({report['mode']}), {cpus} CPUs, shared machine "
        f"(load average at start {report['environment']['load_average_1_5_15'][0]:.2f}), "
        f"{report['wall_s']} s"
    )
    print(table(rows))
    print(f"report: {args.out / 'report.json'}; plots: {', '.join(report.get('plots', []))}")
    return 1 if any(r.status == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
