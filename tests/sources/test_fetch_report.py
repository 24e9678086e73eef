"""The fetch step's progress line: what the download prints and the operator reads back."""

from __future__ import annotations

from rtdetr_spec.sources.report import (
    MAX_LINE_BYTES,
    MAX_SCAN_BYTES,
    PREFIX,
    FetchProgress,
    format_line,
    latest,
    parse_line,
)


def test_a_line_reads_back_as_printed_and_percent_is_whole_and_bounded() -> None:
    for progress in (FetchProgress(0, 10), FetchProgress(5 << 30, 6 << 30), FetchProgress(7, None)):
        line = format_line(progress)
        assert line.startswith(PREFIX) and "\n" not in line
        assert parse_line(line) == progress
        assert parse_line("2026-12-02T10:00:00Z stdout F " + line) == progress  # a CRI log line
    assert FetchProgress(1, 3).percent == 33 and FetchProgress(7, None).percent is None
    assert FetchProgress(9, 8).percent == 100 and FetchProgress(0, 0).percent is None


def test_anything_else_is_skipped() -> None:
    bad = [
        "",
        '{"done": 1, "total": 2}',  # no prefix: another program's JSON
        PREFIX + "{truncated",
        PREFIX + '{"v": 2, "done": 1, "total": 2}',  # a newer writer's version
        PREFIX + '{"v": 1, "done": -1, "total": 2}',
        PREFIX + '{"v": 1, "done": true, "total": 2}',
        PREFIX + '{"v": 1, "done": 1, "total": "2"}',
        PREFIX + '{"v": 1, "total": 2}',
        PREFIX + "[1, 2]",
        PREFIX + '{"v": 1, "done": 1, "total": 2, "pad": "' + "x" * MAX_LINE_BYTES + '"}',
    ]
    assert [parse_line(line) for line in bad] == [None] * len(bad)


def test_the_newest_readable_line_of_a_bounded_tail_wins() -> None:
    old, new = format_line(FetchProgress(1, 100)), format_line(FetchProgress(60, 100))
    assert latest("\n".join(["starting", old, new, PREFIX + "{cut"])) == FetchProgress(60, 100)
    assert latest("no progress here\n") is None
    noise = ("x" * 200 + "\n") * (MAX_SCAN_BYTES // 100)
    assert latest(old + "\n" + noise) is None  # only the log's end is read
    assert latest(old + "\n" + noise + new) == FetchProgress(60, 100)
