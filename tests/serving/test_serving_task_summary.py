"""What the repository and engine Jobs report: termination-message summaries, the TensorRT
version rule at build time, and reuse of identical plans."""

from __future__ import annotations

import ctypes.util
import json
from pathlib import Path

import pytest

from rtdetr_serving.catalog import CATALOG_ENV, load_catalog
from rtdetr_serving.cli import main
from rtdetr_serving.engine_spec import (
    EngineSidecar,
    build_spec,
    check_tensorrt_version,
    make_sidecar,
    reusable_plan,
    same_tensorrt,
)
from rtdetr_serving.errors import TensorRTVersionError
from rtdetr_serving.repository import RepositoryIndex
from rtdetr_serving.task_summary import ServingTaskSummary, revision_of
from rtdetr_spec.artifacts import ExportManifest, sha256_file
from rtdetr_spec.reporting import MESSAGE_LIMIT, termination_log_path
from tests.serving.conftest import ExportedModel

HAS_CUDA_DRIVER = ctypes.util.find_library("cuda") is not None


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    return log


def _reported(tmp_path: Path) -> ServingTaskSummary:
    text = (tmp_path / "termination-log").read_text()
    assert len(text.encode()) <= MESSAGE_LIMIT
    return ServingTaskSummary.model_validate_json(text)


def test_repository_by_revision_reports_what_it_wrote(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    out = tmp_path / "models"
    args = ["repository", "--onnx", str(exported_model.onnx), "--output", str(out)]
    args += ["--gpu", "H100", "--gpu", "L4", "--by-revision", "--force"]
    assert main(args) == 0
    s = _reported(tmp_path)
    sha = exported_model.manifest.onnx_sha256
    rev = revision_of(sha)
    assert (s.task, s.status, s.revision, s.onnx_sha256) == ("repository", "SUCCESS", rev, sha)
    assert s.gpus == ["H100", "L4"] and len(rev) == 12
    model_dir = out / rev / "rtdetr"
    assert s.artifacts["repository"] == str(out / rev)
    assert s.artifacts["model"] == str(model_dir)
    onnx_copy = Path(s.artifacts["onnx"])
    assert onnx_copy.parent == model_dir and sha256_file(onnx_copy) == sha
    assert RepositoryIndex.read(model_dir).onnx_sha256 == sha
    assert (model_dir / "configs" / "l4.pbtxt").is_file()
    # Again (a retried Job, or a new GPU set): --force rewrites in place, same revision.
    assert main([*args, "--gpu", "A100"]) == 0
    assert sorted(_reported(tmp_path).gpus) == ["A100", "H100", "L4"]
    assert sorted(p.name for p in out.iterdir()) == [rev]


def test_repository_failure_is_reported_with_the_file_at_fault(
    exported_model: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "copy.onnx"
    onnx.write_bytes(exported_model.onnx.read_bytes() + b"tampered")
    ExportManifest.path_for(onnx).write_text(
        ExportManifest.path_for(exported_model.onnx).read_text()
    )
    args = ["repository", "--onnx", str(onnx), "--output", str(tmp_path / "m"), "--gpu", "L4"]
    assert main([*args, "--by-revision"]) == 1
    s = _reported(tmp_path)
    assert (s.task, s.status, s.gpus) == ("repository", "FAILURE", ["L4"])
    assert str(onnx) in (s.message or "") and "does not match" in (s.message or "")
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.skipif(HAS_CUDA_DRIVER, reason="this machine has a CUDA driver")
def test_engine_build_without_a_gpu_reports_failure(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    args = ["build-engine", "--onnx", str(exported_model.onnx), "--gpu", "H100"]
    args += ["--output", str(tmp_path / "1"), "--tensorrt-version", "10.13.3", "--reuse"]
    assert main(args) == 1
    s = _reported(tmp_path)
    assert (s.task, s.status, s.gpus) == ("gen_trt_engine", "FAILURE", ["H100"])
    assert "no CUDA driver" in (s.message or "")
    assert not list(tmp_path.glob("1/*.plan"))


def test_tensorrt_version_rule() -> None:
    assert same_tensorrt("10.13.3.9", "10.13.3")
    assert not same_tensorrt("10.13.2", "10.13.3") and not same_tensorrt("10.8.0", "10.13.3")
    check_tensorrt_version("10.13.3.9", "10.13.3", where="x")
    check_tensorrt_version("9.0.0", None, where="x")
    with pytest.raises(TensorRTVersionError, match=r"has TensorRT 10\.8\.0.*serves with TensorRT"):
        check_tensorrt_version("10.8.0", "10.13.3", where="this image's tensorrt package")


def _sidecar_for(spec, tmp_path: Path, **changes) -> EngineSidecar:
    # The bytes stand in for a plan file: reuse only compares them with the sidecar's sha256.
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    spec.plan_path.write_bytes(b"plan bytes")
    sidecar = make_sidecar(
        spec,
        plan=spec.plan_path,
        tensorrt_version=changes.pop("tensorrt_version", "10.13.3.9"),
        builder="tensorrt-python",
        gpu_device_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        build_seconds=30.0,
    )
    sidecar = sidecar.model_copy(update=changes)
    sidecar.write(spec.plan_path)
    return sidecar


def test_an_identical_existing_plan_is_reused_anything_else_is_not(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    h100 = load_catalog().get("H100")
    spec = build_spec(h100, exported_model.manifest, exported_model.onnx, tmp_path / "1")
    assert reusable_plan(spec, compute_capability="9.0", tensorrt_version="10.13.3") is None
    sidecar = _sidecar_for(spec, tmp_path)
    found = reusable_plan(spec, compute_capability="9.0", tensorrt_version="10.13.3")
    assert found == sidecar
    assert reusable_plan(spec, compute_capability="8.9", tensorrt_version="10.13.3") is None
    assert reusable_plan(spec, compute_capability="9.0", tensorrt_version="10.14.1") is None
    smaller = build_spec(
        h100, exported_model.manifest, exported_model.onnx, tmp_path / "1", opt_batch=4, max_batch=8
    )
    assert reusable_plan(smaller, compute_capability="9.0", tensorrt_version=None) is None
    spec.plan_path.write_bytes(b"changed after the sidecar was written")
    assert reusable_plan(spec, compute_capability="9.0", tensorrt_version=None) is None


def test_summary_fits_a_termination_message() -> None:
    s = ServingTaskSummary(task="gen_trt_engine", status="FAILURE", message="x" * 10_000)
    text = s.to_message()
    assert len(text.encode()) <= MESSAGE_LIMIT
    back = ServingTaskSummary.model_validate_json(text)
    assert back.status == "FAILURE" and back.message and back.message.endswith("...")
    assert json.loads(text)["task"] == "gen_trt_engine"


def test_summary_goes_nowhere_outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RTDETR_TERMINATION_LOG")
    assert termination_log_path() is None
