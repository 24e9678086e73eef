"""COCO category ids -> logit indices, decided once and recorded with the weights.

TAO uses ``category_id`` directly as the logit index and only checks ``max_id > num_classes``.
The model card's warehouse spec pairs ids 1..7 with ``num_classes: 7``, so id 7 indexes past the 7
logits.
Our rule, in order:

1. every category id < ``num_classes``: keep TAO's id == index convention (ids 1..7 with
   ``num_classes: 8`` leave index 0 unused, exactly as a TAO checkpoint expects);
2. otherwise, if there are at most ``num_classes`` categories: map them, sorted by id, to the
   contiguous indices 0..K-1 and say so in one info line;
3. otherwise refuse, naming ``num_classes`` and the category ids.

The result is a :class:`rtdetr_spec.artifacts.ClassMap`, saved in every checkpoint and results
file; evaluation maps predicted indices back to category ids through it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from rtdetr_spec.artifacts import ClassEntry, ClassMap
from rtdetr_trainer.errors import DataError

log = logging.getLogger(__name__)


def merge_categories(
    sources: Iterable[tuple[str, Iterable[Mapping[str, object]]]],
) -> dict[int, str]:
    """Union of the ``categories`` of several COCO files, refusing conflicting names.

    Args:
        sources: (file name, its ``categories`` list) pairs.

    Returns:
        category id -> name.
    """
    merged: dict[int, str] = {}
    origin: dict[int, str] = {}
    for file_name, categories in sources:
        for cat in categories:
            cid, name = int(cat["id"]), str(cat.get("name", cat["id"]))  # type: ignore[call-overload]
            if cid in merged and merged[cid] != name:
                raise DataError(
                    f"{file_name}: category id {cid} is named {name!r} but {origin[cid]} names "
                    f"it {merged[cid]!r}; the annotation files of one experiment must agree"
                )
            merged.setdefault(cid, name)
            origin.setdefault(cid, file_name)
    return merged


def build_class_map(categories: Mapping[int, str], num_classes: int) -> ClassMap:
    """Apply the mapping rule above to ``categories`` (id -> name)."""
    if not categories:
        raise DataError("the annotation files define no categories")
    ids = sorted(categories)
    if min(ids) < 0:
        raise DataError(f"category ids must be >= 0, got {ids}")
    if max(ids) < num_classes:
        entries = [ClassEntry(index=i, category_id=i, name=categories[i]) for i in ids]
        return ClassMap(num_classes=num_classes, classes=entries)
    if len(ids) <= num_classes:
        entries = [
            ClassEntry(index=k, category_id=cid, name=categories[cid]) for k, cid in enumerate(ids)
        ]
        log.info(
            "category ids %s do not fit dataset.num_classes=%d as logit indices; mapping them "
            "(sorted by id) to contiguous indices 0..%d",
            _ids_text(ids),
            num_classes,
            len(ids) - 1,
        )
        return ClassMap(num_classes=num_classes, classes=entries)
    raise DataError(
        f"dataset.num_classes is {num_classes} but the annotations define {len(ids)} categories "
        f"(ids {_ids_text(ids)}); set dataset.num_classes to at least {len(ids)} "
        f"(or {max(ids) + 1} to keep TAO's category id == logit index convention)"
    )


def check_class_map_covers(class_map: ClassMap, categories: Mapping[int, str], where: str) -> None:
    """Refuse a dataset whose categories the (checkpoint's) class map does not know."""
    known = class_map.index_of_category()
    unknown = sorted(set(categories) - set(known))
    if unknown:
        raise DataError(
            f"{where}: category ids {unknown} are not in the model's class map "
            f"(it knows {_ids_text(sorted(known))}); the weights cannot predict them"
        )


def class_map_from_names(names: list[str], num_classes: int) -> ClassMap:
    """A class map from a TAO classmap file (line i names logit index i), no category ids."""
    if len(names) > num_classes:
        raise DataError(f"the classmap names {len(names)} classes but the model has {num_classes}")
    entries = [ClassEntry(index=i, category_id=None, name=n) for i, n in enumerate(names)]
    return ClassMap(num_classes=num_classes, classes=entries)


def _ids_text(ids: list[int]) -> str:
    if len(ids) > 2 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(str(i) for i in ids)
