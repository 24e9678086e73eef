"""The fetch step's progress line: how a download in an init container tells the operator how far
it got.

``python -m rtdetr_spec.sources fetch`` prints one line to stdout every 5 % of a download (every
64 MiB when the size is unknown; over the whole folder for an S3 folder)::

    RTDETR_FETCH {"v":1,"done":52428800,"total":104857600}

The operator reads the tail of the running fetch container's log through the pod log API, as it
does a training's progress lines (rtdetr_spec.progress), and shows the newest line in
``status.sources`` while the file downloads. This module is the whole contract, imported by both
sides; it is I/O-free. Reading is tolerant and bounded like the training's: malformed lines, lines
of an unknown version and lines over :data:`MAX_LINE_BYTES` are skipped, and only the last
:data:`MAX_SCAN_BYTES` of a log are looked at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: What starts every progress line (followed by one space and a JSON object).
PREFIX = "RTDETR_FETCH "
#: The line format's version; readers skip lines of versions they do not know.
VERSION = 1
#: Longest line a reader parses (a real line is under 100 bytes).
MAX_LINE_BYTES = 512
#: How much of a log's end a reader scans (the step prints about 20 lines per file).
MAX_SCAN_BYTES = 16 * 1024


@dataclass(frozen=True)
class FetchProgress:
    """Bytes of a source downloaded so far, and its size when the server said (else None)."""

    done: int
    total: int | None

    @property
    def percent(self) -> int | None:
        """Whole percent done, 0-100 (None while the size is unknown)."""
        if not self.total:
            return None
        return max(0, min(100, self.done * 100 // self.total))


def format_line(progress: FetchProgress) -> str:
    """The line to print (no newline)."""
    return PREFIX + json.dumps(
        {"v": VERSION, "done": progress.done, "total": progress.total}, separators=(",", ":")
    )


def parse_line(line: str) -> FetchProgress | None:
    """The progress a log line carries, or None for any other or malformed line."""
    start = line.find(PREFIX)
    if start < 0 or len(line) > MAX_LINE_BYTES:
        return None
    try:
        raw = json.loads(line[start + len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        return None
    done, total = raw.get("done"), raw.get("total")
    if not _count(done) or not (total is None or _count(total)):
        return None
    return FetchProgress(done, total)


def latest(text: str) -> FetchProgress | None:
    """The newest readable progress line in the last :data:`MAX_SCAN_BYTES` of ``text``."""
    if len(text) > MAX_SCAN_BYTES:
        text = text[-MAX_SCAN_BYTES:]
        text = text[text.find("\n") + 1 :]  # the cut line is partial
    for line in reversed(text.splitlines()):
        if (found := parse_line(line)) is not None:
            return found
    return None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
