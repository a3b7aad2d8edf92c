"""Reading and printing the catalogue, for operators and analysts (``lisa-choreo catalog``).

The catalog service writes the compacted ``lisa.catalog``; this module only reads it, without a
consumer group, so it never disturbs the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from choreo import codec
from choreo.errors import DecodeError
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from lisa_pipeline.events import CatalogSource
from lisa_pipeline.topics import CATALOG

log = structlog.get_logger(__name__)


async def read_catalogue(settings: KafkaSettings | None = None) -> list[CatalogSource]:
    """The current catalogue: the latest record per source id on ``lisa.catalog``, by frequency.

    Reads to the end offsets as of now without a consumer group (commits nothing), so it works
    whether the compacted topic has been cleaned yet or not.
    """
    settings = settings or KafkaSettings()
    async with TopicReader(settings, [CATALOG]) as reader:
        records = await reader.snapshot()
    latest: dict[bytes | None, Any] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[record.key] = record
    out = []
    for record in latest.values():
        if record.value is None:  # a tombstone: the source was removed
            continue
        try:
            out.append(
                codec.decode(
                    record.key, record.value, record.headers, {CatalogSource.ce_type: CatalogSource}
                ).data
            )
        except DecodeError as exc:
            log.warning("unreadable catalogue record skipped", reason=exc.reason)
    return sorted(out, key=lambda s: (s.frequency_hz, s.source_id))


def format_catalogue(sources: Sequence[CatalogSource]) -> str:
    """The catalogue as a fixed-width table, for ``lisa-choreo catalog``."""
    header = (
        f"{'source':<16} {'f (Hz)':>14} {'sigma_f (Hz)':>12} {'bin':>6} {'stack':>10} "
        f"{'SNR':>7} {'FAP':>9} {'segs':>5} {'ests':>5} {'amplitude':>10}"
    )
    lines = [header]
    for s in sources:
        amplitude = f"{s.mean_amplitude:10.3e}" if s.mean_amplitude is not None else f"{'-':>10}"
        lines.append(
            f"{s.source_id:<16} {s.frequency_hz:14.9e} {s.sigma_frequency_hz:12.3e} "
            f"{s.frequency_bin:6d} {s.stacked_statistic:10.1f} {s.stacked_snr:7.2f} "
            f"{s.fap:9.2e} {s.n_segments:5d} {s.n_estimates:5d} {amplitude}"
        )
    lines.append(f"{len(sources)} source(s)")
    return "\n".join(lines)


