"""``RTDETRDeployment.spec.endpoint``: one address for every pool, optionally exposed outside.

The operator always runs one Service (``<name>-endpoint``) selecting the ready Triton pods of
every pool, so a client needs one address whatever GPU types serve it; the per-pool Services
stay for clients that pin a GPU type. A Service spreads connections over pods, not over their
capacity, so pools of very different GPUs share load evenly per pod. When the CR asks, the
operator also writes a Gateway API HTTPRoute and GRPCRoute whose backends are the per-pool
Services weighted by capacity, or an Ingress on the one Service (Ingress has no weights).
"""

from __future__ import annotations

from pydantic import Field

from rtdetr_operator.api.meta import ApiModel

HOSTNAME_PATTERN = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ParentRef(ApiModel):
    """A Gateway the routes attach to (Gateway API parentRefs)."""

    name: str = Field(min_length=1, max_length=253)
    """Gateway name."""
    namespace: str | None = Field(default=None, max_length=63)
    """Gateway namespace (default: the deployment's)."""
    section_name: str | None = Field(default=None, max_length=253)
    """Listener of the Gateway."""


class GatewayRoutes(ApiModel):
    """Gateway API routes (gateway.networking.k8s.io/v1; the CRDs must be installed)."""

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=16)
    """Gateways the HTTPRoute and GRPCRoute attach to."""
    hostnames: list[str] = Field(default_factory=list, max_length=16)
    """Hostnames the routes match (empty: the Gateway's)."""
    grpc: bool = True
    """Also write a GRPCRoute (Triton's gRPC, port 8001)."""


class IngressRoute(ApiModel):
    """A networking.k8s.io/v1 Ingress on the deployment's Service (HTTP, port 8000)."""

    class_name: str | None = Field(default=None, max_length=253)
    """IngressClass (default: the cluster's default class)."""
    host: str | None = Field(default=None, max_length=253, pattern=HOSTNAME_PATTERN)
    """Host the rule matches (unset: every host)."""
    tls_secret_name: str | None = Field(default=None, max_length=253)
    """Secret with the TLS certificate for host."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations for the ingress controller."""


class Endpoint(ApiModel):
    """How the deployment is reached as one endpoint."""

    gateway: GatewayRoutes | None = None
    """Write Gateway API routes weighting the pools by capacity."""
    ingress: IngressRoute | None = None
    """Write an Ingress on the deployment's Service."""
