"""``lisa-choreo dlq list | show | replay``: dead letters, their reasons, and replay after a fix."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="list, show and replay dead letters")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("ids", nargs="*", help="event ids or <dlq topic>/<partition>/<offset> refs")
    p.add_argument("--topic", action="append", help="dead-letter topic(s); default: all")
    p.add_argument("--reason", help="glob on the reason code, e.g. 'checksum-*'")
    p.add_argument("--since", type=datetime.fromisoformat, help="ISO 8601 time (naive = UTC)")
    p.add_argument("--until", type=datetime.fromisoformat, help="ISO 8601 time (naive = UTC)")
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(func=run)


def _read_with_progress(settings, topics: list[str] | None) -> list:
    """``dlq_admin.read_dead_letters``, one dead-letter topic at a time under a progress bar
    (stderr, terminal only): the same letters in the same order."""
    from lisa_choreo import dlq_admin
    from lisa_choreo.progress import task_bar

    names = topics or dlq_admin.dlq_topics()
    letters: list = []
    with task_bar(transient=True) as bar:
        task = bar.add_task("reading dead letters", total=len(names))
        for name in names:
            bar.update(task, description=f"reading {name}")
            letters += asyncio.run(dlq_admin.read_dead_letters(settings, [name]))
            bar.advance(task)
    return sorted(letters, key=lambda d: (d.get("time"), d.ref))


def _replay_with_progress(settings, chosen: list) -> tuple[list, list, list]:
    """``dlq_admin.replay`` once per home topic, the bar advancing by each topic's letters.
    Replay reads each home topic once to skip letters already replayed, so grouping by home
    topic reads nothing twice; letters without a home are refused by the first call."""
    from lisa_choreo import dlq_admin
    from lisa_choreo.progress import task_bar

    groups: dict[str | None, list] = {}
    for d in chosen:
        groups.setdefault(d.origin, []).append(d)
    replayed: list = []
    skipped: list = []
    refused: list = []
    with task_bar() as bar:
        task = bar.add_task(f"replaying {len(chosen)} letter(s)", total=len(chosen))
        for origin, letters in groups.items():
            bar.update(task, description=f"replaying {len(letters)} letter(s) to {origin}")
            r, s, f = asyncio.run(dlq_admin.replay(settings, letters))
            replayed += r
            skipped += s
            refused += f
            bar.advance(task, len(letters))
    return replayed, skipped, refused


def run(args: argparse.Namespace) -> int:
    from choreo.settings import KafkaSettings
    from lisa_choreo import dlq_admin
    from lisa_choreo.records import printable

    settings = KafkaSettings()
    if args.action == "replay":
        letters = _read_with_progress(settings, args.topic)
    else:
        letters = asyncio.run(dlq_admin.read_dead_letters(settings, args.topic))
    chosen = dlq_admin.select(letters, args.ids, args.reason, args.since, args.until)
    for d in chosen:  # a malformed letter is listed as far as it reads, and said so
        for problem in d.problems:
            print(f"lisa-choreo: {d.ref}: {problem}", file=sys.stderr)
    if args.action == "replay":
        if not (args.ids or args.reason or args.since or args.until or args.topic):
            print(
                "lisa-choreo: say which letters to replay (ids, --reason, --since/--until or "
                "--topic)"
            )
            return 2
        replayed, skipped, refused = _replay_with_progress(settings, chosen)
        print(f"replayed {len(replayed)}, skipped {len(skipped)} already replayed")
        if refused:
            print(
                "lisa-choreo: not replayed, no readable dlq_topic header or no such topic: "
                f"{', '.join(refused)}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.action == "show":
        for d in chosen:
            body = (d.value or b"")[:2000].decode(errors="replace")
            print(
                json.dumps(
                    {
                        **d.summary(),
                        "headers": d.headers,
                        "key": d.key_text or "",
                        "body": body,
                    },
                    indent=2,
                )
            )
        return 0 if chosen else 1
    if args.json:
        for d in chosen:
            print(json.dumps(d.summary()))
        return 0
    by_topic: dict[str, list] = {}
    for d in chosen:
        by_topic.setdefault(d.dlq_topic, []).append(d)
    for topic, items in by_topic.items():
        print(f"{topic}: {len(items)} dead letter(s)")
        for d in items:
            s = d.summary()
            print(  # the fields come from the letter's headers: escape control characters
                printable(
                    f"  {s['ref']:<36} {s['time'][:19]}  {s['reason']:<18} {s['service']:<10} "
                    f"{s['subject'] or s['event_id']}  {s['error'][:80]}"
                )
            )
    if not chosen:
        print("no dead letters")
    return 0
