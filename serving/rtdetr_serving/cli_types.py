"""Argument types for ``rtdetr-serve``: every number and output path is checked while the command
line is parsed, so a mistake is refused in one line naming the flag before any work is done.

Without them ``--http-port 99999`` listened somewhere else, ``--threshold 7`` kept nothing,
``--max-batch 0`` fell back to the catalog without a word, and ``infer --output`` into an
unwritable place failed with a traceback after every image had been sent. argparse turns an
:class:`argparse.ArgumentTypeError` into ``rtdetr-serve <cmd>: error: argument --flag: <why>``
and exit code 2 (a usage error, never worth retrying).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
from collections.abc import Callable
from pathlib import Path

from rtdetr_serving.errors import UsageError
from rtdetr_spec.storage import probe_writable

#: Largest batch any flag accepts: far above every catalog entry (64) and Triton's practice.
MAX_BATCH = 1024
#: Frames per second of one camera stream: 1000 is already far beyond any camera, and below one
#: frame per 100 s a figure is a typo (1e-300 promised more streams than there are atoms).
MIN_FPS, MAX_FPS = 0.01, 1000.0
#: Seconds any single timeout may take.
MAX_SECONDS = 86400.0
#: Camera streams one command may plan or simulate (the largest catalog GPU takes 316).
MAX_STREAMS = 1_000_000


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An integer ``lo <= n <= hi``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {n}")
        return n

    parse.__name__ = "integer"
    return parse


def float_in(
    lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """A finite float between ``lo`` and ``hi`` (either end open); nan and inf are refused."""
    lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
    interval = f"{lb}{lo:g}, {hi:g}{rb}"

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (
            math.isfinite(x)
            and (x > lo if lo_open else x >= lo)
            and (x < hi if hi_open else x <= hi)
        )
        if not inside:
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return x

    parse.__name__ = "number"
    return parse


port = int_in(1, 65535)
batch = int_in(1, MAX_BATCH)
probability = float_in(0.0, 1.0)
fps = float_in(MIN_FPS, MAX_FPS)
seconds = float_in(0.0, MAX_SECONDS, lo_open=True)


def endpoint(text: str) -> str:
    """``HOST:PORT`` (``[v6addr]:PORT`` too), the form Triton's HTTP and gRPC clients take."""
    if "://" in text:
        raise argparse.ArgumentTypeError(f"give HOST:PORT without a scheme, got {text!r}")
    host, sep, digits = text.rpartition(":")
    if not sep or not host.strip("[]"):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        port(digits)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{text}: bad port: {e}") from None
    return text


def input_file(text: str) -> str:
    """A file that exists and can be read (checked before connecting to anything)."""
    p = Path(text).expanduser()
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a file")
    try:
        with p.open("rb"):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{text}: cannot read: {e.strerror or e}") from None
    return text


def input_dir(text: str) -> str:
    """A folder that exists."""
    if not Path(text).expanduser().is_dir():
        why = "not a directory" if os.path.lexists(text) else "no such directory"
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return text


def distinct_ports(**ports: int | None) -> None:
    """Refuse two endpoints of one server on the same port (tritonserver would fail to bind)."""
    given = {f"--{name}-port": n for name, n in ports.items() if n is not None}
    for flag, n in given.items():
        same = [f for f, m in given.items() if m == n and f != flag]
        if same:
            raise UsageError(f"{flag} {n} is also {same[0]}: each endpoint needs its own port")


def outputs_spare_inputs(images: list[str], output: str | None, annotate: str | None) -> None:
    """``infer``'s writes never replace an input, checked before the first request.

    An annotated copy lands at ``annotate/<file name>``: into the images' own folder it would
    replace the source, and two inputs of one name would replace each other.
    """
    sources = {Path(i).resolve(): i for i in images}
    if output is not None and Path(output).resolve() in sources:
        raise UsageError(f"--output {output} is one of the input images; it would be replaced")
    if annotate is None:
        return
    folder, names = Path(annotate).resolve(), dict[str, str]()
    for path, given in sources.items():
        if path.parent == folder:
            raise UsageError(f"--annotate {annotate} holds the input {given}; it would be replaced")
        if path.name in names:
            raise UsageError(
                f"--annotate: {names[path.name]} and {given} share the file name {path.name}"
            )
        names[path.name] = given


def _writable_dir(text: str, *, shown: str) -> Path:
    """``text`` as a folder a file can be created in (or under), else one line naming it."""
    p = Path(text).expanduser()
    base, err = probe_writable(p)
    if err is not None:
        cause = err.strerror or str(err)
        if err.errno == errno.ENOENT:  # /proc and friends answer ENOENT for a new file
            cause = "cannot create files there"
        raise argparse.ArgumentTypeError(f"{shown}: not writable: {cause} ({base})") from None
    return p


def output_file(text: str) -> str:
    """A file that can be written (through a temp file and a rename in its folder)."""
    p = Path(text).expanduser()
    if not text or p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, not a file")
    _writable_dir(str(p.parent), shown=text)
    return text


def output_dir(text: str) -> str:
    """A folder that exists and is writable, or that can be created."""
    if not text:
        raise argparse.ArgumentTypeError("an empty folder name")
    p = Path(text).expanduser()
    if os.path.lexists(p) and not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    _writable_dir(text, shown=text)
    return text
