"""``rtdetr dataset validate``: every dataset check a task runs, plus decoding every image.

Training checks files, ids, categories and boxes up front but meets corrupt pixels only when a
worker decodes them. This command also decodes each image once (and checks its size against the
annotation file), so a dataset can be certified before a long GPU job is scheduled.
"""

from __future__ import annotations

from rtdetr_spec import ExperimentSpec
from rtdetr_trainer.data.coco import MAX_REPORTED
from rtdetr_trainer.data.images import ImageLoader
from rtdetr_trainer.data.index import DetectionIndex
from rtdetr_trainer.data.pipeline import prepare_eval_data, prepare_train_data
from rtdetr_trainer.errors import DataError


def decode_all(index: DetectionIndex, what: str) -> None:
    loader = ImageLoader(index)
    problems: list[str] = []
    total = 0
    try:
        for i in range(len(index)):
            try:
                loader.load(i)
            except DataError as e:
                total += 1
                if len(problems) < MAX_REPORTED:
                    problems.append(f"{what}: {e}")
    finally:
        loader.h5.close()
    if total:
        raise DataError(problems, total=total)


def validate(spec: ExperimentSpec, task: str) -> str:
    """Run the checks; returns a one-paragraph report, raises DataError listing problems."""
    if task == "train":
        data = prepare_train_data(spec)
        decode_all(data.train, "train")
        decode_all(data.val, "val")
        names = ", ".join(f"{c.category_id}->{c.index} {c.name}" for c in data.class_map.classes)
        return f"dataset OK: {data.summary()}\nclass map (category id -> logit index): {names}"
    index, categories, class_map = prepare_eval_data(spec, "dataset.test_data_sources", None)
    decode_all(index, "test")
    return (
        f"dataset OK: {len(index)} test images ({index.num_annotations} boxes), "
        f"{len(categories)} categories, num_classes {class_map.num_classes}"
    )
