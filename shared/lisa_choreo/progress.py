"""Progress of a run, read from the topics, and its rendering (a live table, or plain lines).

How far the segments got is counted from the topics' offsets, without a consumer group (nothing
joins, nothing is committed, no service is disturbed): the records each stage's output topic
holds (``lisa_pipeline.stages``: raw, conditioned, searched, estimated) and the dead-letter topics
of every consumed topic. "catalogued" is the catalog's table changelog
(``<prefix>catalog-stacks-changelog``), which gets one record per segment newly stacked (a
duplicate is recognised and writes nothing); ``lisa.catalog`` itself only carries sources whose
state changed, so it cannot count segments. Offsets survive compaction, so the count holds on a
compacted changelog.

The arithmetic (counts, rates, ETA) is plain Python and unit-tested; ``Display`` renders it with
``rich`` on a terminal and as a plain line every few seconds otherwise (a log, a pipe, CI).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from choreo.reader import partitions_of
from choreo.settings import KafkaSettings
from choreo.topology import dead_letter_topic
from lisa_pipeline.stages import STAGES

CATALOG_CHANGELOG = "catalog-stacks-changelog"
"""The catalog's faust table changelog (app id ``<prefix>catalog``, table ``stacks``): one record
per segment stacked. Named here by its un-prefixed name, like the other topics."""

LABELS: tuple[str, ...] = tuple(s.reached for s in STAGES)
"""raw, conditioned, searched, estimated, catalogued: the columns of the progress display."""
DEAD = "dead-lettered"


def counted_topic(stage_label: str) -> str:
    """The topic whose records count the segments that reached ``stage_label``."""
    stage = next(s for s in STAGES if s.reached == stage_label)
    return CATALOG_CHANGELOG if stage.service == "catalog" else stage.produces


STAGE_TOPICS: dict[str, str] = {label: counted_topic(label) for label in LABELS}
DEAD_LETTER_TOPICS: tuple[str, ...] = tuple(
    dead_letter_topic(s.consumes) for s in STAGES if s.consumes is not None
)


@dataclass(frozen=True)
class Counts:
    """Segments that reached each stage, and those dead-lettered anywhere, at time ``t`` (s)."""

    reached: dict[str, int]
    dead: int
    t: float

    @property
    def finished(self) -> int:
        """Segments whose flow ended: catalogued or dead-lettered."""
        return self.reached.get(LABELS[-1], 0) + self.dead


def counts_from_offsets(
    begin: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
    prefix: str,
    expected: int,
    t: float,
) -> Counts:
    """Counts from the offsets of the counted topics (full names, ``prefix`` included).

    Records per topic are end minus beginning offsets summed over partitions. A transactional
    producer (ingest) leaves one commit marker per partition, which takes an offset: every count
    is capped at ``expected``, the segments the run published.
    """
    held: dict[str, int] = {}
    for tp, last in end.items():
        name = tp.topic.removeprefix(prefix)
        held[name] = held.get(name, 0) + max(0, last - begin.get(tp, 0))
    reached = {label: min(held.get(STAGE_TOPICS[label], 0), expected) for label in LABELS}
    dead = min(sum(held.get(t, 0) for t in DEAD_LETTER_TOPICS), expected)
    return Counts(reached, dead, t)


class OffsetReader:
    """One group-less consumer kept open for the run, asked for offsets once per poll.

    Topics that do not exist yet (the catalog's changelog appears when the catalog starts) are
    looked up again at the next poll.
    """

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str] | None = None) -> None:
        self.kafka = kafka
        self.topics = list(topics or [*STAGE_TOPICS.values(), *DEAD_LETTER_TOPICS])
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None)

    async def __aenter__(self) -> OffsetReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _known(self) -> list[TopicPartition]:
        missing = [n for n in self.topics if n not in self._partitions]
        if missing:
            full = {self.kafka.topic(n): n for n in missing}
            try:  # one request for all, usually
                found = await partitions_of(self.kafka, list(full))
            except LookupError:  # some do not exist yet: ask one by one
                found = []
                for name in full:
                    try:
                        found += await partitions_of(self.kafka, [name])
                    except LookupError:
                        continue
            for tp in found:
                self._partitions.setdefault(full[tp.topic], []).append(tp)
        return [tp for parts in self._partitions.values() for tp in parts]

    async def offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        parts = await self._known()
        if not parts:
            return {}, {}
        begin = await self._consumer.beginning_offsets(parts)
        end = await self._consumer.end_offsets(parts)
        return begin, end

    async def counts(self, expected: int) -> Counts:
        begin, end = await self.offsets()
        return counts_from_offsets(begin, end, self.kafka.topic_prefix, expected, time.monotonic())

    async def records(self, topic: str) -> int:
        """Records a topic holds now (end minus beginning offsets, all partitions)."""
        begin, end = await self.offsets()
        full = self.kafka.topic(topic)
        return sum(end[tp] - begin[tp] for tp in end if tp.topic == full)


@dataclass
class Tracker:
    """Rates and ETAs from successive ``Counts``: segments per second over a sliding window."""

    expected: int
    window_s: float = 30.0
    started: float | None = None
    history: deque[Counts] = field(default_factory=deque)
    last_change: float | None = None

    def update(self, counts: Counts) -> None:
        if self.started is None:
            self.started = counts.t
            self.last_change = counts.t
        if self.history and (
            counts.reached != self.history[-1].reached or counts.dead != self.history[-1].dead
        ):
            self.last_change = counts.t
        self.history.append(counts)
        while len(self.history) > 2 and counts.t - self.history[1].t >= self.window_s:
            self.history.popleft()

    @property
    def now(self) -> Counts:
        return self.history[-1] if self.history else Counts(dict.fromkeys(LABELS, 0), 0, 0.0)

    @property
    def elapsed(self) -> float:
        return self.now.t - self.started if self.started is not None else 0.0

    @property
    def idle_s(self) -> float:
        """Seconds since any count last changed."""
        return self.now.t - self.last_change if self.last_change is not None else 0.0

    @property
    def done(self) -> bool:
        """Every segment catalogued or dead-lettered."""
        return self.expected > 0 and self.now.finished >= self.expected

    def count(self, label: str) -> int:
        return self.now.dead if label == DEAD else self.now.reached.get(label, 0)

    def rate(self, label: str) -> float | None:
        """Segments per second reaching ``label`` over the window; None before two samples a
        second apart."""
        if len(self.history) < 2:
            return None
        first, last = self.history[0], self.history[-1]
        span = last.t - first.t
        if span < 1.0:
            return None

        def of(c: Counts) -> int:
            return c.dead if label == DEAD else c.reached.get(label, 0)

        return (of(last) - of(first)) / span

    def eta(self, label: str) -> float | None:
        """Seconds until every segment has reached ``label`` at the current rate: 0 when done,
        None when unknown (no rate yet, or nothing moving). For "catalogued", the dead-lettered
        segments count as arrived (they will never be catalogued)."""
        target = self.expected - (self.now.dead if label == LABELS[-1] else 0)
        remaining = target - self.count(label)
        if remaining <= 0:
            return 0.0
        rate = self.rate(label)
        if not rate or rate <= 0:
            return None
        return remaining / rate


def format_duration(seconds: float | None) -> str:
    """``-`` (unknown), ``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    if 0 < rate < 0.1:
        return f"{rate * 60:.1f} seg/min"
    return f"{rate:.1f} seg/s"


def plain_line(tracker: Tracker) -> str:
    """One line for logs and pipes: every stage's count, the last stage's rate and ETA."""
    n = tracker.expected
    parts = [f"{label} {tracker.count(label)}/{n}" for label in LABELS]
    last = LABELS[-1]
    return (
        f"[{format_duration(tracker.elapsed):>10}] "
        + "  ".join(parts)
        + f"  {DEAD} {tracker.count(DEAD)}"
        + f"  ({format_rate(tracker.rate(last))}, ETA {format_duration(tracker.eta(last))})"
    )


def _eta_text(eta: float | None) -> str:
    return "done" if eta == 0.0 else format_duration(eta)


def render_table(tracker: Tracker) -> Table:
    """The live view: one row per stage with a bar, the count, the rate and the ETA."""
    n = tracker.expected
    table = Table(
        title=f"{tracker.now.finished}/{n} segments through · {format_duration(tracker.elapsed)}",
        title_justify="left",
        box=None,
        padding=(0, 1),
    )
    table.add_column("stage")
    table.add_column("", width=32)
    table.add_column("segments", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("ETA", justify="right")
    for label in LABELS:
        count = tracker.count(label)
        style = "green" if count >= n else "cyan"
        table.add_row(
            label,
            ProgressBar(total=max(n, 1), completed=count, width=32, complete_style=style),
            f"{count}/{n}",
            format_rate(tracker.rate(label)),
            _eta_text(tracker.eta(label)),
        )
    dead = tracker.count(DEAD)
    table.add_row(
        Text(DEAD, style="red" if dead else ""),
        "",
        Text(str(dead), style="red" if dead else ""),
        "",
        "",
    )
    return table


class Display:
    """Shows a ``Tracker``: a live table on a terminal, else a plain line when the counts changed
    (at most every ``interval_s``) or every ``heartbeat_s`` anyway, and always the last state."""

    def __init__(
        self,
        console: Console,
        interval_s: float = 5.0,
        heartbeat_s: float = 60.0,
        live: bool | None = None,
    ) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self._live: Live | None = None
        self._printed_at: float | None = None
        self._printed: tuple | None = None
        self._tracker: Tracker | None = None

    def __enter__(self) -> Display:
        if self.live:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif self._tracker is not None:
            self._print(self._tracker, force=True)

    def update(self, tracker: Tracker) -> None:
        self._tracker = tracker
        if self._live is not None:
            self._live.update(render_table(tracker))
        else:
            self._print(tracker)

    def _print(self, tracker: Tracker, force: bool = False) -> None:
        state = (tuple(tracker.now.reached.values()), tracker.now.dead)
        now = tracker.now.t
        since = None if self._printed_at is None else now - self._printed_at
        due = (
            force
            or since is None
            or (state != self._printed and since >= self.interval_s)
            or since >= self.heartbeat_s
        )
        if not due or (force and state == self._printed and since is not None and since < 1):
            return
        self.console.print(
            f"   {plain_line(tracker)}", markup=False, highlight=False, soft_wrap=True
        )
        self._printed_at, self._printed = now, state


def task_bar(console: Console | None = None, *, transient: bool = False) -> Progress:
    """A progress bar for a long command (simulate, ingest, dlq replay), on stderr so that
    stdout stays the command's answer; disabled (prints nothing) when stderr is not a terminal."""
    console = console or Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=transient,
    )
