"""The RTDETRDeployment CRD, generated from :mod:`rtdetr_operator.api.deployment`.

Written by ``python -m rtdetr_operator.crdgen`` next to the RTDETRTraining CRD (same structural
conversion, same drift check). One addition the models cannot carry: ``pools[].gpu`` is an enum
of the GPU catalog's types that can be pinned to nodes (those with ``nvidia.com/gpu.product``
values), so an unknown GPU type is refused by ``kubectl apply``. The enum comes from the built-in
catalog; ``--catalog FILE`` regenerates it for a cluster with its own GPU types.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from rtdetr_operator.api import GROUP, VERSION
from rtdetr_operator.api.deployment import (
    DEPLOYMENT_KIND,
    DEPLOYMENT_PLURAL,
    DEPLOYMENT_SHORT_NAMES,
    DEPLOYMENT_SINGULAR,
    RTDETRDeploymentSpec,
)
from rtdetr_operator.api.deployment_rules import DEPLOYMENT_ROOT_RULES
from rtdetr_operator.api.deployment_status import RTDETRDeploymentStatus
from rtdetr_operator.structural import Schema, problems, to_structural
from rtdetr_serving.catalog import GpuCatalog, load_catalog

CRD_FILE = f"{GROUP}_{DEPLOYMENT_PLURAL}.yaml"
MAX_CRD_BYTES = 200 * 1024

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Pools", "type": "string", "jsonPath": ".status.readyPools"},
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicas"},
    {"name": "Streams", "type": "integer", "jsonPath": ".status.capacityStreams"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.revision"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
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


def servable_gpus(catalog: GpuCatalog) -> list[str]:
    """Catalog types a pool may name: those pods can be pinned to (gpu.product labels known)."""
    return [g.name for g in catalog.gpus if g.gpu_product_labels]


def spec_schema(catalog: GpuCatalog) -> Schema:
    schema = to_structural(RTDETRDeploymentSpec.model_json_schema(by_alias=True))
    gpu = schema["properties"]["pools"]["items"]["properties"]["gpu"]
    gpu["enum"] = servable_gpus(catalog)
    return schema


def status_schema() -> Schema:
    # Observed state only: no defaults (a default phase would claim an unseen object Pending).
    schema = RTDETRDeploymentStatus.model_json_schema(by_alias=True)
    return to_structural(schema, keep_defaults=False)


def openapi_schema(catalog: GpuCatalog | None = None) -> Schema:
    catalog = catalog or load_catalog(use_env=False)
    return {
        "type": "object",
        "description": "RTDETRDeployment serves an exported RT-DETR with Triton Inference Server "
        "on GPU pools, with a TensorRT engine built per GPU type.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(catalog),
            "status": status_schema(),
        },
        "x-kubernetes-validations": DEPLOYMENT_ROOT_RULES,
    }


def crd(catalog: GpuCatalog | None = None) -> dict[str, Any]:
    schema = openapi_schema(catalog)
    bad = problems(schema)
    if bad:
        raise ValueError("generated schema is not structural:\n  " + "\n  ".join(bad))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{DEPLOYMENT_PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "rtdetr-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": DEPLOYMENT_KIND,
                "listKind": f"{DEPLOYMENT_KIND}List",
                "plural": DEPLOYMENT_PLURAL,
                "singular": DEPLOYMENT_SINGULAR,
                "shortNames": list(DEPLOYMENT_SHORT_NAMES),
                "categories": ["rtdetr"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(catalog_files: Iterable[str | Path] = ()) -> str:
    files = list(catalog_files)
    catalog = load_catalog(files, use_env=False) if files else None
    header = (
        "# Generated by `python -m rtdetr_operator.crdgen` from "
        "rtdetr_operator.api.deployment; do not edit.\n"
    )
    text = header + yaml.safe_dump(crd(catalog), sort_keys=False, width=100)
    if len(text.encode()) > MAX_CRD_BYTES:
        raise ValueError(f"CRD is {len(text.encode())} bytes, above {MAX_CRD_BYTES}")
    return text
