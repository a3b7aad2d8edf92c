"""``lisa-choreo schemas [--check]``: the event JSON Schemas and the AsyncAPI document.

They are generated from the step declarations and checked in; ``--check`` (run by the tests and
CI) fails when the checked-in files say something the code no longer does.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schemas", help="write schemas/ (event JSON Schemas, AsyncAPI) from the declarations"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing the files that differ from what the code generates",
    )
    p.add_argument(
        "--dir", type=Path, default=Path("schemas"), help="output folder (default: ./schemas)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from choreo import schemagen
    from lisa_choreo.registry import topology

    directory = args.dir
    files = schemagen.generate(topology())
    if args.check:
        drifted = schemagen.drift(directory, files)
        if not drifted:
            print(f"{directory}: up to date ({len(files)} files)")
            return 0
        print(
            f"{directory}: {len(drifted)} file(s) differ from the code; run `lisa-choreo schemas`"
        )
        for d in drifted:
            print(f"  {d}")
        return 1
    changes = schemagen.write(directory, files)
    for d in changes:
        verb = {"missing": "wrote", "changed": "updated", "stale": "removed"}[d.state]
        print(f"{verb} {directory / d.name}")
    print(f"{directory}: {len(files)} files, {len(changes)} changed")
    return 0
