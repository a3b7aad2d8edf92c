"""``lisa-choreo acl plan|apply``: the ACLs derived from the topology, printed or created.

``plan`` needs no broker: it prints every binding (``lisa_choreo.security.acls``) for the
deployment's topic prefix. ``apply`` creates them as the super user: the local secure stack's
admin when its credentials are in ``$LISA_CHOREO_HOME/secure``, else whoever ``LISA_KAFKA_*``
says (another cluster's admin), then reads them back from the broker and checks that every one is
there. Creating a binding that exists is a no-op, so ``apply`` is safe to repeat (after a new
service, or for a new prefix on the same cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from choreo.settings import KafkaSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("acl", help="the ACLs each principal gets, derived from the topology")
    p.add_argument("action", choices=["plan", "apply"], help="print them / create them")
    p.add_argument(
        "--prefix",
        default=None,
        help="the deployment's topic prefix (default: $LISA_KAFKA_TOPIC_PREFIX)",
    )
    p.add_argument("--principal", help="only this principal's bindings (plan)")
    p.add_argument("--json", action="store_true", help="plan as JSON lines")
    p.add_argument(
        "--bootstrap",
        default=None,
        help="apply: the cluster (default: $LISA_KAFKA_BOOTSTRAP_SERVERS)",
    )
    p.set_defaults(func=run)


def _admin_settings(bootstrap: str) -> KafkaSettings:
    from lisa_choreo.security import credentials

    files = credentials.SecureFiles(credentials.secure_dir())
    if files.exists():
        return files.client_settings(credentials.ADMIN, bootstrap)
    return KafkaSettings(bootstrap_servers=bootstrap)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo.localstack.brokers import StackError
    from lisa_choreo.registry import topology
    from lisa_choreo.security import acl_admin, acls

    settings = KafkaSettings()
    prefix = settings.topic_prefix if args.prefix is None else args.prefix
    bindings = acls.derive(topology(), prefix)
    if args.action == "plan":
        shown = [
            b
            for b in bindings
            if args.principal is None or b.principal == acls.principal(args.principal)
        ]
        for b in shown:
            if args.json:
                print(
                    json.dumps(
                        {
                            "principal": b.principal,
                            "permission": b.permission.name,
                            "operation": b.operation.name,
                            "resource_type": b.resource_type.name,
                            "pattern_type": b.pattern_type.name,
                            "resource_name": b.resource_name,
                            "host": b.host,
                        }
                    )
                )
            else:
                print(b.describe())
        return 0
    admin = _admin_settings(args.bootstrap or settings.bootstrap_servers)
    try:
        asyncio.run(acl_admin.create_acls(admin, bindings))
        present = set(asyncio.run(acl_admin.describe_acls(admin)))
    except acl_admin.AclError as exc:
        raise StackError(str(exc)) from None
    except Exception as exc:  # no cluster, refused login: one line, no traceback
        raise StackError(f"cannot apply ACLs on {admin.bootstrap_servers}: {exc!r}") from None
    absent = [b for b in bindings if b not in present]
    if absent:
        raise StackError(f"{len(absent)} binding(s) missing after apply: {absent[0].describe()}")
    print(
        f"{len(bindings)} ACL bindings in place for "
        f"{len(acls.by_principal(bindings))} principals (prefix {prefix!r})"
    )
    return 0
