"""From the experiment spec to validated indices and a class map (no pixels decoded).

``rtdetr train`` calls :func:`prepare_train_data` in the launcher, before any worker starts, so a
dataset problem exits with code 2 and a message instead of killing a GPU job minutes later;
``rtdetr dataset validate`` runs the same checks on their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ClassMap
from rtdetr_trainer.data.classmap import build_class_map, merge_categories
from rtdetr_trainer.data.coco import CocoFile, build_index, categories_of, read_source
from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    class_map: ClassMap
    train: DetectionIndex
    val: DetectionIndex
    val_categories: dict[int, str]
    sample_sizes: list[int | None]

    def summary(self) -> str:
        return (
            f"{len(self.train)} training images ({self.train.num_annotations} boxes), "
            f"{len(self.val)} validation images ({self.val.num_annotations} boxes), "
            f"{len(self.class_map.classes)} classes"
        )


def _source_files(spec: ExperimentSpec, key: str) -> list[CocoFile]:
    node = spec.get(key)
    sources = node if isinstance(node, list) else [node]
    files: list[CocoFile] = []
    for i, src in enumerate(sources):
        where = f"{key}.{i}" if isinstance(node, list) else key
        if not src.image_dir or not src.json_file:
            raise DataError(f"{where}: needs both image_dir and json_file")
        files += read_source(src.image_dir, src.json_file, i, where)
    return files


def check_augmentation(spec: ExperimentSpec) -> None:
    if spec.dataset.augmentation.preserve_aspect_ratio:
        raise DataError(
            "dataset.augmentation.preserve_aspect_ratio: not supported; the product's one "
            "preprocessing (training, evaluation, ONNX and Triton serving) is a plain resize to "
            "eval_spatial_size"
        )


def prepare_train_data(spec: ExperimentSpec, *, check_files: bool = True) -> TrainData:
    """Read and check the train and val sources; decide the class map from their categories."""
    check_augmentation(spec)
    train_files = _source_files(spec, "dataset.train_data_sources")
    val_files = _source_files(spec, "dataset.val_data_sources")
    categories = merge_categories(
        [(str(f.path), f.data["categories"]) for f in train_files + val_files]
    )
    class_map = build_class_map(categories, spec.dataset.num_classes)
    train = build_index(train_files, class_map, check_files=check_files)
    val = build_index(val_files, class_map, check_files=check_files)
    if len(train) == 0:
        raise DataError("dataset.train_data_sources: no usable training images")
    if train.num_annotations == 0:
        # Images without boxes among others teach "nothing here"; a set of only those gives
        # the matcher no targets at all: the model would learn to predict nothing.
        raise DataError(
            f"dataset.train_data_sources: {len(train)} images but not one box "
            f"({', '.join(str(f.path) for f in train_files)}); DETR-style training needs "
            "annotated objects (images without boxes are fine among annotated ones)"
        )
    if len(val) and val.num_annotations == 0:
        log.warning(
            "dataset.val_data_sources has no boxes: validation mAP is undefined (reported as 0) "
            "and cannot pick the best checkpoint"
        )
    sizes = [s.sample_size for s in spec.dataset.train_data_sources]
    return TrainData(class_map, train, val, categories_of(val_files), sizes)


def prepare_eval_data(
    spec: ExperimentSpec,
    key: str,
    class_map: ClassMap | None,
    *,
    check_files: bool = True,
) -> tuple[DetectionIndex, dict[int, str], ClassMap]:
    """Read and check an evaluation source against a checkpoint's class map.

    A checkpoint without a class map (a TAO checkpoint) gets one from the source's categories
    and ``dataset.num_classes``, by the same rule training uses.
    """
    check_augmentation(spec)
    files = _source_files(spec, key)
    categories = categories_of(files)
    if class_map is None:
        class_map = build_class_map(categories, spec.dataset.num_classes)
        log.info("the checkpoint has no class map; using %s's categories", key)
    else:
        check_same_classes(categories, class_map, key)
    index = build_index(files, class_map, check_files=check_files)
    return index, categories, class_map


def check_same_classes(categories: dict[int, str], class_map: ClassMap, key: str) -> None:
    """Refuse an evaluation set whose categories are not the model's classes.

    Scoring goes by category id; a set where id 3 means something else than in the checkpoint
    would be scored silently under the wrong names. Categories the set lacks are fine (their
    AP is undefined); an id the model does not know or a renamed one is not.
    """
    known = {c.category_id: c.name for c in class_map.classes if c.category_id is not None}
    renamed = [
        f"id {cid} is {name!r} here but {known[cid]!r} in the checkpoint"
        for cid, name in sorted(categories.items())
        if cid in known and known[cid] != name
    ]
    unknown = [
        f"id {cid} {name!r} is not a class of the checkpoint"
        for cid, name in sorted(categories.items())
        if cid not in known
    ]
    if renamed or unknown:
        theirs = ", ".join(f"{cid} {name!r}" for cid, name in sorted(known.items()))
        raise DataError(
            f"{key}: the categories differ from the checkpoint's classes: "
            f"{'; '.join(renamed + unknown)} (checkpoint classes by id: {theirs}); evaluate "
            "with annotations that use the checkpoint's ids and names"
        )


def read_classmap_file(path: str) -> list[str]:
    """TAO's classmap: one class name per line, line i names logit index i."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise DataError(
            f"dataset.infer_data_sources.classmap: cannot read {path} ({e.strerror})"
        ) from None
    names = [ln.strip() for ln in lines if ln.strip()]
    if not names:
        raise DataError(f"dataset.infer_data_sources.classmap: {path} names no classes")
    return names
