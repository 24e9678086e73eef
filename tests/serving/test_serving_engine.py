"""TensorRT engine builds: the pure logic (profiles, trtexec, sidecar, GPU checks, version rule).

The builds themselves need a GPU and TensorRT: see test_serving_engine_gpu.py.
"""

from __future__ import annotations

import ctypes.util
import shutil
from pathlib import Path

import pytest

from rtdetr_serving.catalog import CATALOG_ENV, load_catalog
from rtdetr_serving.cli import main
from rtdetr_serving.engine_build import (
    LocalGpu,
    build_or_reuse,
    build_with_trtexec,
    check_gpu_matches,
    detect_local_gpu,
)
from rtdetr_serving.engine_spec import (
    EngineSidecar,
    OptimizationProfile,
    build_spec,
    make_sidecar,
    parse_trtexec_version,
    trtexec_command,
)
from rtdetr_serving.errors import (
    EngineError,
    EngineToolMissingError,
    GpuMismatchError,
    ModelContractError,
)
from rtdetr_spec.artifacts import sha256_file
from tests.serving.conftest import ExportedModel

HAS_CUDA_DRIVER = ctypes.util.find_library("cuda") is not None


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def test_profiles_from_the_catalog(exported_model: ExportedModel, tmp_path: Path) -> None:
    cat = load_catalog()
    m = exported_model.manifest
    hw = (3, m.input_height, m.input_width)
    for gpu, (opt, mx, ws) in {"H100": (16, 32, 4), "L4": (4, 8, 2), "A100": (8, 16, 4)}.items():
        spec = build_spec(cat.get(gpu), m, exported_model.onnx, tmp_path)
        assert spec.profile.min_shape == (1, *hw)
        assert spec.profile.opt_shape == (opt, *hw)
        assert spec.profile.max_shape == (mx, *hw)
        assert spec.workspace_bytes == ws << 30 and spec.fp16
        assert spec.plan_path == tmp_path / f"model.{gpu}.plan"
        assert spec.sidecar_path == tmp_path / f"model.{gpu}.plan.json"
        assert spec.compute_capability == cat.get(gpu).compute_capability
    custom = build_spec(
        cat.get("L4"), m, exported_model.onnx, tmp_path, opt_batch=2, max_batch=3, workspace_gib=0.5
    )
    assert custom.profile.opt_shape[0] == 2 and custom.profile.max_shape[0] == 3
    assert custom.workspace_bytes == 1 << 29
    with pytest.raises(EngineError, match="1 <= min <= opt <= max"):
        build_spec(cat.get("L4"), m, exported_model.onnx, tmp_path, opt_batch=16)


def test_spec_refuses_an_onnx_that_is_not_the_manifests(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(exported_model.onnx.read_bytes() + b"\0")
    with pytest.raises(ModelContractError, match="does not match its manifest"):
        build_spec(load_catalog().get("L4"), exported_model.manifest, other, tmp_path)


def test_trtexec_command_line(exported_model: ExportedModel, tmp_path: Path) -> None:
    m = exported_model.manifest
    spec = build_spec(
        load_catalog().get("H100"), m, exported_model.onnx, tmp_path, timing_cache=tmp_path / "tc"
    )
    h, w = m.input_height, m.input_width
    assert trtexec_command(spec, "/opt/trtexec") == [
        "/opt/trtexec",
        f"--onnx={exported_model.onnx}",
        f"--saveEngine={tmp_path / 'model.H100.plan'}",
        f"--minShapes=inputs:1x3x{h}x{w}",
        f"--optShapes=inputs:16x3x{h}x{w}",
        f"--maxShapes=inputs:32x3x{h}x{w}",
        "--memPoolSize=workspace:4096M",
        "--skipInference",
        "--fp16",
        f"--timingCacheFile={tmp_path / 'tc'}",
    ]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx", "10.3.0"),
        ("[TensorRT v101303] # trtexec", "10.13.3"),
        ("&&&& PASSED TensorRT.trtexec [TensorRT v8601]", "8.6.1"),
        ("no version here", None),
    ],
)
def test_trtexec_version(text: str, version: str | None) -> None:
    assert parse_trtexec_version(text) == version


def _sidecar(tmp_path: Path, version: str = "10.3.0", cc: str = "9.0") -> EngineSidecar:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"0123456789")
    spec = build_spec(
        load_catalog().get("H100"),
        manifest_for(tmp_path),
        tmp_path / "m.onnx",
        tmp_path,
        verify_onnx=False,
    )
    return make_sidecar(
        spec, plan=blob, tensorrt_version=version, builder="trtexec",
        gpu_device_name="NVIDIA H100 80GB HBM3", compute_capability=cc, build_seconds=12.34567,
    )  # fmt: skip


def manifest_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.serving.onnx_factory import make_export

    return make_export(tmp_path / "m.onnx")


def test_sidecar_round_trip_and_serving_rule(tmp_path: Path) -> None:
    s = _sidecar(tmp_path)
    assert s.plan_sha256 == sha256_file(tmp_path / "blob.bin") and s.plan_bytes == 10
    assert s.precision == "fp16" and s.build_seconds == 12.346 and s.gpu == "H100"
    assert s.profiles[0].max_batch == 32
    path = s.write(tmp_path / "blob.bin")
    assert path.name == "blob.bin.json" and EngineSidecar.read(path) == s


def test_local_gpu_must_be_the_requested_type() -> None:
    cat = load_catalog()
    h100 = LocalGpu(0, "NVIDIA H100 80GB HBM3", "9.0", 80 << 30)
    check_gpu_matches(cat.get("H100"), h100)
    with pytest.raises(
        GpuMismatchError, match=r"compute capability 8\.9.*is compute capability 9\.0"
    ):
        check_gpu_matches(cat.get("L4"), h100)
    with pytest.raises(GpuMismatchError, match="different product of the same compute capability"):
        check_gpu_matches(cat.get("H200"), h100)
    check_gpu_matches(cat.get("H200"), h100, allow_same_cc=True)
    check_gpu_matches(cat.get("A100"), LocalGpu(0, "NVIDIA A100-SXM4-40GB", "8.0", 40 << 30))
    assert h100.product_label == "NVIDIA-H100-80GB-HBM3"


@pytest.mark.skipif(HAS_CUDA_DRIVER, reason="this machine has a CUDA driver")
def test_without_cuda_builds_are_refused(
    exported_model: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(EngineToolMissingError, match=r"libcuda\.so\.1"):
        detect_local_gpu()
    spec = build_spec(
        load_catalog().get("L4"), exported_model.manifest, exported_model.onnx, tmp_path
    )
    with pytest.raises(EngineToolMissingError):
        build_or_reuse(spec, load_catalog().get("L4"), reuse=False)
    args = [
        "build-engine",
        "--onnx",
        str(exported_model.onnx),
        "--gpu",
        "L4",
        "--output",
        str(tmp_path),
    ]
    assert main(args) == 1
    assert "no CUDA driver" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.plan"))


def test_missing_trtexec_is_an_error(exported_model: ExportedModel, tmp_path: Path) -> None:
    spec = build_spec(
        load_catalog().get("L4"), exported_model.manifest, exported_model.onnx, tmp_path
    )
    local = LocalGpu(0, "NVIDIA L4", "8.9", 24 << 30)
    assert shutil.which("trtexec-does-not-exist") is None
    with pytest.raises(EngineToolMissingError, match="not found on PATH"):
        build_with_trtexec(spec, local, "trtexec-does-not-exist")


def test_cli_prints_the_trtexec_command(
    exported_model: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["build-engine", "--onnx", str(exported_model.onnx), "--gpu", "nvidia-l4"]
    assert main([*args, "--output", str(tmp_path), "--print-command", "--max-batch", "4"]) == 0
    out = capsys.readouterr().out.split()
    m = exported_model.manifest
    assert out[0] == "trtexec" and "--fp16" in out
    assert f"--maxShapes=inputs:4x3x{m.input_height}x{m.input_width}" in out


def test_optimization_profile_shapes() -> None:
    p = OptimizationProfile.for_batches("inputs", (3, 640, 640), 1, 8, 16)
    assert p.trtexec_shape("opt") == "inputs:8x3x640x640" and p.max_batch == 16
