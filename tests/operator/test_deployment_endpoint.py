"""One endpoint per deployment: the Service over every pool, routes weighted by capacity."""

from __future__ import annotations

from rtdetr_operator.deployment import endpoint_manifests as em
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.resolve import resolve
from tests.operator.deployment_sim import CATALOG, DeploymentSim, deployment

GATEWAY = {"parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "https"}]}


def _resolved(**spec):
    return resolve(deployment(**spec), CATALOG, OperatorDefaults())


def test_the_endpoint_service_selects_every_pool_and_keeps_the_pool_ports() -> None:
    r = _resolved()
    svc = em.endpoint_service(r)
    assert svc["metadata"]["name"] == "wh-endpoint"
    assert svc["spec"]["selector"] == {
        "rtdetr.dev/deployment": "wh",
        "rtdetr.dev/component": "triton",
    }, "no pool label: the pods of every pool"
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-wh"
    url, eps = em.endpoint_addresses(r)
    assert url == "http://wh-endpoint.ml.svc:8000" and eps["metrics"] == "wh-endpoint.ml.svc:8002"


def test_route_weights_follow_capacity() -> None:
    # H100: 76 streams @30 (2280 images/s) x 1 replica; L4: 36 streams need 4 x 9 @30.
    r = _resolved(endpoint={"gateway": {**GATEWAY, "hostnames": ["dets.example.com"]}})
    http, grpc = em.routes(r)
    assert (http["kind"], grpc["kind"]) == ("HTTPRoute", "GRPCRoute")
    assert http["apiVersion"] == "gateway.networking.k8s.io/v1"
    backends = http["spec"]["rules"][0]["backendRefs"]
    assert backends == [
        {"name": "wh-h100", "port": 8000, "weight": 76 * 30},
        {"name": "wh-l4", "port": 8000, "weight": 9 * 30 * 4},
    ]
    assert [b["port"] for b in grpc["spec"]["rules"][0]["backendRefs"]] == [8001, 8001]
    assert http["spec"]["parentRefs"] == [
        {"name": "edge", "namespace": "infra", "sectionName": "https"}
    ]
    assert http["spec"]["hostnames"] == ["dets.example.com"]


def test_a_cpu_pool_gets_a_token_weight_and_grpc_route_is_optional() -> None:
    r = _resolved(
        pools=[{"gpu": "L4", "minReplicas": 2}, {"gpu": "CPU", "minReplicas": 3}],
        endpoint={"gateway": {**GATEWAY, "grpc": False}},
    )
    (http,) = em.routes(r)
    weights = [b["weight"] for b in http["spec"]["rules"][0]["backendRefs"]]
    assert weights == [9 * 30 * 2, 3]


def test_ingress_targets_the_endpoint_service() -> None:
    assert em.ingress(_resolved()) is None and em.routes(_resolved()) == []
    ing = em.ingress(
        _resolved(
            endpoint={
                "ingress": {
                    "className": "nginx",
                    "host": "dets.example.com",
                    "tlsSecretName": "dets-tls",
                    "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "HTTP"},
                }
            }
        )
    )
    assert ing is not None and ing["spec"]["ingressClassName"] == "nginx"
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "dets.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "wh-endpoint", "port": {"number": 8000}}
    assert ing["spec"]["tls"] == [{"secretName": "dets-tls", "hosts": ["dets.example.com"]}]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]


def test_planner_creates_the_endpoint_with_the_pools_and_drops_routes_no_longer_asked() -> None:
    sim = DeploymentSim(deployment(endpoint={"gateway": GATEWAY}))
    sim.serve("a" * 64)
    assert "wh-endpoint" in sim.kinds["Service"]
    assert set(sim.kinds["HTTPRoute"]) == {"wh-endpoint"} and set(sim.kinds["GRPCRoute"])
    assert sim.status["url"] == "http://wh-endpoint.ml.svc:8000"
    sim.obj["spec"]["endpoint"] = {"ingress": {}}
    sim.obj["metadata"]["generation"] = 2
    sim.settle(2)
    assert not sim.kinds["HTTPRoute"] and not sim.kinds["GRPCRoute"]
    assert set(sim.kinds["Ingress"]) == {"wh-endpoint"}
    assert "wh-endpoint" in sim.kinds["Service"], "the Service stays"
