"""Deterministic names and labels of everything an RTDETRDeployment owns.

Every child's name is a pure function of the CR's name and of what the child is for (a pool's
GPU type; a revision and GPU type for an engine; the source and GPU set for a repository Job),
so a restarted operator finds what it created before and ``AlreadyExists`` means "done".

* pool objects (Deployment, Service, HPA, PDB): ``<name>-<gpu>``, e.g. ``warehouse-h100``
  (``warehouse-cpu`` for a CPU pool);
* engine build Job: ``<name>-engine-<gpu>-<revision[:8]>``;
* repository Job: ``<name>-repo-<hash of source and GPU set>``.

Names longer than a DNS label (63) keep their start and end in a hash, so they stay unique.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.children import app_labels, controller_name

LABEL_DEPLOYMENT = "rtdetr.dev/deployment"
LABEL_POOL = "rtdetr.dev/pool"
LABEL_REVISION = "rtdetr.dev/revision"
LABEL_COMPONENT = "rtdetr.dev/component"
#: Hash of what the operator wants a child to be; a child is replaced when it differs.
ANNOTATION_SPEC_HASH = "rtdetr.dev/spec-hash"
TRITON_CONTAINER = "tritonserver"
#: Where the repository volume is mounted in build and Triton pods.
REPOSITORY_MOUNT = "/models"
#: Where an ONNX source volume is mounted in the repository Job.
SOURCE_MOUNT = "/source"
DNS_LABEL = 63


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def dns_name(*parts: str) -> str:
    """``-``-joined lowercase parts, shortened with a hash when above 63 characters."""
    name = "-".join(p.lower() for p in parts if p)
    if len(name) <= DNS_LABEL:
        return name
    digest = short_hash(name, length=10)
    return f"{name[: DNS_LABEL - 11].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class DeploymentNames:
    """Names of one RTDETRDeployment's children."""

    name: str
    namespace: str

    def pool(self, gpu: str) -> str:
        """Deployment, Service, HPA and PDB of the pool on GPU type ``gpu``."""
        return dns_name(self.name, gpu)

    def engine_job(self, gpu: str, revision: str) -> str:
        return dns_name(self.name, "engine", gpu, revision[:8])

    def repository_job(self, key: str) -> str:
        return dns_name(self.name, "repo", key[:10])

    def service_host(self, gpu: str) -> str:
        return f"{self.pool(gpu)}.{self.namespace}.svc"


def labels(
    name: str,
    component: str,
    *,
    gpu: str | None = None,
    revision: str | None = None,
) -> dict[str, str]:
    """Labels of a child: selectable by deployment, component, pool and revision."""
    out = {LABEL_DEPLOYMENT: name, LABEL_COMPONENT: component, **app_labels(name, component)}
    if gpu is not None:
        out[LABEL_POOL] = gpu.lower()
    if revision is not None:
        out[LABEL_REVISION] = revision
    return out


def pool_selector(name: str, gpu: str) -> dict[str, str]:
    """What a pool's Deployment, Service and PDB select (stable across revisions)."""
    return {LABEL_DEPLOYMENT: name, LABEL_COMPONENT: "triton", LABEL_POOL: gpu.lower()}


def deployment_of(obj: dict[str, Any]) -> str | None:
    """Name of the RTDETRDeployment controlling ``obj`` (by owner reference, else by label)."""
    return controller_name(obj, DEPLOYMENT.kind, LABEL_DEPLOYMENT)
