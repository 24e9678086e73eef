"""The handful of Kubernetes API calls the reconciler makes, on the official client.

Objects travel as plain dicts exactly as the API server sends them (``_preload_content=False``
skips the client's model classes: less memory, no camelCase/snake_case round trip). Failures
become :class:`ApiError` carrying the HTTP status and the server's message, which the reconciler
shows users verbatim (a 422 on a Job names the bad field).

Synchronous on purpose: the reconciler runs in worker threads (see workqueue.py) and reads more
simply as straight-line code; kopf's event loop never blocks on it.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rtdetr_operator.api import GROUP, KIND, PLURAL, VERSION

#: (connect, read) seconds for every call; a hung API server must not hang a worker forever.
TIMEOUT = (5, 30)
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


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        resp = fn(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
    except ApiException as e:
        message = e.reason or ""
        with contextlib.suppress(ValueError):
            message = json.loads(e.body or "{}").get("message") or message
        raise ApiError(int(e.status or 0), message) from None
    data = resp.data
    return json.loads(data) if data else {}


class KubeApi:
    """Typed-enough access to trainings, their children and Events."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.instance = socket.gethostname()

    # ------------------------------------------------------------------ RTDETRTraining
    def get_training(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _call(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def replace_status(self, training: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write ``status`` guarded by the object's resourceVersion (409 if it moved on)."""
        meta = training["metadata"]
        body = {
            "apiVersion": training["apiVersion"],
            "kind": training["kind"],
            "metadata": {"name": meta["name"], "resourceVersion": meta["resourceVersion"]},
            "spec": training.get("spec"),
            "status": status,
        }
        return _call(
            self.custom.replace_namespaced_custom_object_status,
            GROUP,
            VERSION,
            meta["namespace"],
            PLURAL,
            meta["name"],
            body,
        )

    # ------------------------------------------------------------------------ children
    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = _call(self.batch.list_namespaced_job, namespace, label_selector=selector)
        return list(out.get("items") or [])

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = _call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return list(out.get("items") or [])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        reader = {
            "ConfigMap": self.core.read_namespaced_config_map,
            "Service": self.core.read_namespaced_service,
            "Job": self.batch.read_namespaced_job,
        }[kind]
        try:
            return _call(reader, name, namespace)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        creator = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "Job": self.batch.create_namespaced_job,
        }[obj["kind"]]
        return _call(creator, obj["metadata"]["namespace"], obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        replacer = {"ConfigMap": self.core.replace_namespaced_config_map}[obj["kind"]]
        meta = obj["metadata"]
        return _call(replacer, meta["name"], meta["namespace"], obj)

    def delete(self, obj: dict[str, Any]) -> None:
        """Delete (Background propagation: the garbage collector removes a Job's pods)."""
        deleter = {
            "Job": self.batch.delete_namespaced_job,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "Service": self.core.delete_namespaced_service,
        }[obj.get("kind", "Job")]
        meta = obj["metadata"]
        body = {"propagationPolicy": "Background"}
        if meta.get("uid"):
            body["preconditions"] = {"uid": meta["uid"]}
        try:
            _call(deleter, meta["name"], meta["namespace"], body=body)
        except ApiError as e:
            if not (e.not_found or e.conflict):
                raise

    # -------------------------------------------------------------------------- events
    def post_event(self, training: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = training["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
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
