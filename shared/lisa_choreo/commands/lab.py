"""``lisa-choreo lab``: simulated servers on this machine (network namespaces on a bridge with no
uplink), a Kafka broker on each, services on any, and faults to inject (``lisa_choreo.lab``).

    lab up --hosts N          build the lab (root needed), start the brokers and the store
    lab run HOST SERVICE      start a service on a host (h1..hN or 1..N)
    lab fault HOST down|partition|slow
    lab heal HOST             undo the host's fault (a host that was down boots its broker)
    lab env                   the exports a client in the root namespace needs
    lab status                hosts, links, faults, brokers, services
    lab down                  remove every namespace, link and process of the lab
"""

from __future__ import annotations

import argparse
import shlex


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="simulated servers (namespaces), brokers on each, faults")
    actions = p.add_subparsers(dest="lab_action", required=True)
    up = actions.add_parser("up", help="build the lab and start a broker on each host")
    up.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    up.add_argument("--no-topics", action="store_true", help="do not create the topics")
    actions.add_parser("down", help="remove every namespace, link and process of the lab")
    actions.add_parser("status", help="hosts, links, faults, brokers and services")
    env = actions.add_parser("env", help="what a root-namespace client needs to reach the lab")
    env.add_argument("--prefix", default="", help="a topic prefix to export as well")
    run = actions.add_parser("run", help="start a service on a host (detached)")
    run.add_argument("host", help="h1..hN (or 1..N)")
    run.add_argument("service")
    run.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment"
    )
    fault = actions.add_parser("fault", help="inject a fault on a host")
    fault.add_argument("host")
    fault.add_argument("kind", choices=["down", "partition", "slow"])
    heal = actions.add_parser("heal", help="undo a host's fault")
    heal.add_argument("host")
    p.set_defaults(func=run_lab)


def run_lab(args: argparse.Namespace) -> int:
    import logging

    from lisa_choreo.lab.core import Lab
    from lisa_choreo.lab.net import LabError
    from lisa_choreo.localstack.brokers import StackError

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # brokers starting: expected
    lab = Lab()
    try:
        return _dispatch(lab, args)
    except LabError as exc:
        raise StackError(str(exc)) from exc  # printed as one line by the CLI


def _dispatch(lab, args: argparse.Namespace) -> int:
    action = args.lab_action
    if action == "up":
        lab.up(args.hosts, topics=not args.no_topics)
        print("\n".join(lab.status()))
    elif action == "down":
        removed = lab.down()
        print(
            f"removed {removed['namespaces']} namespace(s), {removed['links']} root link(s), "
            f"killed {removed['processes']} process(es)"
        )
    elif action == "status":
        print("\n".join(lab.status()))
    elif action == "env":
        layout = lab.layout
        print(
            f"# the root namespace reaches the lab through {layout.root_if} "
            f"({layout.root_ip} on {layout.subnet}, no gateway, forwarding off)"
        )
        for name, value in lab.env(args.prefix).items():
            print(f"export {name}={shlex.quote(value)}")
    elif action == "run":
        extra = dict(item.split("=", 1) for item in args.env)
        proc = lab.run(args.host, args.service, **extra)
        print(f"{proc.service} on h{proc.host}: pid {proc.pid}, log {proc.log}")
        print(f"  health {proc.health_url}/readyz")
    elif action == "fault":
        print(lab.fault(args.host, args.kind))
    elif action == "heal":
        print(lab.heal(args.host))
    return 0
