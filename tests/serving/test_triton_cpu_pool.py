"""A CPU pool's serving path with the real tritonserver (nvidia-pytriton, python backend).

What an RTDETRDeployment with a ``cpuBackend: python`` CPU pool does, command for command: the
repository Job runs ``rtdetr-serve repository --by-revision --gpu CPU --gpu L4``, and the pool's
container runs ``tritonserver --model-repository=/models/<revision>
--model-config-name=cpu-python`` where ``tritonserver`` is the CPU image's shim for
``rtdetr-serve tritonserver``. Clients must get the detections local onnxruntime gives for the
same ONNX through the same preprocessing and decode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rtdetr_serving.client import Detection, ImageResult, RTDETRClient
from rtdetr_serving.preprocess import load_rgb, preprocess_batch
from rtdetr_serving.repository import write_repository
from rtdetr_serving.task_summary import revision_of
from rtdetr_serving.triton_local import LocalTriton, find_triton
from tests.serving.conftest import ExportedModel
from tests.serving.test_triton_inference import assert_same, onnxruntime_results

pytestmark = pytest.mark.triton
EXE = str(Path(sys.executable).with_name("rtdetr-serve"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, check=False, timeout=120)


def from_json(doc: dict) -> list[ImageResult]:
    return [
        ImageResult(
            i["source"],
            i["width"],
            i["height"],
            [Detection(**{**d, "box": tuple(d["box"])}) for d in i["detections"]],
        )
        for i in doc["images"]
    ]


def test_cpu_pool_repository_served_by_rtdetr_serve_tritonserver(
    exported_model: ExportedModel, images: list[Path], tmp_path: Path
) -> None:
    m = exported_model.manifest
    out = tmp_path / "models"
    p = run("repository", "--onnx", str(exported_model.onnx), "--output", str(out), "--by-revision",
            "--force", "--model-name", "rtdetr", "--gpu", "CPU", "--gpu", "L4")  # fmt: skip
    assert p.returncode == 0, p.stderr
    revision = out / revision_of(m.onnx_sha256)
    server = LocalTriton(
        revision,
        model_control_mode="none",
        model_config_name="cpu-python",
        launcher="tritonserver",
        log_path=tmp_path / "tritonserver.log",
    )
    with server:
        # exec, not a launcher: the process started *is* tritonserver (what PID 1 needs)
        assert Path(f"/proc/{server.pid}/exe").resolve() == find_triton().binary.resolve()
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/rtdetr/config") as r:
            served = json.loads(r.read())
        assert served["backend"] == "python" and served["max_batch_size"] == 4
        assert served["parameters"]["rtdetr_cpu_backend"]["string_value"] == "python"

        expected = onnxruntime_results(exported_model, images)
        assert any(r.detections for r in expected), "a test with no detections proves nothing"
        for proto, url in [("http", server.http_url), ("grpc", server.grpc_url)]:
            result = tmp_path / f"{proto}.json"
            p = run("infer", "--url", url, "--protocol", proto, *map(str, images),
                    "--output", str(result), "--batch", "3")  # fmt: skip
            assert p.returncode == 0, p.stderr
            doc = json.loads(result.read_text())
            assert doc["onnx_sha256"] == m.onnx_sha256
            assert_same(from_json(doc), expected)

        # the client, raw tensors: what the TensorRT configs answer, batch and all
        client = RTDETRClient(server.grpc_url, "grpc")
        batch, _ = preprocess_batch([load_rgb(p) for p in images], m.input_height, m.input_width)
        ref = ort.InferenceSession(str(exported_model.onnx), providers=["CPUExecutionProvider"])
        want = ref.run(["pred_logits", "pred_boxes"], {"inputs": batch})
        for got, w in zip(client.infer_batch(batch), want, strict=True):
            assert got.dtype == np.float32 and got.shape == w.shape
            assert np.allclose(got, w, atol=1e-5)
        assert_same(client.detect(images), expected)

        # SIGTERM goes straight to tritonserver, which drains and exits cleanly
        assert server.stop() == 0
    assert "successfully unloaded 'rtdetr'" in server.log_text()


def test_tritonserver_passes_its_own_errors_through(tmp_path: Path) -> None:
    p = run("tritonserver", f"--model-repository={tmp_path / 'none'}", "--http-port=0",
            "--grpc-port=0", "--allow-metrics=false")  # fmt: skip
    assert p.returncode != 0
    assert "none" in p.stdout + p.stderr


def _stub_threads(repository: Path, threads: int, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("RTDETR_CPU_THREADS", str(threads))
    with LocalTriton(
        repository, model_control_mode="none", model_config_name="cpu-python",
        launcher="tritonserver",
    ) as server:  # fmt: skip
        tasks = Path(f"/proc/{server.pid}/task").iterdir()
        (stub,) = [c for t in tasks for c in (t / "children").read_text().split()]
        assert "triton_python_backend_stub" in Path(f"/proc/{stub}/cmdline").read_text()
        return len(list(Path(f"/proc/{stub}/task").iterdir()))


def test_python_backend_threads_follow_rtdetr_cpu_threads(
    exported_model: ExportedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU pod sets RTDETR_CPU_THREADS from its CPU limit; onnxruntime inside the python
    backend's stub then runs that many intra-op threads (N - 1 workers beside the caller),
    instead of one per core of the node."""
    model = write_repository(exported_model.onnx, tmp_path, gpus=[], flavor="cpu", cpu_threads=0)
    one = _stub_threads(model.parent, 1, monkeypatch)
    four = _stub_threads(model.parent, 4, monkeypatch)
    assert four - one == 3
