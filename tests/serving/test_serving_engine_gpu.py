"""Real TensorRT builds on the local GPU. Skipped where CUDA or TensorRT is absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rtdetr_serving.catalog import CATALOG_ENV, GpuType, load_catalog
from rtdetr_serving.engine_build import build_or_reuse, detect_local_gpu
from rtdetr_serving.engine_spec import EngineSidecar, build_spec
from rtdetr_serving.errors import EngineToolMissingError, GpuMismatchError, UnknownGpuError
from tests.serving.conftest import ExportedModel

pytestmark = pytest.mark.gpu


@pytest.fixture()
def local_type(monkeypatch: pytest.MonkeyPatch) -> GpuType:
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    try:
        local = detect_local_gpu()
    except EngineToolMissingError as e:
        pytest.skip(f"no CUDA GPU: {e}")
    try:
        return load_catalog().get(local.product_label)
    except UnknownGpuError:
        pytest.skip(f"{local.name} is not in the GPU catalog")


def test_refuses_another_gpu_type(
    local_type: GpuType, exported_model: ExportedModel, tmp_path: Path
) -> None:
    other = next(
        g for g in load_catalog().gpus if g.compute_capability != local_type.compute_capability
    )
    spec = build_spec(other, exported_model.manifest, exported_model.onnx, tmp_path)
    with pytest.raises(GpuMismatchError):
        build_or_reuse(spec, other, reuse=False)[0]
    assert not list(tmp_path.iterdir())


def _check_plan(sidecar: EngineSidecar, plan: Path, model: ExportedModel) -> None:
    trt = pytest.importorskip("tensorrt")
    import onnxruntime as ort

    assert sidecar.tensorrt_version == trt.__version__ or sidecar.builder == "trtexec"
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None and engine.num_optimization_profiles == 1
    # Run one batch with TensorRT and compare with onnxruntime (FP16 tolerance).
    cuda = pytest.importorskip("cuda.bindings.runtime")
    m = model.manifest
    x = np.random.default_rng(0).random((2, 3, m.input_height, m.input_width), np.float32)
    ref = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"]).run(
        ["pred_logits", "pred_boxes"], {"inputs": x}
    )
    ctx = engine.create_execution_context()
    ctx.set_input_shape("inputs", x.shape)
    outs = {
        n: np.empty((2, *r.shape[1:]), np.float32)
        for n, r in zip(["pred_logits", "pred_boxes"], ref, strict=True)
    }
    ptrs = {}
    for name, arr in [("inputs", x), *outs.items()]:
        err, ptr = cuda.cudaMalloc(arr.nbytes)
        assert err == 0
        ptrs[name] = ptr
        ctx.set_tensor_address(name, ptr)
    cuda.cudaMemcpy(
        ptrs["inputs"], x.ctypes.data, x.nbytes, cuda.cudaMemcpyKind.cudaMemcpyHostToDevice
    )
    assert ctx.execute_async_v3(0)
    cuda.cudaDeviceSynchronize()
    for name, arr in outs.items():
        cuda.cudaMemcpy(
            arr.ctypes.data, ptrs[name], arr.nbytes, cuda.cudaMemcpyKind.cudaMemcpyDeviceToHost
        )
    for p in ptrs.values():
        cuda.cudaFree(p)
    assert np.allclose(outs["pred_boxes"], ref[1], atol=2e-2)
    assert np.allclose(
        outs["pred_logits"], ref[0], atol=5e-2 * max(1.0, float(np.abs(ref[0]).max()))
    )


def test_build_with_tensorrt_python(
    local_type: GpuType, exported_model: ExportedModel, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt")
    spec = build_spec(local_type, exported_model.manifest, exported_model.onnx, tmp_path)
    sidecar = build_or_reuse(spec, local_type, reuse=False)[0]
    assert spec.plan_path.is_file() and EngineSidecar.read(spec.sidecar_path) == sidecar
    assert sidecar.compute_capability == local_type.compute_capability
    _check_plan(sidecar, spec.plan_path, exported_model)


def test_build_with_trtexec(
    local_type: GpuType, exported_model: ExportedModel, tmp_path: Path
) -> None:
    if shutil.which("trtexec") is None:
        pytest.skip("trtexec not on PATH")
    spec = build_spec(local_type, exported_model.manifest, exported_model.onnx, tmp_path)
    sidecar = build_or_reuse(spec, local_type, method="trtexec", reuse=False)[0]
    assert sidecar.builder == "trtexec" and sidecar.tensorrt_version
    _check_plan(sidecar, spec.plan_path, exported_model)


def test_build_reports_reuses_and_refuses_another_tensorrt(
    local_type: GpuType,
    exported_model: ExportedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What an RTDETRDeployment engine Job runs: a build, a reused plan, a version refusal."""
    trt = pytest.importorskip("tensorrt")
    from rtdetr_serving.cli import main
    from rtdetr_serving.task_summary import ServingTaskSummary

    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    out = tmp_path / "1"
    args = ["build-engine", "--onnx", str(exported_model.onnx), "--gpu", local_type.name]
    args += ["--output", str(out), "--reuse"]
    assert main([*args, "--tensorrt-version", trt.__version__]) == 0
    first = ServingTaskSummary.model_validate_json(log.read_text())
    assert first.status == "SUCCESS" and not first.reused and first.engine is not None
    assert first.engine.tensorrt_version == trt.__version__
    assert main([*args, "--tensorrt-version", trt.__version__]) == 0
    again = ServingTaskSummary.model_validate_json(log.read_text())
    assert again.reused and again.engine == first.engine
    plan = out / f"model.{local_type.name}.plan"
    before = plan.read_bytes()
    assert main([*args, "--tensorrt-version", "1.0.0"]) == 1
    refused = ServingTaskSummary.model_validate_json(log.read_text())
    assert refused.status == "FAILURE" and "1.0.0" in (refused.message or "")
    assert plan.read_bytes() == before, "a refused build leaves the existing plan alone"


def test_a_built_plan_is_timed_with_tensorrts_runtime(
    local_type: GpuType, exported_model: ExportedModel, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt")
    from rtdetr_serving.engine_timing import profile_batches, time_plan

    spec = build_spec(
        local_type, exported_model.manifest, exported_model.onnx, tmp_path, opt_batch=2, max_batch=4
    )
    build_or_reuse(spec, local_type, reuse=False)[0]
    timing = time_plan(spec.plan_path, spec.profile, warmup=3, iterations=10)
    assert [b.batch for b in timing.batches] == profile_batches(spec.profile)
    for b in timing.batches:
        assert 0 < b.p50_ms <= b.p90_ms <= b.p99_ms
        assert b.throughput_ips == pytest.approx(b.batch * 1000 / b.mean_ms, rel=1e-3)
