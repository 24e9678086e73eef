"""Source URIs in a training's experiment: validated, rewritten to local paths, fetched first.

``train.pretrained_model_path`` and ``model.pretrained_backbone_path`` may be source URIs
(docs/sources.md). :func:`plan_sources` checks each (one problem per key, naming it), rewrites
the key to ``/sources/<n>/<file>`` in the resolved experiment, and :func:`fetch_pod_parts`
builds what the training pod adds: one init container per source running the training image's
``python -m rtdetr_spec.sources fetch`` (the trainer image carries rtdetr_spec, so no other image
is pulled and nothing waits on a separate Job), the cache volume (``/cache``) and the links
(``/sources``, an emptyDir). Only the init container gets the credentials Secret. Its summary
(size, sha256, whether the cache held it) comes back as its termination message, and
:func:`source_status` puts it in ``status.sources``. Pure functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.sources import Sources
from rtdetr_operator.children import restricted_container_security, scratch_mount
from rtdetr_spec.sources.uri import SourceURIError, parse

#: Experiment keys that may name a source URI.
SOURCE_KEYS = ("train.pretrained_model_path", "model.pretrained_backbone_path")
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


def plan_sources(
    raw: dict[str, Any], settings: Sources | None, where: str
) -> tuple[list[Fetch], list[str]]:
    """Fetches for the URI-valued keys of ``raw`` (rewritten in place), and problems."""
    fetches: list[Fetch] = []
    problems: list[str] = []
    checksums = settings.checksums if settings else {}
    for n, key in enumerate(SOURCE_KEYS):
        section, _, name = key.partition(".")
        value = (raw.get(section) or {}).get(name)
        if not isinstance(value, str) or not value.startswith(SCHEMES):
            continue
        try:
            source = parse(value, sha256=checksums.get(value))
        except SourceURIError as e:
            problems.append(f"{where}{key}: {e}")
            continue
        path = f"{LINKS_MOUNT}/{n}/{source.name}"
        fetches.append(Fetch(key, value, checksums.get(value), path))
        raw[section][name] = path
    return fetches, problems


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
    """``status.sources``: each fetch step's summary (uri, sha256, size, cached) from rank 0."""
    out: dict[str, dict[str, Any]] = {}
    for pod in pods:
        for st in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if not str(st.get("name", "")).startswith(FETCH_PREFIX):
                continue
            message = ((st.get("state") or {}).get("terminated") or {}).get("message")
            try:
                summary = json.loads(message or "")
            except ValueError:
                continue
            if isinstance(summary, dict) and "uri" in summary:
                keep = ("uri", "sha256", "size", "transferred", "cached")
                out.setdefault(str(summary["uri"]), {k: summary.get(k) for k in keep})
    return list(out.values())
