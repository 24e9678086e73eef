"""Small helpers shared by test tiers: a free loopback port, ``kubectl get``'s table as data."""

from __future__ import annotations

import re
import socket


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (a server started next binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table_rows(text: str) -> list[dict[str, str]]:
    """``kubectl get`` output as one {column: cell} per row.

    Cells are cut at the header's column starts, so a blank cell stays blank ("") instead of
    shifting the cells after it, which splitting on whitespace would do.
    """
    lines = text.splitlines()
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return [
        {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}
        for row in lines[1:]
    ]
