"""Source URIs in a training's experiment: validated, rewritten to local paths, fetched first.

``train.pretrained_model_path``, ``model.pretrained_backbone_path`` and the dataset splits'
``image_dir`` (an S3 folder) and ``json_file`` may be source URIs (docs/sources.md).
:func:`plan_sources` checks each (one problem per key, naming it) and rewrites the key to
``/sources/<n>/<name>`` in the resolved experiment; the task pods then fetch them first
(fetch_steps.py: training pods everything, evaluation and export pods the dataset). Each fetch
step's summary comes back as its termination message, and :func:`source_status` puts the
training pods' ones in ``status.sources``. Pure functions.
"""

from __future__ import annotations

import json
from typing import Any

from rtdetr_operator.api.sources import Sources
from rtdetr_operator.fetch_steps import FETCH_PREFIX, LINKS_MOUNT, Fetch
from rtdetr_operator.training.names import LABEL_TASK
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


def source_status(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``status.sources``: each fetch step's summary (uri, sha256, size, cached) of the training
    pods (what the run downloaded; later tasks' steps find the same files in the cache)."""
    out: dict[str, dict[str, Any]] = {}
    for pod in pods:
        if ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_TASK) != "train":
            continue
        for st in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if not str(st.get("name", "")).startswith(FETCH_PREFIX):
                continue
            message = ((st.get("state") or {}).get("terminated") or {}).get("message")
            try:
                summary = json.loads(message or "")
            except ValueError:
                continue
            if isinstance(summary, dict) and "uri" in summary:
                keep = ("uri", "sha256", "size", "files", "transferred", "cached")
                entry = {k: summary[k] for k in keep if k in summary}
                out.setdefault(str(summary["uri"]), entry)
    return list(out.values())
