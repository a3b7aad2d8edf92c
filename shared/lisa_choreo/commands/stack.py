"""``lisa-choreo stack up|down|status|env``: the local Kafka broker(s) and the Zipkin tracing UI.

``stack up --secure`` starts the broker with TLS and SASL SCRAM-SHA-512 on its client port, ACLs
only (``allow.everyone.if.no.acl.found=false``), one principal per service and an operator, and
applies the ACLs derived from the topology (``lisa_choreo.security``); ``stack env --service
NAME`` prints the environment a service (or ``operator``) runs with there: its password as a
file reference, never the value.

``stack up --object-store`` also builds (once) and starts SeaweedFS's S3 gateway on loopback
(``lisa_choreo.localstack.objectstore``), creates the bucket and prints the environment a service
needs to keep its claim-check store there: ``LISA_STORE_URI=s3://...``, the endpoint, and the
generated credentials as a file reference (``AWS_SHARED_CREDENTIALS_FILE``), never their value.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys

from choreo.settings import KafkaSettings


def _port() -> int:
    return int(KafkaSettings().bootstrap_servers.rsplit(":", 1)[1])


def register(sub: argparse._SubParsersAction) -> None:
    from lisa_choreo.localstack.objectstore import DEFAULT_PORT as objectstore_port
    from lisa_choreo.localstack.temporal import default_port as temporal_port
    from lisa_choreo.localstack.tracing_ui import default_port

    p = sub.add_parser("stack", help="start, stop or inspect the local Kafka broker and Zipkin")
    p.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="env prints the OTEL_* exports that send a service's spans to Zipkin",
    )
    p.add_argument("--port", type=int, default=_port(), help="first broker port (default 9092)")
    p.add_argument("--nodes", type=int, default=1, choices=[1, 3], help="1, or 3 for faults")
    p.add_argument(
        "--secure",
        action="store_true",
        help="TLS + SASL SCRAM-SHA-512 + ACLs derived from the topology (one node); status, env "
        "and down find a secure stack by themselves",
    )
    p.add_argument(
        "--service",
        metavar="NAME",
        help="with env: the Kafka environment of this service (or 'operator') on the secure "
        "stack; the password as a file reference",
    )
    p.add_argument("--no-topics", action="store_true", help="do not create the topology's topics")
    p.add_argument("--no-tracing", action="store_true", help="leave the tracing backend out")
    p.add_argument(
        "--orchestrator",
        action="store_true",
        help="also the Temporal dev server and its web UI for `lisa-choreo orchestrate` (built "
        "once with go install); down stops it whenever it runs",
    )
    p.add_argument(
        "--temporal-port",
        type=int,
        default=temporal_port(),
        help="Temporal's gRPC port on loopback, UI on +1000 (default from $LISA_TEMPORAL_ADDRESS, "
        "else 7233)",
    )
    p.add_argument(
        "--object-store",
        action="store_true",
        help="also the S3 object store (SeaweedFS, built once with go build) for "
        "LISA_STORE_URI=s3://...; up prints the environment services need; down stops it "
        "whenever it runs",
    )
    p.add_argument(
        "--object-store-port",
        type=int,
        default=objectstore_port,
        help=f"the object store's S3 port on loopback (default {objectstore_port}; its other "
        "ports follow it)",
    )
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
    secure = args.secure or brokers.formatted_secure(args.port)
    if args.action == "up" and secure and not args.secure:
        raise brokers.StackError(
            f"the stack on port {args.port} is a secure one: `stack up --secure`"
        )
    if secure and args.nodes != 1:
        raise brokers.StackError("a secure stack runs one node (--nodes 1)")
    if args.service and args.action != "env":
        raise brokers.StackError("--service goes with `stack env`")
    nodes = brokers.cluster_nodes(args.port, args.nodes, secure=secure)
    zipkin = None if args.no_tracing else tracing_ui.ZipkinServer(args.zipkin_port)
    if args.action == "env":
        if args.service:
            _print_service_env(args.service, nodes)
        url = zipkin.url if zipkin else tracing_ui.backend_url()
        for name, value in tracing_ui.otel_env(url).items():
            print(f"export {name}={value}")
        _print_objectstore_env(args.object_store_port, args.object_store)
        return 0
    if secure and args.action == "up":
        _secure_up(nodes, zipkin, args.no_topics)
        if args.orchestrator:
            _temporal_up(args.temporal_port)
        if args.object_store:
            _objectstore_up(args.object_store_port)
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
        temporal_started = args.orchestrator and _temporal_up(args.temporal_port)
        store_started = args.object_store and _objectstore_up(args.object_store_port)
        print(
            "started"
            if started or zipkin_started or temporal_started or store_started
            else "already running"
        )
        return 0
    if args.action == "down":
        stopped = brokers.down(nodes)
        print(f"stopped {len(stopped)} broker(s)" if stopped else "no broker was running")
        if zipkin is not None:
            print("stopped zipkin" if tracing_ui.stop(zipkin) else "zipkin was not running")
        from lisa_choreo.localstack import temporal

        if temporal.stop(temporal.TemporalServer(args.temporal_port)):
            print("stopped temporal")
        from lisa_choreo.localstack import objectstore

        if objectstore.stop(objectstore.ObjectStoreServer(args.object_store_port)):
            print("stopped the object store")
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
    from lisa_choreo.localstack import temporal

    tst = temporal.status(temporal.TemporalServer(args.temporal_port))
    if args.orchestrator or tst.running:
        print(tst.describe())
        ready &= tst.ready or not (tst.running or args.orchestrator)
    from lisa_choreo.localstack import objectstore

    ost = objectstore.status(objectstore.ObjectStoreServer(args.object_store_port))
    if args.object_store or ost.running:
        print(ost.describe())
        ready &= ost.ready or not (ost.running or args.object_store)
    return 0 if ready else 1


def _objectstore_up(port: int) -> bool:
    """The S3 object store (SeaweedFS; data and generated credentials under the stack's home),
    its bucket, and the environment a service needs to keep its claim-check store there."""
    from lisa_choreo.localstack import objectstore

    server = objectstore.ObjectStoreServer(port)
    started = objectstore.up(server, say=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"object store: S3 on {server.endpoint}, data {server.data_dir}")
    print("  services keep their claim-check store there with:")
    for name, value in objectstore.service_env(server).items():
        print(f"    export {name}={shlex.quote(value)}")
    return started


def _print_objectstore_env(port: int, requested: bool) -> None:
    """The object store's environment when it runs (or was asked for): a file reference for
    the credentials, never their value."""
    from lisa_choreo.localstack import objectstore
    from lisa_choreo.localstack.brokers import StackError

    server = objectstore.ObjectStoreServer(port)
    if objectstore.running_pid(server) is None:
        if requested:
            raise StackError(f"no object store runs on {server.endpoint}: stack up --object-store")
        return
    for name, value in objectstore.service_env(server).items():
        print(f"export {name}={shlex.quote(value)}")


def _temporal_up(port: int) -> bool:
    """The Temporal dev server (frontend, its web UI, SQLite data under the stack's home)."""
    from lisa_choreo.localstack import temporal

    server = temporal.TemporalServer(port)
    started = temporal.up(server, say=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"temporal: {server.address}, web UI {server.ui_url}/, data {server.db_file}")
    return started


def _print_service_env(service: str, nodes: list) -> None:
    from lisa_choreo.localstack.brokers import StackError
    from lisa_choreo.registry import topology
    from lisa_choreo.security import acls, credentials

    known = acls.principals(topology())
    if service not in known:
        raise StackError(f"unknown service {service!r}; known: {', '.join(known)}")
    files = credentials.SecureFiles(credentials.secure_dir())
    if not files.password_file(service).exists():
        raise StackError(
            f"no credentials for {service!r} in {files.root}: `lisa-choreo stack up --secure`"
        )
    bootstrap = ",".join(n.bootstrap for n in nodes)
    for name, value in files.client_env(service, bootstrap, KafkaSettings().topic_prefix).items():
        print(f"export {name}={shlex.quote(value)}")


def _secure_up(nodes: list, zipkin, no_topics: bool) -> None:
    """Credentials (made once), the broker, the topology's topics and its ACLs, as the admin."""
    from lisa_choreo.localstack import brokers, tracing_ui
    from lisa_choreo.registry import topology
    from lisa_choreo.security import acl_admin, acls, credentials

    deployment = topology()
    prefix = KafkaSettings().topic_prefix
    files = credentials.ensure(acls.principals(deployment))
    zipkin_started = zipkin is not None and tracing_ui.launch(zipkin)
    started = brokers.up(nodes)
    if zipkin is not None:
        tracing_ui.wait_ready(zipkin)
    missing = sorted(set(files.principals()) - set(brokers.scram_users(nodes[0])))
    if missing:
        print(
            f"warning: no SCRAM user for {', '.join(missing)}: the storage was formatted before "
            "they existed (stack down, remove its state directory, stack up --secure)",
            file=sys.stderr,
        )
    admin = nodes[0].admin_settings().model_copy(update={"topic_prefix": prefix})
    if not no_topics:
        from choreo.topology import ensure_topics

        asyncio.run(ensure_topics(admin, deployment.all_topics()))
    bindings = acls.derive(deployment, prefix)
    asyncio.run(acl_admin.create_acls(admin, bindings))
    print("started" if started or zipkin_started else "already running")
    print(
        f"secure: SASL_SSL (SCRAM-SHA-512) on {nodes[0].bootstrap}, "
        f"{len(bindings)} ACL bindings for {len(acls.by_principal(bindings))} principals; "
        f"credentials in {files.root}"
    )
