"""Progress arithmetic and rendering without a broker: counts from offsets, rates, ETAs, the live
table and the plain lines."""

from __future__ import annotations

import io

import pytest
from aiokafka import TopicPartition
from rich.console import Console

from lisa_choreo import progress
from lisa_choreo.progress import DEAD, LABELS, Counts, Display, Tracker


def counts(t: float, raw=0, cond=0, searched=0, est=0, cat=0, dead=0) -> Counts:
    values = (raw, cond, searched, est, cat)
    return Counts(dict(zip(LABELS, values, strict=True)), dead, t)


def test_stages_follow_the_pipeline_and_catalogued_counts_the_changelog():
    assert LABELS == ("raw", "conditioned", "searched", "estimated", "catalogued")
    assert progress.STAGE_TOPICS["raw"] == "lisa.segments.raw"
    assert progress.STAGE_TOPICS["searched"] == "lisa.candidates.gb"
    assert progress.STAGE_TOPICS["catalogued"] == "catalog-stacks-changelog"
    assert set(progress.DEAD_LETTER_TOPICS) == {
        "lisa.segments.raw.dlq",
        "lisa.segments.conditioned.dlq",
        "lisa.candidates.gb.dlq",
        "lisa.sources.estimates.dlq",
    }


def test_counts_from_offsets_sum_partitions_strip_the_prefix_and_cap_commit_markers():
    p = "run-1."
    begin = {
        TopicPartition(p + "lisa.segments.raw", 0): 0,
        TopicPartition(p + "lisa.segments.raw", 1): 2,
        TopicPartition(p + "lisa.segments.conditioned", 0): 0,
        TopicPartition(p + "catalog-stacks-changelog", 0): 0,
        TopicPartition(p + "lisa.candidates.gb.dlq", 0): 0,
    }
    end = {
        TopicPartition(p + "lisa.segments.raw", 0): 6,  # 5 segments + a transaction marker
        TopicPartition(p + "lisa.segments.raw", 1): 8,  # 5 + a marker, from offset 2
        TopicPartition(p + "lisa.segments.conditioned", 0): 7,
        TopicPartition(p + "catalog-stacks-changelog", 0): 4,
        TopicPartition(p + "lisa.candidates.gb.dlq", 0): 1,
    }
    c = progress.counts_from_offsets(begin, end, p, expected=10, t=5.0)
    assert c.reached == {
        "raw": 10,
        "conditioned": 7,
        "searched": 0,
        "estimated": 0,
        "catalogued": 4,
    }
    assert c.dead == 1
    assert c.finished == 5
    assert c.t == 5.0


def test_rate_and_eta_over_the_window():
    tracker = Tracker(expected=100, window_s=30.0, started=0.0)
    assert tracker.rate("catalogued") is None
    assert tracker.eta("catalogued") is None
    tracker.update(counts(0.0, raw=100))
    tracker.update(counts(10.0, raw=100, cond=40, searched=30, est=20, cat=20))
    assert tracker.rate("catalogued") == pytest.approx(2.0)
    assert tracker.eta("catalogued") == pytest.approx(40.0)
    assert tracker.eta("raw") == 0.0
    assert tracker.elapsed == 10.0
    # the window slides: only the last 30 s count
    for t in range(11, 61):
        tracker.update(counts(float(t), raw=100, cond=100, searched=100, est=100, cat=30 + t))
    assert tracker.rate("catalogued") == pytest.approx(1.0)
    assert tracker.history[0].t >= 60 - 31


def test_dead_letters_count_as_finished_and_shorten_the_eta():
    tracker = Tracker(expected=10, started=0.0)
    tracker.update(counts(0.0, raw=10))
    tracker.update(counts(4.0, raw=10, cond=8, searched=8, est=8, cat=4, dead=2))
    assert tracker.eta("catalogued") == pytest.approx(4 / 1.0)  # 10 - 2 dead - 4 done at 1/s
    assert not tracker.done
    tracker.update(counts(8.0, raw=10, cond=8, searched=8, est=8, cat=8, dead=2))
    assert tracker.done
    assert tracker.count(DEAD) == 2


def test_idle_time_since_the_last_change():
    tracker = Tracker(expected=5, started=0.0)
    tracker.update(counts(0.0))
    tracker.update(counts(3.0, raw=5))
    tracker.update(counts(50.0, raw=5))
    assert tracker.idle_s == pytest.approx(47.0)


def test_a_run_of_nothing_is_never_done():
    assert not Tracker(expected=0).done


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")],
)
def test_format_duration(seconds, text):
    assert progress.format_duration(seconds) == text


def test_format_rate():
    assert progress.format_rate(None) == "-"
    assert progress.format_rate(2.345) == "2.3 seg/s"
    assert progress.format_rate(0.05) == "3.0 seg/min"


def test_plain_line_names_every_stage_with_counts_rate_and_eta():
    tracker = Tracker(expected=30, started=0.0)
    tracker.update(counts(0.0, raw=30))
    tracker.update(counts(10.0, raw=30, cond=25, searched=20, est=20, cat=10, dead=1))
    line = progress.plain_line(tracker)
    for part in (
        "raw 30/30",
        "conditioned 25/30",
        "searched 20/30",
        "estimated 20/30",
        "catalogued 10/30",
        "dead-lettered 1",
        "1.0 seg/s",
        "ETA 19 s",
        "10 s]",
    ):
        assert part in line, (part, line)


def test_live_table_renders_a_row_per_stage():
    tracker = Tracker(expected=4, started=0.0)
    tracker.update(counts(0.0, raw=4, cond=2))
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=False).print(progress.render_table(tracker))
    text = out.getvalue()
    for label in (*LABELS, DEAD):
        assert label in text
    assert "4/4" in text
    assert "2/4" in text
    assert "0/4 segments through" in text


def test_display_without_a_terminal_prints_changes_at_most_every_interval_and_the_end():
    out = io.StringIO()
    console = Console(file=out, width=80)
    tracker = Tracker(expected=3, started=0.0)
    with Display(console, interval_s=5.0, heartbeat_s=60.0) as display:
        assert not display.live
        for t, cat in ((0.0, 0), (1.0, 1), (2.0, 2), (6.0, 2), (7.0, 3)):
            tracker.update(counts(t, raw=3, cond=3, searched=3, est=3, cat=cat))
            display.update(tracker)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # t=0 (first), t=6 (changed, 5 s later), the end (t=7)
    assert "catalogued 0/3" in lines[0]
    assert "catalogued 2/3" in lines[1]
    assert "catalogued 3/3" in lines[2]
    assert all(len(line) > 80 for line in lines)  # one line each, never wrapped at 80 columns
