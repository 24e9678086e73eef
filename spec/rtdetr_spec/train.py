"""``train:`` section: schedule, optimizer, precision, checkpoints and the multi-node shape.

Defaults are TAO's. Two TAO fields that TAO itself never reads are live here:
``optim.lr_backbone`` really applies to the backbone parameters and ``optim.warmup_steps`` is a
linear warm-up. ``optim.momentum`` is kept for compatibility; AdamW has no momentum term.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rtdetr_spec.base import SpecModel


class CuDNNConfig(SpecModel):
    benchmark: bool = False
    deterministic: bool = True


class CheckpointerConfig(SpecModel):
    """TAO's top-k checkpointer settings; accepted. ``monitor``/``mode`` choose which epoch
    checkpoint counts as the best one that ``train.keep_last_checkpoints`` always keeps."""

    enable_topk: bool = False
    replace_periodic: bool = False
    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    save_top_k: int = Field(default=1, ge=1)
    filename: str = "model_best_{epoch:03d}"
    dirpath: str | None = None
    auto_insert_metric_name: bool = False

    def watch(self) -> tuple[str | None, Literal["min", "max"] | None]:
        """(monitor, mode) as set; unset means val_mAP, max (losses: min)."""
        return self.monitor, self.mode


class OptimConfig(SpecModel):
    """AdamW with separate backbone learning rate, step schedule and warm-up."""

    optimizer: Literal["AdamW"] = "AdamW"
    monitor_name: Literal["val_loss", "train_loss"] = "val_loss"
    lr: float = Field(default=1e-4, ge=0.0)
    lr_backbone: float = Field(default=1e-5, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    lr_scheduler: Literal["MultiStep", "StepLR"] = "MultiStep"
    lr_steps: list[int] = Field(default_factory=lambda: [1000])
    lr_step_size: int = Field(default=1000, ge=1)
    lr_decay: float = Field(default=0.1, ge=0.0)
    warmup_steps: int = Field(default=0, ge=0)


class EMAConfig(SpecModel):
    decay: float = Field(default=0.999, ge=0.0, le=1.0)
    every_n_steps: int = Field(default=1, ge=1)
    validate_original_weights: bool = False
    cpu_offload: bool = False


class TrainConfig(SpecModel):
    """How long and on how many processes to train, and what to save."""

    num_gpus: int = Field(default=1, ge=1)
    gpu_ids: list[int] = Field(default_factory=lambda: [0])
    num_nodes: int = Field(default=1, ge=1)
    seed: int = Field(default=1234, ge=-1)
    cudnn: CuDNNConfig = Field(default_factory=CuDNNConfig)
    num_epochs: int = Field(default=10, ge=1)
    checkpoint_interval: int = Field(default=1, ge=1)
    checkpoint_interval_unit: Literal["epoch", "step"] = "epoch"
    validation_interval: int = Field(default=1, ge=1)
    resume_training_checkpoint_path: str | None = None
    results_dir: str | None = None
    checkpointer: CheckpointerConfig = Field(default_factory=CheckpointerConfig)
    #: Epoch checkpoints kept: the newest N plus the best by validation ``checkpointer.monitor``
    #: (default val_mAP). 0 or -1 keep every one (as TAO does).
    keep_last_checkpoints: int = Field(default=3, ge=-1)
    freeze: list[str] = Field(default_factory=list)
    pretrained_model_path: str | None = None
    clip_grad_norm: float = Field(default=0.1, ge=0.0)
    is_dry_run: bool = False
    enable_ema: bool = False
    ema: EMAConfig = Field(default_factory=EMAConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    precision: Literal["bf16", "fp32", "fp16"] = "fp32"
    distributed_strategy: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpoint: bool = True

    @field_validator("freeze", "gpu_ids", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:
        return [] if v is None else v

    @field_validator("distributed_strategy")
    @classmethod
    def _ddp_only(cls, v: str) -> str:
        if v != "ddp":
            raise ValueError(
                "only ddp is implemented (RT-DETR-R50 fits one GPU; fsdp buys nothing)"
            )
        return v
