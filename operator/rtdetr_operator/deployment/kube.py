"""The Kubernetes API calls of the RTDETRDeployment reconciler, and nothing else.

The REST itself is :class:`rtdetr_operator.kube.KubeApi`'s (shared with the training's
reconciler). What this adds is :data:`VERBS`: the only calls the deployment reconciler may make
per kind, enforced here and granted, exactly, by the Helm chart's RBAC (a unit test renders the
chart and compares), so a planner bug can never turn into a call the operator has no right to.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.kube import KubeApi

#: Every call of the deployment reconciler, per kind (Jobs are never changed once created).
VERBS: dict[str, tuple[str, ...]] = {
    "Job": ("list", "create", "delete"),
    "Pod": ("list",),
    "Service": ("list", "create", "update", "delete"),
    "Deployment": ("list", "create", "update", "delete"),
    "HorizontalPodAutoscaler": ("list", "create", "update", "delete"),
    "PodDisruptionBudget": ("list", "create", "update", "delete"),
    DEPLOYMENT.kind: ("get",),
}


class DeploymentKubeApi(KubeApi):
    """RTDETRDeployments, their source RTDETRTrainings, their children and Events."""

    def __init__(self, api_client: client.ApiClient) -> None:
        super().__init__(api_client, DEPLOYMENT.kind)

    @staticmethod
    def _allowed(kind: str, verb: str) -> None:
        if verb not in VERBS.get(kind, ()):
            raise ValueError(f"the deployment reconciler does not {verb} {kind} objects")

    def get_reconciled(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._allowed(DEPLOYMENT.kind, "get")
        return super().get_reconciled(namespace, name)

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._allowed(kind, "list")
        return super().list(kind, namespace, selector)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._allowed(obj["kind"], "create")
        return super().create(obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._allowed(obj["kind"], "update")
        return super().replace(obj)

    def delete(self, obj: dict[str, Any]) -> None:
        self._allowed(obj["kind"], "delete")
        super().delete(obj)
