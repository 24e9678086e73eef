"""What the three command lines (``rtdetr``, ``rtdetr-serve``, ``rtdetr-operator``) share:
``--version``, help that shows every option's default, examples kept as written, and progress
bars that appear only where a person watches.

Progress bars (tqdm, when installed) are drawn on stderr only when it is a terminal, and never
when ``--no-progress`` is given or ``RTDETR_NO_PROGRESS`` is set to anything but ``0``/empty:
a pod log is not a terminal, and a carriage-return bar there becomes one endless line. The
operator draws none. Dependency-free (tqdm is imported only when a bar is drawn).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any, TextIO, TypeVar

DISTRIBUTION = "rtdetr-operator"
NO_PROGRESS_ENV = "RTDETR_NO_PROGRESS"

T = TypeVar("T")


def version() -> str:
    """The installed distribution's version ("unknown" when run from an uninstalled tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (examples keep their lines); every option that has
    a default worth saying shows it as ``(default: X)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, list | tuple) and not default)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: ``<prog> <version>`` on stdout, exit 0."""
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {version()}",
        help="print the version and exit",
    )


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help=f"no progress bars (they are drawn only on a terminal; also ${NO_PROGRESS_ENV}=1)",
    )


def progress_wanted(no_progress: bool = False, stream: TextIO | None = None) -> bool:
    """Whether a bar may be drawn: a terminal, and neither the flag nor the variable says no."""
    if no_progress or os.environ.get(NO_PROGRESS_ENV, "") not in ("", "0"):
        return False
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def progress(
    items: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    no_progress: bool = False,
) -> Iterator[T]:
    """``items`` unchanged, with a tqdm bar on a terminal (nothing otherwise)."""
    if not progress_wanted(no_progress):
        yield from items
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield from items
        return
    bar: Any = tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False)
    try:
        yield from bar
    finally:
        bar.close()


def subparsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``(command path, parser)`` for ``parser`` and every sub-command under it."""
    yield path or parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share a parser
                    seen.add(id(sub))
                    yield from subparsers(sub, f"{path or parser.prog} {name}")


def finish_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and all its sub-commands :class:`HelpFormatter`."""
    for _, p in subparsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """``"<command> <option>"`` for every argument that has no help text (for tests)."""
    missing = []
    for path, p in subparsers(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing
