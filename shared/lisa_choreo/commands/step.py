"""``lisa-choreo step pause|resume NAME`` and ``step status``: a step's desired state.

``pause`` and ``resume`` publish a ``lisa.control.step.v1`` command keyed by the step's name on the
compacted ``lisa.control``; every replica of the step follows that topic without a consumer group
(``choreo.control``). A paused step finishes and commits the batch in hand, keeps its partitions
and its group membership and fetches nothing; it stays live and ready, says ``"paused": true`` in
its health JSON (``/livez``, ``/readyz``) and 1 in the ``lisa.step.paused`` gauge. ``status``
prints the latest command per step (the desired state; a step's health says what it does).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("step", help="pause or resume a step (every replica), or show the commands")
    p.add_argument("action", choices=["pause", "resume", "status"])
    p.add_argument("names", nargs="*", metavar="NAME", help="step name(s): condition, gb-search...")
    p.add_argument("--reason", default="", help="why (kept with the command, shown in health)")
    p.set_defaults(func=run)


def requested_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def publish(settings, commands: list) -> None:
    """Send the commands (``StepControl`` bodies), keyed by step name, and wait for the acks."""
    from choreo import Envelope
    from choreo.publisher import Publisher, default_client_id, make_producer
    from choreo.reader import partitions_of
    from lisa_pipeline.topics import CONTROL

    await partitions_of(settings, [settings.topic(CONTROL)])  # LookupError: not created
    producer = make_producer(settings, default_client_id("lisa-choreo-step"))
    await producer.start()
    try:
        envelopes = [
            (CONTROL, Envelope.root(c, source="lisa-choreo", subject=c.step, key=c.step))
            for c in commands
        ]
        await Publisher(producer, settings).publish(envelopes)
    finally:
        await producer.stop()


async def read_commands(settings) -> dict:
    """Step name -> its latest command on the control topic."""
    from choreo.control import ControlChannel, ControlState
    from choreo.reader import TopicReader, partitions_of
    from lisa_pipeline.events import StepControl
    from lisa_pipeline.topics import CONTROL

    await partitions_of(settings, [settings.topic(CONTROL)])  # LookupError before any consumer
    state = ControlState.of(ControlChannel(CONTROL, StepControl))
    async with TopicReader(settings, [CONTROL]) as reader:
        for r in await reader.snapshot():
            state.apply(r.key, r.value, r.headers, r.partition, r.offset, r.timestamp)
    return state.commands


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from choreo.settings import KafkaSettings
    from lisa_pipeline.events import StepControl
    from lisa_pipeline.stages import CONSUMERS as STAGE_CONSUMERS
    from lisa_pipeline.stages import SOURCE_STEPS
    from lisa_pipeline.topics import CONTROL

    CONSUMERS = (*STAGE_CONSUMERS, *SOURCE_STEPS)  # every step that follows lisa.control

    settings = KafkaSettings()
    if args.action == "status":
        try:
            commands = asyncio.run(read_commands(settings))
        except LookupError as exc:
            print(f"lisa-choreo: {exc}; create it with `lisa-choreo topics`", file=sys.stderr)
            return 2
        names = args.names or sorted(set(CONSUMERS) | set(commands))
        for name in names:
            c = commands.get(name)
            if c is None:
                print(f"{name:<12} running  (no command)")
                continue
            when = (
                datetime.fromtimestamp(c.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
                if c.timestamp_ms
                else "-"
            )
            print(f"{name:<12} {c.state:<8} since {when} by {c.requested_by or '-'}: {c.reason}")
        return 0
    if not args.names:
        print(f"lisa-choreo: name the step(s) to {args.action}", file=sys.stderr)
        return 2
    unknown = [n for n in args.names if n not in CONSUMERS]
    if unknown:
        print(
            f"lisa-choreo: no such step: {', '.join(unknown)} (steps: {', '.join(CONSUMERS)})",
            file=sys.stderr,
        )
        return 2
    state = "paused" if args.action == "pause" else "running"
    by = requested_by()
    commands = [
        StepControl(step=n, state=state, reason=args.reason, requested_by=by) for n in args.names
    ]
    try:
        asyncio.run(publish(settings, commands))
    except LookupError as exc:
        print(f"lisa-choreo: {exc}; create it with `lisa-choreo topics`", file=sys.stderr)
        return 2
    topic = settings.topic(CONTROL)
    for name in args.names:
        if state == "paused":
            print(
                f"{name}: pause sent on {topic}; every replica finishes and commits its batch in "
                "hand, then fetches nothing (health: paused, metric lisa.step.paused = 1)"
            )
        else:
            print(f"{name}: resume sent on {topic}")
    return 0
