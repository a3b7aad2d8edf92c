"""``lisa-choreo manifests [--out DIR] [--check]``: the Kubernetes chart, generated.

Writes the Helm chart ``DIR/lisa-choreo`` (``lisa_choreo.k8s``) from the topology, the stages and
the ACLs; ``--check`` writes nothing and exits 1 when the committed chart differs from what the
declarations give (the drift check CI runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifests", help="the Kubernetes Helm chart, generated from the topology")
    p.add_argument("--out", type=Path, default=Path("deploy/k8s"), help="default: deploy/k8s")
    p.add_argument(
        "--check", action="store_true", help="compare with the files in --out; write nothing"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lisa_choreo import k8s
    from lisa_choreo.registry import topology

    topo = topology()
    if args.check:
        stale = k8s.drift(args.out, topo)
        for rel in stale:
            print(f"differs from the declarations: {args.out / k8s.CHART / rel}")
        if stale:
            print("regenerate with: lisa-choreo manifests --out " + str(args.out))
            return 1
        print(f"{args.out / k8s.CHART}: up to date")
        return 0
    written = k8s.write(args.out, topo)
    print(f"{len(written)} files in {args.out / k8s.CHART}")
    return 0
