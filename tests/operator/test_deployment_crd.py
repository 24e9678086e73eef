"""The generated RTDETRDeployment CRD: structural, in sync, GPU enum from the catalog, columns."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rtdetr_operator.codegen import crd, crds, deployment_crd
from rtdetr_operator.codegen.structural import problems
from rtdetr_serving.catalog import load_catalog


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


def test_gpu_enum_is_the_catalogs_pinnable_types_and_cpu() -> None:
    schema = deployment_crd.openapi_schema()
    gpu = schema["properties"]["spec"]["properties"]["pools"]["items"]["properties"]["gpu"]
    cat = load_catalog(use_env=False)
    assert gpu["enum"] == [g.name for g in cat.gpus if g.gpu_product_labels] + ["CPU"]
    assert {"H100", "A100", "L40S", "L4"} <= set(gpu["enum"])
    assert "IGX-THOR-T7000-RTX-PRO-6000" not in gpu["enum"]


def test_a_user_catalog_extends_the_enum(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "gpus": [
                    {
                        "name": "X1",
                        "display_name": "X1",
                        "gpu_product_labels": ["ACME-X1"],
                        "compute_capability": "9.0",
                        "memory_gib": 80,
                        "streams": {"fps30": 50, "fps15": 100},
                        "engine": {"opt_batch": 8, "max_batch": 16},
                    }
                ]
            }
        )
    )
    crd = yaml.safe_load(deployment_crd.render([extra]))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    enum = schema["properties"]["spec"]["properties"]["pools"]["items"]["properties"]["gpu"]["enum"]
    assert enum[-2:] == ["X1", "CPU"]


def test_names_columns_and_rules() -> None:
    crd = yaml.safe_load(deployment_crd.render())
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"]) == ("RTDETRDeployment", "rtdetrdeployments")
    assert "rtd" in names["shortNames"] and names["categories"] == ["rtdetr"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Ready", "Phase", "Pools", "Replicas", "Streams", "Model", "Age"]
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
    assert model_rule == "has(self.training) != has(self.onnx)"
