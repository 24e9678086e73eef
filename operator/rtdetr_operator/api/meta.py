"""Kubernetes building blocks both APIs embed (tolerations, env, quantities, conditions...).

These are deliberately small subsets of the core/v1 types: enough to validate what the operator
reads at ``kubectl apply`` time, without pasting the whole core/v1 OpenAPI into the CRD (which
would blow the etcd object size budget). Where the operator only passes a value through to a pod
(affinity, ``valueFrom``, arbitrary volume sources) the schema keeps unknown fields instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "rtdetr.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
#: ``kubectl get rtdetr`` lists both kinds.
CATEGORIES: tuple[str, ...] = ("rtdetr",)


@dataclass(frozen=True)
class KindNames:
    """Everything that names one of our kinds: in the API, on the command line, in RBAC.

    Each kind's module holds one (:data:`rtdetr_operator.api.training.TRAINING`,
    :data:`rtdetr_operator.api.deployment.DEPLOYMENT`); the CRD generator, the REST client, the
    watches and the owner references all read the names from it.
    """

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def group(self) -> str:
        return GROUP


#: Kubernetes' resource.Quantity grammar (the same pattern core/v1 CRDs carry).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)

#: Keys under which the CRD generator finds a pass-through object (free-form, kept as written).
PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 16, 500m, 64Gi)")
    return value


#: A resource quantity such as ``32``, ``500m`` or ``256Gi`` (int-or-string in the CRD).
Quantity = Annotated[
    int | str,
    AfterValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

#: A free-form object passed through to the pod unchanged (validated by the API server there).
PassThrough = Annotated[dict[str, Any], WithJsonSchema(PRESERVE)]


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, no unknown keys.

    Attribute docstrings become the CRD's descriptions (what ``kubectl explain`` prints).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, unset fields omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def defaulted(cls: type[BaseModel]) -> Any:
    """A sub-object that defaults to ``{}`` in the CRD too, so its fields' defaults apply.

    The API server fills nested defaults only under an object that exists; declaring ``{}``
    makes ``spec.resources.gpuResource`` & co. present on every stored object, which is also
    what CEL rules may then rely on.
    """
    return Field(default_factory=cls, json_schema_extra={"default": {}})


class LocalObjectReference(ApiModel):
    name: str = Field(min_length=1)
    """Name of an object in the same namespace (e.g. an image pull Secret)."""


class Toleration(ApiModel):
    """A core/v1 Toleration."""

    key: str | None = None
    """Taint key; empty with operator Exists tolerates everything."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    value: str | None = None
    """Taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated before eviction."""


class EnvVar(ApiModel):
    """A core/v1 EnvVar added to every task container."""

    name: str = Field(min_length=1)
    """Variable name. The launch contract's names are reserved (see spec.env)."""
    value: str | None = None
    """Literal value."""
    value_from: PassThrough | None = None
    """A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef...)."""


class PodMetadata(ApiModel):
    """Labels and annotations added to pods (e.g. for cost accounting or log shipping)."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra pod labels. The operator's own labels (rtdetr.dev/*, app.kubernetes.io/*) win."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Extra pod annotations (sidecar.istio.io/inject is always "false")."""


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(min_length=1)
    """Ready, Reconciling or Stalled."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(min_length=1, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """CamelCase machine-readable reason."""
    message: str = ""
    """Human-readable detail."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed from."""


#: ``status.conditions`` of both kinds: a list-map keyed by type, as metav1 conditions are, so
#: server-side apply and ``kubectl`` treat each condition as one entry.
Conditions = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    ),
]
