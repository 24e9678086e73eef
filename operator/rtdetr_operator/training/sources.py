"""Source URIs in a training's experiment: validated, rewritten to local paths, fetched first.

``train.pretrained_model_path``, ``model.pretrained_backbone_path`` and the dataset splits'
``image_dir`` (an S3 folder) and ``json_file`` may be source URIs (docs/sources.md).
:func:`plan_sources` checks each (one problem per key, naming it), rewrites the key to
``/sources/<n>/<name>`` in the resolved experiment, and :func:`fetch_pod_parts` builds what a
task pod adds (training pods fetch everything, evaluation and export pods the dataset): one init
container per source running the training image's ``python -m rtdetr_spec.sources fetch`` (the
trainer image carries rtdetr_spec, so no other image is pulled and nothing waits on a separate
Job), the cache volume (``/cache``) and the links (``/sources``, an emptyDir). Only the init
container gets the credentials Secret. Its summary (size, sha256, whether the cache held it)
comes back as its termination message, and :func:`source_status` puts it in ``status.sources``.
Pure functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.sources import Sources
from rtdetr_operator.children import restricted_container_security, scratch_mount
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
CACHE_MOUNT = "/cache"
LINKS_MOUNT = "/sources"
FETCH_PREFIX = "fetch-"


@dataclass(frozen=True)
class Fetch:
    key: str
    uri: str
    sha256: str | None
    path: str
    tasks: tuple[str, ...] = ("train",)


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


def fetch_pod_parts(
    fetches: list[Fetch], settings: Sources | None, image: str, pull_policy: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(init containers, volumes, mounts for the task container)`` of the training pod."""
    if not fetches:
        return [], [], []
    settings = settings or Sources()
    cache = settings.cache
    if cache.claim_name:
        volume: dict[str, Any] = {"persistentVolumeClaim": {"claimName": cache.claim_name}}
    else:
        volume = dict(cache.volume or {"emptyDir": {}})
    volumes = [{"name": "source-cache", **volume}, {"name": "source-links", "emptyDir": {}}]
    cache_mount: dict[str, Any] = {"name": "source-cache", "mountPath": CACHE_MOUNT}
    if cache.sub_path:
        cache_mount["subPath"] = cache.sub_path
    env = [{"name": "AWS_REGION", "value": settings.s3_region}]
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": settings.s3_endpoint})
    inits = []
    for i, f in enumerate(fetches):
        command = ["python", "-m", "rtdetr_spec.sources", "fetch", "--uri", f.uri]
        command += ["--cache", CACHE_MOUNT, "--link", f.path]
        command += ["--summary", "/dev/termination-log"]
        if f.sha256:
            command += ["--sha256", f.sha256]
        container: dict[str, Any] = {
            "name": f"{FETCH_PREFIX}{i}",
            "image": image,
            "imagePullPolicy": pull_policy,
            "command": command,
            "env": [*env, {"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [
                cache_mount,
                {"name": "source-links", "mountPath": LINKS_MOUNT},
                scratch_mount(),
            ],
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
            "securityContext": restricted_container_security(),
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }
        if settings.secret_name:
            container["envFrom"] = [{"secretRef": {"name": settings.secret_name}}]
        inits.append(container)
    mounts = [
        {**cache_mount, "readOnly": True},
        {"name": "source-links", "mountPath": LINKS_MOUNT, "readOnly": True},
    ]
    return inits, volumes, mounts


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
