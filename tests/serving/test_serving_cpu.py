"""The CPU device type: catalog entry, the repository's two CPU configs, the tritonserver shim.

The CPU configs must serve exactly the TensorRT configs' contract (names, dims, dtypes, batch
contract), so they are checked with Triton's real ``ModelConfig`` schema against the same
helpers as the GPU configs, and the ONNX each one points at is run with onnxruntime to show it
loads and produces those tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from rtdetr_serving.catalog import CATALOG_ENV, CpuDevice, load_catalog
from rtdetr_serving.cli import main
from rtdetr_serving.errors import CatalogError, NotAGpuError, UnknownGpuError
from rtdetr_serving.repository import RepositoryIndex, write_repository
from rtdetr_serving.task_summary import ServingTaskSummary
from rtdetr_serving.triton_exec import tritonserver_argv
from rtdetr_serving.triton_local import find_triton, prepare_backends
from rtdetr_spec.artifacts import sha256_file
from tests.serving.conftest import ExportedModel
from tests.serving.test_serving_repository import check_io, check_warmup

KIND_CPU = mc.ModelInstanceGroup.KIND_CPU


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


# -- catalog ---------------------------------------------------------------------------------
def test_cpu_is_a_device_type_without_gpu_engine_or_capacity() -> None:
    cat = load_catalog()
    cpu = cat.device("cpu")
    assert isinstance(cpu, CpuDevice) and cpu.name == "CPU" and cat.is_cpu("CPU")
    assert (cpu.serving.max_batch, cpu.serving.instances, cpu.serving.threads) == (4, 1, 0)
    assert "CPU" not in cat.names(), "not a GPU: the planner's tables never list it"
    with pytest.raises(NotAGpuError, match="no capacity figure"):
        cat.get("CPU")
    assert cat.device("L4").name == "L4"
    gpus, found = cat.select_devices(["L4", "CPU", "nvidia-l4"])
    assert [g.name for g in gpus] == ["L4"] and found is cpu
    assert cat.select_devices(["L4"])[1] is None
    with pytest.raises(UnknownGpuError, match="did you mean CPU"):
        cat.get("CPUS")
    assert CpuDevice.config_name("python") == "cpu-python"
    with pytest.raises(CatalogError, match="unknown CPU backend 'openvino'"):
        CpuDevice.config_name("openvino")


def test_plan_and_build_engine_refuse_the_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--gpu", "CPU", "--fps", "30", "--streams", "4"]) == 1
    assert "no capacity figure" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", "m.onnx", "--gpu", "CPU", "--output", "o"]) == 1
    assert "no TensorRT engine" in capsys.readouterr().err
    assert main(["catalog"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("CPU ")


def test_a_user_catalog_resizes_the_cpu_and_no_gpu_may_take_its_name(tmp_path: Path) -> None:
    mine = tmp_path / "cpu.yaml"
    mine.write_text(yaml.safe_dump({"cpu": {"serving": {"max_batch": 8, "threads": 6}}}))
    cat = load_catalog([mine])
    assert (cat.cpu.serving.max_batch, cat.cpu.serving.threads) == (8, 6)
    assert cat.cpu.serving.instances == 1, "merged key by key"
    bad = tmp_path / "bad.yaml"
    entry = {"name": "X", "display_name": "cpu", "compute_capability": "8.0", "memory_gib": 8,
             "throughput_ips": 10, "engine": {"opt_batch": 1, "max_batch": 1}}  # fmt: skip
    bad.write_text(yaml.safe_dump({"gpus": [entry]}))
    with pytest.raises(CatalogError, match="used by both CPU and X"):
        load_catalog([bad])
    bad.write_text(yaml.safe_dump({"cpu": {"name": "GPU"}}))
    with pytest.raises(CatalogError, match="'cpu'"):
        load_catalog([bad])


# -- repository ------------------------------------------------------------------------------
def test_mixed_repository_has_both_cpu_configs_beside_the_gpus(
    exported_model: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv("RTDETR_TERMINATION_LOG", str(log))
    args = ["repository", "--onnx", str(exported_model.onnx), "--output", str(tmp_path / "repo"),
            "--gpu", "L4", "--gpu", "CPU", "--by-revision"]  # fmt: skip
    assert main(args) == 0
    summary = ServingTaskSummary.model_validate_json(log.read_text())
    assert summary.gpus == ["L4", "CPU"] and summary.status == "SUCCESS"
    model = Path(summary.artifacts["model"])
    m = exported_model.manifest
    assert sorted(p.name for p in (model / "configs").iterdir()) == [
        "cpu-onnxruntime.pbtxt",
        "cpu-python.pbtxt",
        "l4.pbtxt",
    ]
    assert parse(model / "config.pbtxt").platform == "tensorrt_plan", "GPUs keep the default"
    gpu_cfg = parse(model / "configs" / "l4.pbtxt")
    ort_cfg = parse(model / "configs" / "cpu-onnxruntime.pbtxt")
    py_cfg = parse(model / "configs" / "cpu-python.pbtxt")
    for cfg in (ort_cfg, py_cfg):
        check_io(cfg, m)  # the same tensors as the GPU config
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
            (i.name, i.data_type, list(i.dims)) for i in gpu_cfg.input
        ]
        assert list(cfg.output) == list(gpu_cfg.output)
        assert cfg.name == "rtdetr" and cfg.max_batch_size == 4
        assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, KIND_CPU)]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [4]
        assert cfg.parameters["rtdetr_gpu_type"].string_value == "CPU"
        check_warmup(cfg, m, 1)
    assert (ort_cfg.platform, ort_cfg.backend) == ("onnxruntime_onnx", "")
    assert ort_cfg.default_model_filename == exported_model.onnx.name
    assert (py_cfg.backend, py_cfg.platform) == ("python", "")
    assert py_cfg.parameters["onnx_file"].string_value == exported_model.onnx.name
    assert (model / "1" / "model.py").is_file()
    # onnxruntime loads exactly what the config names, from where Triton looks for it
    onnx = model / "1" / ort_cfg.default_model_filename
    assert sha256_file(onnx) == m.onnx_sha256
    assert onnx.stat().st_ino == (model / exported_model.onnx.name).stat().st_ino, "hard link"
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    batch = np.zeros((3, *ort_cfg.input[0].dims), np.float32)
    outs = sess.run([o.name for o in ort_cfg.output], {ort_cfg.input[0].name: batch})
    assert [list(o.shape) for o in outs] == [[3, *o.dims] for o in ort_cfg.output]
    index = RepositoryIndex.read(model)
    assert index.cpu is not None and index.cpu.onnx_file == f"1/{exported_model.onnx.name}"
    assert index.cpu.configs == {"onnxruntime": "cpu-onnxruntime", "python": "cpu-python"}
    assert index.onnx_file == exported_model.onnx.name, "engines still build from the root copy"


def test_cpu_only_and_cpu_flavour_defaults(exported_model: ExportedModel, tmp_path: Path) -> None:
    cat = load_catalog()
    model = write_repository(exported_model.onnx, tmp_path / "a", gpus=[], cpu=cat.cpu,
                             cpu_threads=3)  # fmt: skip
    cfg = parse(model / "config.pbtxt")
    assert cfg.platform == "onnxruntime_onnx", "the product's default CPU backend"
    assert cfg.parameters["intra_op_thread_count"].string_value == "3"
    assert not (model / exported_model.onnx.name).exists(), "no engine source without a GPU"
    assert RepositoryIndex.read(model).onnx_file == f"1/{exported_model.onnx.name}"
    dev = write_repository(exported_model.onnx, tmp_path / "b", gpus=[], flavor="cpu")
    assert parse(dev / "config.pbtxt").backend == "python", "what pytriton's tritonserver loads"
    assert (dev / "configs" / "cpu-onnxruntime.pbtxt").is_file()
    assert RepositoryIndex.read(dev).flavor == "cpu"


# -- rtdetr-serve tritonserver ---------------------------------------------------------------
def test_tritonserver_argv_adds_a_backend_directory_only_when_none_is_given() -> None:
    install = find_triton()
    argv = tritonserver_argv(install, Path("/b"), ["--model-repository=/m", "--http-port=1"])
    assert argv == [str(install.binary), "--backend-directory=/b", "--model-repository=/m",
                    "--http-port=1"]  # fmt: skip
    mine = ["--backend-directory", "/mine", "--model-repository=/m"]
    assert tritonserver_argv(install, Path("/b"), mine) == [str(install.binary), *mine]
    assert tritonserver_argv(install, None, ["--backend-directory=/x"])[1:] == [
        "--backend-directory=/x"
    ]


def test_backends_go_to_a_private_temporary_folder_when_the_cache_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only image, or a pod user whose home does not exist (uid 1000 in a pod)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RTDETR_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    backends = prepare_backends(find_triton())
    assert backends.is_relative_to(tmp_path / "tmp")
    stub = backends / "python" / "triton_python_backend_stub"
    assert stub.is_file() and stub.stat().st_mode & 0o111
    assert (backends / "python" / "libtriton_python.so").is_file()
