"""Fetch steps: init containers that download source URIs into a cache before a task starts.

Both kinds use them: an RTDETRTraining's pods fetch the dataset and checkpoints its experiment
names by URI (training/sources.py), an RTDETRDeployment's repository Job fetches a model named
by URI (deployment/source.py). Each step runs ``python -m rtdetr_spec.sources fetch`` in the
task's own image (every image of the project carries rtdetr_spec and boto3), under the same
restricted security context as the task, into the cache volume (``/cache``, keyed by content
digest, so a shared claim makes a second run download nothing) and links the file at its
``/sources/<n>/<name>`` path (an emptyDir). Only the fetch step gets the credentials Secret.
It prints progress lines while it downloads (rtdetr_spec.sources.report, read from its log by
either kind's reconciler through pod_logs.py), and its summary (size, sha256, whether the
cache held it) is its termination message. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.sources import Sources
from rtdetr_operator.children import restricted_container_security, scratch_mount

CACHE_MOUNT = "/cache"
LINKS_MOUNT = "/sources"
FETCH_PREFIX = "fetch-"


@dataclass(frozen=True)
class Fetch:
    """One source to fetch: the field naming it, the URI, its sha256 if known, the link path,
    and the tasks whose pods need it (a training's tasks; the deployment's is ``repository``)."""

    key: str
    uri: str
    sha256: str | None
    path: str
    tasks: tuple[str, ...] = ("train",)


def fetch_pod_parts(
    fetches: list[Fetch], settings: Sources | None, image: str, pull_policy: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(init containers, volumes, mounts for the task container)`` of a task pod."""
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
