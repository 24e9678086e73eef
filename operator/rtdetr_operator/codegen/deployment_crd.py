"""The RTDETRDeployment CRD, generated from :mod:`rtdetr_operator.api.deployment`.

Written by ``python -m rtdetr_operator.codegen.crds`` next to the RTDETRTraining CRD (the same
generator, :mod:`rtdetr_operator.codegen.crd`, and the same drift check). ``pools[].gpu`` is a
free string on purpose: GPU types are data (the built-in catalog merged with the chart's
``gpuCatalog`` ConfigMap), so adding one needs no new CRD; the operator refuses a name its
catalog lacks with Stalled and the closest known names.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.api.deployment import DEPLOYMENT, RTDETRDeploymentSpec
from rtdetr_operator.api.deployment_rules import DEPLOYMENT_ROOT_RULES
from rtdetr_operator.api.deployment_status import RTDETRDeploymentStatus
from rtdetr_operator.codegen import crd
from rtdetr_operator.codegen.structural import Schema, to_structural

PRINTER_COLUMNS: list[dict[str, Any]] = [
    crd.ready_column("Ready", "status"),
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Pools", "type": "string", "jsonPath": ".status.readyPools"},
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicas"},
    {"name": "Streams", "type": "integer", "jsonPath": ".status.capacityStreams"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.revision"},
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    crd.ready_column("Reason", "reason", priority=1),
    {"name": "Target", "type": "string", "priority": 1, "jsonPath": ".status.target.revision"},
    {
        "name": "Source",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.source.description",
    },
    {
        "name": "TensorRT",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.triton.tensorrtVersion",
    },
]

DEPLOYMENT_CRD = crd.CrdKind(
    names=DEPLOYMENT,
    description="RTDETRDeployment serves an exported RT-DETR with Triton Inference Server "
    "on GPU pools, with a TensorRT engine built per GPU type, and on CPU pools with onnxruntime.",
    printer_columns=PRINTER_COLUMNS,
    root_rules=DEPLOYMENT_ROOT_RULES,
    source="rtdetr_operator.api.deployment",
)
CRD_FILE = DEPLOYMENT_CRD.file_name


def spec_schema() -> Schema:
    return to_structural(RTDETRDeploymentSpec.model_json_schema(by_alias=True))


def openapi_schema() -> Schema:
    status = crd.status_schema(RTDETRDeploymentStatus)
    return crd.openapi_schema(DEPLOYMENT_CRD, spec_schema(), status)


def render() -> str:
    return crd.render(DEPLOYMENT_CRD, openapi_schema())
