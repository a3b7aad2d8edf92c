"""``lisa-choreo``: one console script, one subcommand per job."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from choreo.settings import KafkaSettings


def _port() -> int:
    return int(KafkaSettings().bootstrap_servers.rsplit(":", 1)[1])


def _zipkin_port() -> int:
    from lisa_choreo.tracing_backend import default_port

    return default_port()


def cmd_stack(args: argparse.Namespace) -> int:
    import logging

    from lisa_choreo import stack, tracing_backend

    # Probing a broker that is still starting is expected to fail a few times: keep it quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from lisa_choreo.topology import topology

    nodes = stack.cluster_nodes(args.port, args.nodes)
    zipkin = None if args.no_tracing else tracing_backend.ZipkinServer(args.zipkin_port)
    if args.action == "env":
        url = zipkin.url if zipkin else tracing_backend.backend_url()
        for name, value in tracing_backend.otel_env(url).items():
            print(f"export {name}={value}")
        return 0
    if args.action == "up":
        # The tracing JVM boots while Kafka does; both are waited for below.
        zipkin_started = zipkin is not None and tracing_backend.launch(zipkin)
        started = stack.up(nodes)
        if zipkin is not None:
            tracing_backend.wait_ready(zipkin)
        if not args.no_topics:
            from choreo.topology import ensure_topics

            kafka = KafkaSettings(bootstrap_servers=",".join(n.bootstrap for n in nodes))
            rf = min(3, len(nodes))
            asyncio.run(ensure_topics(kafka, topology().all_topics(), rf, 2 if rf >= 3 else 1))
        print("started" if started or zipkin_started else "already running")
    elif args.action == "down":
        stopped = stack.down(nodes)
        print(f"stopped {len(stopped)} broker(s)" if stopped else "no broker was running")
        if zipkin is not None:
            print("stopped zipkin" if tracing_backend.stop(zipkin) else "zipkin was not running")
        return 0
    ready = True
    for node in nodes:
        st = stack.status(node)
        print(st.describe())
        ready &= st.ready
    if zipkin is not None:
        zst = tracing_backend.status(zipkin)
        print(zst.describe())
        ready &= zst.ready or not zst.running  # tracing is optional; a hung JVM is not
        if zst.ready:
            print("  services send spans there with:")
            for name, value in tracing_backend.otel_env(zipkin.url).items():
                print(f"    {name}={value}")
    return 0 if ready else 1


def cmd_run(args: argparse.Namespace) -> int:
    from choreo.runner import run_step
    from lisa_choreo.topology import load_service

    module = load_service(args.service)
    return module.main() if hasattr(module, "main") else run_step(module.step)


def cmd_topics(args: argparse.Namespace) -> int:
    from choreo.topology import ensure_topics
    from lisa_choreo.topology import topology

    created = asyncio.run(
        ensure_topics(KafkaSettings(), topology().all_topics(), args.replication, args.min_isr)
    )
    print(f"created {len(created)} topic(s): {', '.join(created)}" if created else "all exist")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import logging
    import warnings

    from lisa_choreo.simulate import DAY, SimulationError, simulate

    # The simulators warn once per source and chunk about file versions: not the operator's news.
    warnings.filterwarnings("ignore", module="lisaconstants")
    for name in ("lisaorbits", "lisagwresponse", "pytdi", "lisainstrument"):
        logging.getLogger(name).setLevel(logging.ERROR)

    try:
        out = simulate(
            args.out, args.days * DAY, args.dt, args.noise, args.sources, args.seed, args.t0
        )
    except SimulationError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from lisa_science.ldc import LDCFormatError
    from services.ingest.service import IngestSettings, ingest_file

    settings = IngestSettings()
    if args.segment_s:
        settings = settings.model_copy(update={"segment_s": args.segment_s})
    if args.overlap_s is not None:
        settings = settings.model_copy(update={"overlap_s": args.overlap_s})
    from choreo.tracing import configure_tracing

    provider = configure_tracing("ingest")
    status = 0
    for path in args.files:
        try:
            result = ingest_file(path, settings, force=args.force)
        except LDCFormatError as exc:
            print(f"lisa-choreo: refused {path}: {exc}", file=sys.stderr)
            status = 2
            continue
        verb = "published" if result.published else "already ingested, published nothing for"
        print(f"{path}: {verb} {result.segments} segment(s)")
    provider.shutdown()
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    from lisa_choreo import demo

    return demo.main(days=args.days, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lisa-choreo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop or inspect the local Kafka broker and Zipkin")
    p.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="env prints the OTEL_* exports that send a service's spans to Zipkin",
    )
    p.add_argument("--port", type=int, default=_port(), help="first broker port (default 9092)")
    p.add_argument("--nodes", type=int, default=1, choices=[1, 3], help="1, or 3 for faults")
    p.add_argument("--no-topics", action="store_true", help="do not create the topology's topics")
    p.add_argument("--no-tracing", action="store_true", help="leave the tracing backend out")
    p.add_argument(
        "--zipkin-port",
        type=int,
        default=_zipkin_port(),
        help="Zipkin's port on loopback (default from $LISA_ZIPKIN_URL, else 9411)",
    )
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("run", help="run one step service until SIGTERM")
    p.add_argument("service")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("topics", help="create the topology's topics on the configured cluster")
    p.add_argument("--replication", type=int, default=1)
    p.add_argument("--min-isr", type=int, default=1)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("simulate", help="write an LDC-format file of TDI noise and sources")
    p.add_argument("out", type=Path)
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--dt", type=float, default=5.0, help="cadence in seconds (default 5)")
    p.add_argument("--noise", choices=["analytic", "instrument", "none"], default="analytic")
    p.add_argument(
        "--sources",
        default="verification",
        help="verification, none, or a catalogue CSV (see lisa_science.binaries)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t0", type=float, default=0.0, help="start time (s; 0 = orbit phase 0)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("ingest", help="cut LDC files into segments and publish them")
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--segment-s", type=float, help="segment duration (default 86400)")
    p.add_argument("--overlap-s", type=float, help="overlap (default 0)")
    p.add_argument("--force", action="store_true", help="publish again an ingested file")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "demo", help="the main job: simulate, run every service, print the catalogue"
    )
    p.add_argument("--days", type=int, default=30, help="daily segments to simulate")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_demo)

    import pkgutil

    from lisa_choreo import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"lisa_choreo.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from choreo.logs import configure_logging
    from lisa_choreo.stack import StackError

    if args.command != "run":  # a step configures its own logs, named after it
        configure_logging("lisa-choreo", level="WARNING")
    try:
        return args.func(args)
    except StackError as exc:
        print(f"lisa-choreo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
