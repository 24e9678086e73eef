"""The TAO RT-DETR experiment-spec schema, shared by the trainer and the operator.

Torch-free by contract (see ``.importlinter``): the operator image imports this package to
validate ``RTDETRTraining.spec.experiment`` and to generate the CRD schema.
"""

from rtdetr_spec.base import MISSING_MARKERS, SpecModel, is_missing
from rtdetr_spec.dataset import Augmentation, DatasetConfig, DataSource, InferDataSource
from rtdetr_spec.errors import MissingValueError, SpecError
from rtdetr_spec.experiment import TASKS, WAREHOUSE_CLASSES, ExperimentSpec
from rtdetr_spec.loading import (
    apply_override,
    dump_experiment,
    load_experiment,
    parse_override,
    validate_experiment,
)
from rtdetr_spec.model import SUPPORTED_BACKBONES, ModelConfig, normalize_backbone
from rtdetr_spec.tasks import EvaluateConfig, ExportConfig, InferenceConfig
from rtdetr_spec.train import TrainConfig

__all__ = [
    "MISSING_MARKERS",
    "SUPPORTED_BACKBONES",
    "TASKS",
    "WAREHOUSE_CLASSES",
    "Augmentation",
    "DataSource",
    "DatasetConfig",
    "EvaluateConfig",
    "ExperimentSpec",
    "ExportConfig",
    "InferDataSource",
    "InferenceConfig",
    "MissingValueError",
    "ModelConfig",
    "SpecError",
    "SpecModel",
    "TrainConfig",
    "apply_override",
    "dump_experiment",
    "is_missing",
    "load_experiment",
    "normalize_backbone",
    "parse_override",
    "validate_experiment",
]
