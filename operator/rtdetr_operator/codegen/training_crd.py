"""The RTDETRTraining CRD, generated from :mod:`rtdetr_operator.api.training`.

Written by ``python -m rtdetr_operator.codegen.crds`` with the RTDETRDeployment CRD
(:mod:`rtdetr_operator.codegen.deployment_crd`); both are assembled by
:mod:`rtdetr_operator.codegen.crd` and land in ``crds/`` and, byte for byte, in
``charts/rtdetr-operator/files/crds/``.

The schema is structural (see :mod:`rtdetr_operator.codegen.structural`). Two choices worth knowing:

* ``spec.experiment`` carries TAO's constraints (types, enums, ranges) but not its defaults: the
  API server would otherwise write every TAO default into each stored object, and the experiment
  would no longer be the text its author applied. The operator applies the defaults from
  ``rtdetr_spec`` (the trainer's own code) and writes the resolved spec into a ConfigMap.
* Constraints that ``rtdetr_spec`` enforces in validators (backbone names, activations, [h, w]
  sizes) are added here from the same constants, so ``kubectl apply`` already refuses them.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.api.training import TRAINING, RTDETRTrainingSpec
from rtdetr_operator.api.training_rules import ROOT_RULES
from rtdetr_operator.api.training_status import RTDETRTrainingStatus
from rtdetr_operator.codegen import crd
from rtdetr_operator.codegen.structural import Schema, to_structural
from rtdetr_spec import ExperimentSpec
from rtdetr_spec.model import BACKBONE_ALIASES, SUPPORTED_BACKBONES

#: Longest path and most training sources the CRD accepts (bounds CEL cost estimates).
MAX_PATH = 4096
MAX_DATA_SOURCES = 64

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
    {"name": "Tasks", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Epoch", "type": "string", "jsonPath": ".status.trainingProgress.epochs"},
    {"name": "Progress", "type": "integer", "jsonPath": ".status.trainingProgress.percent"},
    {"name": "ETA", "type": "string", "jsonPath": ".status.trainingProgress.eta"},
    {"name": "mAP50", "type": "number", "jsonPath": ".status.metrics.mAP50"},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    crd.ready_column("Ready", "status", priority=1),
    crd.ready_column("Reason", "reason", priority=1),
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

TRAINING_CRD = crd.CrdKind(
    names=TRAINING,
    description="RTDETRTraining fine-tunes, evaluates and exports an RT-DETR detector "
    "from a TAO experiment spec.",
    printer_columns=PRINTER_COLUMNS,
    root_rules=ROOT_RULES,
    source="rtdetr_operator.api.training",
)
CRD_FILE = TRAINING_CRD.file_name


def _experiment_patches(schema: Schema) -> None:
    """Validator-only constraints of rtdetr_spec, expressed as schema (same constants)."""
    props = schema["properties"]
    backbone = props["model"]["properties"]["backbone"]
    backbone["enum"] = sorted({*SUPPORTED_BACKBONES, *BACKBONE_ALIASES})
    for act in ("enc_act", "act"):
        props["model"]["properties"][act]["enum"] = ["relu", "gelu", "silu"]
    dataset = props["dataset"]["properties"]
    # Bounds that let the API server price the CEL data-path rules within its budget.
    dataset["train_data_sources"]["maxItems"] = MAX_DATA_SOURCES
    for source in ("train_data_sources", "val_data_sources", "test_data_sources"):
        node = dataset[source].get("items", dataset[source])
        for key in ("image_dir", "json_file"):
            node["properties"][key]["maxLength"] = MAX_PATH
    aug = dataset["augmentation"]["properties"]
    for size in ("train_spatial_size", "eval_spatial_size"):
        aug[size]["minItems"] = aug[size]["maxItems"] = 2
        aug[size]["items"]["minimum"] = 32


def experiment_schema() -> Schema:
    raw = ExperimentSpec.model_json_schema(mode="validation")
    schema = to_structural(raw, keep_defaults=False)
    _experiment_patches(schema)
    return schema


def spec_schema() -> Schema:
    schema = to_structural(RTDETRTrainingSpec.model_json_schema(by_alias=True))
    described = schema["properties"]["experiment"].get("description")
    schema["properties"]["experiment"] = {**experiment_schema(), "description": described}
    return schema


def openapi_schema() -> Schema:
    return crd.openapi_schema(TRAINING_CRD, spec_schema(), crd.status_schema(RTDETRTrainingStatus))


def render() -> str:
    return crd.render(TRAINING_CRD, openapi_schema())
