"""Generate ``crds/rtdetr.dev_rtdetrtrainings.yaml`` from the pydantic API models.

    python -m rtdetr_operator.crdgen            # (re)write the CRD
    python -m rtdetr_operator.crdgen --check    # exit 1 if crds/ differs from the models

The schema is structural (see :mod:`rtdetr_operator.structural`). Two choices worth knowing:

* ``spec.experiment`` carries TAO's constraints (types, enums, ranges) but not its defaults: the
  API server would otherwise write every TAO default into each stored object, and the experiment
  would no longer be the text its author applied. The operator applies the defaults from
  ``rtdetr_spec`` (the trainer's own code) and writes the resolved spec into a ConfigMap.
* Constraints that ``rtdetr_spec`` enforces in validators (backbone names, activations, [h, w]
  sizes) are added here from the same constants, so ``kubectl apply`` already refuses them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from rtdetr_operator import api
from rtdetr_operator.api.rules import ROOT_RULES
from rtdetr_operator.structural import Schema, problems, to_structural
from rtdetr_spec import ExperimentSpec
from rtdetr_spec.model import BACKBONE_ALIASES, SUPPORTED_BACKBONES

CRD_FILE = f"{api.GROUP}_{api.PLURAL}.yaml"
#: The API server refuses objects above ~1.5 MiB (etcd); client-side ``kubectl apply`` also keeps
#: a copy in a 256 KiB annotation. Stay well below both.
MAX_CRD_BYTES = 200 * 1024

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    {"name": "mAP50", "type": "number", "jsonPath": ".status.metrics.mAP50"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Ready",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "GPU", "type": "string", "priority": 1, "jsonPath": ".spec.gpuProduct"},
    {
        "name": "Backbone",
        "type": "string",
        "priority": 1,
        "jsonPath": ".spec.experiment.model.backbone",
    },
    {"name": "mAP", "type": "number", "priority": 1, "jsonPath": ".status.metrics.mAP"},
    {"name": "Job", "type": "string", "priority": 1, "jsonPath": ".status.trainingJob"},
]


def _experiment_patches(schema: Schema) -> None:
    """Validator-only constraints of rtdetr_spec, expressed as schema (same constants)."""
    props = schema["properties"]
    backbone = props["model"]["properties"]["backbone"]
    backbone["enum"] = sorted({*SUPPORTED_BACKBONES, *BACKBONE_ALIASES})
    for act in ("enc_act", "act"):
        props["model"]["properties"][act]["enum"] = ["relu", "gelu", "silu"]
    aug = props["dataset"]["properties"]["augmentation"]["properties"]
    for size in ("train_spatial_size", "eval_spatial_size"):
        aug[size]["minItems"] = aug[size]["maxItems"] = 2
        aug[size]["items"]["minimum"] = 32


def experiment_schema() -> Schema:
    raw = ExperimentSpec.model_json_schema(mode="validation")
    schema = to_structural(raw, keep_defaults=False)
    _experiment_patches(schema)
    return schema


def spec_schema() -> Schema:
    schema = to_structural(api.RTDETRTrainingSpec.model_json_schema(by_alias=True))
    described = schema["properties"]["experiment"].get("description")
    schema["properties"]["experiment"] = {**experiment_schema(), "description": described}
    return schema


def status_schema() -> Schema:
    # Status is observed state: no defaults (a default phase would claim an unseen run Pending).
    schema = api.RTDETRTrainingStatus.model_json_schema(by_alias=True)
    return to_structural(schema, keep_defaults=False)


def openapi_schema() -> Schema:
    return {
        "type": "object",
        "description": "RTDETRTraining fine-tunes, evaluates and exports an RT-DETR detector "
        "from a TAO experiment spec.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "x-kubernetes-validations": ROOT_RULES,
    }


def crd() -> dict[str, Any]:
    schema = openapi_schema()
    bad = problems(schema)
    if bad:
        raise ValueError("generated schema is not structural:\n  " + "\n  ".join(bad))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "rtdetr-operator"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated by `python -m rtdetr_operator.crdgen` from rtdetr_operator.api; do not edit.\n"
    )
    text = header + yaml.safe_dump(crd(), sort_keys=False, width=100)
    if len(text.encode()) > MAX_CRD_BYTES:
        raise ValueError(f"CRD is {len(text.encode())} bytes, above {MAX_CRD_BYTES}")
    return text


def default_output() -> Path:
    """``<repo>/crds/`` (this file is ``<repo>/operator/rtdetr_operator/crdgen.py``)."""
    return Path(__file__).resolve().parents[2] / "crds" / CRD_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtdetr_operator.crdgen", description=__doc__)
    parser.add_argument("--output", type=Path, default=default_output(), help="CRD file to write")
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--json-schema", action="store_true", help="print the schema as JSON")
    args = parser.parse_args(argv)
    if args.json_schema:
        print(json.dumps(openapi_schema(), indent=2))
        return 0
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current == text:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), str(args.output), "generated", lineterm=""
        )
        print("\n".join(list(diff)[:80]), file=sys.stderr)
        print(
            f"{args.output} is out of date; run `python -m rtdetr_operator.crdgen`",
            file=sys.stderr,
        )
        return 1
    from rtdetr_spec.artifacts import atomic_write_text

    atomic_write_text(args.output, text)
    print(f"wrote {args.output} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
