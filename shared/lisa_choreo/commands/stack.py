"""``lisa-choreo stack up|down|status|env``: the local Kafka broker(s) and the Zipkin tracing UI."""

from __future__ import annotations

import argparse
import asyncio

from choreo.settings import KafkaSettings


def _port() -> int:
    return int(KafkaSettings().bootstrap_servers.rsplit(":", 1)[1])


def register(sub: argparse._SubParsersAction) -> None:
    from lisa_choreo.localstack.tracing_ui import default_port

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
        default=default_port(),
        help="Zipkin's port on loopback (default from $LISA_ZIPKIN_URL, else 9411)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from lisa_choreo.localstack import brokers, tracing_ui

    # Probing a broker that is still starting is expected to fail a few times: keep it quiet.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    nodes = brokers.cluster_nodes(args.port, args.nodes)
    zipkin = None if args.no_tracing else tracing_ui.ZipkinServer(args.zipkin_port)
    if args.action == "env":
        url = zipkin.url if zipkin else tracing_ui.backend_url()
        for name, value in tracing_ui.otel_env(url).items():
            print(f"export {name}={value}")
        return 0
    if args.action == "up":
        # The tracing JVM boots while Kafka does; both are waited for below.
        zipkin_started = zipkin is not None and tracing_ui.launch(zipkin)
        started = brokers.up(nodes)
        if zipkin is not None:
            tracing_ui.wait_ready(zipkin)
        if not args.no_topics:
            from choreo.topology import ensure_topics
            from lisa_choreo.registry import topology

            kafka = KafkaSettings(bootstrap_servers=",".join(n.bootstrap for n in nodes))
            rf = min(3, len(nodes))
            asyncio.run(ensure_topics(kafka, topology().all_topics(), rf, 2 if rf >= 3 else 1))
        print("started" if started or zipkin_started else "already running")
        return 0
    if args.action == "down":
        stopped = brokers.down(nodes)
        print(f"stopped {len(stopped)} broker(s)" if stopped else "no broker was running")
        if zipkin is not None:
            print("stopped zipkin" if tracing_ui.stop(zipkin) else "zipkin was not running")
        return 0
    ready = True
    for node in nodes:
        st = brokers.status(node)
        print(st.describe())
        ready &= st.ready
    if zipkin is not None:
        zst = tracing_ui.status(zipkin)
        print(zst.describe())
        ready &= zst.ready or not zst.running  # tracing is optional; a hung JVM is not
        if zst.ready:
            print("  services send spans there with:")
            for name, value in tracing_ui.otel_env(zipkin.url).items():
                print(f"    {name}={value}")
    return 0 if ready else 1
