"""Triton model repositories: one command for H100, A100, L4 and L40S, checked field by field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from rtdetr_serving.catalog import CATALOG_ENV, load_catalog
from rtdetr_serving.cli import main
from rtdetr_serving.engine_spec import EngineSidecar, OptimizationProfile
from rtdetr_serving.errors import ModelContractError, RepositoryError
from rtdetr_serving.repository import RepositoryIndex, write_repository
from rtdetr_spec.artifacts import ExportManifest, sha256_file
from tests.serving.conftest import ExportedModel

GPUS = ["H100", "A100", "L4", "L40S"]
KIND_GPU = mc.ModelInstanceGroup.KIND_GPU


@pytest.fixture(autouse=True)
def _no_user_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CATALOG_ENV, raising=False)


def parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def check_io(cfg: mc.ModelConfig, m: ExportManifest) -> None:
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("inputs", mc.TYPE_FP32, [3, m.input_height, m.input_width])
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("pred_logits", mc.TYPE_FP32, [m.num_queries, m.num_logits]),
        ("pred_boxes", mc.TYPE_FP32, [m.num_queries, 4]),
    ]
    assert ExportManifest.model_validate_json(cfg.parameters["rtdetr_manifest"].string_value) == m


def check_warmup(cfg: mc.ModelConfig, m: ExportManifest, batch: int) -> None:
    (w,) = cfg.model_warmup
    assert w.batch_size == batch
    assert list(w.inputs) == ["inputs"]
    inp = w.inputs["inputs"]
    assert inp.zero_data and inp.data_type == mc.TYPE_FP32
    assert list(inp.dims) == [3, m.input_height, m.input_width]


def test_one_command_writes_a_repository_for_four_gpus(
    exported_model: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["repository", "--onnx", str(exported_model.onnx), "--output", str(tmp_path / "repo")]
    for g in GPUS:
        args += ["--gpu", g]
    assert main(args) == 0, capsys.readouterr().err
    model = tmp_path / "repo" / "rtdetr"
    m = exported_model.manifest
    cat = load_catalog()

    cfg = parse(model / "config.pbtxt")
    assert cfg.name == "rtdetr" and cfg.platform == "tensorrt_plan" and not cfg.backend
    # The generic config must load on every listed GPU: the smallest sizing (L4's).
    assert cfg.max_batch_size == 8
    check_io(cfg, m)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, KIND_GPU)]
    # L4 and L40S share compute capability 8.9: the first listed GPU's plan holds that key.
    assert dict(cfg.cc_model_filenames) == {
        "9.0": "model.H100.plan",
        "8.0": "model.A100.plan",
        "8.9": "model.L4.plan",
    }
    assert cfg.default_model_filename == ""
    check_warmup(cfg, m, 8)

    expected = {  # gpu: (max_batch, preferred, instances, queue delay)
        "H100": (32, [16, 32], 2, 500),
        "A100": (16, [8, 16], 2, 1000),
        "L4": (8, [4, 8], 1, 2000),
        "L40S": (16, [8, 16], 2, 1000),
    }
    assert sorted(p.name for p in (model / "configs").iterdir()) == [
        "a100.pbtxt",
        "h100.pbtxt",
        "l4.pbtxt",
        "l40s.pbtxt",
    ]
    for gpu, (max_b, preferred, instances, delay) in expected.items():
        g = cat.get(gpu)
        c = parse(model / "configs" / f"{gpu.lower()}.pbtxt")
        assert c.name == "rtdetr" and c.platform == "tensorrt_plan"
        assert c.max_batch_size == max_b == g.engine.max_batch
        check_io(c, m)
        assert list(c.dynamic_batching.preferred_batch_size) == preferred
        assert c.dynamic_batching.max_queue_delay_microseconds == delay
        assert [(i.count, i.kind) for i in c.instance_group] == [(instances, KIND_GPU)]
        assert c.default_model_filename == f"model.{gpu}.plan"
        assert dict(c.cc_model_filenames) == {g.compute_capability: f"model.{gpu}.plan"}
        assert c.parameters["rtdetr_gpu_type"].string_value == gpu
        check_warmup(c, m, max_b)

    index = RepositoryIndex.read(model)
    assert index.flavor == "tensorrt" and index.onnx_sha256 == m.onnx_sha256
    assert [(p.gpu, p.plan_file, p.compute_capability) for p in index.plans] == [
        ("H100", "model.H100.plan", "9.0"),
        ("A100", "model.A100.plan", "8.0"),
        ("L4", "model.L4.plan", "8.9"),
        ("L40S", "model.L40S.plan", "8.9"),
    ]
    assert sha256_file(model / index.onnx_file) == m.onnx_sha256
    assert ExportManifest.model_validate_json((model / index.manifest_file).read_text()) == m
    assert (model / "1").is_dir() and not any((model / "1").iterdir())
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]


def test_cpu_flavour(exported_model: ExportedModel, tmp_path: Path) -> None:
    model = write_repository(exported_model.onnx, tmp_path, gpus=[], flavor="cpu", cpu_max_batch=2)
    cfg = parse(model / "config.pbtxt")
    assert cfg.backend == "python" and not cfg.platform and cfg.max_batch_size == 2
    check_io(cfg, exported_model.manifest)
    assert [(i.count, i.kind) for i in cfg.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    assert cfg.parameters["onnx_file"].string_value == exported_model.onnx.name
    check_warmup(cfg, exported_model.manifest, 1)
    assert (model / "1" / "model.py").is_file()
    assert (
        sha256_file(model / "1" / exported_model.onnx.name) == exported_model.manifest.onnx_sha256
    )


def _sidecar(model: Path, gpu: str, onnx_sha: str) -> None:
    """A plan's sidecar as a build would write it; the plan bytes are irrelevant to the writer."""
    plan = model / "1" / f"model.{gpu}.plan"
    plan.write_bytes(b"bytes standing in for a serialized engine")
    EngineSidecar(
        tensorrt_version="10.3.0",
        builder="trtexec",
        gpu=gpu,
        gpu_device_name="x",
        compute_capability="9.0",
        precision="fp16",
        profiles=[OptimizationProfile.for_batches("inputs", (3, 64, 64), 1, 2, 4)],
        workspace_bytes=1,
        onnx_file="m.onnx",
        onnx_sha256=onnx_sha,
        plan_file=plan.name,
        plan_sha256=sha256_file(plan),
        plan_bytes=plan.stat().st_size,
        built_at="t",
        build_seconds=1.0,
    ).write(plan)


def test_rewrite_needs_force_and_keeps_matching_plans(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    gpus = load_catalog().select(["H100"])
    model = write_repository(exported_model.onnx, tmp_path, gpus=gpus)
    before = (model / "config.pbtxt").read_text()
    with pytest.raises(RepositoryError, match="exists; pass --force"):
        write_repository(exported_model.onnx, tmp_path, gpus=load_catalog().select(["L4"]))
    assert (model / "config.pbtxt").read_text() == before
    _sidecar(model, "H100", exported_model.manifest.onnx_sha256)
    _sidecar(model, "L4", "0" * 64)  # built from another ONNX: must not survive
    write_repository(
        exported_model.onnx, tmp_path, gpus=load_catalog().select(["H100", "L4"]), force=True
    )
    assert sorted(p.name for p in (model / "1").iterdir()) == [
        "model.H100.plan",
        "model.H100.plan.json",
    ]
    assert (model / "configs" / "l4.pbtxt").is_file()


def test_bad_exports_are_refused(exported_model: ExportedModel, tmp_path: Path) -> None:
    gpus = load_catalog().select(["L4"])
    onnx = tmp_path / "m.onnx"
    shutil.copy(exported_model.onnx, onnx)
    with pytest.raises(ModelContractError, match=r"no m\.manifest\.json and no labels\.txt"):
        write_repository(onnx, tmp_path / "r", gpus=gpus)  # neither ours nor class names
    m = exported_model.manifest
    m.model_copy(update={"onnx_sha256": "f" * 64}).write(onnx)
    with pytest.raises(ModelContractError, match="does not match its manifest"):
        write_repository(onnx, tmp_path / "r", gpus=gpus)
    m.model_copy(update={"batch_size": 1}).write(onnx)
    with pytest.raises(ModelContractError, match="dynamic batch"):
        write_repository(onnx, tmp_path / "r", gpus=gpus)
    wrong = m.model_copy(
        update={
            "input_height": 32,
            "inputs": [m.inputs[0].model_copy(update={"shape": [-1, 3, 32, 64]})],
        }
    )
    wrong.write(onnx)
    with pytest.raises(ModelContractError, match="shape"):
        write_repository(onnx, tmp_path / "r", gpus=gpus)
    m.write(onnx)
    with pytest.raises(RepositoryError, match="at least one --gpu"):
        write_repository(onnx, tmp_path / "r", gpus=[])
    with pytest.raises(RepositoryError, match="applies to the tensorrt flavour"):
        write_repository(onnx, tmp_path / "r", gpus=gpus, flavor="cpu")
    with pytest.raises(RepositoryError, match=r"model name '\.\./x'"):
        write_repository(onnx, tmp_path / "r", gpus=gpus, model_name="../x")
    assert not (tmp_path / "r" / "rtdetr").exists()
    (tmp_path / "junk.onnx").write_text("junk")
    m.model_copy(update={"onnx_sha256": sha256_file(tmp_path / "junk.onnx")}).write(
        tmp_path / "junk.onnx"
    )
    with pytest.raises(ModelContractError, match="not a readable ONNX"):
        write_repository(tmp_path / "junk.onnx", tmp_path / "r", gpus=gpus)


def test_cli_reports_errors(
    exported_model: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["repository", "--onnx", str(exported_model.onnx), "--output", str(tmp_path)]
    assert main([*base, "--gpu", "H1000"]) == 1
    assert "did you mean H100" in capsys.readouterr().err
    assert main([*base, "--gpu", "NVIDIA-Thor"]) == 1
    assert "shared by" in capsys.readouterr().err
    assert (
        main(
            [
                "repository",
                "--onnx",
                str(tmp_path / "x.onnx"),
                "--output",
                str(tmp_path),
                "--gpu",
                "L4",
            ]
        )
        == 1
    )
    assert "x.onnx: ONNX file not found" in capsys.readouterr().err
    assert json.loads(ExportManifest.path_for(exported_model.onnx).read_text())["batch_size"] == -1


def test_the_repository_is_readable_by_other_users(
    exported_model: ExportedModel, tmp_path: Path
) -> None:
    """Triton pods read what a build Job wrote, under another uid: nothing may be private."""
    gpus = load_catalog().select(["L4"])
    model = write_repository(exported_model.onnx, tmp_path, gpus=gpus)
    for path in [model, *model.rglob("*")]:
        wanted = 0o005 if path.is_dir() else 0o004
        assert path.stat().st_mode & wanted == wanted, f"{path} is {oct(path.stat().st_mode)}"
