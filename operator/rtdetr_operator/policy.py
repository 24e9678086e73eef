"""What a custom resource may ask of the node: the checks that keep a CR from loosening security.

Whoever may create an RTDETRTraining or RTDETRDeployment gets pods created on their behalf, with
the namespace's service accounts, as with a Job. The operator adds nothing a Job's author could
not have asked for, and it refuses what would let a CR reach past that, even in a namespace
whose Pod Security level would admit it:

* **Node-level volume sources.** A volume source in a CR (``spec.storage.*.volume``,
  ``spec.model.onnx.volume``) must be one of :data:`ALLOWED_VOLUME_SOURCES`: claims, the
  pod-scoped sources and network file systems. ``hostPath`` (the node's own files),
  ``flexVolume`` (a driver binary run as root on the node), ``gitRepo`` (git run by the kubelet)
  and the in-tree block devices are refused, unless the operator runs with
  ``--allow-node-volumes``. The CRD cannot refuse them itself: the flag must be able to allow
  them, and a CRD has no flags.
* **Pod security annotations.** ``podMetadata`` may not set the annotations that still turn
  off confinement (AppArmor's ``container.apparmor.security.beta.kubernetes.io/*`` and the
  legacy seccomp ones): every pod keeps the runtime's default profile.

The pod and container ``securityContext`` are the operator's alone (children.py); no CR field
reaches them, so a CR cannot run privileged, as root or with added capabilities. Problems come
back as one line per field, like every other InvalidSpec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Volume sources a CR may use: Pod Security "restricted"'s list (claims, generic ephemeral
#: volumes, emptyDir, configMap, secret, projected, downwardAPI, CSI) plus ``nfs``, a network
#: file system that gives no access to the node's own files.
ALLOWED_VOLUME_SOURCES: frozenset[str] = frozenset(
    {
        "persistentVolumeClaim",
        "ephemeral",
        "emptyDir",
        "configMap",
        "secret",
        "projected",
        "downwardAPI",
        "csi",
        "nfs",
    }
)
#: The flag that lifts the volume check (also the chart's ``operator.allowNodeVolumes``).
ALLOW_FLAG = "--allow-node-volumes"
#: Annotation prefixes that can switch a container's confinement off.
CONFINEMENT_ANNOTATIONS: tuple[str, ...] = (
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
)


def volume_problems(
    where: str, source: Mapping[str, Any] | None, *, allow_node_volumes: bool
) -> list[str]:
    """One line per volume source type in ``source`` that a CR may not use.

    ``where`` is the field as ``kubectl`` names it (``spec.storage.data.volume``).
    """
    if not source or allow_node_volumes:
        return []
    kinds = sorted(k for k in source if k != "name")
    refused = [k for k in kinds if k not in ALLOWED_VOLUME_SOURCES]
    return [
        f"{where}.{kind}: node-level volume sources are refused (allowed: "
        f"{', '.join(sorted(ALLOWED_VOLUME_SOURCES))}); the operator allows them only when "
        f"started with {ALLOW_FLAG}"
        for kind in refused
    ]


def _pod_metadata(node: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every ``podMetadata`` object below ``node`` (a CR's raw spec), with its field path."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key == "podMetadata" and isinstance(value, Mapping):
                yield here, value
            else:
                yield from _pod_metadata(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _pod_metadata(item, f"{path}[{i}]")


def pod_metadata_problems(raw_spec: Mapping[str, Any]) -> list[str]:
    """One line per ``podMetadata`` annotation that would loosen a pod's confinement."""
    out: list[str] = []
    for where, meta in _pod_metadata(raw_spec, "spec"):
        annotations = meta.get("annotations")
        if not isinstance(annotations, Mapping):
            continue
        for key in sorted(annotations):
            if str(key).startswith(CONFINEMENT_ANNOTATIONS):
                out.append(
                    f"{where}.annotations[{key!r}]: refused: pods keep the runtime's default "
                    "seccomp and AppArmor profiles"
                )
    return out
