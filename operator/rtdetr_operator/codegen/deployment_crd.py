"""The RTDETRDeployment CRD, generated from :mod:`rtdetr_operator.api.deployment`.

Written by ``python -m rtdetr_operator.codegen.crds`` next to the RTDETRTraining CRD (the same
generator, :mod:`rtdetr_operator.codegen.crd`, and the same drift check). One addition the models
cannot carry:
``pools[].gpu`` is an enum of the GPU catalog's types that can be pinned to nodes (those with
``nvidia.com/gpu.product`` values) and the catalog's CPU device type, so an unknown GPU type is
refused by ``kubectl apply``. The enum comes from the built-in catalog; ``--catalog FILE``
regenerates it for a cluster with its own GPU types.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rtdetr_operator.api.deployment import DEPLOYMENT, RTDETRDeploymentSpec
from rtdetr_operator.api.deployment_rules import DEPLOYMENT_ROOT_RULES
from rtdetr_operator.api.deployment_status import RTDETRDeploymentStatus
from rtdetr_operator.codegen import crd
from rtdetr_operator.codegen.structural import Schema, to_structural
from rtdetr_serving.catalog import GpuCatalog, load_catalog

PRINTER_COLUMNS: list[dict[str, Any]] = [
    crd.ready_column("Ready", "status"),
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Pools", "type": "string", "jsonPath": ".status.readyPools"},
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicas"},
    {"name": "Streams", "type": "integer", "jsonPath": ".status.capacityStreams"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.revision"},
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


def servable_gpus(catalog: GpuCatalog) -> list[str]:
    """Catalog types a pool may name: GPUs pods can be pinned to (gpu.product labels known),
    then the CPU device type."""
    return [g.name for g in catalog.gpus if g.gpu_product_labels] + [catalog.cpu.name]


def spec_schema(catalog: GpuCatalog) -> Schema:
    schema = to_structural(RTDETRDeploymentSpec.model_json_schema(by_alias=True))
    gpu = schema["properties"]["pools"]["items"]["properties"]["gpu"]
    gpu["enum"] = servable_gpus(catalog)
    return schema


def openapi_schema(catalog: GpuCatalog | None = None) -> Schema:
    catalog = catalog or load_catalog(use_env=False)
    status = crd.status_schema(RTDETRDeploymentStatus)
    return crd.openapi_schema(DEPLOYMENT_CRD, spec_schema(catalog), status)


def render(catalog_files: Iterable[str | Path] = ()) -> str:
    """The CRD, its GPU enum from the built-in catalog merged with ``catalog_files``."""
    files = list(catalog_files)
    catalog = load_catalog(files, use_env=False) if files else None
    return crd.render(DEPLOYMENT_CRD, openapi_schema(catalog))
