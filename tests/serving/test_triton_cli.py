"""``rtdetr-serve infer``, ``bench`` and ``local`` against the real tritonserver."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from rtdetr_serving import pbtxt
from rtdetr_serving.errors import TritonLaunchError
from rtdetr_serving.repository import cpu_config, write_repository
from rtdetr_serving.triton_local import LocalTriton
from tests.serving.conftest import ExportedModel, TritonUnderTest

pytestmark = pytest.mark.triton
EXE = str(Path(sys.executable).with_name("rtdetr-serve"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, check=False, timeout=120)


def test_cli_infer_http_and_grpc_agree(
    triton: TritonUnderTest, exported_model: ExportedModel, images: list[Path], tmp_path: Path
) -> None:
    docs = {}
    for proto, url in [("http", triton.server.http_url), ("grpc", triton.server.grpc_url)]:
        out = tmp_path / f"{proto}.json"
        p = run("infer", "--url", url, "--protocol", proto, *map(str, images), "--output", str(out),
                "--batch", "2", "--concurrency", "2")  # fmt: skip
        assert p.returncode == 0, p.stderr
        docs[proto] = json.loads(out.read_text())
    for d in docs.values():
        assert d["class_names"] == exported_model.manifest.detectable_classes()
        assert d["onnx_sha256"] == exported_model.manifest.onnx_sha256
        assert [i["source"] for i in d["images"]] == [str(p) for p in images]
        for det in (x for i in d["images"] for x in i["detections"]):
            assert det["score"] >= 0.5 and det["label"] in d["class_names"]
            assert det["category_id"] == d["class_names"].index(det["label"]) + 1
    assert docs["http"]["images"] == docs["grpc"]["images"]


def test_cli_infer_annotates_each_image_where_it_found_objects(
    triton: TritonUnderTest, images: list[Path], tmp_path: Path
) -> None:
    from PIL import Image, ImageChops

    out, drawn = tmp_path / "r.json", tmp_path / "annotated"
    p = run("infer", "--url", triton.server.http_url, *map(str, images), "--output", str(out),
            "--annotate", str(drawn))  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    for entry, src in zip(doc["images"], images, strict=True):
        written = drawn / src.name
        with Image.open(src) as a, Image.open(written) as b:
            assert a.size == b.size
            changed = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox()
        # Boxes are drawn exactly where detections are: none -> the picture is unchanged.
        assert (changed is not None) == bool(entry["detections"]), src.name


def test_cli_infer_errors(
    triton: TritonUnderTest, images: list[Path], not_images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "never.json"
    p = run("infer", "--url", triton.server.http_url, str(images[0]), str(not_images[0]),
            "--output", str(out))  # fmt: skip
    assert p.returncode == 1 and "notes.jpg: not a readable image" in p.stderr
    assert not out.exists()
    # A failed run leaves an earlier result as it was (and no temporary file beside it).
    out.write_text("earlier")
    p = run("infer", "--url", triton.server.http_url, str(not_images[0]), "--output", str(out))
    assert p.returncode == 1 and out.read_text() == "earlier"
    assert [x.name for x in tmp_path.iterdir()] == ["never.json"]
    p = run("infer", "--url", triton.server.grpc_url, "--protocol", "grpc", "--model", "nope",
            str(images[0]))  # fmt: skip
    assert p.returncode == 1 and "'nope'" in p.stderr and "not loaded" in p.stderr
    p = run("infer", "--url", triton.server.http_url, str(tmp_path / "missing.png"))
    assert p.returncode == 2 and "missing.png: cannot read" in p.stderr  # before connecting


def test_cli_bench_verdicts(triton: TritonUnderTest, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    p = run("bench", "--url", triton.server.grpc_url, "--protocol", "grpc", "--streams", "3",
            "--fps", "5", "--duration", "2", "--json", "--output", str(report),
            "--progress-s", "0.5")  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    # A run reports while it goes: a progress line at least every --progress-s.
    progress = [ln for ln in p.stderr.splitlines() if ln.startswith("bench: ")]
    assert len(progress) >= 3 and "frames sent" in progress[-1], p.stderr
    assert "/30 frames sent" in progress[-1], p.stderr
    r = json.loads(report.read_text())
    assert r["holds"] and r["scheduled"] == 30 and r["completed"] == 30 and r["errors"] == 0
    assert len(r["per_stream_fps"]) == 3 and r["latency_ms"]["p99"] is not None
    # A deadline no server meets: the run completes, the verdict fails, the exit code says so.
    p = run("bench", "--url", triton.server.http_url, "--streams", "2", "--fps", "5",
            "--duration", "1", "--deadline-ms", "0.001")  # fmt: skip
    assert p.returncode == 3 and "target NOT met" in p.stdout


def test_cli_bench_prints_perf_analyzer_commands_for_the_served_model(
    triton: TritonUnderTest, exported_model: ExportedModel
) -> None:
    p = run("bench", "--url", triton.server.grpc_url, "--protocol", "grpc", "--streams", "6",
            "--fps", "15", "--duration", "20", "--perf-analyzer")  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    m = exported_model.manifest
    shape = f"--shape inputs:3,{m.input_height},{m.input_width}"  # as Triton serves it
    sweep, constant = [ln for ln in p.stdout.splitlines() if ln.startswith("perf_analyzer ")]
    for line in (sweep, constant):
        assert f"-m rtdetr -u {triton.server.grpc_url} -i grpc {shape} -b 1" in line, line
        assert "--measurement-interval 20000" in line
    assert "--concurrency-range 1:12:3" in sweep
    assert "--request-rate-range 90 --request-distribution constant" in constant


def test_metrics_count_the_requests(triton: TritonUnderTest) -> None:
    assert triton.server.metrics_url is not None
    with urllib.request.urlopen(triton.server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    assert 'nv_inference_request_success{model="rtdetr",version="1"}' in text


def test_startup_failure_explains_itself(
    exported_model: ExportedModel, exported_model_bg: ExportedModel, tmp_path: Path
) -> None:
    """A model whose ONNX changed after the repository was written refuses to load, loudly."""
    model = write_repository(exported_model.onnx, tmp_path / "repo", gpus=[], flavor="cpu")
    shutil.copy(exported_model_bg.onnx, model / "1" / exported_model.onnx.name)
    server = LocalTriton(tmp_path / "repo", load_models=["rtdetr"], log_path=tmp_path / "t.log")
    with pytest.raises(TritonLaunchError, match="sha256") as e, server:
        pass
    assert "exited with code" in str(e.value)


def test_model_config_name_and_sigterm(exported_model: ExportedModel, tmp_path: Path) -> None:
    """``--model-config-name`` picks ``configs/<name>.pbtxt`` (how per-GPU configs are chosen)."""
    model = write_repository(exported_model.onnx, tmp_path / "repo", gpus=[], flavor="cpu")
    (model / "configs").mkdir(exist_ok=True)  # the CPU configs are there already
    small = cpu_config("rtdetr", exported_model.manifest, onnx_file=exported_model.onnx.name,
                       max_batch=2)  # fmt: skip
    (model / "configs" / "small.pbtxt").write_text(pbtxt.dumps(small))
    server = LocalTriton(tmp_path / "repo", model_control_mode="none", model_config_name="small")
    with server:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/rtdetr/config") as r:
            assert json.loads(r.read())["max_batch_size"] == 2
        # The SIGTERM goes to `rtdetr-serve local`, which forwards it to tritonserver.
        assert server.stop() == 0
    assert "Started HTTPService" in server.log_text()


def test_local_refuses_a_missing_repository(tmp_path: Path) -> None:
    p = run("local", "--model-repository", str(tmp_path / "none"))
    assert p.returncode == 2 and "none: no such directory" in p.stderr  # refused while parsing
