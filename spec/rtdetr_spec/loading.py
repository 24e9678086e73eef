"""Read a spec file, apply ``key=value`` overrides as TAO's CLI does, and validate it.

Overrides follow ``tao model rtdetr <task> -e spec.yaml key=value ...``:

* values are parsed as YAML (``[320,320]`` is a list, ``null`` is None, ``1e-4`` a number);
* a key the YAML omits but the schema has is created (``dataset.test_data_sources.image_dir``);
* a key that walks through a one-element list applies to that element
  (``dataset.train_data_sources.image_dir``); several elements need an index
  (``dataset.train_data_sources.1.image_dir``);
* an unknown key is an error naming the path and the closest valid keys.

YAML is read with duplicate keys refused (TAO refuses them; PyYAML would let the last one win
silently), each named by its dotted path and both line numbers. Nothing here quotes a secret-like
value back (:mod:`rtdetr_spec.redact`): not an override's, not a rejected field's, not a YAML
error's source line.
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
from rtdetr_spec.redact import REDACTED, is_secret_key, redact_mapping

_MERGE_TAG = "tag:yaml.org,2002:merge"
#: What PyYAML's constructors raise besides YAMLError on odd scalars (``2020-13-45`` as a date).
_CONSTRUCT_ERRORS = (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError)


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
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", source=str(p)) from None
    raw = parse_yaml(text, source=str(p))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"top level must be a mapping, got {type(raw).__name__}", source=str(p))
    return raw


def parse_yaml(text: str, *, source: str | None = None) -> Any:
    """YAML text as Python data, refusing duplicate keys and recursive aliases.

    Raises:
        SpecError: naming the line (and for a duplicate, the key's dotted path and both lines).
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {_yaml_problem(e)}", source=source) from None
    if node is None:
        return None
    problems: list[str] = []
    _check_keys(node, "", problems, active=set(), done=set())
    if problems:
        raise SpecError(problems, source=source)
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except _CONSTRUCT_ERRORS as e:
        raise SpecError(f"not valid YAML: {_yaml_problem(e)}", source=source) from None
    finally:
        loader.dispose()


def _check_keys(
    node: yaml.Node, path: str, problems: list[str], *, active: set[int], done: set[int]
) -> None:
    """Collect duplicate mapping keys (dotted path, both lines) and recursive aliases."""
    if id(node) in active:
        where = path or "<root>"
        problems.append(
            f"{where}: line {node.start_mark.line + 1}: an alias used inside its own anchor; "
            "a spec must be a tree"
        )
        return
    if id(node) in done or not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            sub = path
            if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                sub = f"{path}.{key.value}" if path else key.value
                line = key.start_mark.line + 1
                if key.value in seen:
                    problems.append(
                        f"{sub}: duplicate key (lines {seen[key.value]} and {line}); keep one"
                    )
                else:
                    seen[key.value] = line
            _check_keys(value, sub, problems, active=active, done=done)
    else:
        for i, item in enumerate(node.value):
            _check_keys(item, f"{path}.{i}" if path else str(i), problems, active=active, done=done)
    active.discard(id(node))
    done.add(id(node))


def _yaml_problem(e: BaseException) -> str:
    """Where and what, without PyYAML's echo of the source line (it may hold a secret)."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({e.context})" if e.context else ""
        return f"{where}{e.problem or 'cannot parse'}{context}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return f"{type(e).__name__}: {e}"


def validate_experiment(raw: Mapping[str, Any], *, source: str = "<inline>") -> ExperimentSpec:
    """Validate a parsed spec, turning pydantic's errors into key-path messages."""
    try:
        return ExperimentSpec.model_validate(dict(raw))
    except ValidationError as e:
        raise SpecError(format_validation_error(e, ExperimentSpec), source=source) from None


def dump_experiment(spec: ExperimentSpec, *, redact: bool = True) -> str:
    """The fully-defaulted spec as YAML (written next to every task's results).

    Secret-like values are replaced by ``<redacted>`` unless ``redact`` is False, which only the
    hand-over to the training processes (a private temporary folder) asks for.
    """
    data = spec.model_dump(mode="json")
    return yaml.safe_dump(redact_mapping(data) if redact else data, sort_keys=False)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value parsed as YAML; text that is not YAML stays text)."""
    if "=" not in item:
        shown = f"{item!r}" if not _mentions_secret(item) else f"{item.split()[0][:40]!r}..."
        raise SpecError(f"override {shown} is not of the form key=value")
    key, _, text = item.partition("=")
    key = key.strip()
    shown = f"{key}={REDACTED}" if is_secret_key(key) else item
    if not key or any(not p for p in key.split(".")):
        raise SpecError(f"override {shown!r} has an empty key")
    try:
        value = parse_yaml(text) if text.strip() else None
    except SpecError as e:
        if "duplicate key" in str(e):
            raise SpecError(f"override {key}: {e.problems[0]}") from None
        value = text
    return key, value


def _mentions_secret(text: str) -> bool:
    return any(is_secret_key(word) for word in text.replace("=", " ").replace(":", " ").split())


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
        if is_secret_key(where):  # neither the value nor anything that reads as `name: value`
            lines.append(f"{where} (value not shown) is refused: {msg}")
            continue
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
