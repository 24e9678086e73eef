"""Where the model comes from, where its repositories go, and when it may have changed.

The operator never mounts volumes, so it cannot read the ONNX itself. It works out *where* the
file is (the training's results volume and exported artifact path, or a path on a claim) and
hands that to the repository Job, which reads it, verifies its sha256 against its manifest and
reports the sha256 back. What it can see is the source's *identity*: the ``fingerprint`` below.
When the fingerprint changes (a re-run training is a new object, so a new uid; another path; a
new ``onnx.revision``) the repository Job reads the source again; the served revision only
changes if the ONNX's sha256 did.

A source that is not usable yet is a :class:`SourceNotReadyError`: waiting (the training is still
running) or stalled (it does not exist, failed, or exported nothing), with a message naming the
field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rtdetr_operator.deployment.names import SOURCE_MOUNT
from rtdetr_operator.deployment.resolve import ResolvedDeployment
from rtdetr_operator.fetch_steps import LINKS_MOUNT, Fetch
from rtdetr_operator.policy import volume_problems
from rtdetr_spec.sources.uri import parse


class SourceNotReadyError(Exception):
    def __init__(self, reason: str, message: str, *, stalled: bool) -> None:
        self.reason, self.message, self.stalled = reason, message, stalled
        super().__init__(message)


@dataclass(frozen=True)
class Source:
    """A model source ready to be read by the repository Job."""

    fingerprint: str
    description: str
    #: Pod volume (without ``name``) holding the ONNX, and how the Job mounts it.
    volume: dict[str, Any]
    mount_path: str
    sub_path: str | None
    #: The ONNX's path inside the repository Job's container.
    onnx_path: str
    #: Image of the training that exported it (a default for the build Jobs).
    image: str | None
    #: Volume of the model repositories and the folder of it they go in.
    repository_volume: dict[str, Any]
    repository_sub_path: str
    #: Whether the repository is on the same volume as the ONNX (one volume, two mounts).
    shared_volume: bool
    #: A model from a source URI: fetched by the repository Job's init container (no volume).
    fetch: Fetch | None = None


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _volume(claim: str | None, volume: dict[str, Any] | None) -> dict[str, Any]:
    if claim:
        return {"persistentVolumeClaim": {"claimName": claim}}
    return dict(volume or {})


def _repository(r: ResolvedDeployment, source_volume: dict[str, Any]) -> tuple[dict, str, bool]:
    repo = r.spec.repository
    sub_path = (repo.sub_path if repo.sub_path is not None else f"triton/{r.name}").strip("/")
    if repo.claim_name:
        volume = {"persistentVolumeClaim": {"claimName": repo.claim_name}}
        return volume, sub_path, volume == source_volume
    return source_volume, sub_path, True


def training_source(r: ResolvedDeployment, training: dict[str, Any] | None) -> Source:
    ref = r.spec.model.training
    assert ref is not None
    field = "spec.model.training.name"
    if training is None:
        raise SourceNotReadyError(
            "SourceNotFound",
            f"{field}: RTDETRTraining {ref.name!r} not found in namespace {r.namespace}",
            stalled=True,
        )
    status = training.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Failed":
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        raise SourceNotReadyError(
            "SourceFailed",
            f"{field}: RTDETRTraining {ref.name} failed ({ready.get('reason', 'Failed')}: "
            f"{ready.get('message', '')}); it has no model to serve",
            stalled=True,
        )
    if phase != "Succeeded":
        progress = f", {status['progress']}" if status.get("progress") else ""
        raise SourceNotReadyError(
            "WaitingForTraining",
            f"waiting for RTDETRTraining {ref.name} to export a model (phase {phase}{progress})",
            stalled=False,
        )
    artifacts = status.get("artifacts") or {}
    path = artifacts.get(ref.artifact)
    if not path:
        have = ", ".join(sorted(artifacts)) or "none"
        raise SourceNotReadyError(
            "NoExportedModel",
            f"spec.model.training.artifact: RTDETRTraining {ref.name} reports no {ref.artifact!r} "
            f"artifact (it reported: {have}); enable its export (and fp16 for onnxFp16)",
            stalled=True,
        )
    results = status.get("resultsVolume") or {}
    mount = results.get("mountPath")
    if not mount or not (path == mount or path.startswith(mount.rstrip("/") + "/")):
        raise SourceNotReadyError(
            "ArtifactNotOnResultsVolume",
            f"{field}: RTDETRTraining {ref.name}'s {ref.artifact} {path!r} is not on its results "
            f"volume ({mount or 'unknown mount'}), so no Job can read it",
            stalled=True,
        )
    storage = ((training.get("spec") or {}).get("storage") or {}).get("results") or {}
    volume = _volume(results.get("claimName"), storage.get("volume"))
    if not volume:
        raise SourceNotReadyError(
            "NoResultsVolume",
            f"{field}: RTDETRTraining {ref.name} names no results volume",
            stalled=True,
        )
    meta = training["metadata"]
    fingerprint = _fingerprint(
        "training",
        meta.get("uid"),
        ref.artifact,
        path,
        status.get("completionTime"),
        volume,
        results.get("subPath"),
    )
    repo_volume, repo_sub_path, shared = _repository(r, volume)
    return Source(
        fingerprint=fingerprint,
        description=f"RTDETRTraining {ref.name} ({ref.artifact} {path})",
        volume=volume,
        mount_path=mount,
        sub_path=results.get("subPath") or None,
        onnx_path=path,
        image=(training.get("spec") or {}).get("image"),
        repository_volume=repo_volume,
        repository_sub_path=repo_sub_path,
        shared_volume=shared,
    )


def onnx_source(r: ResolvedDeployment) -> Source:
    onnx = r.spec.model.onnx
    assert onnx is not None
    volume = _volume(
        onnx.claim_name,
        onnx.volume.model_dump(by_alias=True, exclude_none=True) if onnx.volume else None,
    )
    where = f"claim {onnx.claim_name}" if onnx.claim_name else "volume"
    repo_volume, repo_sub_path, shared = _repository(r, volume)
    return Source(
        fingerprint=_fingerprint("onnx", onnx.wire()),
        description=f"{onnx.path} on {where}"
        + (f" (revision {onnx.revision})" if onnx.revision else ""),
        volume=volume,
        mount_path=SOURCE_MOUNT,
        sub_path=onnx.sub_path,
        onnx_path=f"{SOURCE_MOUNT}/{onnx.path}",
        image=None,
        repository_volume=repo_volume,
        repository_sub_path=repo_sub_path,
        shared_volume=shared,
    )


def uri_source(r: ResolvedDeployment) -> Source:
    model = r.spec.model.uri
    assert model is not None and r.spec.repository.claim_name, "checked by resolve.uri_problems"
    checksums = r.spec.sources.checksums if r.spec.sources else {}
    name = parse(model.uri).name
    path = f"{LINKS_MOUNT}/0/{name}"
    fetch = Fetch("spec.model.uri.uri", model.uri, checksums.get(model.uri), path, ("repository",))
    repository = {"persistentVolumeClaim": {"claimName": r.spec.repository.claim_name}}
    sub_path = r.spec.repository.sub_path
    return Source(
        fingerprint=_fingerprint("uri", model.wire(), fetch.sha256),
        description=model.uri + (f" (revision {model.revision})" if model.revision else ""),
        volume={},
        mount_path=LINKS_MOUNT,
        sub_path=None,
        onnx_path=fetch.path,
        image=None,
        repository_volume=repository,
        repository_sub_path=(sub_path if sub_path is not None else f"triton/{r.name}").strip("/"),
        shared_volume=False,
        fetch=fetch,
    )


def node_volume_problem(r: ResolvedDeployment, source: Source, allow: bool) -> str | None:
    """Why a training source's results volume may not be mounted (policy.py), else None.

    An ONNX source's volume is checked with the rest of the CR (resolve.py); a training's is
    checked here too, as the training may have been created under another operator's flags.
    """
    ref = r.spec.model.training
    if ref is None:
        return None
    where = "spec.storage.results.volume"
    refused = volume_problems(where, source.volume, allow_node_volumes=allow)
    prefix = f"spec.model.training: RTDETRTraining {ref.name}'s "
    return "; ".join(prefix + p for p in refused) or None


def resolve_source(r: ResolvedDeployment, training: dict[str, Any] | None) -> Source:
    """The deployment's model source (raises SourceNotReadyError when it is not usable yet)."""
    if r.spec.model.training is not None:
        return training_source(r, training)
    if r.spec.model.uri is not None:
        return uri_source(r)
    return onnx_source(r)


def repository_key(source: Source, r: ResolvedDeployment) -> str:
    """Identity of one repository preparation: the source, the GPU set and the model name."""
    return _fingerprint(source.fingerprint, r.gpus, r.spec.model_name)
