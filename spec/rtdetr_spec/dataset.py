"""``dataset:`` section of the TAO RT-DETR experiment spec, with TAO's defaults.

Sizes are ``[height, width]`` as in TAO. Data sources point at a COCO JSON and the folder its
``file_name`` entries are relative to; ``h5://Camera_01:rgb_00000.jpg`` names resolve to
``<image_dir>/Camera_01.h5`` (see the trainer's data package).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rtdetr_spec.base import SpecModel

#: TAO's default multi-scale training sizes (480..800 step 32).
DEFAULT_MULTI_SCALES: list[int] = list(range(480, 801, 32))


class DataSource(SpecModel):
    """A COCO annotation file and the image folder (or H5 folder) its file names are under."""

    image_dir: str | None = None
    json_file: str | None = None
    #: Not in TAO's schema but in the model card's fine-tuning snippet: use at most this many
    #: images of
    #: the source per epoch (a seeded random subset, redrawn every epoch).
    sample_size: int | None = Field(default=None, ge=1)


class InferDataSource(SpecModel):
    """Folders of images (or H5 files) to run inference on, and an optional class-map file."""

    image_dir: list[str] = Field(default_factory=list)
    classmap: str | None = None

    @field_validator("image_dir", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v


class Augmentation(SpecModel):
    """Training augmentation and input sizes ([h, w])."""

    multi_scales: list[int] | list[list[int]] = Field(
        default_factory=lambda: list(DEFAULT_MULTI_SCALES)
    )
    train_spatial_size: list[int] = Field(default_factory=lambda: [640, 640])
    eval_spatial_size: list[int] = Field(default_factory=lambda: [640, 640])
    distortion_prob: float = Field(default=0.8, ge=0.0, le=1.0)
    iou_crop_prob: float = Field(default=0.8, ge=0.0, le=1.0)
    preserve_aspect_ratio: bool = False

    @field_validator("train_spatial_size", "eval_spatial_size")
    @classmethod
    def _hw(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or any(s < 32 or s % 32 for s in v):
            raise ValueError(f"must be [height, width], each a multiple of 32 and >= 32, got {v}")
        return v

    @field_validator("multi_scales")
    @classmethod
    def _scales(cls, v: list[int] | list[list[int]]) -> list[int] | list[list[int]]:
        if not v:
            raise ValueError("must name at least one size")
        for s in v:
            sizes = s if isinstance(s, list) else [s]
            if len(sizes) not in (1, 2) or any(x < 32 or x % 32 for x in sizes):
                raise ValueError(f"each size must be a multiple of 32 (or [h, w] of them), got {s}")
        return v

    def scales_hw(self) -> list[tuple[int, int]]:
        """Multi-scale sizes as (h, w) pairs; a bare int means a square size."""
        out: list[tuple[int, int]] = []
        for s in self.multi_scales:
            if isinstance(s, list):
                out.append((s[0], s[-1]))
            else:
                out.append((s, s))
        return out


class DatasetConfig(SpecModel):
    """Where the data is, how it is batched, and how many classes the heads predict."""

    train_data_sources: list[DataSource] = Field(default_factory=lambda: [DataSource()])
    val_data_sources: DataSource = Field(default_factory=DataSource)
    test_data_sources: DataSource = Field(default_factory=DataSource)
    infer_data_sources: InferDataSource = Field(default_factory=InferDataSource)
    quant_calibration_data_sources: DataSource = Field(default_factory=DataSource)
    batch_size: int = Field(default=4, ge=1)
    workers: int = Field(default=8, ge=0)
    remap_mscoco_category: bool = False
    pin_memory: bool = True
    dataset_type: Literal["serialized", "default"] = "serialized"
    num_classes: int = Field(default=80, ge=1)
    eval_class_ids: list[int] | None = None
    augmentation: Augmentation = Field(default_factory=Augmentation)

    @field_validator("train_data_sources", mode="before")
    @classmethod
    def _list_of_sources(cls, v: object) -> object:
        return [v] if isinstance(v, dict) else v

    @field_validator("val_data_sources", "test_data_sources", mode="before")
    @classmethod
    def _single_source(cls, v: object) -> object:
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError(f"must be one {{image_dir, json_file}} source, got {len(v)}")
            return v[0]
        return v
