"""The model contract and the client's pure parts (manifest discovery, error classification)."""

from __future__ import annotations

import json

import pytest
from tritonclient.utils import InferenceServerException

from rtdetr_serving.client import RTDETRClient, is_transient, manifest_from_config
from rtdetr_serving.contract import ModelContract
from rtdetr_serving.errors import ModelContractError, ServerNotReadyError
from rtdetr_serving.repository import cpu_config, manifest_json
from rtdetr_serving.triton_local import free_port
from rtdetr_spec.artifacts import ExportManifest
from tests.serving.conftest import ExportedModel


def metadata(m: ExportManifest, *, as_strings: bool = False) -> dict[str, object]:
    def t(name: str, shape: list[int], dtype: str = "FP32") -> dict[str, object]:
        return {
            "name": name,
            "datatype": dtype,
            "shape": [str(s) for s in shape] if as_strings else shape,
        }

    return {
        "name": "rtdetr",
        "inputs": [t("inputs", [-1, 3, m.input_height, m.input_width])],
        "outputs": [
            t("pred_logits", [-1, m.num_queries, m.num_logits]),
            t("pred_boxes", [-1, m.num_queries, 4]),
        ],
    }


def test_contract_from_manifest(exported_model: ExportedModel) -> None:
    m = exported_model.manifest
    c = ModelContract.from_manifest(m)
    assert (c.height, c.width, c.num_queries) == (m.input_height, m.input_width, 300)
    assert c.input.kserve_dtype == "FP32" and c.logits.dims == (300, m.num_logits)
    c.check_onnx(exported_model.onnx)
    c.check_served(metadata(m), model="rtdetr")
    c.check_served(metadata(m, as_strings=True), model="rtdetr")  # gRPC JSON uses strings


def test_served_mismatches_are_named(exported_model: ExportedModel) -> None:
    m = exported_model.manifest
    c = ModelContract.from_manifest(m)
    md = metadata(m)
    md["outputs"][0]["shape"] = [-1, 300, m.num_logits + 1]  # type: ignore[index]
    with pytest.raises(ModelContractError, match="pred_logits"):
        c.check_served(md, model="rtdetr")
    md = metadata(m)
    md["inputs"][0]["datatype"] = "FP16"  # type: ignore[index]
    with pytest.raises(ModelContractError, match=r"input 'inputs' is FP16"):
        c.check_served(md, model="rtdetr")
    md = metadata(m)
    md["outputs"] = md["outputs"][:1]  # type: ignore[index]
    with pytest.raises(ModelContractError, match="no output 'pred_boxes'"):
        c.check_served(md, model="rtdetr")


def test_manifest_contract_errors(exported_model: ExportedModel) -> None:
    m = exported_model.manifest
    no_boxes = m.model_copy(update={"outputs": m.outputs[:1]})
    with pytest.raises(ModelContractError, match="no output 'pred_boxes'"):
        ModelContract.from_manifest(no_boxes)
    fewer = m.model_copy(
        update={"class_names": m.class_names[:-1], "category_ids": m.category_ids[:-1]}
    )
    with pytest.raises(ModelContractError, match="len\\(class_names\\)"):
        ModelContract.from_manifest(fewer)
    fixed = m.model_copy(
        update={"inputs": [m.inputs[0].model_copy(update={"shape": [1, 3, 64, 64]})]}
    )
    with pytest.raises(ModelContractError, match="dynamic batch axis"):
        ModelContract.from_manifest(fixed)


def test_manifest_travels_in_the_model_config(exported_model: ExportedModel) -> None:
    m = exported_model.manifest
    http_like = json.loads(json.dumps(cpu_config("rtdetr", m, onnx_file="x.onnx")))
    assert manifest_from_config(http_like) == m
    assert manifest_from_config({"config": http_like}) == m  # gRPC's as_json wrapper
    assert manifest_from_config({"config": {"parameters": {}}}) is None
    assert json.loads(manifest_json(m))["onnx_sha256"] == m.onnx_sha256


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (InferenceServerException("unavailable", status="StatusCode.UNAVAILABLE"), True),
        (InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED"), True),
        (InferenceServerException("busy", status="503"), True),
        (InferenceServerException("[Errno 111] Connection refused"), True),
        (InferenceServerException("unexpected shape", status="400"), False),
        (InferenceServerException("bad", status="StatusCode.INVALID_ARGUMENT"), False),
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError(), True),
        (ValueError("x"), False),
    ],
)
def test_transient_errors(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unreachable_server_is_retried_then_reported(protocol: str) -> None:
    """A real refused connection: retried with backoff, then a clear error with the count."""
    c = RTDETRClient(f"127.0.0.1:{free_port()}", protocol, retries=2, backoff_s=0.01, timeout_s=5)  # type: ignore[arg-type]
    with pytest.raises(ServerNotReadyError, match="failed after 3 attempts"):
        c.detect([b"never decoded"])
