"""``--class-map`` as every converter takes it: a JSON/YAML file, or ``key=target,...`` inline.

Each converter has its own keys (KITTI classes, MTMC object types) and its own rules for them;
what the user types is read the same way everywhere: a file if the value names one (``.json`` is
read as JSON, anything else as YAML), otherwise comma-separated pairs. An empty target (``key=``
inline, ``""`` or ``null`` in a file) drops that key on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rtdetr_trainer.errors import DataError


def read_mapping_arg(
    value: str, *, key: str, flag: str = "--class-map"
) -> list[tuple[str, str | None]]:
    """The ``(key, target or None)`` pairs of a ``--class-map`` value, in the order given.

    Args:
        value: the option's text.
        key: what the keys are, for messages (``kitti_class``, ``TYPE``).
        flag: the option's name, for messages.
    """
    path = Path(value)
    where = f"{flag} {value}"
    if path.is_file():
        try:
            text = path.read_text()
            raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            raise DataError(f"{where}: cannot parse the file ({type(e).__name__}: {e})") from None
        if not isinstance(raw, dict) or not raw:
            raise DataError(f"{where}: expected a non-empty mapping of {key} -> target")
        pairs: list[tuple[str, object]] = [(str(k), v) for k, v in raw.items()]
    elif "=" in value:
        pairs = []
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, target = item.partition("=")
            if not sep or not name.strip():
                raise DataError(f"{flag}: {item!r} is not {key}=target")
            pairs.append((name.strip(), target))
    else:
        raise DataError(f"{where}: neither an existing JSON/YAML file nor inline {key}=target,...")
    out: list[tuple[str, str | None]] = []
    for name, target in pairs:
        if target is not None and not isinstance(target, str):
            raise DataError(f"{flag}: target of {name!r} must be a class name, got {target!r}")
        out.append((name.strip(), (target.strip() or None) if target is not None else None))
    return out
