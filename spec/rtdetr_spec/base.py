"""The base model of every spec section, and TAO's ``??`` marker.

TAO specs are OmegaConf YAML: ``??`` (and OmegaConf's own ``???``) means "required and not set".
The model card's documented commands leave some of them unset on purpose (``export.gpu_id``,
``train.pretrained_model_path``), so a marker cannot be an error at load time. Instead each
section validates without the marked keys (they take their defaults) and remembers their names;
a task then asks :meth:`SpecModel.missing_keys` for the keys it really needs and fails loudly,
naming them, while optional ones fall back to their defaults with a log line.

Unknown keys are always an error (``extra="forbid"``): TAO silently ignores a misspelt key, which
turns ``lr_backbone`` typos into runs that look fine and are wrong.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

#: Values that mean "required and not set": TAO's documented ``??`` and OmegaConf's ``???``.
MISSING_MARKERS: frozenset[str] = frozenset({"??", "???"})


def is_missing(value: object) -> bool:
    """Whether a raw YAML value is TAO's "required and not set" marker."""
    return isinstance(value, str) and value.strip() in MISSING_MARKERS


class SpecModel(BaseModel):
    """A section of the experiment spec: unknown keys rejected, ``??`` keys remembered."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    _missing: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _strip_missing(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        missing = {k for k, v in data.items() if is_missing(v)}
        model = handler({k: v for k, v in data.items() if k not in missing})
        model._missing = frozenset(missing)
        return model

    def missing_keys(self, prefix: str = "") -> list[str]:
        """Dotted paths of every key left at ``??`` in this section and below it, sorted."""
        found = [f"{prefix}{k}" for k in self._missing]
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SpecModel):
                found += value.missing_keys(f"{prefix}{name}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, SpecModel):
                        found += item.missing_keys(f"{prefix}{name}.{i}.")
        return sorted(found)
