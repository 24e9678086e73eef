"""Sources for real: a training on the real node reads its dataset and its pretrained checkpoint
from an S3 server (SeaweedFS, hack/s3server.py) listening on the node's address, through the
fetch steps' init containers and a shared cache claim; an identical second run downloads
nothing. The credentials come from a Secret and appear in no status, event or log of the run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from clusterkit import nodehost

from rtdetr_serving.client import RTDETRClient
from rtdetr_spec.artifacts import ExportManifest
from rtdetr_spec.sources import report
from rtdetr_spec.sources.fetch import S3Settings
from tests.node import support
from tests.node.slowlink import SlowLink
from tests.node.support import localstack
from tests.serving.conftest import ExportedModel
from tests.serving.test_triton_inference import onnxruntime_results

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

SIZE = 128
ACCESS, SECRET = "rtdetr-node", "n0de-s3cr3t-never-shown"
DATA = "s3://warehouse/datasets/local/"
PRETRAINED = "s3://warehouse/pretrained/local_r18.pth"


#: Seconds the pretrained checkpoint takes to download through the slow link.
DOWNLOAD_S = 25


@dataclass
class Bucket:
    namespace: str
    endpoint: str
    images: int  # objects under DATA + "images/"
    slow_endpoint: str  # the same server behind a link that makes the checkpoint take DOWNLOAD_S


def _pretrained_checkpoint(path: Path, experiment: dict) -> None:
    """A TAO-layout checkpoint of the example's model (its own random weights)."""
    import torch

    from rtdetr_spec.loading import validate_experiment
    from rtdetr_trainer.model.build import build_model
    from rtdetr_trainer.model.weights import to_tao_state_dict

    exp = validate_experiment(experiment)
    size = exp.dataset.augmentation.eval_spatial_size
    model = build_model(exp.model, exp.dataset.num_classes, (size[0], size[1]))
    torch.save({"state_dict": to_tao_state_dict(model)}, path)


@pytest.fixture(scope="module")
def bucket(stack: localstack.Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucket]:
    import s3server  # hack/, on the tests' path

    ns = support.new_namespace(stack)
    support.dataset(stack, ns, num_images=60, size=SIZE)
    server = s3server.start(
        tmp_path_factory.mktemp("weed"), ACCESS, SECRET, host=nodehost.node_ip()
    )
    try:
        client = S3Settings(server.endpoint, ACCESS, SECRET).client()
        support.wait_for("the S3 bucket", lambda: _create_bucket(client), 60)
        data = support.volume_path(stack, ns, "warehouse-data") / "warehouse"
        files = [p for p in sorted(data.rglob("*")) if p.is_file()]
        prefix = DATA.removeprefix("s3://warehouse/")
        for p in files:
            client.upload_file(str(p), "warehouse", prefix + str(p.relative_to(data)))
        ckpt = tmp_path_factory.mktemp("ckpt") / "local_r18.pth"
        _pretrained_checkpoint(ckpt, _from_s3("x", server.endpoint)["spec"]["experiment"])
        client.upload_file(str(ckpt), "warehouse", PRETRAINED.removeprefix("s3://warehouse/"))
        host, port = server.endpoint.removeprefix("http://").split(":")
        rate = max(ckpt.stat().st_size // DOWNLOAD_S, 64 * 1024)
        link = SlowLink(nodehost.node_ip(), (host, int(port)), rate).start()
        # The data volume is deleted from the namespace: the runs can only read from S3.
        stack.kubectl("delete", "job", "--all", "-n", ns, "--wait=true")
        stack.kubectl("delete", "pvc", "warehouse-data", "-n", ns, "--wait=false")
        cache = support.results_claim()
        cache["metadata"]["name"] = "source-cache"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials"},
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(ACCESS.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(SECRET.encode()).decode(),
            },
        }
        support.apply(stack, ns, support.results_claim(), cache, secret)
        images = sum(1 for p in files if p.relative_to(data).parts[0] == "images")
        yield Bucket(ns, server.endpoint, images, link.endpoint)
    finally:
        if "link" in locals():
            link.stop()
        server.stop()
        stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _create_bucket(client) -> bool:
    try:
        client.create_bucket(Bucket="warehouse")
        return True
    except Exception as e:  # the filer behind the S3 port needs a moment
        return "BucketAlreadyExists" in str(e) or "BucketAlreadyOwnedByYou" in str(e)


def _from_s3(name: str, endpoint: str) -> dict:
    cr = support.training(name, epochs=1, size=SIZE, nodes=1)
    spec = cr["spec"]
    del spec["storage"]["data"]
    spec["sources"] = {
        "cache": {"claimName": "source-cache"},
        "secretName": "s3-credentials",
        "s3Endpoint": endpoint,
    }
    dataset = spec["experiment"]["dataset"]
    images = DATA + "images/"
    dataset["train_data_sources"] = [
        {"image_dir": images, "json_file": DATA + "annotations/train.json"}
    ]
    dataset["val_data_sources"] = {"image_dir": images, "json_file": DATA + "annotations/val.json"}
    dataset["test_data_sources"] = {
        "image_dir": images,
        "json_file": DATA + "annotations/test.json",
    }
    spec["overrides"] = [f"train.pretrained_model_path={PRETRAINED}"]
    return cr


def _run(stack: localstack.Stack, bucket: Bucket, name: str) -> dict:
    support.apply(stack, bucket.namespace, _from_s3(name, bucket.slow_endpoint))
    return _succeeded(stack, bucket, name)


def _succeeded(stack: localstack.Stack, bucket: Bucket, name: str) -> dict:
    st = support.wait_phase(stack, bucket.namespace, name, {"Succeeded", "Failed"}, timeout=1200)
    assert st["phase"] == "Succeeded", support.describe(stack, bucket.namespace)
    return st


@pytest.fixture(scope="module")
def downloading(stack: localstack.Stack, bucket: Bucket) -> list[dict]:
    """``status.sources`` of the first training from S3 as seen while its checkpoint was
    downloading over the slow link (then the run is left to finish: :func:`first`)."""
    support.apply(stack, bucket.namespace, _from_s3("from-s3", bucket.slow_endpoint))

    def probe() -> list[dict] | None:
        st = support.status(stack, bucket.namespace, "rtdetrtraining", "from-s3")
        if st.get("phase") not in (None, "Pending", "Training"):
            raise AssertionError(f"from-s3 got to {st.get('phase')} unseen downloading:\n{st}")
        sources = st.get("sources") or []
        shown = [s for s in sources if s.get("state") == "Fetching" and "percent" in s]
        return sources if shown and shown[0]["percent"] < 100 else None

    return support.wait_for("a source shown downloading", probe, 600, interval=1.0)


@pytest.fixture(scope="module")
def first(stack: localstack.Stack, bucket: Bucket, downloading: list[dict]) -> dict:
    """The status of the first training from S3 (shared by the tests here)."""
    return _succeeded(stack, bucket, "from-s3")


def test_a_download_in_progress_shows_in_status(downloading: list[dict], first: dict) -> None:
    """Mid-download: the checkpoint Fetching with its bytes so far and its size (the steps
    before it Fetched, the ones after Pending); the size the summary gives later agrees."""
    states = [s["state"] for s in downloading]
    at = states.index("Fetching")
    assert states == ["Fetched"] * at + ["Fetching"] + ["Pending"] * (len(states) - at - 1)
    shown = downloading[at]
    assert 0 <= shown["transferred"] < shown["size"], shown
    done = {s["uri"]: s for s in first["sources"]}[shown["uri"]]
    assert done["size"] == shown["size"] and done["state"] == "Fetched", (shown, done)


def test_a_training_reads_dataset_and_checkpoint_from_s3_and_a_second_downloads_nothing(
    stack: localstack.Stack, bucket: Bucket, first: dict
) -> None:
    sources = {s["uri"]: s for s in first["sources"]}
    assert set(sources) == {
        DATA + "images/",
        DATA + "annotations/train.json",
        DATA + "annotations/val.json",
        DATA + "annotations/test.json",
        PRETRAINED,
    }, first["sources"]
    assert all(s["transferred"] > 0 and s["cached"] is False for s in sources.values()), sources
    assert all(s["state"] == "Fetched" for s in sources.values()), sources
    assert sources[DATA + "images/"]["files"] == bucket.images
    _progress_lines_are_readable_from_the_kubelet(stack, bucket.namespace, "from-s3", sources)
    assert first["metrics"]["mAP50"] is not None, first  # evaluated on the fetched test split

    second = _run(stack, bucket, "from-s3-again")
    again = {s["uri"]: s for s in second["sources"]}
    assert set(again) == set(sources)
    for uri, s in again.items():
        assert s["cached"] is True and s["transferred"] == 0, (uri, s)
        assert s["sha256"] == sources[uri]["sha256"], uri  # the same content

    shown = stack.kubectl("get", "rtt,events", "-n", bucket.namespace, "-o", "yaml")
    assert SECRET not in shown and ACCESS not in shown
    for pod in support.pods(stack, bucket.namespace, "rtdetr.dev/training"):
        for c in pod["spec"]["containers"]:  # the trainer never gets the credentials
            assert "envFrom" not in c, pod["metadata"]["name"]


def _progress_lines_are_readable_from_the_kubelet(
    stack: localstack.Stack, namespace: str, name: str, sources: dict[str, dict]
) -> None:
    """What the operator shows while a step downloads is there in the real container logs: each
    step's newest progress line, read back through the pod log API, says all its bytes came,
    and a Fetched event names each source."""
    selector = f"rtdetr.dev/training={name},rtdetr.dev/task=train"
    leader = support.pods(stack, namespace, selector)[0]
    steps = [c["name"] for c in leader["spec"]["initContainers"]]
    assert len(steps) == len(sources), steps
    for step in steps:
        log = support.logs(stack, namespace, leader["metadata"]["name"], container=step)
        summary = json.loads(log.splitlines()[-1])
        size = sources[summary["uri"]]["size"]
        assert report.latest(log) == report.FetchProgress(size, size), (step, log[-2000:])
    events = stack.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    fetched = [e["message"] for e in events["items"] if e["reason"] == "Fetched"]
    assert sorted(m.split(": ", 1)[0] for m in fetched) == sorted(sources), fetched
    assert all(m.endswith(", downloaded") for m in fetched), fetched


def test_a_deployment_serves_an_onnx_from_s3_that_has_no_manifest(
    stack: localstack.Stack, bucket: Bucket, first: dict, tmp_path: Path
) -> None:
    ns = bucket.namespace
    results = support.volume_path(stack, ns, "rtdetr-results") / first["resultsVolume"]["subPath"]
    onnx = results / first["artifacts"]["onnx"].removeprefix("/results/")
    key = "models/from-s3/warehouse.onnx"  # the ONNX alone: no manifest, no labels.txt
    S3Settings(bucket.endpoint, ACCESS, SECRET).client().upload_file(str(onnx), "warehouse", key)
    manifest = ExportManifest.read(onnx)
    cr = support.of_kind(support.example("deployment.yaml"), "RTDETRDeployment")
    cr["metadata"]["name"] = "from-uri"
    cr["spec"]["model"] = {
        "uri": {"uri": f"s3://warehouse/{key}", "classNames": list(manifest.class_names)}
    }
    cr["spec"]["sources"] = {
        "cache": {"claimName": "source-cache"},
        "secretName": "s3-credentials",
        "s3Endpoint": bucket.slow_endpoint,  # the ONNX takes about as long as the checkpoint
    }
    cr["spec"]["repository"] = {"claimName": "rtdetr-results"}
    support.apply(stack, ns, cr)

    def downloading() -> dict | None:
        st = support.status(stack, ns, "rtdetrdeployment", "from-uri")
        if st.get("phase") not in (None, "Pending", "Preparing"):
            raise AssertionError(f"from-uri got to {st.get('phase')} unseen downloading:\n{st}")
        source = st.get("source") or {}
        return source if source.get("fetching") and source.get("percent", 100) < 100 else None

    shown = support.wait_for("the model shown downloading", downloading, 600, interval=1.0)
    assert 0 <= shown["transferred"] < shown["size"] == onnx.stat().st_size, shown
    st = support.wait_phase(stack, ns, "from-uri", {"Ready"}, timeout=600, kind="rtdetrdeployment")
    assert "fetching" not in st["source"] and st["source"]["state"] == "Succeeded", st["source"]
    assert manifest.onnx_sha256.startswith(st["model"]["revision"])  # the very same bytes

    client = S3Settings(bucket.endpoint, ACCESS, SECRET).client()
    listed = client.list_objects_v2(Bucket="warehouse", Prefix="datasets/local/images/")
    images = []
    for obj in listed["Contents"][:4]:  # what the dataset Job made, fetched back from S3
        images.append(tmp_path / obj["Key"].rsplit("/", 1)[-1])
        client.download_file("warehouse", obj["Key"], str(images[-1]))
    expected = onnxruntime_results(ExportedModel(onnx, manifest), images, threshold=0.0)
    svc = stack.get("service", "from-uri-cpu", "-n", ns)
    triton = RTDETRClient(f"{svc['spec']['clusterIP']}:8000", "http", timeout_s=60, threshold=0.0)
    got = triton.detect([str(p) for p in images])
    assert all(r.detections for r in expected)  # every query: the comparison is never empty
    for want, have in zip(expected, got, strict=True):
        assert [d.label for d in want.detections] == [d.label for d in have.detections]
        assert np.allclose(
            [d.score for d in want.detections], [d.score for d in have.detections], atol=1e-4
        )
        assert all(d.category_id is None for d in have.detections)  # no manifest: no COCO ids
