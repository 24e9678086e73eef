"""Keep secret-like values out of every message, log line, Event, status and results file.

A spec or an override can carry a value that must not be repeated: TAO's ``encryption_key``, or a
credential someone put into a free-form section (``quantize: {aws_secret_access_key: ...}``).
Error messages travel far: a terminal, a pod log, a container termination message, the CR's
``status.conditions`` and its Events, which anyone allowed to read the object sees. So one rule,
applied where messages are built and again where they leave the process:

* a key is secret-like when the last segment of its dotted path contains ``key``, ``token``,
  ``password``, ``secret`` or ``credential`` (case-insensitive), e.g. ``encryption_key``,
  ``wandb.api_token``, ``aws_secret_access_key``;
* its value is replaced by :data:`REDACTED`, in structures (:func:`redact_mapping`) and in free
  text (:func:`redact_text`, which finds ``name=value``, ``name: value`` and
  ``'name': 'value'``).

Over-redacting a harmless value (a ``monkey: 3``) costs a less helpful message; echoing a key
costs the key. The rule errs on the first side. Pure Python, no dependencies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
SECRET_WORDS = ("key", "token", "password", "secret", "credential")

_SECRET = re.compile("|".join(SECRET_WORDS), re.IGNORECASE)
#: ``name`` (a dotted path, optionally quoted) followed by ``=`` or ``:`` (not ``://``).
_NAME_SEP = re.compile(
    r"(?P<q>['\"]?)(?P<name>[A-Za-z_][\w-]*(?:\.[\w-]+)*)(?P=q)\s*(?P<sep>=|:(?!//))[ \t]*"
)
_QUOTED = re.compile(r"'[^'\n]*'?|\"[^\"\n]*\"?")
_BARE = re.compile(r"[^\s,;)\]}'\"]+")
#: Placeholders in help text (``key=value``, ``key=<value>``), not values.
_PLACEHOLDER = re.compile(r"value|<[\w -]*>")
#: After ``name:`` a bare word followed by more words is prose (``key: Invalid value: ...``).
_PROSE = re.compile(r"[ \t]+[A-Za-z(]")


def is_secret_key(path: str) -> bool:
    """Whether the value at dotted ``path`` must never be shown (see the module docstring)."""
    last = str(path).rstrip(".").rsplit(".", 1)[-1]
    return bool(_SECRET.search(last))


def redact_value(path: str, value: Any) -> Any:
    """``value``, or :data:`REDACTED` when ``path`` is secret-like and the value is set."""
    if is_secret_key(path) and value not in (None, ""):
        return REDACTED
    return value


def redact_mapping(value: Any, path: str = "") -> Any:
    """A copy of a parsed spec (dicts and lists) with every secret-like key's value redacted."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            secret = is_secret_key(sub) and v not in (None, "")
            out[k] = REDACTED if secret else redact_mapping(v, sub)
        return out
    if isinstance(value, list):
        return [redact_mapping(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    return value


def redact_strings(value: Any) -> Any:
    """A copy of a JSON-like structure with :func:`redact_text` applied to every string in it."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_strings(v) for v in value]
    return value


def redact_text(text: str) -> str:
    """``text`` with the value after every secret-like ``name=``/``name:`` replaced.

    A quoted value is replaced up to its closing quote (or the end of the line); a bare one up to
    the next blank, comma, semicolon, closing bracket or quote. After ``name:`` (not ``=``) a bare
    word followed by more words reads as a sentence (``tolerations[0].key: Invalid value: ...``)
    and is left alone; the loaders never put a value there (they omit it, see
    :func:`rtdetr_spec.loading.format_validation_error`).
    """
    if not text or not _SECRET.search(text):
        return text
    out: list[str] = []
    pos = 0
    for m in _NAME_SEP.finditer(text):
        if m.start() < pos or not is_secret_key(m.group("name")):
            continue
        start = m.end()
        value = _QUOTED.match(text, start) or _BARE.match(text, start)
        if value is None or _PLACEHOLDER.fullmatch(value.group()):
            continue
        bare = value.group()[0] not in "'\""
        if bare and m.group("sep") == ":" and _PROSE.match(text, value.end()):
            continue
        out.append(text[pos:start])
        quote = value.group()[0] if value.group()[0] in "'\"" else ""
        out.append(f"{quote}{REDACTED}{quote}")
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)
