"""Pure builders of a deployment's single endpoint: its Service, Gateway API routes, Ingress.

* ``<name>-endpoint`` Service: selects every Triton pod of the deployment
  (``rtdetr.dev/deployment`` + ``rtdetr.dev/component=triton``, no pool label), so its endpoints
  are the ready pods of all pools; HTTP 8000, gRPC 8001 (h2c), metrics 8002, like a pool's.
  kube-proxy picks a pod per connection uniformly: with pools of very different GPUs, weight
  them with the routes instead.
* HTTPRoute and GRPCRoute (``gateway.networking.k8s.io/v1``), when ``spec.endpoint.gateway`` is
  set: one rule whose backends are the per-pool Services, each weighted by the images/s its
  minimum replicas sustain (planner throughput per replica x minReplicas). A CPU pool has no
  capacity figure and gets weight 1 per replica: it takes a token share beside GPU pools and an
  even one in a CPU-only deployment. Weights use the resolved minimum, not live replicas, so an
  autoscaler's steps do not rewrite the routes.
* Ingress (``networking.k8s.io/v1``), when ``spec.endpoint.ingress`` is set: one rule to the
  endpoint Service's HTTP port (Ingress has no backend weights).
"""

from __future__ import annotations

import math
from typing import Any

from rtdetr_operator.deployment.manifests import PORTS, object_meta, stamp
from rtdetr_operator.deployment.names import LABEL_COMPONENT, LABEL_DEPLOYMENT, labels
from rtdetr_operator.deployment.pool_manifests import triton_service_ports
from rtdetr_operator.deployment.resolve import ResolvedDeployment, ResolvedPool

GATEWAY_API = "gateway.networking.k8s.io/v1"
#: Gateway API's largest backendRef weight.
MAX_WEIGHT = 1_000_000


def endpoint_selector(name: str) -> dict[str, str]:
    """Every Triton pod of deployment ``name``, whatever its pool."""
    return {LABEL_DEPLOYMENT: name, LABEL_COMPONENT: "triton"}


def endpoint_service(r: ResolvedDeployment) -> dict[str, Any]:
    ports = triton_service_ports()
    return stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": object_meta(r, r.names.endpoint(), labels(r.name, "endpoint")),
            "spec": {"type": "ClusterIP", "selector": endpoint_selector(r.name), "ports": ports},
        }
    )


def endpoint_addresses(r: ResolvedDeployment) -> tuple[str, dict[str, str]]:
    """``status.url`` and ``status.endpoints`` of the deployment's Service."""
    host = r.names.endpoint_host()
    return f"http://{host}:{PORTS['http']}", {k: f"{host}:{p}" for k, p in PORTS.items()}


def pool_weight(pool: ResolvedPool) -> int:
    """Route weight of a pool: images/s of its minimum replicas (1 per replica on CPU)."""
    if pool.streams_per_replica is None or pool.fps is None:
        per_replica = 1
    else:
        per_replica = max(1, math.floor(pool.streams_per_replica * pool.fps))
    return min(MAX_WEIGHT, per_replica * pool.min_replicas)


def _backends(r: ResolvedDeployment, port: int) -> list[dict[str, Any]]:
    return [{"name": r.names.pool(p.name), "port": port, "weight": pool_weight(p)} for p in r.pools]


def _route(r: ResolvedDeployment, kind: str, port: int) -> dict[str, Any]:
    gw = r.spec.endpoint.gateway
    assert gw is not None
    spec: dict[str, Any] = {
        "parentRefs": [ref.model_dump(by_alias=True, exclude_none=True) for ref in gw.parent_refs],
        "rules": [{"backendRefs": _backends(r, port)}],
    }
    if gw.hostnames:
        spec["hostnames"] = list(gw.hostnames)
    return stamp(
        {
            "apiVersion": GATEWAY_API,
            "kind": kind,
            "metadata": object_meta(r, r.names.endpoint(), labels(r.name, "endpoint")),
            "spec": spec,
        }
    )


def routes(r: ResolvedDeployment) -> list[dict[str, Any]]:
    """The HTTPRoute (and GRPCRoute) the CR asks for; none without ``spec.endpoint.gateway``."""
    gw = r.spec.endpoint.gateway
    if gw is None:
        return []
    out = [_route(r, "HTTPRoute", PORTS["http"])]
    if gw.grpc:
        out.append(_route(r, "GRPCRoute", PORTS["grpc"]))
    return out


def ingress(r: ResolvedDeployment) -> dict[str, Any] | None:
    """The Ingress the CR asks for, on the endpoint Service's HTTP port."""
    ing = r.spec.endpoint.ingress
    if ing is None:
        return None
    backend = {"service": {"name": r.names.endpoint(), "port": {"number": PORTS["http"]}}}
    rule: dict[str, Any] = {
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}
    }
    if ing.host:
        rule["host"] = ing.host
    spec: dict[str, Any] = {"rules": [rule]}
    if ing.class_name:
        spec["ingressClassName"] = ing.class_name
    if ing.tls_secret_name:
        spec["tls"] = [
            {"secretName": ing.tls_secret_name, **({"hosts": [ing.host]} if ing.host else {})}
        ]
    meta = object_meta(r, r.names.endpoint(), labels(r.name, "endpoint"))
    if ing.annotations:
        meta["annotations"] = dict(ing.annotations)
    return stamp(
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
    )
