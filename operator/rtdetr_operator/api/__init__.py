"""The RTDETRTraining API (group ``rtdetr.dev``, version ``v1alpha1``): the single source of truth.

The CRD in ``crds/`` is generated from these pydantic models by :mod:`rtdetr_operator.crdgen`;
the operator parses custom resources with the same models, so the schema the API server enforces
and the one the operator reads can never drift (a test regenerates the CRD and compares).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rtdetr_operator.api.meta import (
    ApiModel,
    Condition,
    EnvVar,
    PodMetadata,
    Quantity,
    Toleration,
)
from rtdetr_operator.api.spec import (
    FORBIDDEN_ENV,
    RESERVED_ENV,
    DataStorage,
    EvaluationOptions,
    ExportOptions,
    NodeResources,
    ResultsStorage,
    RTDETRTrainingSpec,
    RunReference,
    Storage,
    TrainingOptions,
    VolumeSource,
)
from rtdetr_operator.api.status import (
    PHASES,
    TERMINAL_PHASES,
    Metrics,
    ResultsVolume,
    RTDETRTrainingStatus,
    StartedFrom,
    TaskRecord,
    Tasks,
)

GROUP = "rtdetr.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RTDETRTraining"
PLURAL = "rtdetrtrainings"
SINGULAR = "rtdetrtraining"
SHORT_NAMES: tuple[str, ...] = ("rtt", "rtdetrtrain")
CATEGORIES: tuple[str, ...] = ("rtdetr",)


class RTDETRTraining(ApiModel):
    """The whole custom resource as the operator reads it (metadata kept as a plain dict)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RTDETRTrainingSpec
    status: RTDETRTrainingStatus = Field(default_factory=RTDETRTrainingStatus)


__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "FORBIDDEN_ENV",
    "GROUP",
    "KIND",
    "PHASES",
    "PLURAL",
    "RESERVED_ENV",
    "SHORT_NAMES",
    "SINGULAR",
    "TERMINAL_PHASES",
    "VERSION",
    "ApiModel",
    "Condition",
    "DataStorage",
    "EnvVar",
    "EvaluationOptions",
    "ExportOptions",
    "Metrics",
    "NodeResources",
    "PodMetadata",
    "Quantity",
    "RTDETRTraining",
    "RTDETRTrainingSpec",
    "RTDETRTrainingStatus",
    "ResultsStorage",
    "ResultsVolume",
    "RunReference",
    "StartedFrom",
    "Storage",
    "TaskRecord",
    "Tasks",
    "Toleration",
    "TrainingOptions",
    "VolumeSource",
]
