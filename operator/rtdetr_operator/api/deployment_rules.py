"""CEL rules of RTDETRDeployment: what ``kubectl apply`` refuses before the operator sees it.

Messages are written to follow the API server's ``<fieldPath>: Invalid value: ...:`` prefix, so
they read as a sentence about the named field. The operator re-checks every rule in
:mod:`rtdetr_operator.deployment.resolve` with the same wording (a cluster may run an older CRD,
and a CR stored before a rule existed is never re-validated), and adds what CEL cannot know:
whether the model source exists and whether a stream target fits the replica limits.
"""

from __future__ import annotations

from typing import Any


def _rule(rule: str, message: str, field_path: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    out.update(extra)
    return out


#: Rules on one pool (``self`` is the pool).
POOL_RULES: list[dict[str, Any]] = [
    _rule(
        "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
        "must not exceed maxReplicas",
        ".minReplicas",
    ),
    _rule(
        "has(self.streams) == has(self.fps)",
        "streams and fps go together: the planner turns N camera streams at F FPS into replicas",
        ".streams",
    ),
]

#: Rules on the model source (``self`` is spec.model).
MODEL_RULES: list[dict[str, Any]] = [
    _rule(
        "has(self.training) != has(self.onnx)",
        "set exactly one model source: training (an RTDETRTraining) or onnx (a file on a volume)",
    ),
]

#: Rules on an ONNX source (``self`` is spec.model.onnx).
ONNX_SOURCE_RULES: list[dict[str, Any]] = [
    _rule("has(self.claimName) != has(self.volume)", "set exactly one of claimName or volume"),
    _rule(
        "!self.path.startsWith('/') && !self.path.contains('..') && self.path.endsWith('.onnx')",
        "must be a relative path inside the volume, without '..', ending in .onnx",
        ".path",
    ),
]

#: Rules on spec.triton: a custom image must say which TensorRT it serves with.
TRITON_RULES: list[dict[str, Any]] = [
    _rule(
        "!has(self.image) || has(self.tensorrtVersion)",
        "is required with a custom image: engines are built with, and checked against, the "
        "TensorRT version the Triton image serves with",
        ".tensorrtVersion",
    ),
]

#: Rules on spec.rollout.
ROLLOUT_RULES: list[dict[str, Any]] = [
    _rule(
        "!has(self.maxSurge) || !has(self.maxUnavailable) || "
        "!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])",
        "maxSurge and maxUnavailable cannot both be 0: a rolling update could never start",
        ".maxSurge",
    ),
]

#: Rules on spec.rollout.disruptionBudget.
PDB_RULES: list[dict[str, Any]] = [
    _rule(
        "!(has(self.minAvailable) && has(self.maxUnavailable))",
        "set at most one of minAvailable or maxUnavailable",
    ),
]

#: Whole-object rule: children are named <name>-<gpu>, which must stay DNS labels.
DEPLOYMENT_ROOT_RULES: list[dict[str, Any]] = [
    _rule(
        "self.metadata.name.size() <= 40 && "
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be at most 40 characters, start with a letter and contain only "
        "lowercase letters, digits and '-' (it names the pools' Services)",
        reason="FieldValueInvalid",
    ),
]
