"""Reading and printing the catalogue, for operators and analysts (``lisa-choreo catalog``).

The catalog service writes the compacted ``lisa.catalog``; this module only reads it, without a
consumer group, so it never disturbs the service.

A source's latest record says its status: ``promoted`` (in the catalogue), ``demoted`` (no longer
significant after a retraction) or ``retracted`` (no segment left at its bin). The catalogue is
the promoted sources; the withdrawn ones come along as ``Catalogue.withdrawn`` so that the table
of ``lisa-choreo catalog`` can show them below the catalogue (same columns, then their status
and the segments retracted), while every reader that takes the catalogue as a list
(``--csv``, the products, the pictures, the main job) sees the promoted sources only, as in
``catalog.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from choreo import codec
from choreo.errors import DecodeError
from choreo.reader import TopicReader
from choreo.settings import KafkaSettings
from lisa_pipeline.events import CatalogSource, SourceRefined
from lisa_pipeline.topics import CATALOG, SOURCES_REFINED

log = structlog.get_logger(__name__)


class Catalogue(list[CatalogSource]):
    """The promoted sources, by frequency; ``withdrawn``: the demoted and retracted ones."""

    def __init__(
        self, sources: Sequence[CatalogSource] = (), withdrawn: Sequence[CatalogSource] = ()
    ) -> None:
        super().__init__(sources)
        self.withdrawn: list[CatalogSource] = list(withdrawn)


def split_by_status(sources: Sequence[CatalogSource]) -> Catalogue:
    """Sources (latest records) as a catalogue: promoted ones, and the withdrawn beside."""
    ordered = sorted(sources, key=lambda s: (s.frequency_hz, s.source_id))
    return Catalogue(
        [s for s in ordered if s.status == "promoted"],
        [s for s in ordered if s.status != "promoted"],
    )


async def read_catalogue(settings: KafkaSettings | None = None) -> Catalogue:
    """The current catalogue: the latest record per source id on ``lisa.catalog``, by frequency;
    the promoted sources, with the demoted and retracted ones in ``withdrawn``.

    Reads to the end offsets as of now without a consumer group (commits nothing), so it works
    whether the compacted topic has been cleaned yet or not.
    """
    settings = settings or KafkaSettings()
    async with TopicReader(settings, [CATALOG]) as reader:
        records = await reader.snapshot()
    refined = await read_refined(settings)
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
    return split_by_status([s.with_refined(refined.get(s.source_id)) for s in out])


async def read_refined(settings: KafkaSettings) -> dict[str, SourceRefined]:
    """The latest refined parameters per source id (``lisa.sources.refined``, compacted); none
    if the topic does not exist (a deployment without the refine step)."""
    try:
        async with TopicReader(settings, [SOURCES_REFINED]) as reader:
            records = await reader.snapshot()
    except LookupError:
        return {}
    out: dict[str, SourceRefined] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.value is None:
            continue
        try:
            data = codec.decode(
                record.key, record.value, record.headers, {SourceRefined.ce_type: SourceRefined}
            ).data
        except DecodeError as exc:
            log.warning("unreadable refined record skipped", reason=exc.reason)
            continue
        out[data.source_id] = data
    return out


def _angle(value: float | None, sigma: float | None) -> str:
    if value is None:
        return f"{'-':>15}"
    return f"{value:7.3f}+-{sigma:<6.3f}" if sigma is not None else f"{value:7.3f}{'':8}"


def format_refined(sources: Sequence[CatalogSource]) -> str:
    """The refined physical parameters of the catalogue's sources (``lisa-choreo catalog``,
    the main job): fdot, ecliptic latitude/longitude, amplitude and inclination with 1 sigma."""
    refined = [s for s in sources if s.ecliptic_latitude_rad is not None]
    if not refined:
        return "no refined parameters (yet)"
    lines = [
        f"{'source':<16} {'fdot (Hz/s)':>20} {'ecl. lat (rad)':>15} {'ecl. lon (rad)':>15} "
        f"{'amplitude':>20} {'incl. (rad)':>15}"
    ]
    for s in refined:
        fdot = f"{s.frequency_derivative_hz_s:9.2e}+-{s.sigma_frequency_derivative_hz_s or 0:.1e}"
        amp = f"{s.amplitude:9.2e}+-{s.sigma_amplitude or 0:.1e}"
        lat = _angle(s.ecliptic_latitude_rad, s.sigma_ecliptic_latitude_rad)
        lines.append(
            f"{s.source_id:<16} {fdot:>20} {lat} "
            f"{_angle(s.ecliptic_longitude_rad, s.sigma_ecliptic_longitude_rad)} {amp:>20} "
            f"{_angle(s.inclination_rad, s.sigma_inclination_rad)}"
        )
    return "\n".join(lines)


def _row(s: CatalogSource) -> str:
    amplitude = f"{s.mean_amplitude:10.3e}" if s.mean_amplitude is not None else f"{'-':>10}"
    return (
        f"{s.source_id:<16} {s.frequency_hz:14.9e} {s.sigma_frequency_hz:12.3e} "
        f"{s.frequency_bin:6d} {s.stacked_statistic:10.1f} {s.stacked_snr:7.2f} "
        f"{s.fap:9.2e} {s.n_segments:5d} {s.n_estimates:5d} {amplitude}"
    )


def format_catalogue(sources: Sequence[CatalogSource]) -> str:
    """The catalogue as a fixed-width table, for ``lisa-choreo catalog``: the promoted sources,
    then (if any) the withdrawn ones under the same columns, each followed by its status and the
    segments retracted from its grid; the last line counts the catalogue's sources."""
    header = (
        f"{'source':<16} {'f (Hz)':>14} {'sigma_f (Hz)':>12} {'bin':>6} {'stack':>10} "
        f"{'SNR':>7} {'FAP':>9} {'segs':>5} {'ests':>5} {'amplitude':>10}"
    )
    split = split_by_status([*sources, *getattr(sources, "withdrawn", ())])
    lines = [header, *map(_row, split)]
    if split.withdrawn:
        lines.append(f"{len(split.withdrawn)} withdrawn after a retraction (not in the catalogue):")
        for s in split.withdrawn:
            retracted = ", ".join(s.retracted_segments[:3])
            more = len(s.retracted_segments) - 3
            retracted += f" (+{more})" if more > 0 else ""
            lines.append(f"{_row(s)}  {s.status}; retracted: {retracted or '-'}")
    lines.append(f"{len(split)} source(s)")
    return "\n".join(lines)
