"""The deployment's single endpoint in the state machine: its Service, routes and Ingress.

A mixin of :class:`rtdetr_operator.deployment.plan._Planner` (same attributes, same purity).
The ``<name>-endpoint`` Service is created with the first pool's Deployment (nothing is
created while the source or the engines are not ready) and then stays: it selects Triton pods
by deployment, so it has endpoints exactly when some pool has ready pods, and its address in
``status.url`` never changes over rollouts. Routes and the Ingress follow ``spec.endpoint``:
created or replaced when the builder's hash differs, deleted when the spec drops them.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.deployment import endpoint_manifests
from rtdetr_operator.deployment.plan_pools import PoolsMixin

#: Kinds the endpoint may own besides its Service (observed only when the spec names them,
#: or when one exists: Gateway API CRDs are optional in a cluster).
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "Ingress")


class EndpointMixin(PoolsMixin):
    #: Live HTTPRoute/GRPCRoute/Ingress of this deployment, keyed by (kind, name).
    routes: dict[tuple[str, str], dict[str, Any]]

    def _sync_endpoint(self) -> None:
        r = self.resolved
        if r is None:
            return
        pools_exist = bool(self.apps) or any(o["kind"] == "Deployment" for o in self.changes.create)
        if not pools_exist:
            return
        svc = endpoint_manifests.endpoint_service(r)
        self._converge(svc, self.services.get(svc["metadata"]["name"]))
        want = endpoint_manifests.routes(r)
        ing = endpoint_manifests.ingress(r)
        if ing is not None:
            want.append(ing)
        keys = {(o["kind"], o["metadata"]["name"]) for o in want}
        for obj in want:
            self._converge(obj, self.routes.get((obj["kind"], obj["metadata"]["name"])))
        for key, live in self.routes.items():
            if key not in keys and not live["metadata"].get("deletionTimestamp"):
                self.changes.delete.append(live)
        url, addresses = endpoint_manifests.endpoint_addresses(r)
        self.status["url"], self.status["endpoints"] = url, addresses
