"""The Kubernetes API calls both reconcilers make, on the official client.

Objects travel as plain dicts exactly as the API server sends them (no model classes: less
memory, no camelCase/snake_case round trip). Failures become :class:`ApiError` carrying the
HTTP status and the server's message, which the reconcilers show users verbatim (a 422 on a Job
names the bad field).

One client class serves both kinds: a :class:`KubeApi` is built for the kind it reconciles
(whose status it writes and whose Events it posts); every other call is the same REST on
:data:`COLLECTIONS`. :class:`rtdetr_operator.deployment.kube.DeploymentKubeApi` narrows it to
the calls the deployment reconciler may make.

Synchronous on purpose: the reconcilers run in worker threads (see workqueue.py) and read more
simply as straight-line code; kopf's event loop never blocks on it.
"""

from __future__ import annotations

import contextlib
import json
import socket
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.api.meta import API_VERSION, GROUP, VERSION
from rtdetr_operator.api.training import TRAINING

#: (connect, read) seconds for every call; a hung API server must not hang a worker forever.
TIMEOUT = (5, 30)
#: The same for a pod log read: the API server relays it from the node's kubelet, and an
#: unreachable kubelet must not hold a reconcile worker for long (progress is best effort).
LOG_TIMEOUT = (5, 10)
COMPONENT = "rtdetr-operator"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"HTTP {status}: {message}")

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404


def _ours(plural: str) -> tuple[str, str, str]:
    return (f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{plural}", GROUP, plural)


#: REST collection under a namespace, API group and resource of each kind the operator touches
#: (the group and resource are what RBAC grants; the Helm chart's test compares).
COLLECTIONS: dict[str, tuple[str, str, str]] = {
    "ConfigMap": ("/api/v1/namespaces/{ns}/configmaps", "", "configmaps"),
    "Service": ("/api/v1/namespaces/{ns}/services", "", "services"),
    "Pod": ("/api/v1/namespaces/{ns}/pods", "", "pods"),
    "Event": ("/api/v1/namespaces/{ns}/events", "", "events"),
    "Job": ("/apis/batch/v1/namespaces/{ns}/jobs", "batch", "jobs"),
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
    "Ingress": (
        "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
        "networking.k8s.io",
        "ingresses",
    ),
    "HTTPRoute": (
        "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes",
        "gateway.networking.k8s.io",
        "httproutes",
    ),
    "GRPCRoute": (
        "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/grpcroutes",
        "gateway.networking.k8s.io",
        "grpcroutes",
    ),
    TRAINING.kind: _ours(TRAINING.plural),
    DEPLOYMENT.kind: _ours(DEPLOYMENT.plural),
}


class KubeApi:
    """Typed-enough access to one custom resource kind, the objects it owns and Events.

    Requests go through the client's ApiClient (its kubeconfig, TLS and token handling) but not
    through the generated ``*Api`` classes: instantiating CoreV1Api alone builds validators for
    hundreds of endpoints and costs ~70 MiB of resident memory, more than the rest of the
    operator together.
    """

    def __init__(self, api_client: client.ApiClient, kind: str) -> None:
        self.client = api_client
        #: The kind this client reconciles: the status it writes, the object its Events are on.
        self.kind = kind
        self.instance = socket.gethostname()

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        text: bool = False,
        timeout: tuple[int, int] = TIMEOUT,
    ) -> Any:
        # The log endpoint answers text/plain but accepts only */* or API types as Accept.
        headers = {"Accept": "*/*" if text else "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            req = self.client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.client.call_api(*req, _request_timeout=timeout)
            data = resp.read()
        except ApiException as e:
            raise ApiError(int(e.status or 0), str(e.reason or e)) from None
        if not 200 <= resp.status <= 299:
            message = resp.reason or ""
            with contextlib.suppress(ValueError):
                message = json.loads(data or b"{}").get("message") or message
            raise ApiError(resp.status, message)
        if text:
            return (data or b"").decode("utf-8", errors="replace")
        return json.loads(data) if data else {}

    def _path(self, kind: str, namespace: str, name: str | None = None) -> str:
        base = COLLECTIONS[kind][0].format(ns=namespace)
        return f"{base}/{name}" if name else base

    def serves(self, *plurals: str) -> bool:
        """Whether the API server serves these rtdetr.dev/v1alpha1 resources (CRDs installed)."""
        try:
            found = self._request("GET", f"/apis/{GROUP}/{VERSION}")
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return set(plurals) <= {r.get("name") for r in found.get("resources") or []}

    # ------------------------------------------------------------------ custom objects
    def get_reconciled(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object of this client's kind called ``name`` (None when it is gone)."""
        return self.get(self.kind, namespace, name)

    def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        """An RTDETRTraining (reconciled, or read as a deployment's model source)."""
        return self.get(TRAINING.kind, namespace, name)

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
        path = self._path(self.kind, meta["namespace"], meta["name"]) + "/status"
        return self._request("PUT", path, body=body)

    # ------------------------------------------------------------------------ children
    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` matching ``selector``, each carrying its ``kind`` and apiVersion.

        The API server omits both on a list's items (they are on the list, as ``JobList``);
        filled in here, once, so every caller can hand an item back to :meth:`delete` or
        :meth:`replace`, and log it, exactly like an object read with :meth:`get`.
        """
        out = self._request("GET", self._path(kind, namespace), query=[("labelSelector", selector)])
        items = list(out.get("items") or [])
        for item in items:
            item.setdefault("kind", kind)
            if out.get("apiVersion"):
                item.setdefault("apiVersion", out["apiVersion"])
        return items

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", self._path(kind, namespace, name))
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        path = self._path(obj["kind"], obj["metadata"]["namespace"])
        return self._request("POST", path, body=obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        path = self._path(obj["kind"], meta["namespace"], meta["name"])
        return self._request("PUT", path, body=obj)

    def delete(self, obj: dict[str, Any]) -> None:
        """Delete (Background propagation: the garbage collector removes a Job's pods)."""
        meta = obj["metadata"]
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if meta.get("uid"):
            body["preconditions"] = {"uid": meta["uid"]}
        path = self._path(obj["kind"], meta["namespace"], meta["name"])
        try:
            self._request("DELETE", path, body=body)
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    def pod_log(self, namespace: str, name: str, container: str, limit_bytes: int) -> str:
        """The last lines of a container's log, at most about ``limit_bytes`` of them.

        ``tailLines`` bounds what the kubelet reads, ``limitBytes`` what it sends.
        """
        query = [
            ("container", container),
            ("tailLines", str(max(limit_bytes // 128, 1))),
            ("limitBytes", str(limit_bytes)),
        ]
        path = self._path("Pod", namespace, name) + "/log"
        return str(self._request("GET", path, query=query, text=True, timeout=LOG_TIMEOUT))

    # -------------------------------------------------------------------------- events
    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event on ``obj`` (of this client's kind), as ``kubectl describe`` shows them."""
        meta = obj["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": self.kind,
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
