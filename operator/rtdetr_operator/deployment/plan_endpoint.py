"""The deployment's single endpoint in the state machine: its Service, routes and Ingress.

A plain function of a :class:`~rtdetr_operator.deployment.rollout.Rollout` (pure).
The ``<name>-endpoint`` Service is created with the first pool's Deployment (nothing is
created while the source or the engines are not ready) and then stays: it selects Triton pods
by deployment, so it has endpoints exactly when some pool has ready pods, and its address in
``status.url`` never changes over rollouts. Routes and the Ingress follow ``spec.endpoint``:
created or replaced when the builder's hash differs, deleted when the spec drops them.
"""

from __future__ import annotations

from rtdetr_operator.deployment import endpoint_manifests
from rtdetr_operator.deployment.rollout import Rollout

#: Kinds the endpoint may own besides its Service (observed only when the spec names them,
#: or when one exists: Gateway API CRDs are optional in a cluster).
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "Ingress")


def sync_endpoint(state: Rollout) -> None:
    r = state.resolved
    if r is None:
        return
    pools_exist = bool(state.apps) or any(o["kind"] == "Deployment" for o in state.changes.create)
    if not pools_exist:
        return
    svc = endpoint_manifests.endpoint_service(r)
    state.converge(svc, state.services.get(svc["metadata"]["name"]))
    want = endpoint_manifests.routes(r)
    ing = endpoint_manifests.ingress(r)
    if ing is not None:
        want.append(ing)
    keys = {(o["kind"], o["metadata"]["name"]) for o in want}
    for obj in want:
        state.converge(obj, state.routes.get((obj["kind"], obj["metadata"]["name"])))
    for key, live in state.routes.items():
        if key not in keys and not live["metadata"].get("deletionTimestamp"):
            state.changes.delete.append(live)
    url, addresses = endpoint_manifests.endpoint_addresses(r)
    state.status["url"], state.status["endpoints"] = url, addresses
