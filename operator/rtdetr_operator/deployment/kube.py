"""The Kubernetes API calls of the RTDETRDeployment reconciler, on the official client.

Same conventions as :mod:`rtdetr_operator.kube`: plain dicts as the API server sends them,
``ApiError`` carrying the HTTP status and the server's own message, synchronous calls with
timeouts (the reconciler runs in worker threads). One table maps each child kind to its list,
create, replace and delete calls, so the reconciler stays kind-agnostic.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from rtdetr_operator.api import GROUP, PLURAL, VERSION
from rtdetr_operator.api.deployment import DEPLOYMENT_KIND, DEPLOYMENT_PLURAL
from rtdetr_operator.kube import COMPONENT, ApiError, _call


@dataclass(frozen=True)
class KindCalls:
    list: Callable[..., Any]
    create: Callable[..., Any]
    replace: Callable[..., Any]
    delete: Callable[..., Any]


class DeploymentKubeApi:
    """RTDETRDeployments, their source RTDETRTrainings, their children and Events."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        batch = client.BatchV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        scaling = client.AutoscalingV2Api(api_client)
        policy = client.PolicyV1Api(api_client)
        self.core = core
        self.instance = socket.gethostname()
        self.kinds: dict[str, KindCalls] = {
            # Jobs are never changed once created (a new build is a new Job).
            "Job": KindCalls(
                batch.list_namespaced_job,
                batch.create_namespaced_job,
                _none,
                batch.delete_namespaced_job,
            ),
            "Pod": KindCalls(core.list_namespaced_pod, _none, _none, _none),
            "Deployment": KindCalls(
                apps.list_namespaced_deployment,
                apps.create_namespaced_deployment,
                apps.replace_namespaced_deployment,
                apps.delete_namespaced_deployment,
            ),
            "Service": KindCalls(
                core.list_namespaced_service,
                core.create_namespaced_service,
                core.replace_namespaced_service,
                core.delete_namespaced_service,
            ),
            "HorizontalPodAutoscaler": KindCalls(
                scaling.list_namespaced_horizontal_pod_autoscaler,
                scaling.create_namespaced_horizontal_pod_autoscaler,
                scaling.replace_namespaced_horizontal_pod_autoscaler,
                scaling.delete_namespaced_horizontal_pod_autoscaler,
            ),
            "PodDisruptionBudget": KindCalls(
                policy.list_namespaced_pod_disruption_budget,
                policy.create_namespaced_pod_disruption_budget,
                policy.replace_namespaced_pod_disruption_budget,
                policy.delete_namespaced_pod_disruption_budget,
            ),
        }

    # ------------------------------------------------------------------ custom objects
    def _get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(DEPLOYMENT_PLURAL, namespace, name)

    def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get_custom(PLURAL, namespace, name)

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
        return _call(
            self.custom.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            meta["namespace"],
            DEPLOYMENT_PLURAL,
            meta["name"],
            body,
        )

    # ------------------------------------------------------------------------ children
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = _call(self.kinds[kind].list, namespace, label_selector=selector)
        items = list(out.get("items") or [])
        for item in items:
            item.setdefault("kind", kind)
        return items

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return _call(self.kinds[obj["kind"]].create, obj["metadata"]["namespace"], obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return _call(self.kinds[obj["kind"]].replace, meta["name"], meta["namespace"], obj)

    def delete(self, obj: dict[str, Any]) -> None:
        """Delete with Background propagation (the garbage collector removes dependants)."""
        meta = obj["metadata"]
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if meta.get("uid"):
            body["preconditions"] = {"uid": meta["uid"]}
        try:
            _call(self.kinds[obj["kind"]].delete, meta["name"], meta["namespace"], body=body)
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

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
        _call(self.core.create_namespaced_event, meta["namespace"], event)


def _none(*_: Any, **__: Any) -> Any:
    """A call the operator never makes (and has no RBAC permission for)."""
    raise NotImplementedError("the operator does not make this call")
