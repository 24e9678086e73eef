"""``evaluate:``, ``inference:``, ``export:`` and ``gen_trt_engine:`` sections, TAO's defaults.

``evaluate.checkpoint`` and ``inference.checkpoint`` may also name an exported ONNX file (FP32 or
FP16), which then runs with onnxruntime instead of PyTorch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rtdetr_spec.base import SpecModel


class EvaluateConfig(SpecModel):
    num_gpus: int = Field(default=1, ge=1)
    gpu_ids: list[int] = Field(default_factory=lambda: [0])
    num_nodes: int = Field(default=1, ge=1)
    checkpoint: str | None = None
    trt_engine: str | None = None
    results_dir: str | None = None
    batch_size: int = Field(default=-1, ge=-1)
    input_width: int | None = Field(default=None, ge=32)
    input_height: int | None = Field(default=None, ge=32)
    conf_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    is_quantized: bool = False


class InferenceConfig(SpecModel):
    num_gpus: int = Field(default=1, ge=1)
    gpu_ids: list[int] = Field(default_factory=lambda: [0])
    num_nodes: int = Field(default=1, ge=1)
    checkpoint: str | None = None
    trt_engine: str | None = None
    results_dir: str | None = None
    batch_size: int = Field(default=-1, ge=-1)
    color_map: dict[str, str] | None = None
    conf_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    is_internal: bool = False
    input_width: int | None = Field(default=None, ge=32)
    input_height: int | None = Field(default=None, ge=32)
    outline_width: int = Field(default=3, ge=1)
    is_quantized: bool = False


class ExportConfig(SpecModel):
    results_dir: str | None = None
    gpu_id: int = Field(default=0, ge=0)
    checkpoint: str | None = None
    onnx_file: str | None = None
    on_cpu: bool = False
    input_channel: Literal[3] = 3
    input_width: int = Field(default=640, ge=32)
    input_height: int = Field(default=640, ge=32)
    opset_version: int = Field(default=17, ge=1)
    batch_size: int = Field(default=-1, ge=-1)
    verbose: bool = False
    format: Literal["onnx"] = "onnx"
    serialize_nvdsinfer: bool = False
    is_quantized: bool = False
    #: Not in TAO: also write ``<stem>.fp16.onnx``, converted by NVIDIA Model Optimizer's ONNX
    #: autocast (FP32 inputs/outputs kept), as the model card's optional FP16 step does by hand.
    fp16: bool = False

    @field_validator("opset_version")
    @classmethod
    def _opset(cls, v: int) -> int:
        if v < 16:
            raise ValueError(
                f"opset {v} is too old: deformable attention exports through GridSample, "
                "which needs opset >= 16"
            )
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be -1 (dynamic batch) or a fixed batch >= 1")
        return v


class CalibrationConfig(SpecModel):
    cal_image_dir: list[str] = Field(default_factory=list)
    cal_cache_file: str | None = None
    cal_batch_size: int = Field(default=1, ge=1)
    cal_batches: int = Field(default=1, ge=1)


class TensorRTConfig(SpecModel):
    data_type: Literal["FP32", "FP16", "INT8"] = "FP32"
    workspace_size: int = Field(default=1024, ge=0)
    min_batch_size: int = Field(default=1, ge=1)
    opt_batch_size: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=4, ge=1)
    layers_precision: list[str] = Field(default_factory=list)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)


class GenTrtEngineConfig(SpecModel):
    results_dir: str | None = None
    gpu_id: int = Field(default=0, ge=0)
    onnx_file: str | None = None
    trt_engine: str | None = None
    timing_cache: str | None = None
    batch_size: int = Field(default=-1, ge=-1)
    verbose: bool = False
    tensorrt: TensorRTConfig = Field(default_factory=TensorRTConfig)


class WandBConfig(SpecModel):
    """Weights & Biases (TAO's block). With ``enable`` true, ``rtdetr train`` logs to a W&B run
    when an API key (``WANDB_API_KEY``) is set or ``WANDB_MODE=offline``; otherwise it says so in
    one warning line and trains on. TensorBoard files are written either way."""

    enable: bool = True
    project: str = "TAO Toolkit"
    entity: str | None = ""
    group: str | None = ""
    tags: list[str] = Field(default_factory=lambda: ["tao-toolkit"])
    reinit: bool = False
    sync_tensorboard: bool = False
    save_code: bool = False
    name: str = "TAO Toolkit Training"
    run_id: str = ""
