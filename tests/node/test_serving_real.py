"""RTDETRDeployment for real: Triton pods on the real node serve a trained model on a CPU pool.

The model is trained by the operator in this module (two small trainings: the first is served,
the second rolls out), the Triton image is the CPU one built without Docker, and requests go
from this machine through the pool Service's ClusterIP, i.e. through kube-proxy's rules.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rtdetr_serving.client import RTDETRClient
from rtdetr_spec.artifacts import ExportManifest
from tests.node import support
from tests.node.support import localstack
from tests.serving.conftest import ExportedModel
from tests.serving.test_triton_inference import assert_same, onnxruntime_results

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

SIZE = 128
NAME = "warehouse-local"


@dataclass
class Served:
    namespace: str
    images: list[Path]
    results: Path  # the results claim's folder on this machine

    def exported(self, training: str, status: dict) -> ExportedModel:
        folder = status["resultsVolume"]["subPath"]  # the run's own folder: <name>-<uid prefix>
        onnx = self.results / folder / status["artifacts"]["onnx"].removeprefix("/results/")
        return ExportedModel(onnx, ExportManifest.read(onnx))


def _deployment(training: str) -> dict:
    cr = support.of_kind(support.example("deployment.yaml"), "RTDETRDeployment")
    cr["spec"]["model"]["training"]["name"] = training
    return cr


def _train(stack: localstack.Stack, ns: str, name: str) -> dict:
    support.apply(stack, ns, support.training(name, epochs=2, size=SIZE))
    st = support.wait_phase(stack, ns, name, {"Succeeded", "Failed"}, timeout=1200)
    assert st["phase"] == "Succeeded", support.describe(stack, ns)
    return st


@pytest.fixture(scope="module")
def served(stack: localstack.Stack) -> Iterator[Served]:
    ns = support.new_namespace(stack)
    support.dataset(stack, ns, num_images=60, size=SIZE)
    support.apply(stack, ns, support.results_claim())
    _train(stack, ns, "model-a")
    support.apply(stack, ns, _deployment("model-a"))
    st = support.wait_phase(stack, ns, NAME, {"Ready"}, timeout=600, kind="rtdetrdeployment")
    assert st["pools"][0]["readyReplicas"] >= 1
    data = support.volume_path(stack, ns, "warehouse-data") / "warehouse"
    test = json.loads((data / "annotations" / "test.json").read_text())
    images = [data / "images" / im["file_name"] for im in test["images"]][:6]
    assert images
    yield Served(ns, images, support.volume_path(stack, ns, "rtdetr-results"))
    stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _endpoint(stack: localstack.Stack, ns: str, name: str = NAME) -> str:
    svc = stack.get("service", f"{name}-cpu", "-n", ns)
    return f"{svc['spec']['clusterIP']}:8000"


def test_the_cpu_pool_answers_what_the_onnx_computes(
    stack: localstack.Stack, served: Served
) -> None:
    ns = served.namespace
    pods = support.pods(stack, ns, f"rtdetr.dev/deployment={NAME}")
    node = stack.get("nodes", "-l", "rtdetr.dev/real-node=true")["items"][0]["metadata"]["name"]
    assert pods and {p["spec"]["nodeName"] for p in pods} == {node}
    limits = pods[0]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits
    jobs = stack.get("jobs", "-n", ns, "-l", f"rtdetr.dev/deployment={NAME}")["items"]
    assert jobs and not [j for j in jobs if "engine" in j["metadata"]["name"]]  # no TensorRT

    model = served.exported("model-a", support.status(stack, ns, "rtdetrtraining", "model-a"))
    # Every query (threshold 0): a briefly trained model scores nothing above 0.5, and an empty
    # list compared with an empty list would prove nothing.
    expected = onnxruntime_results(model, served.images, threshold=0.0)
    assert all(r.detections for r in expected)
    client = RTDETRClient(_endpoint(stack, ns), "http", timeout_s=60, threshold=0.0)
    got = client.detect([str(p) for p in served.images])
    assert_same(expected, got)
    revision = support.status(stack, ns, "rtdetrdeployment", NAME)["model"]["revision"]
    assert model.manifest.onnx_sha256.startswith(revision)


def _place(content: bytes, dest: Path, like: Path) -> None:
    """Write a file onto the results volume owned and moded like ``like`` (a training's file), so
    the pods' non-root user reads it as it reads the training's own files."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = like.parent.stat()
    os.chown(dest.parent, folder.st_uid, folder.st_gid)
    dest.parent.chmod(folder.st_mode & 0o7777)
    dest.write_bytes(content)
    os.chown(dest, like.stat().st_uid, like.stat().st_gid)
    dest.chmod(like.stat().st_mode & 0o7777)


def _onnx_deployment(name: str, path: str, class_names: list[str]) -> dict:
    """The example deployment, renamed, serving ``path`` on the results claim (no training)."""
    cr = _deployment("unused")
    cr["metadata"]["name"] = name
    onnx = {"claimName": "rtdetr-results", "path": path, "classNames": class_names}
    cr["spec"]["model"] = {"onnx": onnx}
    return cr


def _not_rtdetr_onnx() -> bytes:
    """A valid ONNX that is not RT-DETR's contract: x [batch, 4] -> y (Identity)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not_rtdetr",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def test_an_onnx_without_manifest_is_served_from_its_graph(
    stack: localstack.Stack, served: Served
) -> None:
    """model-a's ONNX alone (no manifest, no labels.txt) on the results volume, described by its
    graph and spec.model.onnx.classNames, answers what onnxruntime computes on that file; a graph
    that is not RT-DETR's contract stalls its deployment with the difference named."""
    ns = served.namespace
    model = served.exported("model-a", support.status(stack, ns, "rtdetrtraining", "model-a"))
    plain = served.results / "plain" / "model.onnx"
    _place(model.onnx.read_bytes(), plain, like=model.onnx)
    assert not plain.with_name("model.manifest.json").exists()
    assert not plain.with_name("labels.txt").exists()
    names = model.manifest.class_names
    _place(_not_rtdetr_onnx(), served.results / "not-rtdetr" / "model.onnx", like=model.onnx)
    good, bad = "plain-onnx", "not-rtdetr"
    support.apply(
        stack,
        ns,
        _onnx_deployment(good, "plain/model.onnx", names),
        _onnx_deployment(bad, "not-rtdetr/model.onnx", names),
    )
    try:
        st = support.wait_phase(stack, ns, good, {"Ready"}, timeout=600, kind="rtdetrdeployment")
        assert model.manifest.onnx_sha256.startswith(st["model"]["revision"])
        # What the served model can know without a manifest: the classes given, no category ids.
        described = model.manifest.model_dump() | {"category_ids": [None] * len(names)}
        no_manifest = ExportedModel(plain, ExportManifest.model_validate(described))
        # Every one of the 300 detections per image, not only those over 0.5: a model trained for
        # two epochs scores no box that high, and a comparison at 0.5 would compare nothing.
        expected = onnxruntime_results(no_manifest, served.images, threshold=0.0)
        assert all(len(r.detections) == 300 for r in expected)
        client = RTDETRClient(_endpoint(stack, ns, good), "http", timeout_s=60, threshold=0.0)
        assert_same(expected, client.detect([str(p) for p in served.images]))

        st = support.wait_phase(stack, ns, bad, {"Stalled"}, timeout=300, kind="rtdetrdeployment")
        said = " ".join(c.get("message") or "" for c in st.get("conditions") or [])
        assert "not RT-DETR's contract" in said, st
        assert "'pred_logits'" in said and "[batch, 3, H, W]" in said, st
        assert not support.pods(
            stack, ns, f"rtdetr.dev/deployment={bad},rtdetr.dev/component=triton"
        )
    finally:
        stack.kubectl("delete", "rtdetrdeployment", good, bad, "-n", ns, "--wait=true",
                      "--timeout=180s", check=False)  # fmt: skip


@dataclass
class RequestLoop:
    """Requests in a loop until stopped (at most ``limit``), counting outcomes."""

    client: RTDETRClient
    image: Path
    limit: int = 2000
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set() and self.ok + len(self.failures) < self.limit:
            try:
                self.client.detect([str(self.image)])
                self.ok += 1
            except Exception as err:  # every failure counts, whatever its type
                self.failures.append(f"{type(err).__name__}: {err}")
            time.sleep(0.05)


def test_a_new_model_rolls_out_without_a_failed_request(
    stack: localstack.Stack, served: Served
) -> None:
    ns = served.namespace
    before = support.status(stack, ns, "rtdetrdeployment", NAME)["model"]["revision"]
    _train(stack, ns, "model-b")
    loop = RequestLoop(RTDETRClient(_endpoint(stack, ns), "http", timeout_s=60), served.images[0])
    worker = threading.Thread(target=loop.run, daemon=True)
    worker.start()
    try:
        time.sleep(2)
        stack.kubectl(
            "patch", "rtdetrdeployment", NAME, "-n", ns, "--type=merge",
            "-p", '{"spec": {"model": {"training": {"name": "model-b"}}}}',
        )  # fmt: skip

        def rolled_out() -> dict | None:
            st = support.status(stack, ns, "rtdetrdeployment", NAME)
            model = st.get("model") or {}
            ready = st.get("phase") == "Ready" and model.get("revision") not in (None, before)
            return st if ready else None

        st = support.wait_for("the new model to serve", rolled_out, timeout=900)
        time.sleep(3)
    finally:
        loop.stop.set()
        worker.join(timeout=120)
    assert not loop.failures, loop.failures[:5]
    assert loop.ok >= 20, loop.ok
    after = st["model"]["revision"]
    model_b = served.exported("model-b", support.status(stack, ns, "rtdetrtraining", "model-b"))
    assert model_b.manifest.onnx_sha256.startswith(after)
    pods = support.pods(stack, ns, f"rtdetr.dev/deployment={NAME},rtdetr.dev/component=triton")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"]["rtdetr.dev/revision"] for p in live} == {after}
