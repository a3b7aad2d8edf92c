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
    """One line per span: service, operation, start offset, duration, queue wait, status.

    Columns are as wide as their longest entry (topic prefixes make names long); spans whose
    parent is not among them (a missing or foreign parent) are shown as roots.
    """
    if not spans:
        return []
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict]] = defaultdict(list)
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)
    t0 = min(s["start_ns"] for s in spans)
    rows: list[tuple[str, dict]] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: (s["start_ns"], s["end_ns"])):
            rows.append(("  " * depth, span))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    width = max(len(indent + str(span["service"])) for indent, span in rows)
    name_width = max(len(span["name"]) for _, span in rows)
    lines: list[str] = []
    for indent, span in rows:
        attributes = span.get("attributes") or {}
        wait = attributes.get("lisa.queue_wait_ms")
        offset_ms = (span["start_ns"] - t0) / 1e6
        duration_ms = (span["end_ns"] - span["start_ns"]) / 1e6
        line = (
            f"{(indent + str(span['service'])):<{width}}  {span['name']:<{name_width}} "
            f"{f'+{offset_ms:.1f}':>10} ms {duration_ms:8.1f} ms"
        )
        if wait is not None:
            line += f"  waited {float(wait):7.1f} ms"
        if span["status"] == "ERROR":
            reason = attributes.get("lisa.dead_letter_reason")
            line += f"  ERROR {reason}" if reason else "  ERROR"
        if span.get("links"):
            line += f"  links {len(span['links'])} trace(s)"
        lines.append(line.rstrip())
    return lines
