"""The generated CRD: structural, in sync with the models, small enough, with the right UX."""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from rtdetr_operator.codegen import crd, crds, training_crd
from rtdetr_operator.codegen.structural import problems, to_structural
from tests.operator.cel_rules import refusals


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.get("properties", {}).items():
            yield from _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_crds_dir_matches_the_models() -> None:
    """Fails when crds/ drifts: run `python -m rtdetr_operator.codegen.crds`."""
    assert crds.default_output().read_text() == training_crd.render()
    assert crds.main(["--check"]) == 0


def test_check_reports_drift(tmp_path) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(training_crd.render().replace("rtt", "rtx"))
    assert crds.main(["--check", "--output", str(stale)]) == 1


def test_schema_is_structural() -> None:
    schema = training_crd.openapi_schema()
    assert problems(schema) == []
    assert "$ref" not in json.dumps(schema)
    for path, node in _walk(schema):
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert "type" in node or free, path
        assert node.get("additionalProperties") is not False, path


def test_preserve_unknown_fields_only_where_unavoidable() -> None:
    free = [
        p
        for p, n in _walk(training_crd.openapi_schema())
        if n.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert sorted(free) == sorted(
        [
            ".spec.experiment.dataset.augmentation.multi_scales[]",  # int | [h, w]
            ".spec.experiment.distill",  # TAO tasks not implemented here
            ".spec.experiment.quantize",
            ".spec.storage.data.volume",  # any core/v1 volume source
            ".spec.storage.data.volume.emptyDir",
            ".spec.storage.results.volume",
            ".spec.storage.results.volume.emptyDir",
            ".spec.affinity",  # core/v1 Affinity
            ".spec.env[].valueFrom",
            ".spec.sources.cache.volume",  # any core/v1 volume source
            ".status.kopf",  # kopf's own bookkeeping (kopf #574)
            ".status.startedFrom.volume",  # the source run's core/v1 volume source
        ]
    )


def test_size_within_api_server_and_kubectl_limits() -> None:
    assert len(training_crd.render().encode()) < crd.MAX_CRD_BYTES


def test_names_columns_and_status_subresource() -> None:
    crd = yaml.safe_load(training_crd.render())
    names = crd["spec"]["names"]
    assert names["kind"] == "RTDETRTraining" and names["plural"] == "rtdetrtrainings"
    assert "rtt" in names["shortNames"] and names["categories"] == ["rtdetr"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == [
        "Phase",
        "Nodes",
        "GPUs",
        "Tasks",
        "Epoch",
        "Progress",
        "ETA",
        "mAP50",
        "Restarts",
        "Age",
    ]


def test_experiment_constraints_come_from_rtdetr_spec() -> None:
    exp = training_crd.openapi_schema()["properties"]["spec"]["properties"]["experiment"]
    model = exp["properties"]["model"]["properties"]
    assert "resnet50" in model["backbone"]["enum"] and "resnet_50" in model["backbone"]["enum"]
    assert "efficientvit_l2" in model["backbone"]["enum"]
    assert "efficientvit_l3" not in model["backbone"]["enum"]
    train = exp["properties"]["train"]["properties"]
    assert train["num_nodes"]["minimum"] == 1 and train["num_gpus"]["minimum"] == 1
    assert "default" not in train["num_nodes"]  # the experiment stays as written
    assert train["precision"]["enum"] == ["bf16", "fp32", "fp16"]


def test_cel_rules_and_immutability() -> None:
    spec = training_crd.openapi_schema()["properties"]["spec"]
    rules = spec["x-kubernetes-validations"]
    by_path = {r.get("fieldPath"): r["message"] for r in rules if "oldSelf" not in r["rule"]}
    assert by_path[".resources.gpus"].startswith("must equal spec.experiment.train.num_gpus")
    assert "(not ??)" in by_path[".experiment.dataset.train_data_sources"]
    assert "(not ??)" in by_path[".experiment.dataset.val_data_sources"]
    immutable = {r["fieldPath"] for r in rules if "oldSelf" in r["rule"]}
    assert ".experiment" in immutable and ".image" in immutable and ".storage" in immutable
    assert not immutable & {".suspend", ".maxRestarts", ".activeDeadlineSeconds"}
    root = training_crd.openapi_schema()["x-kubernetes-validations"]
    assert "metadata.name" in root[0]["message"]
    env_rule = spec["properties"]["env"]["x-kubernetes-validations"][0]
    assert "'NODE_RANK'" in env_rule["rule"]


def test_the_api_server_refuses_the_checkpoint_trust_opt_in_in_spec_env() -> None:
    rules = training_crd.openapi_schema()["properties"]["spec"]["properties"]["env"][
        "x-kubernetes-validations"
    ]
    ok = [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]
    assert refusals(rules, ok) == []
    bad = [*ok, {"name": "RTDETR_TRUST_CHECKPOINTS", "value": "1"}]
    assert refusals(rules, bad) == [
        ": must not set RTDETR_TRUST_CHECKPOINTS: task pods never unpickle checkpoints fully"
    ]


def test_defaults_of_the_operator_fields_are_carried() -> None:
    spec = training_crd.openapi_schema()["properties"]["spec"]["properties"]
    assert spec["maxRestarts"]["default"] == 3
    assert spec["export"]["default"] == {}
    assert spec["export"]["properties"]["fp16"]["default"] is True
    assert spec["storage"]["properties"]["results"]["properties"]["mountPath"]["default"] == (
        "/results"
    )
    status = training_crd.openapi_schema()["properties"]["status"]
    assert "default" not in status["properties"]["phase"]


class _Inner(BaseModel):
    n: int = Field(default=1, gt=0)


class _Outer(BaseModel):
    opt: str | None = None
    inner: _Inner | None = None
    mode: Literal[3] = 3
    sizes: list[int] | list[list[int]] = Field(default_factory=list)
    loose: dict[str, Any] = Field(default_factory=dict)


def test_structural_conversion_rules() -> None:
    s = to_structural(_Outer.model_json_schema())
    props = s["properties"]
    assert props["opt"] == {"type": "string", "nullable": True}
    assert props["inner"]["type"] == "object" and props["inner"]["nullable"] is True
    assert props["inner"]["properties"]["n"] == {
        "default": 1,
        "minimum": 0,
        "exclusiveMinimum": True,
        "type": "integer",
    }
    assert props["mode"]["enum"] == [3]
    assert props["sizes"]["items"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert props["loose"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert problems(s) == []
    assert (
        "default"
        not in to_structural(_Outer.model_json_schema(), keep_defaults=False)["properties"][
            "inner"
        ]["properties"]["n"]
    )


def test_problems_detects_non_structural() -> None:
    bad = {"type": "object", "properties": {"a": {"$ref": "#/x"}, "b": {"items": {}}}}
    found = problems(bad)
    assert any(".a: $ref" in p for p in found) and any(".b: no type" in p for p in found)


def test_api_reference_in_docs_is_current() -> None:
    """docs/operator.md's generated block: `python -m rtdetr_operator.codegen.apidoc` fixes it."""
    from rtdetr_operator.codegen import apidoc

    assert apidoc.main(["--check"]) == 0
    assert "| `spec.experiment` | object |  |" in apidoc.render()
    assert "| `spec.experimentRef.name` | string | yes |" in apidoc.render()
    assert "| `status.metrics.mAP50` | number |" in apidoc.render()
