"""The generated RTDETRDeployment CRD: structural, in sync, GPU a free name, columns."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rtdetr_operator.codegen import crd, crds, deployment_crd
from rtdetr_operator.codegen.structural import problems


def test_every_generated_file_is_in_sync_including_the_charts_copies() -> None:
    files = crds.generated_files()
    assert {p.name for p in files} == {
        "rtdetr.dev_rtdetrtrainings.yaml",
        "rtdetr.dev_rtdetrdeployments.yaml",
    }
    assert len(files) == 4
    for path, text in files.items():
        assert path.read_text() == text, (
            f"{path} is stale: run python -m rtdetr_operator.codegen.crds"
        )
    assert crds.main(["--check"]) == 0


def test_check_catches_a_stale_chart_copy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(crds, "chart_crds_dir", lambda: tmp_path)
    (tmp_path / deployment_crd.CRD_FILE).write_text("stale\n")
    assert crds.main(["--check"]) == 1


def test_schema_is_structural_and_small() -> None:
    schema = deployment_crd.openapi_schema()
    assert problems(schema) == []
    assert "$ref" not in json.dumps(schema)
    assert len(deployment_crd.render().encode()) < crd.MAX_CRD_BYTES


def test_gpu_is_any_name_because_gpu_types_are_data() -> None:
    schema = deployment_crd.openapi_schema()
    gpu = schema["properties"]["spec"]["properties"]["pools"]["items"]["properties"]["gpu"]
    assert "enum" not in gpu and gpu["type"] == "string"
    assert (gpu["minLength"], gpu["maxLength"]) == (1, 100)


def test_names_columns_and_rules() -> None:
    crd = yaml.safe_load(deployment_crd.render())
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"]) == ("RTDETRDeployment", "rtdetrdeployments")
    assert "rtd" in names["shortNames"] and names["categories"] == ["rtdetr"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Phase", "Pools", "Replicas", "Streams", "Model", "URL", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pools = spec["properties"]["pools"]
    assert pools["x-kubernetes-list-type"] == "map" and pools["minItems"] == 1
    pool_rules = [r["fieldPath"] for r in pools["items"]["x-kubernetes-validations"]]
    assert pool_rules == [
        ".minReplicas",
        ".streams",
        ".streams",
        ".cpuBackend",
        ".tensorrtVersion",
        ".tensorrtVersion",
    ]
    spec_rules = [r["fieldPath"] for r in spec["x-kubernetes-validations"]]
    assert spec_rules == [".triton.tensorrtVersion"]
    model_rule = spec["properties"]["model"]["x-kubernetes-validations"][0]["rule"]
    assert (
        model_rule == "[has(self.training), has(self.onnx), has(self.uri)].filter(x, x).size() == 1"
    )
