"""Markdown API reference of RTDETRTraining, generated from the CRD schema (hence the models).

    python -m rtdetr_operator.codegen.apidoc          # rewrite the reference block in docs/
    python -m rtdetr_operator.codegen.apidoc --check  # exit 1 if docs/ is out of date

RTDETRDeployment's reference is generated the same way into docs/deployment.md.

The block lives between two marker comments in docs/operator.md; everything else in that file is
prose. ``spec.experiment`` is documented as one row: it is TAO's experiment spec, whose fields
are rtdetr_spec's (see docs of the trainer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rtdetr_operator.codegen import deployment_crd, training_crd

BEGIN = "<!-- BEGIN GENERATED API REFERENCE (python -m rtdetr_operator.codegen.apidoc) -->"
END = "<!-- END GENERATED API REFERENCE -->"
DOC = Path(__file__).resolve().parents[3] / "docs" / "operator.md"
DEPLOYMENT_DOC = DOC.with_name("deployment.md")


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    t = node.get("type", "any")
    if t == "array":
        return f"[]{_type(node.get('items', {}))}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    if "enum" in node:
        return " \\| ".join(str(v) for v in node["enum"])
    return str(t)


def _rows(node: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in node.get("properties", {}).items():
        where = f"{path}.{name}"
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub else ""
        need = "yes" if name in required else ""
        desc = (sub.get("description") or "").replace("|", "\\|")
        rows.append(f"| `{where}` | {_type(sub)} | {need} | {default} | {desc} |")
        if where == "spec.experiment":
            continue
        target = sub.get("items", sub) if sub.get("type") == "array" else sub
        if target.get("properties"):
            rows += _rows(
                target, where + ("[]" if target is not sub else ""), set(target.get("required", []))
            )
    return rows


def render(schema: dict[str, Any] | None = None) -> str:
    schema = schema or training_crd.openapi_schema()
    lines = [BEGIN, ""]
    for part in ("spec", "status"):
        node = schema["properties"][part]
        lines += [
            f"#### `{part}`",
            "",
            "| Field | Type | Required | Default | Description |",
            "|---|---|---|---|---|",
            *_rows(node, part, set(node.get("required", []))),
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def updated(text: str, block: str | None = None) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError("no generated-reference markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + (block if block is not None else render()) + tail


def blocks() -> dict[Path, str]:
    """Each document with a generated reference, and the reference it must contain."""
    return {DOC: render(), DEPLOYMENT_DOC: render(deployment_crd.openapi_schema())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtdetr_operator.codegen.apidoc")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = False
    for doc, block in blocks().items():
        text = doc.read_text()
        new = updated(text, block)
        if new == text:
            continue
        if args.check:
            print(
                f"{doc} is out of date; run `python -m rtdetr_operator.codegen.apidoc`",
                file=sys.stderr,
            )
            stale = True
        else:
            from rtdetr_spec.artifacts import atomic_write_text

            atomic_write_text(doc, new)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
