"""Which RTDETRDeployments serve which RTDETRTraining, for the training watch.

A deployment must look again when its source training changes (an export finished, the training
was re-run), but the training knows nothing of its deployments. The deployment handler records
``(namespace, training) -> {deployments}`` from every RTDETRDeployment event it sees (kopf's
initial listing delivers all of them at start), and the training handler looks the training up
here. Held in kopf's ``memo``, not in a module global.
"""

from __future__ import annotations

from typing import Any


class SourceIndex:
    def __init__(self) -> None:
        self._by_training: dict[tuple[str, str], set[str]] = {}
        self._of_deployment: dict[tuple[str, str], str] = {}

    def update(self, namespace: str, name: str, body: dict[str, Any] | None) -> None:
        """Record the training ``name``'s spec serves (None body: the deployment is gone)."""
        key = (namespace, name)
        old = self._of_deployment.pop(key, None)
        if old is not None:
            users = self._by_training.get((namespace, old), set())
            users.discard(name)
            if not users:
                self._by_training.pop((namespace, old), None)
        spec = (body or {}).get("spec") or {}
        training = ((spec.get("model") or {}).get("training") or {}).get("name")
        if training:
            self._of_deployment[key] = training
            self._by_training.setdefault((namespace, training), set()).add(name)

    def deployments_of(self, namespace: str, training: str) -> set[str]:
        return set(self._by_training.get((namespace, training), set()))
