"""Source URIs in a training's experiment: validated, rewritten to local paths, fetched first.

``train.pretrained_model_path``, ``model.pretrained_backbone_path`` and the dataset splits'
``image_dir`` (an S3 folder) and ``json_file`` may be source URIs (docs/sources.md).
:func:`plan_sources` checks each (one problem per key, naming it) and rewrites the key to
``/sources/<n>/<name>`` in the resolved experiment; the task pods then fetch them first
(fetch_steps.py: training pods everything, evaluation and export pods the dataset). Each fetch
step's progress lines (read from the leader pod's log while it runs) and its summary (its
termination message) become ``status.sources`` through :func:`source_status`. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rtdetr_operator.api.sources import Sources
from rtdetr_operator.fetch_steps import FETCH_PREFIX, LINKS_MOUNT, Fetch
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_operator.training.world import World
from rtdetr_spec.sources.report import FetchProgress
from rtdetr_spec.sources.uri import SourceURIError, parse

#: Experiment keys that may name a source URI (a file) and the tasks that read them.
SOURCE_KEYS = ("train.pretrained_model_path", "model.pretrained_backbone_path")
#: Dataset splits whose ``image_dir`` (an S3 folder) and ``json_file`` may be source URIs.
DATA_SPLITS = ("train_data_sources", "val_data_sources", "test_data_sources")
DATA_FIELDS = ("image_dir", "json_file")
#: Tasks that read the dataset (evaluate reads the test split, or the val split in its place;
#: export reads the val split).
DATA_TASKS = ("train", "evaluate", "export")
SCHEMES = ("s3://", "https://", "hf://", "ngc://", "http://")


def _holders(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """``(dotted key, dict holding it, field)`` for every key that may name a source URI."""
    out = []
    for key in SOURCE_KEYS:
        section, _, name = key.partition(".")
        holder = raw.get(section)
        if isinstance(holder, dict):
            out.append((key, holder, name))
    dataset = raw.get("dataset")
    for split in DATA_SPLITS if isinstance(dataset, dict) else ():
        value = dataset.get(split)
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for i, item in items:
            if not isinstance(item, dict):
                continue
            at = f"dataset.{split}" + ("" if i is None else f".{i}")
            out += [(f"{at}.{name}", item, name) for name in DATA_FIELDS]
    return out


def local_data_paths(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, path)`` of dataset fields that name a path (not a source URI, nor unset)."""
    return [
        (key, holder[name])
        for key, holder, name in _holders(raw)
        if key.startswith("dataset.")
        and isinstance(holder.get(name), str)
        and holder[name] not in ("", "??")
        and not holder[name].startswith(LINKS_MOUNT + "/")
    ]


def plan_sources(
    raw: dict[str, Any], settings: Sources | None, where: str
) -> tuple[list[Fetch], list[str]]:
    """Fetches for the URI-valued keys of ``raw`` (rewritten in place), and problems.

    One fetch per distinct URI (train and val sets often share an image folder); an
    ``image_dir`` must be an S3 folder (``s3://bucket/prefix/``), any other key a file.
    """
    fetches: dict[str, Fetch] = {}
    problems: list[str] = []
    checksums = settings.checksums if settings else {}
    for key, holder, name in _holders(raw):
        value = holder.get(name)
        if not isinstance(value, str) or not value.startswith(SCHEMES):
            continue
        try:
            source = parse(value, sha256=checksums.get(value))
        except SourceURIError as e:
            problems.append(f"{where}{key}: {e}")
            continue
        if name == "image_dir" and not source.is_folder:
            problems.append(f"{where}{key}: {value!r}: an image folder is an s3:// URI ending in /")
            continue
        if name != "image_dir" and source.is_folder:
            problems.append(f"{where}{key}: {value!r}: names a folder; this key takes a file")
            continue
        tasks = DATA_TASKS if key.startswith("dataset.") else ("train",)
        known = fetches.get(value)
        if known is None:
            path = f"{LINKS_MOUNT}/{len(fetches)}/{source.name}"
            known = Fetch(key, value, checksums.get(value), path, tasks)
        else:
            merged = tuple(t for t in DATA_TASKS if t in known.tasks or t in tasks)
            known = Fetch(known.key, value, known.sha256, known.path, merged)
        fetches[value] = known
        holder[name] = known.path
    return list(fetches.values()), problems


def source_status(
    pods: list[dict[str, Any]],
    fetches: list[Fetch],
    old: list[dict[str, Any]],
    progress: FetchProgress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(status.sources, sources fetched since old)``: one entry per source the training
    pods fetch, in the order their steps run.

    ``Pending`` until its step starts; ``Fetching`` while it runs (with the bytes done, the
    size and the percent of the step's newest progress line in the leader pod, kept between
    reads: the log is read at most once per interval, reconciles happen more often);
    ``Fetched`` with the step's summary (uri, sha256, size, transferred, cached) from its
    termination message, kept once the pods are gone. The run's own fetches are the training
    pods' (later tasks find the same files in the cache).
    """
    steps = [f for f in fetches if "train" in f.tasks]  # fetch_steps names them in this order
    summaries: dict[int, dict[str, Any]] = {}
    running: set[int] = set()
    for pod in pods:
        if ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_TASK) != "train":
            continue
        for st in (pod.get("status") or {}).get("initContainerStatuses") or []:
            index = _step_index(str(st.get("name", "")))
            if index is None or index >= len(steps):
                continue
            state = st.get("state") or {}
            if "running" in state:
                running.add(index)
            terminated = state.get("terminated") or {}
            summary = _summary(terminated.get("message"))
            if summary is None and terminated.get("exitCode") == 0:
                summary = {}  # done, yet no summary (a simulated node runs no command)
            if summary is not None:
                summaries.setdefault(index, summary)
    previous = {str(e.get("uri")): e for e in old if isinstance(e, dict)}
    out: list[dict[str, Any]] = []
    fetched: list[dict[str, Any]] = []
    for index, step in enumerate(steps):
        uri = step.uri.split("?", 1)[0]  # as the step's summary names it
        before = previous.get(uri) or {}
        if index in summaries:
            entry = {**summaries[index], "uri": uri, "state": "Fetched"}
            if before.get("state") != "Fetched":
                fetched.append(entry)
        elif before.get("state") == "Fetched" or before.get("sha256"):  # its pods are gone
            entry = {**before, "state": "Fetched"}
        elif index in running:
            entry = {"uri": uri, "state": "Fetching"}
            if progress is not None and len(running) == 1:
                entry["transferred"] = progress.done
                if progress.total is not None:
                    entry.update(size=progress.total, percent=progress.percent)
            elif before.get("state") == "Fetching":  # no read this time: the last one stands
                entry = {**before, **entry}
        else:
            entry = {"uri": uri, "state": "Pending"}
        out.append(entry)
    return out, fetched


def update_sources(status: dict[str, Any], fetches: Sequence[Fetch], world: World) -> list[str]:
    """Put :func:`source_status` into ``status`` (when the run fetches anything); the
    messages of the ``Fetched`` events to post."""
    if not fetches:
        return []
    old = status.get("sources") or []
    status["sources"], fetched = source_status(world.pods, list(fetches), old, world.fetch_progress)
    return [describe_fetched(entry) for entry in fetched]


def describe_fetched(entry: dict[str, Any]) -> str:
    """The message of a ``Fetched`` event: the source, its size, and whether it was cached."""
    size = entry.get("size")
    if not isinstance(size, int):
        return f"{entry['uri']}: fetched; its step left no summary"
    words = f"{entry['uri']}: {_bytes(size)}"
    if entry.get("files") is not None:
        words += f" in {entry['files']} files"
    return words + (", already in the cache" if entry.get("cached") else ", downloaded")


def describe_fetching(status: dict[str, Any]) -> str | None:
    """``fetching <uri> (45 %)`` for the source being downloaded now, if any."""
    for entry in status.get("sources") or []:
        if entry.get("state") == "Fetching":
            done = f" ({entry['percent']} %)" if "percent" in entry else ""
            return f"fetching {entry['uri']}{done}"
    return None


def _step_index(container: str) -> int | None:
    tail = container[len(FETCH_PREFIX) :]
    return int(tail) if container.startswith(FETCH_PREFIX) and tail.isdigit() else None


def _summary(message: str | None) -> dict[str, Any] | None:
    try:
        summary = json.loads(message or "")
    except ValueError:
        return None
    if not isinstance(summary, dict) or "uri" not in summary:
        return None
    keep = ("uri", "sha256", "size", "files", "transferred", "cached")
    return {k: summary[k] for k in keep if k in summary}


def _bytes(n: int) -> str:
    """``n`` bytes in words: ``512 B``, ``3.4 MiB``."""
    value, units = float(n), ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{n} B" if units[0] == "B" else f"{value:.1f} {units[0]}"
