"""``python -m rtdetr_spec.sources fetch``: the download step of a task, as a container command.

Fetches one source (or every object of an S3 folder, a URI ending in ``/``) into the cache
(``--cache``, keyed by content digest; nothing is downloaded when the cache holds it), links
``--link`` to the verified file (for a folder: makes it a folder of links, one per object), and
writes a JSON summary (``uri``, ``sha256``, ``size``, ``transferred``, ``cached``; a folder adds
``files``, and its sha256 is that of its sorted ``<path> <sha256>`` lines) to ``--summary`` (a
termination log) and progress lines (:mod:`rtdetr_spec.sources.report`, at most one per 5 %)
to stdout, which the operator shows in the owner's status while the download runs. Credentials
come from the environment only (a Secret's keys: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_ENDPOINT_URL_S3``; ``HF_TOKEN``; ``NGC_API_KEY``) and are never printed. Exit 2: the URI
itself is wrong; 1: the fetch failed after its retries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from rtdetr_spec.sources.fetch import Fetcher, FetchError, S3Settings
from rtdetr_spec.sources.report import FetchProgress, format_line
from rtdetr_spec.sources.uri import SourceURIError, parse


def _headers(scheme: str) -> dict[str, str]:
    token = {"hf": "HF_TOKEN", "ngc": "NGC_API_KEY"}.get(scheme)
    value = os.environ.get(token) if token else None
    return {"Authorization": f"Bearer {value}"} if value else {}


def _link(link: Path, files: list[tuple[str, Path]]) -> None:
    """Point ``link`` at the cached file, or (a folder) make it a folder of links, atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp)
    tmp.unlink(missing_ok=True)
    if files == [("", files[0][1])]:
        tmp.symlink_to(files[0][1])
        tmp.replace(link)
        return
    for relative, path in files:
        (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp / relative).symlink_to(path)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # a restarted pod's links from its earlier attempt
    tmp.replace(link)


def _folder_digest(files: list[tuple[str, Path]]) -> str:
    """One digest for a folder: sha256 over its sorted ``<relative path> <file sha256>`` lines."""
    lines = "".join(f"{relative} {path.name}\n" for relative, path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtdetr_spec.sources")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="fetch one source into the cache")
    f.add_argument("--uri", required=True)
    f.add_argument("--sha256")
    f.add_argument("--cache", type=Path, required=True)
    f.add_argument("--link", type=Path, help="symlink this path to the cached file")
    f.add_argument("--summary", type=Path, help="write the JSON summary here")
    args = p.parse_args(argv)
    try:
        source = parse(args.uri, sha256=args.sha256)
    except SourceURIError as e:
        print(f"rtdetr_spec.sources: {e}", file=sys.stderr)
        return 2
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        step = done * 20 // total if total else done >> 26  # every 5 %, or every 64 MiB
        if step != last[0]:
            last[0] = step
            print(format_line(FetchProgress(done, total)), flush=True)

    fetcher = Fetcher(
        args.cache, s3=S3Settings.from_env(), headers=_headers(source.scheme), progress=progress
    )
    try:
        if source.is_folder:
            files = fetcher.fetch_folder(source)
        else:
            files = [("", fetcher.fetch(source, args.sha256))]
    except FetchError as e:
        print(f"rtdetr_spec.sources: {e}", file=sys.stderr)
        return 1
    if args.link:
        _link(args.link, files)
    summary: dict[str, object] = {
        "uri": args.uri.split("?", 1)[0],
        "sha256": files[0][1].name if not source.is_folder else _folder_digest(files),
        "size": sum(path.stat().st_size for _, path in files),
        "transferred": fetcher.transferred,
        "cached": fetcher.transferred == 0,
    }
    if source.is_folder:
        summary["files"] = len(files)
    text = json.dumps(summary)
    if args.summary:
        args.summary.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
