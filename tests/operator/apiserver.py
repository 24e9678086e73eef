"""An in-process HTTP server answering the REST calls the operator's client makes, shaped like
kube-apiserver's answers.

What matters is what the real server does and an in-memory world would not: a list returns
``{"kind": "JobList", "apiVersion": "batch/v1", "items": [...]}`` whose items carry neither
``kind`` nor ``apiVersion``; creating an existing name is 409; a write with a stale
resourceVersion or a delete whose uid precondition fails is 409; a missing object is 404 with a
``Status`` body. The e2e tier runs the same client against a real API server; this one lets unit
tests drive a reconciler pass by pass and read every request it made.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

#: plural -> (apiVersion, kind) of every collection the operator's client touches.
RESOURCES: dict[str, tuple[str, str]] = {
    "configmaps": ("v1", "ConfigMap"),
    "services": ("v1", "Service"),
    "pods": ("v1", "Pod"),
    "events": ("v1", "Event"),
    "jobs": ("batch/v1", "Job"),
    "deployments": ("apps/v1", "Deployment"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"),
    "rtdetrtrainings": ("rtdetr.dev/v1alpha1", "RTDETRTraining"),
    "rtdetrdeployments": ("rtdetr.dev/v1alpha1", "RTDETRDeployment"),
}


@dataclass
class Request:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class FakeApiServer:
    """Objects by (plural, namespace, name); every request in :attr:`requests`."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    _versions: itertools.count = field(default_factory=lambda: itertools.count(100))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as if created (uid, resourceVersion); returns the stored copy."""
        plural = next(p for p, (_, kind) in RESOURCES.items() if kind == obj["kind"])
        stored = copy.deepcopy(obj)
        meta = stored["metadata"]
        meta.setdefault("uid", f"uid-{plural}-{meta['name']}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(plural, meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def names(self, plural: str) -> list[str]:
        return sorted(name for (p, _, name) in self.objects if p == plural)

    # ------------------------------------------------------------------------------ REST
    def handle(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        parts = urlsplit(url)
        segments = parts.path.strip("/").split("/")
        self.requests.append(Request(method, parts.path, body))
        # /api/v1/namespaces/ns/plural[/name[/status]] or /apis/g/v/namespaces/ns/plural[...]
        rest = segments[2:] if segments[0] == "api" else segments[3:]
        if len(rest) < 3 or rest[0] != "namespaces" or rest[2] not in RESOURCES:
            return 404, _status(404, f"the server could not find {parts.path}")
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) > 3 else None
        api_version, kind = RESOURCES[plural]
        with self._lock:
            if name is None and method == "GET":
                selector = parse_qs(parts.query).get("labelSelector", [""])[0]
                items = [
                    {k: v for k, v in copy.deepcopy(o).items() if k not in ("kind", "apiVersion")}
                    for (p, ns, _), o in sorted(self.objects.items())
                    if p == plural and ns == namespace and _matches(o, selector)
                ]
                return 200, {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(next(self._versions))},
                    "items": items,
                }
            if name is None and method == "POST":
                assert body is not None
                meta = body["metadata"]
                if "name" not in meta:
                    meta["name"] = f"{meta['generateName']}{next(self._versions)}"
                if (plural, namespace, meta["name"]) in self.objects:
                    return 409, _status(409, f'{plural} "{meta["name"]}" already exists')
                return 201, self.put({**body, "kind": kind, "apiVersion": api_version})
            key = (plural, namespace, name or "")
            current = self.objects.get(key)
            if current is None:
                return 404, _status(404, f'{plural} "{name}" not found')
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "PUT":
                assert body is not None
                if (
                    body["metadata"].get("resourceVersion")
                    != current["metadata"]["resourceVersion"]
                ):
                    return 409, _status(409, "the object has been modified")
                new = copy.deepcopy(current)
                if len(rest) > 4 and rest[4] == "status":
                    new["status"] = body.get("status")
                else:
                    new.update({k: v for k, v in body.items() if k != "status"})
                    new["metadata"]["uid"] = current["metadata"]["uid"]
                return 200, self.put(new)
            if method == "DELETE":
                uid = ((body or {}).get("preconditions") or {}).get("uid")
                if uid and uid != current["metadata"]["uid"]:
                    return 409, _status(409, "Precondition failed: UID in precondition")
                del self.objects[key]
                return 200, _status(200, "deleted")
        return 405, _status(405, f"{method} is not allowed")


def _matches(obj: dict[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "code": code, "message": message}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        code, answer = self.server.api.handle(self.command, self.path, body)
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, *_: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    api: FakeApiServer


def serve(api: FakeApiServer) -> tuple[client.ApiClient, _Server]:
    """Start ``api`` on a loopback port; an ApiClient pointed at it, and the server to close."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = api
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    return client.ApiClient(config), server
