"""A small writer of protobuf text format, enough for Triton's ``config.pbtxt``.

Why our own: model configs are plain nested messages, and writing them needs no protobuf
runtime or generated classes in the serving image. The tests parse every config we write with
the real ``ModelConfig`` schema (tritonclient's ``model_config_pb2``) and tritonserver loads the
CPU flavour, so a field name or syntax slip fails loudly.

Python values map to text format as follows:

- ``dict`` -> a nested message ``name { ... }`` (keys in insertion order);
- ``PbMap`` -> a protobuf ``map<>`` field: one ``name { key: ... value: ... }`` block per entry;
- ``list`` of scalars -> ``name: [a, b]``; ``list`` of dicts -> one ``name { ... }`` per item;
- ``Enum("KIND_GPU")`` -> an unquoted enum identifier; ``bool`` -> ``true``/``false``;
- ``str`` -> a double-quoted, C-escaped string; ``int``/``float`` -> numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_INDENT = "  "


class Enum(str):
    """An enum value written without quotes (``kind: KIND_GPU``)."""

    __slots__ = ()


class PbMap(dict):  # type: ignore[type-arg]
    """A protobuf ``map<key, value>`` field; keys are strings or ints, values scalars or dicts."""


def quote(s: str) -> str:
    """Double-quoted text-format string; non-ASCII and control bytes as octal escapes."""
    out = ['"']
    for b in s.encode("utf-8"):
        c = chr(b)
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write non-finite float {v} to pbtxt")
        return repr(v)
    if isinstance(v, str):
        return quote(v)
    raise TypeError(f"unsupported pbtxt scalar {v!r} ({type(v).__name__})")


def _is_message(v: Any) -> bool:
    return isinstance(v, Mapping) and not isinstance(v, PbMap)


def _field(name: str, value: Any, depth: int, lines: list[str]) -> None:
    pad = _INDENT * depth
    if value is None:
        return
    if isinstance(value, PbMap):
        for k, v in value.items():
            _field(name, {"key": k, "value": v}, depth, lines)
    elif _is_message(value):
        lines.append(f"{pad}{name} {{")
        for k, v in value.items():
            _field(k, v, depth + 1, lines)
        lines.append(f"{pad}}}")
    elif isinstance(value, list | tuple):
        if not value:
            return
        if all(_is_message(v) for v in value):
            for v in value:
                _field(name, v, depth, lines)
        elif any(_is_message(v) or isinstance(v, list | tuple | PbMap) for v in value):
            raise TypeError(f"field {name!r} mixes messages and scalars")
        else:
            lines.append(f"{pad}{name}: [ {', '.join(_scalar(v) for v in value)} ]")
    else:
        lines.append(f"{pad}{name}: {_scalar(value)}")


def dumps(message: Mapping[str, Any]) -> str:
    """Serialise a top-level message (a mapping of field name -> value) to text format."""
    lines: list[str] = []
    for k, v in message.items():
        _field(k, v, 0, lines)
    return "\n".join(lines) + "\n"
