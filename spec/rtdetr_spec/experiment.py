"""The whole TAO RT-DETR experiment spec and what each task needs from it.

:class:`ExperimentSpec` is the single source of truth for the spec schema: the trainer reads it,
the operator embeds it in ``RTDETRTraining.spec.experiment`` (and the CRD schema is generated
from it), and its defaults are TAO's. This module imports pydantic and nothing heavier, so the
operator image never needs torch.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import Field, field_validator

from rtdetr_spec.base import SpecModel
from rtdetr_spec.dataset import DatasetConfig
from rtdetr_spec.errors import MissingValueError
from rtdetr_spec.model import ModelConfig
from rtdetr_spec.tasks import (
    EvaluateConfig,
    ExportConfig,
    GenTrtEngineConfig,
    InferenceConfig,
    WandBConfig,
)
from rtdetr_spec.train import TrainConfig

Task = Literal["train", "evaluate", "inference", "export", "gen_trt_engine"]
TASKS: tuple[str, ...] = ("train", "evaluate", "inference", "export", "gen_trt_engine")

#: The seven classes of NVIDIA's RT-DETR warehouse model, in the model card's category-id order
#: (1..7).
WAREHOUSE_CLASSES: tuple[str, ...] = (
    "person",
    "agility_digit",
    "gr1_t2",
    "nova_carter",
    "transporter",
    "forklift",
    "pallet",
)


class ExperimentSpec(SpecModel):
    """A TAO ``rtdetr`` experiment spec (``tao model rtdetr <task> -e spec.yaml``)."""

    model_name: str | None = "rtdetr"
    encryption_key: str | None = None
    results_dir: str | None = ""
    wandb: WandBConfig = Field(default_factory=WandBConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    gen_trt_engine: GenTrtEngineConfig = Field(default_factory=GenTrtEngineConfig)
    #: TAO tasks this project does not implement; accepted (and ignored) so TAO specs load.
    distill: dict[str, Any] | None = None
    quantize: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_name")
    @classmethod
    def _rtdetr(cls, v: str | None) -> str | None:
        if v not in (None, "rtdetr"):
            raise ValueError(f"this is an RT-DETR trainer; model_name must be 'rtdetr', got {v!r}")
        return v

    @field_validator("encryption_key")
    @classmethod
    def _no_encryption(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("encrypted TAO models (.tlt/.etlt) are not supported; leave it unset")
        return v

    # ------------------------------------------------------------------ task requirements
    def required_keys(self, task: str) -> list[str]:
        """Dotted keys that ``task`` cannot run without."""
        keys = ["results_dir"]
        if task == "train":
            for i, _ in enumerate(self.dataset.train_data_sources):
                keys += [f"dataset.train_data_sources.{i}.image_dir"]
                keys += [f"dataset.train_data_sources.{i}.json_file"]
            keys += ["dataset.val_data_sources.image_dir", "dataset.val_data_sources.json_file"]
        elif task == "evaluate":
            keys += ["evaluate.checkpoint"]
            keys += ["dataset.test_data_sources.image_dir", "dataset.test_data_sources.json_file"]
        elif task == "inference":
            keys += ["inference.checkpoint", "dataset.infer_data_sources.image_dir"]
        elif task == "export":
            keys += ["export.checkpoint", "export.onnx_file"]
        elif task == "gen_trt_engine":
            keys += ["gen_trt_engine.onnx_file", "gen_trt_engine.trt_engine"]
        else:
            raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        return keys

    def check_required(self, task: str) -> None:
        """Raise :class:`MissingValueError` naming every key ``task`` needs that is unset/``??``."""
        missing = set(self.missing_keys())
        unset = [k for k in self.required_keys(task) if k in missing or _empty(self.get(k))]
        if unset:
            raise MissingValueError(unset, task=task)

    def optional_missing(self, task: str) -> list[str]:
        """Keys left at ``??`` that ``task`` reads but can do without (they take defaults)."""
        sections = {
            "train": ("train.", "model.", "dataset."),
            "evaluate": ("evaluate.", "model.", "dataset."),
            "inference": ("inference.", "model.", "dataset."),
            "export": ("export.", "model.", "dataset."),
            "gen_trt_engine": ("gen_trt_engine.",),
        }[task]
        required = set(self.required_keys(task))
        return [
            k
            for k in self.missing_keys()
            if k.startswith(sections) and k not in required and not _other_source(k, task)
        ]

    def get(self, dotted: str) -> Any:
        """Value at a dotted path (list items by index), e.g. ``dataset.train_data_sources.0``."""
        node: Any = self
        for part in dotted.split("."):
            node = node[int(part)] if isinstance(node, list) else getattr(node, part)
        return node

    def task_results_dir(self, task: str) -> str:
        """``<task>.results_dir`` if set, else ``<results_dir>/<task>`` (TAO's layout)."""
        section = getattr(self, task, None)
        own = getattr(section, "results_dir", None)
        if own:
            return str(own)
        return str(PurePosixPath(self.results_dir or ".") / task)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _other_source(key: str, task: str) -> bool:
    """Data sources another task reads (train's val set is not evaluate's business, and so on)."""
    used = {
        "train": ("dataset.train_data_sources", "dataset.val_data_sources"),
        "evaluate": ("dataset.test_data_sources",),
        "inference": ("dataset.infer_data_sources",),
        "export": ("dataset.val_data_sources",),
        "gen_trt_engine": (),
    }[task]
    return key.startswith("dataset.") and "_data_sources" in key and not key.startswith(used)
