"""Renders spans (``choreo.tracing.span_record`` dicts) of one trace as an indented tree."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_trace(spans: Iterable[dict]) -> dict[str, list[dict]]:
    traces: dict[str, list[dict]] = defaultdict(list)
    for span in spans:
        traces[span["trace_id"]].append(span)
    return traces


def render(spans: list[dict]) -> list[str]:
    """One line per span: service, operation, start offset, duration, queue wait, status."""
    if not spans:
        return []
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict]] = defaultdict(list)
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)
    t0 = min(s["start_ns"] for s in spans)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: s["start_ns"]):
            wait = span["attributes"].get("lisa.queue_wait_ms")
            offset_ms = (span["start_ns"] - t0) / 1e6
            duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
            lines.append(
                f"{'  ' * depth}{span['service']:<14} {span['name']:<32} "
                f"+{offset_ms:8.1f} ms  {duration_ms:7.1f} ms"
                + (f"  waited {wait:6.1f} ms" if wait is not None else "")
                + ("" if span["status"] != "ERROR" else "  ERROR")
            )
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    return lines
