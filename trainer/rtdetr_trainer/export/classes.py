"""Which class each exported logit column is, and whether the export adds a background column.

DeepStream's ``NvDsInferParseCustomDDETRTAO`` parser takes the argmax over the logit columns and
then drops class 0, because TAO's convention puts background at index 0 (category ids 1..N with
``num_classes = N + 1``). A model trained with the categories mapped to 0..N-1 (the model card's ids
1..7 with ``num_classes: 7``) has a real class - person - at index 0, which that parser could
never report. So the export prepends a constant background column to ``pred_logits`` in that
case, and records ``background_index: 0`` in the manifest; with TAO's convention nothing is
added and column 0 (no category maps to it) is the background.

Class names come, in order of preference, from the checkpoint's ``class_map`` (written by our
trainer), from the COCO categories of ``dataset.val_data_sources.json_file`` (TAO's source for
``labels.txt``), or from the lines of ``dataset.infer_data_sources.classmap``. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtdetr_spec import ExperimentSpec
from rtdetr_spec.artifacts import ClassEntry, ClassMap
from rtdetr_trainer.export.errors import ExportInputError

BACKGROUND = "background"


@dataclass(frozen=True)
class LogitLayout:
    """The exported ``pred_logits`` columns.

    Attributes:
        class_names: one name per exported column (``background`` for the background column,
            ``unused_<i>`` for a column no category maps to).
        category_ids: COCO category id per exported column (None where there is none).
        background_index: the column that is not a class (0), or None.
        prepend_background: True if the export adds column 0 in front of the model's logits.
        model_num_classes: the model's own logit columns (``dataset.num_classes``).
    """

    class_names: list[str]
    category_ids: list[int | None]
    background_index: int | None
    prepend_background: bool
    model_num_classes: int

    @property
    def num_logits(self) -> int:
        return len(self.class_names)

    def detectable(self) -> list[str]:
        """Names of the real classes, in column order."""
        return [
            n
            for i, n in enumerate(self.class_names)
            if i != self.background_index and self.category_ids[i] is not None
        ]


def layout_for(class_map: ClassMap) -> LogitLayout:
    """Decide the exported columns for a model whose logits follow ``class_map``."""
    names = class_map.names_by_index()
    cats = class_map.category_of_index()
    ids: list[int | None] = [cats.get(i) for i in range(class_map.num_classes)]
    at_zero = names[0]
    if at_zero is not None and at_zero.strip().lower() != BACKGROUND:
        cols = [BACKGROUND, *(n or f"unused_{i + 1}" for i, n in enumerate(names))]
        return LogitLayout(cols, [None, *ids], 0, True, class_map.num_classes)
    cols = [BACKGROUND if i == 0 else n or f"unused_{i}" for i, n in enumerate(names)]
    return LogitLayout(cols, [None, *ids[1:]], 0, False, class_map.num_classes)


def resolve_class_map(spec: ExperimentSpec, checkpoint_class_map: Any) -> ClassMap:
    """The checkpoint's class map, or one derived from the spec's data as TAO would.

    Raises:
        ExportInputError: the class map disagrees with ``dataset.num_classes``, or there is
            nothing to name the classes from.
    """
    num_classes = spec.dataset.num_classes
    if checkpoint_class_map:
        try:
            cmap = ClassMap.model_validate(checkpoint_class_map)
        except ValueError as e:
            raise ExportInputError(f"export.checkpoint: its class_map is not valid: {e}") from None
        if cmap.num_classes != num_classes:
            raise ExportInputError(
                f"export.checkpoint was trained with {cmap.num_classes} classes "
                f"({', '.join(n or '-' for n in cmap.names_by_index())}) but "
                f"dataset.num_classes is {num_classes}; set dataset.num_classes="
                f"{cmap.num_classes}"
            )
        return cmap
    val = spec.dataset.val_data_sources.json_file
    if val:
        return class_map_from_categories(_read_categories(val), num_classes)
    classmap_file = spec.dataset.infer_data_sources.classmap
    if classmap_file:
        return class_map_from_lines(_read_lines(classmap_file), num_classes)
    raise ExportInputError(
        "export.checkpoint carries no class_map (a TAO checkpoint), and neither "
        "dataset.val_data_sources.json_file nor dataset.infer_data_sources.classmap is set: "
        "nothing names the logit columns. Set one of them."
    )


def class_map_from_categories(categories: dict[int, str], num_classes: int) -> ClassMap:
    """COCO categories -> logit indices, by the trainer's rule.

    Every id below ``num_classes``: TAO's id == index (ids 1..7 with 8 classes leave 0 free).
    Otherwise the categories sorted by id take indices 0..K-1, if there are at most
    ``num_classes`` of them.
    """
    ids = sorted(categories)
    if not ids:
        raise ExportInputError("dataset.val_data_sources.json_file defines no categories")
    if ids[-1] < num_classes and ids[0] >= 0:
        index = {cid: cid for cid in ids}
    elif len(ids) <= num_classes:
        index = {cid: i for i, cid in enumerate(ids)}
    else:
        raise ExportInputError(
            f"dataset.val_data_sources.json_file has {len(ids)} categories (ids {ids}) but "
            f"dataset.num_classes is {num_classes}"
        )
    entries = [ClassEntry(index=index[c], category_id=c, name=categories[c]) for c in ids]
    return ClassMap(num_classes=num_classes, classes=entries)


def class_map_from_lines(names: list[str], num_classes: int) -> ClassMap:
    """A TAO inference class-map file: line L names logit index L."""
    if len(names) > num_classes:
        raise ExportInputError(
            f"dataset.infer_data_sources.classmap has {len(names)} names but "
            f"dataset.num_classes is {num_classes}"
        )
    entries = [ClassEntry(index=i, category_id=None, name=n) for i, n in enumerate(names)]
    return ClassMap(num_classes=num_classes, classes=entries)


def _read_categories(json_file: str) -> dict[int, str]:
    paths = [Path(json_file)] if Path(json_file).is_file() else []
    if not paths:
        stem = Path(json_file)  # TAO also accepts an extension-less prefix of several files
        paths = sorted(p for p in stem.parent.glob(stem.name + "*") if p.suffix == ".json")
    if not paths:
        raise ExportInputError(f"dataset.val_data_sources.json_file: {json_file} does not exist")
    merged: dict[int, str] = {}
    for p in paths:
        try:
            cats = json.loads(p.read_text()).get("categories", [])
            for c in cats:
                cid, name = int(c["id"]), str(c.get("name", c["id"]))
                if merged.setdefault(cid, name) != name:
                    raise ExportInputError(
                        f"{p}: category id {cid} is named {name!r} but another file names it "
                        f"{merged[cid]!r}"
                    )
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            if isinstance(e, ExportInputError):
                raise
            raise ExportInputError(
                f"dataset.val_data_sources.json_file: cannot read categories from {p} ({e})"
            ) from None
    return merged


def _read_lines(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ExportInputError(
            f"dataset.infer_data_sources.classmap: cannot read {path} ({e.strerror})"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip()]
