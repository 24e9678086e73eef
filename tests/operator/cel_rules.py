"""Evaluate the generated CRD's CEL rules (``x-kubernetes-validations``) on an object.

The API server evaluates each rule with ``self`` bound to the object at the rule's place in
the schema; ``cel-python`` (the interpreter the GitOps health tests use) does the same here, so
a unit test can say which rules refuse a pool or a spec without an API server. Rules are read
from the schema :mod:`rtdetr_operator.codegen.deployment_crd` writes, never restated.
"""

from __future__ import annotations

from typing import Any

import celpy

from rtdetr_operator.codegen import deployment_crd


def deployment_rules(where: str) -> list[dict[str, Any]]:
    """Rules of the RTDETRDeployment CRD at ``where``: ``spec`` or ``pool``."""
    spec = deployment_crd.openapi_schema()["properties"]["spec"]
    node = spec if where == "spec" else spec["properties"]["pools"]["items"]
    return list(node["x-kubernetes-validations"])


def refusals(rules: list[dict[str, Any]], obj: dict[str, Any]) -> list[str]:
    """``<fieldPath>: <message>`` of every rule ``obj`` breaks (empty: the API server admits)."""
    env = celpy.Environment()
    out = []
    for r in rules:
        value = env.program(env.compile(r["rule"])).evaluate({"self": celpy.json_to_cel(obj)})
        if isinstance(value, celpy.CELEvalError):
            raise AssertionError(f"rule {r['rule']!r} failed to evaluate: {value}")
        if not value:
            out.append(f"{r.get('fieldPath', '')}: {r['message']}")
    return out
