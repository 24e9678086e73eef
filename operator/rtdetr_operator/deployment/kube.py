"""The Kubernetes API calls of the RTDETRDeployment reconciler.

Built on :class:`rtdetr_operator.kube.KubeApi` (plain REST through the client's ApiClient, no
generated ``*Api`` classes and their memory cost; ``ApiError`` with the server's message). It
adds the collections of the kinds a deployment owns, and :data:`VERBS`: the only calls the
reconciler may make per kind, enforced here and granted, exactly, by the Helm chart's RBAC (a
unit test renders the chart and compares).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rtdetr_operator.api import GROUP, PLURAL, VERSION
from rtdetr_operator.api.deployment import DEPLOYMENT_KIND, DEPLOYMENT_PLURAL
from rtdetr_operator.kube import COMPONENT, ApiError, KubeApi

#: REST collection (and API group, resource) of each kind a deployment reads or owns.
COLLECTIONS: dict[str, tuple[str, str, str]] = {
    "Job": ("/apis/batch/v1/namespaces/{ns}/jobs", "batch", "jobs"),
    "Pod": ("/api/v1/namespaces/{ns}/pods", "", "pods"),
    "Service": ("/api/v1/namespaces/{ns}/services", "", "services"),
    "Deployment": ("/apis/apps/v1/namespaces/{ns}/deployments", "apps", "deployments"),
    "HorizontalPodAutoscaler": (
        "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
        "autoscaling",
        "horizontalpodautoscalers",
    ),
    "PodDisruptionBudget": (
        "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        "policy",
        "poddisruptionbudgets",
    ),
    DEPLOYMENT_KIND: (
        f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{DEPLOYMENT_PLURAL}",
        GROUP,
        DEPLOYMENT_PLURAL,
    ),
}

#: Every call of the deployment reconciler, per kind (Jobs are never changed once created).
VERBS: dict[str, tuple[str, ...]] = {
    "Job": ("list", "create", "delete"),
    "Pod": ("list",),
    "Service": ("list", "create", "update", "delete"),
    "Deployment": ("list", "create", "update", "delete"),
    "HorizontalPodAutoscaler": ("list", "create", "update", "delete"),
    "PodDisruptionBudget": ("list", "create", "update", "delete"),
    DEPLOYMENT_KIND: ("get",),
}


class DeploymentKubeApi(KubeApi):
    """RTDETRDeployments, their source RTDETRTrainings, their children and Events."""

    def _path(self, kind: str, namespace: str, name: str | None = None) -> str:
        if kind not in COLLECTIONS:
            return super()._path(kind, namespace, name)
        base = COLLECTIONS[kind][0].format(ns=namespace)
        return f"{base}/{name}" if name else base

    @staticmethod
    def _allowed(kind: str, verb: str) -> None:
        if verb not in VERBS.get(kind, ()):
            raise ValueError(f"the deployment reconciler does not {verb} {kind} objects")

    def served_deployments(self) -> bool:
        """Whether the API server serves rtdetr.dev/v1alpha1 RTDETRDeployments."""
        try:
            found = self._request("GET", f"/apis/{GROUP}/{VERSION}")
        except ApiError as e:
            if e.not_found:
                return False
            raise
        names = {r.get("name") for r in found.get("resources") or []}
        return {DEPLOYMENT_PLURAL, PLURAL} <= names

    # ------------------------------------------------------------------ custom objects
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._allowed(DEPLOYMENT_KIND, "get")
        return self.get(DEPLOYMENT_KIND, namespace, name)

    def replace_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status`` guarded by the object's resourceVersion (409 if it moved on)."""
        meta = obj["metadata"]
        body = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]},
            "spec": obj.get("spec"),
            "status": status,
        }
        path = self._path(DEPLOYMENT_KIND, meta["namespace"], meta["name"]) + "/status"
        return self._request("PUT", path, body=body)

    # ------------------------------------------------------------------------ children
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._allowed(kind, "list")
        items = super().list(kind, namespace, selector)
        for item in items:
            item.setdefault("kind", kind)
        return items

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._allowed(obj["kind"], "create")
        return super().create(obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._allowed(obj["kind"], "update")
        return super().replace(obj)

    def delete(self, obj: dict[str, Any]) -> None:
        self._allowed(obj["kind"], "delete")
        super().delete(obj)

    # -------------------------------------------------------------------------- events
    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": DEPLOYMENT_KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self._request("POST", self._path("Event", meta["namespace"]), body=event)
