"""Read a spec file, apply ``key=value`` overrides as TAO's CLI does, and validate it.

Overrides follow ``tao model rtdetr <task> -e spec.yaml key=value ...``:

* values are parsed as YAML (``[320,320]`` is a list, ``null`` is None, ``1e-4`` a number);
* a key the YAML omits but the schema has is created (``dataset.test_data_sources.image_dir``);
* a key that walks through a one-element list applies to that element
  (``dataset.train_data_sources.image_dir``); several elements need an index
  (``dataset.train_data_sources.1.image_dir``);
* an unknown key is an error naming the path and the closest valid keys.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rtdetr_spec.base import SpecModel
from rtdetr_spec.errors import SpecError
from rtdetr_spec.experiment import ExperimentSpec


def load_experiment(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    data: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    """Load a spec from a YAML file (or an already-parsed mapping) plus CLI overrides.

    Raises:
        SpecError: naming the file, the key path and what is wrong.
    """
    source = str(path) if path is not None else "<inline>"
    raw = dict(data) if data is not None else read_yaml(path) if path is not None else {}
    for item in overrides:
        key, value = parse_override(item)
        apply_override(raw, key, value)
    return validate_experiment(raw, source=source)


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"cannot read spec file: {e.strerror}", source=str(p)) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {e}", source=str(p)) from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"top level must be a mapping, got {type(raw).__name__}", source=str(p))
    return raw


def validate_experiment(raw: Mapping[str, Any], *, source: str = "<inline>") -> ExperimentSpec:
    """Validate a parsed spec, turning pydantic's errors into key-path messages."""
    try:
        return ExperimentSpec.model_validate(dict(raw))
    except ValidationError as e:
        raise SpecError(format_validation_error(e, ExperimentSpec), source=source) from None


def dump_experiment(spec: ExperimentSpec) -> str:
    """The fully-defaulted spec as YAML (written next to every task's results)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise SpecError(f"override {item!r} is not of the form key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SpecError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted) in ``raw``, checking every step against the schema."""
    parts = key.split(".")
    node: dict[str, Any] = raw
    cls: type[BaseModel] = ExperimentSpec
    i = 0
    while i < len(parts):
        part = parts[i]
        where = ".".join(parts[: i + 1])
        kind, sub = _child(cls, part, where)
        if i == len(parts) - 1:
            node[part] = value
            return
        if kind == "model":
            child = node.get(part)
            if isinstance(child, list) and len(child) == 1 and isinstance(child[0], dict):
                child = child[0]
            if not isinstance(child, dict):
                child = {}
            node[part] = child
            node, cls = child, sub  # type: ignore[assignment]
        elif kind == "list":
            items = node.get(part)
            if isinstance(items, dict):
                items = [items]
            if not isinstance(items, list):
                items = []
            node[part] = items
            nxt = parts[i + 1]
            if nxt.isdigit():
                idx = int(nxt)
                if idx > len(items):
                    raise SpecError(
                        f"{key}: {where} has {len(items)} entries; index {idx} skips one"
                    )
                if idx == len(items):
                    items.append({})
                i += 1
                if i == len(parts) - 1:
                    items[idx] = value
                    return
            elif len(items) <= 1:
                if not items:
                    items.append({})
                idx = 0
            else:
                raise SpecError(
                    f"{key}: {where} has {len(items)} entries; say which one, "
                    f"e.g. {where}.0.{'.'.join(parts[i + 1 :])}"
                )
            if not isinstance(items[idx], dict):
                items[idx] = {}
            node, cls = items[idx], sub  # type: ignore[assignment]
        elif kind == "dict":
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            for free in parts[i + 1 : -1]:
                child = child.setdefault(free, {})
            child[parts[-1]] = value
            return
        else:
            raise SpecError(f"{key}: {where} is a value, not a section")
        i += 1


def _child(cls: type[BaseModel], name: str, where: str) -> tuple[str, type[BaseModel] | None]:
    """Classify field ``name`` of ``cls``: 'model', 'list' (of models), 'dict' or 'leaf'."""
    fields = cls.model_fields
    if name not in fields:
        raise SpecError(_unknown(where, name, list(fields)))
    ann = fields[name].annotation
    for arg in _union_args(ann):
        if isinstance(arg, type) and issubclass(arg, SpecModel):
            return "model", arg
        origin = typing.get_origin(arg)
        if origin is list:
            (item,) = typing.get_args(arg) or (Any,)
            if isinstance(item, type) and issubclass(item, SpecModel):
                return "list", item
        if origin is dict or arg is dict:
            return "dict", None
    return "leaf", None


def _union_args(ann: Any) -> tuple[Any, ...]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return typing.get_args(ann)
    return (ann,)


def _unknown(where: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    parent = where.rsplit(".", 1)[0] if "." in where else "the top level"
    return f"{where}: unknown key{hint} (valid keys of {parent}: {', '.join(valid)})"


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per pydantic error, keyed by dotted path, with did-you-mean for unknown keys."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        where = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            owner = _model_at(root, loc[:-1])
            valid = list(owner.model_fields) if owner else []
            lines.append(_unknown(where, loc[-1], valid))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        shown = f" (got {got!r})" if not isinstance(got, dict | list) and got is not None else ""
        lines.append(f"{where}: {msg}{shown}")
    return lines


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    cls: type[BaseModel] | None = root
    for part in loc:
        if cls is None:
            return None
        if part.isdigit():
            continue
        if part not in cls.model_fields:
            return None
        kind, sub = _child(cls, part, part)
        cls = sub if kind in ("model", "list") else None
    return cls
