"""Scene object types -> the model card's seven classes, with user overrides.

MTMC ground truth names object types its own way (``Person``, ``AgilityDigit``, ``FourierGR1T2``,
``NovaCarter``, ``Transporter``, ``Forklift``; other exports write ``person`` or ``fork lift``), so
types are compared after normalising: lower case, everything but letters and digits removed.

Why unknown types are an error rather than a skip: a type the map does not know is either a new
object the user wants (map it) or one they do not (drop it explicitly). Skipping it silently
would train a detector that treats those objects as background.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_trainer.data.mapping_arg import read_mapping_arg
from rtdetr_trainer.errors import DataError

#: normalised scene type -> model card class name.
DEFAULT_TYPES: dict[str, str] = {
    "person": "person",
    "agilitydigit": "agility_digit",
    "fouriergr1t2": "gr1_t2",
    "gr1t2": "gr1_t2",
    "novacarter": "nova_carter",
    "transporter": "transporter",
    "forklift": "forklift",
}
#: ``pallet``, ``Pallet_03``, ``WoodenPallet``, ``pallets``: a pallet. ``PalletJack`` (a vehicle
#: that carries one) is not, and stays unknown until the user maps it.
_PALLET = re.compile(r"^[a-z]*pallets?\d*$")


def normalize(object_type: str) -> str:
    """``Fourier GR1-T2`` -> ``fouriergr1t2``."""
    return re.sub(r"[^a-z0-9]", "", object_type.lower())


def default_class(object_type: str) -> str | None:
    """The model card class a scene type maps to by default, or None when there is no default."""
    key = normalize(object_type)
    if key in DEFAULT_TYPES:
        return DEFAULT_TYPES[key]
    return "pallet" if _PALLET.match(key) else None


@dataclass(frozen=True)
class ClassMapping:
    """Which class each object type becomes; ``overrides`` win over the defaults.

    ``overrides`` maps a normalised type to a class name, or to None to drop that type on purpose.
    """

    overrides: Mapping[str, str | None] = field(default_factory=dict)

    def resolve(self, object_type: str) -> tuple[bool, str | None]:
        """(known, class). known=False: no default and no override (an error to report)."""
        key = normalize(object_type)
        if key in self.overrides:
            return True, self.overrides[key]
        target = default_class(object_type)
        return target is not None, target

    def categories(self) -> list[str]:
        """Category names in id order (1..): the model card's seven, then any new names of
        overrides."""
        names = list(WAREHOUSE_CLASSES)
        for target in self.overrides.values():
            if target is not None and target not in names:
                names.append(target)
        return names

    def to_json(self) -> dict[str, str | None]:
        return dict(sorted(self.overrides.items()))


def parse_class_map(value: str | None) -> ClassMapping:
    """``--class-map``: a JSON/YAML file ``{type: class}``, or inline ``Type=class,Type2=``.

    An empty target drops that type on purpose; dropped boxes are counted in the conversion
    report. Types are compared normalised, so ``Fork Lift`` and ``forklift`` are one key.
    """
    if not value:
        return ClassMapping()
    overrides: dict[str, str | None] = {}
    for type_, target in read_mapping_arg(value, key="TYPE"):
        key = normalize(type_)
        if not key:
            raise DataError(f"--class-map: object type {type_!r} has no letters or digits")
        if key in overrides and overrides[key] != target:
            raise DataError(
                f"--class-map: {type_!r} is mapped twice ({overrides[key]!r} and {target!r}); "
                "types are compared in lower case without separators"
            )
        if target is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", target):
            raise DataError(f"--class-map: class name {target!r} (for {type_!r}) is not a name")
        overrides[key] = target
    return ClassMapping(overrides)
