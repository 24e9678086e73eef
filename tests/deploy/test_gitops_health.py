"""GitOps health of both kinds: the Argo CD Lua run by a real Lua 5.1 (Argo CD's gopher-lua
implements 5.1) and the Flux CEL expressions run by a CEL interpreter, on the same objects.

The interpreters come from ``lupa`` and ``cel-python``; where they are not installed those
tests skip and the structural checks below still run.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from rtdetr_operator.codegen import gitops


def cond(type_: str, status: str, reason: str = "R", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(kind: str, *, generation: int = 3, **status: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "rtdetr.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "generation": generation},
        "spec": {},
    }
    if status:
        out["status"] = status
    return out


def kstatus(ready: str, reconciling: str, stalled: str, message: str = "m") -> list[dict]:
    return [
        cond("Ready", ready, message=message),
        cond("Reconciling", reconciling, message=message),
        cond("Stalled", stalled, message=message),
    ]


def seen(phase: str, ready: str, reconciling: str, stalled: str, msg: str = "m", gen: int = 3):
    """A status the operator wrote for generation ``gen``."""
    return {
        "observedGeneration": gen,
        "phase": phase,
        "conditions": kstatus(ready, reconciling, stalled, msg),
    }


#: (name, status, Argo CD health, Flux results allowed) for both kinds. Before the operator's
#: first write there is no status at all: cel-go (Flux) then fails to evaluate, cel-python reads
#: the missing field as absent; either way Flux keeps waiting.
CASES = [
    ("no status yet", {}, "Progressing", {"InProgress", "error"}),
    ("old generation", seen("Ready", "True", "False", "False", gen=2), "Progressing",
     {"InProgress"}),
    ("reconciling", seen("Preparing", "False", "True", "False", "reading"), "Progressing",
     {"InProgress"}),
    ("ready", seen("Ready", "True", "False", "False", "serving"), "Healthy", {"Current"}),
    ("stalled", seen("Stalled", "False", "False", "True", "L4 engine build failed"), "Degraded",
     {"Failed"}),
    ("conditions not written yet", {"observedGeneration": 3}, "Progressing", {"InProgress"}),
]  # fmt: skip

TRAINING_ONLY = [
    ("suspended", seen("Suspended", "False", "False", "False"), "Suspended", {"Current"}),
    ("failed", seen("Failed", "False", "False", "True", "OOM"), "Degraded", {"Failed"}),
    ("succeeded", seen("Succeeded", "True", "False", "False"), "Healthy", {"Current"}),
]  # fmt: skip


def cases(kind: str) -> list[tuple[str, dict, str, set[str]]]:
    return CASES + (TRAINING_ONLY if kind == "RTDETRTraining" else [])


PARAMS = [(kind, *case) for kind in gitops.KINDS for case in cases(kind)]
IDS = [f"{kind}-{case[0]}" for kind in gitops.KINDS for case in cases(kind)]


@pytest.fixture(scope="module")
def lua_runtime():
    import lupa.lua51 as lua51

    return lua51.LuaRuntime(unpack_returned_tuples=True)


def _to_lua(runtime, value):
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def argocd_health(runtime, kind: str, body: dict[str, Any]) -> dict[str, str]:
    """Run the check as Argo CD does: the script is a function body with ``obj`` in scope."""
    fn = runtime.execute(f"return function(obj)\n{gitops.lua(kind)}\nend")
    result = fn(_to_lua(runtime, body))
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize(("kind", "name", "status", "argocd", "flux"), PARAMS, ids=IDS)
def test_argocd_lua(lua_runtime, kind, name, status, argocd, flux) -> None:
    hs = argocd_health(lua_runtime, kind, obj(kind, **status))
    assert hs["status"] == argocd, name
    assert hs["message"]
    if argocd == "Degraded":
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert hs["message"] == stalled["message"]


def flux_health(kind: str, body: dict[str, Any]) -> str:
    """RFC-0009's evaluation: observedGeneration, then inProgress, failed, current."""
    import celpy

    exprs = next(e for e in gitops.flux_exprs() if e["kind"] == kind)
    st = body.get("status") or {}
    if "observedGeneration" in st and st["observedGeneration"] != body["metadata"]["generation"]:
        return "InProgress"
    env = celpy.Environment()
    activation = {k: celpy.json_to_cel(v) for k, v in body.items()}
    for key, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        value = env.program(env.compile(exprs[key])).evaluate(activation)
        if isinstance(value, celpy.CELEvalError):
            return "error"
        if value:
            return result
    return "InProgress"


@pytest.mark.parametrize(("kind", "name", "status", "argocd", "flux"), PARAMS, ids=IDS)
def test_flux_cel(kind, name, status, argocd, flux) -> None:
    assert flux_health(kind, obj(kind, **status)) in flux, name


def test_argocd_patch_embeds_each_kinds_lua() -> None:
    patch = yaml.safe_load(gitops.argocd_patch())
    assert patch["metadata"]["name"] == "argocd-cm"
    for kind in gitops.KINDS:
        key = f"resource.customizations.health.rtdetr.dev_{kind}"
        assert patch["data"][key] == gitops.lua_path(kind).read_text()


def test_flux_exprs_cover_both_kinds_with_all_three_expressions() -> None:
    exprs = gitops.flux_exprs()
    assert [e["kind"] for e in exprs] == ["RTDETRTraining", "RTDETRDeployment"]
    for e in exprs:
        assert e["apiVersion"] == "rtdetr.dev/v1alpha1"
        assert "'Stalled'" in e["failed"] and "'Ready'" in e["current"]
        assert "'Reconciling'" in e["inProgress"]
        for key in ("inProgress", "failed", "current"):
            assert "has(status.conditions)" in e[key], "a missing field must not error"


def test_generated_files_are_current() -> None:
    assert gitops.main(["--check"]) == 0


def test_lua_does_not_mutate_input(lua_runtime) -> None:
    body = obj(
        "RTDETRDeployment", observedGeneration=3, conditions=kstatus("True", "False", "False")
    )
    before = copy.deepcopy(body)
    argocd_health(lua_runtime, "RTDETRDeployment", body)
    assert body == before
