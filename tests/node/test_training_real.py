"""RTDETRTraining for real: pods on the real node train, evaluate and export; failures recover.

Everything here runs in namespaces that enforce Pod Security "restricted", so the real API
server admits every pod the operator creates only if it passes that standard.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from tests.node import support
from tests.node.support import localstack

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

CLASSES = ["person", "agility_digit", "gr1_t2", "nova_carter", "transporter", "forklift", "pallet"]
SIZE = 128


@pytest.fixture(scope="module")
def data_ns(stack: localstack.Stack) -> Iterator[str]:
    """One namespace with the example's dataset (120 images), shared by the trainings here."""
    ns = support.new_namespace(stack)
    support.dataset(stack, ns, num_images=120, size=SIZE)
    support.apply(stack, ns, support.results_claim())
    yield ns
    stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _on_volume(root: Path, artifact: str, mount: str = "/results") -> Path:
    """An artifact path as the pods saw it, on this machine (the results claim's subPath)."""
    assert artifact.startswith(mount + "/"), artifact
    return root / artifact.removeprefix(mount + "/")


def _real_node(stack: localstack.Stack) -> str:
    nodes = stack.get("nodes", "-l", "rtdetr.dev/real-node=true")["items"]
    assert len(nodes) == 1
    return str(nodes[0]["metadata"]["name"])


def test_two_pods_rendezvous_train_evaluate_and_export(
    stack: localstack.Stack, data_ns: str
) -> None:
    name = "lifecycle"
    support.apply(stack, data_ns, support.training(name, epochs=3, size=SIZE))
    # While it trains, `kubectl get rtt` shows rank 0's epoch, percent and ETA (from its log).
    row = support.wait_live_progress(stack, data_ns, name, timeout=900)
    assert re.fullmatch(r"[0-3]/3", row["EPOCH"]) and re.fullmatch(r"\d+[hms]\S*", row["ETA"]), row
    assert 0 <= int(row["PROGRESS"]) < 100, row
    st = support.wait_phase(stack, data_ns, name, {"Succeeded", "Failed"}, timeout=1200)
    assert st["phase"] == "Succeeded", support.describe(stack, data_ns)
    assert st["restarts"] == 0
    # The final validation (read from the finished pod's log) is in status and an Event.
    live = st["trainingProgress"]
    assert (live["percent"], live["epochs"]) == (100, "3/3")
    assert live["validation"]["epoch"] == 3 and "mAP50" in live["validation"]
    validated = stack.kubectl(
        "get", "events", "-n", data_ns, "--field-selector",
        f"involvedObject.name={name},reason=Validated", "-o", "jsonpath={.items[*].message}",
    )  # fmt: skip
    assert "epoch 3/3: mAP50" in validated, support.describe(stack, data_ns)

    # Two real pods on the real node, rank 0 found through the headless Service's DNS name.
    pods = support.pods(stack, data_ns, f"rtdetr.dev/training={name},rtdetr.dev/task=train")
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} == {_real_node(stack)}
    rank0 = next(p for p in pods if p["metadata"]["labels"].get(
        "batch.kubernetes.io/job-completion-index") == "0")  # fmt: skip
    log0 = support.logs(stack, data_ns, f"pod/{rank0['metadata']['name']}")
    assert "launching: torchrun" in log0, log0[-3000:]
    assert re.search(r"epoch 3/3 .*took", log0), log0[-3000:]
    assert "saved /results/train/" in log0
    env = {e["name"]: e.get("value") for e in rank0["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"{name}-train-0-0.{name}-train"

    # Per-class AP50 computed in this run: the evaluation's own metrics.json says the same.
    # the run's own folder on the claim: status.resultsVolume.subPath (<name>-<uid prefix>)
    root = support.volume_path(stack, data_ns, "rtdetr-results") / st["resultsVolume"]["subPath"]
    metrics = json.loads((root / "evaluate" / "metrics.json").read_text())
    assert st["metrics"]["mAP50"] == pytest.approx(metrics["mAP50"], abs=1e-6)
    assert set(st["metrics"]["perClassAP50"]) == set(CLASSES)
    assert st["tasks"]["train"]["epoch"] == st["tasks"]["train"]["numEpochs"] == 3

    # The export Job's files, read back from the volume.
    arts = st["artifacts"]
    for key in ("checkpoint", "onnx", "onnxFp16", "manifest", "labels", "nvdsinferConfig"):
        assert key in arts, arts
        assert _on_volume(root, arts[key]).stat().st_size > 0, key
    graph = onnx.load(str(_on_volume(root, arts["onnx"])))
    assert [i.name for i in graph.graph.input] == ["inputs"]
    manifest = json.loads(_on_volume(root, arts["manifest"]).read_text())
    onnx_bytes = _on_volume(root, arts["onnx"]).read_bytes()
    assert manifest["onnx_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    background = manifest.get("background_index")
    names = [c for i, c in enumerate(manifest["class_names"]) if i != background]
    assert names == CLASSES


def _kill_container(stack: localstack.Stack, pod: dict) -> None:
    """SIGKILL the pod's container from the node, as the kernel's OOM killer would."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    socket = stack.cluster.containerd_socket
    assert socket is not None
    subprocess.run(
        ["ctr", f"--address={socket}", "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", cid],
        check=True,
        capture_output=True,
    )


def test_a_pod_killed_mid_epoch_restarts_the_group_from_the_checkpoint(
    stack: localstack.Stack, data_ns: str
) -> None:
    name = "resume"
    cr = support.training(name, epochs=4, size=SIZE)
    cr["spec"]["experiment"]["dataset"]["batch_size"] = 4  # more steps: a wider window
    support.apply(stack, data_ns, cr)
    selector = f"rtdetr.dev/training={name},rtdetr.dev/task=train,rtdetr.dev/attempt=0"

    def mid_epoch_two() -> dict | None:
        pods = support.pods(stack, data_ns, selector)
        rank0 = [p for p in pods if p["metadata"]["name"].startswith(f"{name}-train-0-0-")]
        if not rank0 or rank0[0]["status"].get("phase") != "Running":
            return None
        log = support.logs(stack, data_ns, f"pod/{rank0[0]['metadata']['name']}")
        if "saved /results/train/" in log and re.search(r"epoch 2/4  step \d+/", log):
            return next(p for p in pods if p["metadata"]["name"].startswith(f"{name}-train-0-1-"))
        return None

    victim = support.wait_for("epoch 2 under way", mid_epoch_two, timeout=900, interval=1)
    _kill_container(stack, victim)

    st = support.wait_phase(stack, data_ns, name, {"Succeeded", "Failed"}, timeout=1200)
    assert st["phase"] == "Succeeded", support.describe(stack, data_ns)
    assert st["restarts"] == 1
    assert st["tasks"]["train"]["attempt"] == 1
    assert st["tasks"]["train"]["epoch"] == 4
    events = stack.kubectl("get", "events", "-n", data_ns, "--field-selector",
                           f"involvedObject.name={name}", check=False)  # fmt: skip
    assert "Restarting" in events and "137" in events, events
    resumed = support.logs(stack, data_ns, f"job/{name}-train-1")
    found = re.search(r"resuming from /results/train/\S+\.pth: epoch (\d) done", resumed)
    assert found, resumed[-3000:]
    done = int(found.group(1)) + 1  # epochs finished before the kill (at least the first)
    assert done in (1, 2)
    # Nothing before the checkpoint is trained again; everything after it is.
    assert f"epoch {done}/4" not in resumed and f"epoch {done + 1}/4" in resumed


def test_a_broken_annotation_fails_the_run_with_the_trainers_message(
    stack: localstack.Stack,
) -> None:
    ns = support.new_namespace(stack)
    try:
        support.dataset(
            stack,
            ns,
            num_images=40,
            size=SIZE,
            corrupt="coco['annotations'][0]['image_id'] = 987654",
        )
        name = "broken"
        support.apply(
            stack, ns, support.results_claim(), support.training(name, epochs=1, size=SIZE)
        )
        st = support.wait_phase(stack, ns, name, {"Succeeded", "Failed"}, timeout=600)
        assert st["phase"] == "Failed"
        stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "BadInput", stalled
        assert "train.json" in stalled["message"] and "987654" in stalled["message"], stalled
        assert st["restarts"] == 0  # retrying cannot fix the data
        pods = support.pods(stack, ns, f"rtdetr.dev/training={name},rtdetr.dev/task=train")
        codes = {
            s["state"]["terminated"]["exitCode"]
            for p in pods
            for s in p["status"].get("containerStatuses", [])
            if "terminated" in s["state"]
        }
        assert 2 in codes, codes
    finally:
        stack.kubectl("delete", "namespace", ns, "--wait=false", check=False)
