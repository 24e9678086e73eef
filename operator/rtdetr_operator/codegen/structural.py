"""Turn a pydantic JSON schema into a Kubernetes *structural* openAPIV3Schema.

The API server accepts a CRD schema only if it is structural (every node has a ``type`` unless it
is int-or-string or preserves unknown fields, no ``$ref``, no ``additionalProperties: false``,
``anyOf`` only as a constraint on fields declared outside it...). Pydantic emits JSON Schema
2020-12, so this module:

* inlines ``$ref`` (siblings such as ``description`` and CEL rules win over the target's);
* turns ``anyOf: [X, {type: null}]`` into ``X`` + ``nullable: true``;
* keeps int-or-string ``anyOf`` (it is what Kubernetes' own quantities use);
* turns other unions into the loosest structural form (same-type arrays keep ``type: array``
  with free items; mixed types keep unknown fields), the operator validating them with pydantic;
* maps ``const`` to a one-value ``enum``, numeric ``exclusiveMinimum`` to OpenAPI 3.0's boolean;
* drops what Kubernetes rejects or ignores (``title``, ``$defs``, ``additionalProperties: false``,
  ``default: null``);
* folds descriptions onto one line and optionally drops defaults (see training_crd).

:func:`problems` lists every structural violation so tests can assert there are none.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

_DROP = frozenset({"title", "$defs", "examples", "discriminator"})


def to_structural(schema: Schema, *, keep_defaults: bool = True) -> Schema:
    """Structural copy of ``schema`` (a pydantic ``model_json_schema()`` with ``$defs``)."""
    defs = schema.get("$defs", {})
    return _convert(schema, defs, keep_defaults, stack=())


def _resolve(node: Schema, defs: dict[str, Schema], stack: tuple[str, ...]) -> Schema:
    ref = node["$ref"]
    name = ref.rsplit("/", 1)[-1]
    if name in stack:
        raise ValueError(f"recursive schema through {name!r} cannot be inlined into a CRD")
    merged = copy.deepcopy(defs[name])
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "x-kubernetes-validations":
            merged[key] = merged.get(key, []) + value
        else:
            merged[key] = value
    return merged


def _convert(
    node: Any, defs: dict[str, Schema], keep_defaults: bool, stack: tuple[str, ...]
) -> Any:
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _convert(_resolve(node, defs, stack), defs, keep_defaults, (*stack, name))
    out: Schema = {}
    node = dict(node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        node = _union(node, defs, stack)
        if "$ref" in node:
            return _convert(node, defs, keep_defaults, stack)
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "description":
            out[key] = " ".join(str(value).split())
        elif key == "default":
            if keep_defaults and value is not None:
                out["default"] = value
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out[key] = _convert(value, defs, keep_defaults, stack)
        elif key == "properties":
            out[key] = {k: _convert(v, defs, keep_defaults, stack) for k, v in value.items()}
        elif key in ("items", "not"):
            out[key] = _convert(value, defs, keep_defaults, stack)
        elif key in ("anyOf", "oneOf", "allOf"):
            out[key] = [_convert(v, defs, keep_defaults, stack) for v in value]
        else:
            out[key] = value
    if "properties" in out and out.get("type") is None:
        out["type"] = "object"
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        # Structural schemas allow one or the other; a typed map wins over declared keys.
        del out["properties"]
    return out


def _union(node: Schema, defs: dict[str, Schema], stack: tuple[str, ...]) -> Schema:
    """Collapse an ``anyOf`` that is not int-or-string into one structural node."""
    branches = [_deref(b, defs) for b in node["anyOf"]]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    non_null = [b for b in branches if b.get("type") != "null"]
    nullable = len(non_null) < len(branches)
    if len(non_null) == 1:
        merged = {**node["anyOf"][branches.index(non_null[0])], **rest}
    else:
        types = {b.get("type") for b in non_null}
        if types == {"array"}:
            merged = {
                "type": "array",
                "items": {"x-kubernetes-preserve-unknown-fields": True},
                **rest,
            }
        else:
            merged = {"x-kubernetes-preserve-unknown-fields": True, **rest}
    if nullable:
        merged["nullable"] = True
    return merged


def _deref(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        return defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def problems(schema: Schema, path: str = "") -> list[str]:
    """Every structural-schema violation below ``schema`` (empty when the CRD is acceptable)."""
    found: list[str] = []
    where = path or "<root>"
    if "$ref" in schema:
        found.append(f"{where}: $ref is not allowed")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if "type" not in schema and not (preserve or int_or_string):
        found.append(f"{where}: no type")
    if schema.get("additionalProperties") is False:
        found.append(f"{where}: additionalProperties: false is not allowed")
    if "properties" in schema and "additionalProperties" in schema:
        found.append(f"{where}: properties and additionalProperties together")
    if schema.get("type") == "array" and "items" not in schema:
        found.append(f"{where}: array without items")
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            if not int_or_string and ("type" in branch or "properties" in branch):
                found.append(f"{where}: {key} branch declares a type or fields")
    for name, sub in schema.get("properties", {}).items():
        found += problems(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += problems(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += problems(schema["additionalProperties"], f"{path}{{}}")
    return found
