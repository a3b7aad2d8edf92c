"""Per edge of the topology: throughput, consumer lag and the age of the oldest waiting record.

Pure bookkeeping fed by the monitor (no Kafka here):

- every record it reads (``record``): appended records per topic and producer over a sliding
  window (events/s over the last minute), and, on consumed topics, the records their consumer
  has not committed yet (offset, timestamp);
- the consuming group's committed offsets and the topic's end offsets, read every few seconds
  (``offsets``): the consumption rate over the window, the lag and the oldest waiting record.

Lag is counted in records: those the monitor read at or after the group's committed offset, plus
those it has not read yet (end offset minus its own position). Counting records rather than
``end - committed`` leaves out the commit markers a transactional producer (ingest) writes,
which take an offset each and which a consumer never commits past.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class _Partition:
    pending: deque[tuple[int, int]] = field(default_factory=deque)  # (offset, timestamp ms)
    committed: int | None = None
    end: int | None = None
    position: int | None = None

    def prune(self) -> None:
        if self.committed is not None:
            while self.pending and self.pending[0][0] < self.committed:
                self.pending.popleft()


class Traffic:
    def __init__(self, consumed: Iterable[str], window_s: float = 60.0) -> None:
        self.window_ms = int(window_s * 1000)
        self.consumed = set(consumed)
        self._appended: dict[str, deque[tuple[int, str]]] = {}
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._history: dict[str, deque[tuple[int, int]]] = {}  # topic -> (t ms, sum committed)

    def record(self, topic: str, partition: int, offset: int, ts_ms: int, source: str) -> None:
        """A record the monitor read (topic without the prefix)."""
        appended = self._appended.setdefault(topic, deque())
        appended.append((ts_ms, source))
        while appended and appended[0][0] < ts_ms - self.window_ms:
            appended.popleft()  # kept to the window even when nobody asks
        if topic in self.consumed:
            part = self._partitions.setdefault((topic, partition), _Partition())
            if (part.committed is None or offset >= part.committed) and (
                not part.pending or offset > part.pending[-1][0]
            ):
                part.pending.append((offset, ts_ms))

    def offsets(
        self,
        topic: str,
        committed: Mapping[int, int],
        ends: Mapping[int, int],
        positions: Mapping[int, int],
        now_ms: int,
    ) -> None:
        """The consumer group's committed offsets, the end offsets and the monitor's own
        positions on ``topic``, by partition, as read at ``now_ms``."""
        total = 0
        for p in set(ends) | set(committed):
            part = self._partitions.setdefault((topic, p), _Partition())
            if p in committed:
                part.committed = committed[p]
                total += committed[p]
            part.end = ends.get(p, part.end)
            part.position = positions.get(p, part.position)
            part.prune()
        history = self._history.setdefault(topic, deque())
        history.append((now_ms, total))
        while len(history) > 2 and history[1][0] <= now_ms - self.window_ms:
            history.popleft()

    def _window(self, topic: str, now_ms: int) -> deque[tuple[int, str]]:
        appended = self._appended.get(topic, deque())
        while appended and appended[0][0] < now_ms - self.window_ms:
            appended.popleft()
        return appended

    def produced_rate(self, topic: str, now_ms: int, source: str | None = None) -> float:
        """Records appended to ``topic`` (by ``source``) per second over the window."""
        window = self._window(topic, now_ms)
        n = sum(1 for ts, s in window if ts <= now_ms and (source is None or s == source))
        return n / (self.window_ms / 1000)

    def produced(self, topic: str, now_ms: int) -> int:
        return len(self._window(topic, now_ms))

    def consumed_rate(self, topic: str) -> float | None:
        """Records its consumer committed per second over the window (None: not known yet)."""
        history = self._history.get(topic)
        if not history or len(history) < 2:
            return None
        (t0, n0), (t1, n1) = history[0], history[-1]
        return max(0, n1 - n0) / ((t1 - t0) / 1000) if t1 > t0 else None

    def lag(self, topic: str, now_ms: int) -> dict[str, float | int | None]:
        """Records waiting for the consumer, and the age of the oldest (s)."""
        waiting = 0
        oldest: int | None = None
        known = False
        for (t, _), part in self._partitions.items():
            if t != topic:
                continue
            part.prune()
            unread = 0
            if part.end is not None and part.position is not None:
                unread = max(0, part.end - part.position)
                known = True
            waiting += len(part.pending) + unread
            if part.pending:
                ts = part.pending[0][1]
                oldest = ts if oldest is None else min(oldest, ts)
        return {
            "lag": waiting if known or waiting else None,
            "oldest_s": round(max(0, now_ms - oldest) / 1000, 3) if oldest is not None else None,
        }

    def committed(self, topic: str) -> dict[int, int | None]:
        return {p: part.committed for (t, p), part in self._partitions.items() if t == topic}
