"""CEL rules of RTDETRDeployment: what ``kubectl apply`` refuses before the operator sees it.

Messages are written to follow the API server's ``<fieldPath>: Invalid value: ...:`` prefix, so
they read as a sentence about the named field. The operator re-checks every rule in
:mod:`rtdetr_operator.deployment.resolve` with the same wording (a cluster may run an older CRD,
and a CR stored before a rule existed is never re-validated), and adds what CEL cannot know:
whether the model source exists and whether a stream target fits the replica limits.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.api.training_rules import name_rule, rule
from rtdetr_serving.catalog import CPU_DEVICE

_CPU = f"self.gpu == '{CPU_DEVICE}'"
#: Messages shared with the operator's re-check (resolve.py).
CPU_STREAMS = (
    "a CPU pool has no capacity figure to turn camera streams into replicas (the model card "
    "measured none); size it with minReplicas/maxReplicas"
)
CPU_BACKEND_GPU = "applies to CPU pools only (a GPU pool serves its TensorRT engine)"
CPU_TENSORRT = "a CPU pool builds no engine, so it has no TensorRT version"
POOL_TENSORRT = (
    "is required with a GPU pool's image: its engine is built with, and checked against, the "
    "TensorRT version the image serves with"
)
SPEC_TENSORRT = (
    "is required with a custom image that a GPU pool uses: engines are built with, and checked "
    "against, the TensorRT version the Triton image serves with"
)

#: Rules on one pool (``self`` is the pool).
POOL_RULES: list[dict[str, Any]] = [
    rule(
        "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
        "must not exceed maxReplicas",
        ".minReplicas",
    ),
    rule(
        "has(self.streams) == has(self.fps)",
        "streams and fps go together: the planner turns N camera streams at F FPS into replicas",
        ".streams",
    ),
    rule(f"!({_CPU}) || (!has(self.streams) && !has(self.fps))", CPU_STREAMS, ".streams"),
    rule(f"{_CPU} || !has(self.cpuBackend)", CPU_BACKEND_GPU, ".cpuBackend"),
    rule(f"!({_CPU}) || !has(self.tensorrtVersion)", CPU_TENSORRT, ".tensorrtVersion"),
    rule(
        f"{_CPU} || !has(self.image) || has(self.tensorrtVersion)",
        POOL_TENSORRT,
        ".tensorrtVersion",
    ),
]

#: Rules on the model source (``self`` is spec.model).
MODEL_RULES: list[dict[str, Any]] = [
    rule(
        "[has(self.training), has(self.onnx), has(self.uri)].filter(x, x).size() == 1",
        "set exactly one model source: training (an RTDETRTraining), onnx (a file on a volume) "
        "or uri (a source URI)",
    ),
]

#: Rules on an ONNX source (``self`` is spec.model.onnx).
ONNX_SOURCE_RULES: list[dict[str, Any]] = [
    rule("has(self.claimName) != has(self.volume)", "set exactly one of claimName or volume"),
    rule(
        "!self.path.startsWith('/') && !self.path.contains('..') && self.path.endsWith('.onnx')",
        "must be a relative path inside the volume, without '..', ending in .onnx",
        ".path",
    ),
]

#: Rules on spec: a custom Triton image that a GPU pool serves with must say which TensorRT it
#: has (CPU pools and pools with their own image do not use it for engines).
SPEC_RULES: list[dict[str, Any]] = [
    rule(
        "!has(self.triton) || !has(self.triton.image) || has(self.triton.tensorrtVersion) || "
        f"self.pools.all(p, p.gpu == '{CPU_DEVICE}' || has(p.image))",
        SPEC_TENSORRT,
        ".triton.tensorrtVersion",
    ),
]

#: Rules on spec.rollout.
ROLLOUT_RULES: list[dict[str, Any]] = [
    rule(
        "!has(self.maxSurge) || !has(self.maxUnavailable) || "
        "!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])",
        "maxSurge and maxUnavailable cannot both be 0: a rolling update could never start",
        ".maxSurge",
    ),
]

#: Rules on spec.rollout.disruptionBudget.
PDB_RULES: list[dict[str, Any]] = [
    rule(
        "!(has(self.minAvailable) && has(self.maxUnavailable))",
        "set at most one of minAvailable or maxUnavailable",
    ),
]

#: Whole-object rule: children are named <name>-<gpu>, which must stay DNS labels.
DEPLOYMENT_ROOT_RULES: list[dict[str, Any]] = [name_rule("it names the pools' Services")]
