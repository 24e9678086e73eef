"""Drop from a hash-pinned lock every package a base image already provides and pins.

    python filter_lock.py requirements/trainer.lock /etc/pip/constraint.txt > add.lock

NVIDIA's NGC PyTorch images pin every Python package they were built and tested with in
``/etc/pip/constraint.txt`` (and point ``PIP_CONSTRAINT`` at it). Installing our lock over them
would replace torch's tested numpy, scipy or protobuf, or fail against the constraint. So the
trainer image keeps the base image's packages and installs, hash-checked and without dependency
resolution, only the locked packages the base lacks. A missing constraint file keeps the whole
lock (another base image).

Standard library only: it runs inside the image build, before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:[=<>!~@]|$)")


def normalize(name: str) -> str:
    """PEP 503 name normalization (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_names(constraints: str) -> set[str]:
    """Distribution names a constraints/requirements text mentions (comments ignored)."""
    names = set()
    for line in constraints.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = _NAME.match(line)
        if m:
            names.add(normalize(m.group(1)))
    return names


def blocks(lock: str) -> list[tuple[str | None, str]]:
    """The lock split into (distribution name, text) blocks; None for header comments."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in lock.splitlines(keepends=True):
        m = _NAME.match(line) if line[:1].isalnum() else None
        if m:
            out.append((normalize(m.group(1)), [line]))
        else:
            out[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in out]


def filter_lock(lock: str, constraints: str) -> tuple[str, list[str]]:
    """The lock without the packages ``constraints`` pins, and the names dropped."""
    provided = pinned_names(constraints)
    kept, dropped = [], []
    for name, text in blocks(lock):
        if name is not None and name in provided:
            dropped.append(name)
        else:
            kept.append(text)
    return "".join(kept), dropped


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: filter_lock.py LOCK CONSTRAINTS", file=sys.stderr)
        return 2
    lock, constraints = Path(argv[0]), Path(argv[1])
    text = constraints.read_text() if constraints.is_file() else ""
    kept, dropped = filter_lock(lock.read_text(), text)
    sys.stdout.write(kept)
    print(
        f"filter_lock: {len(dropped)} package(s) left to the base image: {', '.join(dropped)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
