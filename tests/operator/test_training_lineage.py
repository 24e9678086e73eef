"""Re-runs: a re-created RTDETRTraining trains from scratch; resumeFrom / initFrom are explicit."""

from __future__ import annotations

from typing import Any

import yaml

from rtdetr_operator.training import lineage, manifests
from rtdetr_operator.training.plan import Settings, World, plan
from rtdetr_operator.training.resolve import resolve
from tests.operator.factories import T0, training


def _plan(body: dict[str, Any], source: dict[str, Any] | None = None):
    world = World(
        training=body, jobs=[], pods=[], configmap=None, service=None, now=T0, source=source
    )
    return plan(world, Settings())


def _finished(name: str = "v1", **status: Any) -> dict[str, Any]:
    body = training(name)
    body["status"] = {
        "phase": "Succeeded",
        "resultsVolume": {"claimName": "rtdetr-results", "subPath": f"{name}-1a2b3c4d"}
        | {"mountPath": "/results"},
        "artifacts": {"checkpoint": "/results/train/model_epoch_071.pth"},
        **status,
    }
    return body


def _train_container(p) -> tuple[dict[str, Any], dict[str, Any]]:
    job = next(o for o in p.create if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_a_recreated_training_gets_its_own_results_folder() -> None:
    first, second = training("wh"), training("wh")
    second["metadata"]["uid"] = "0f1e2d3c-aaaa-bbbb-cccc-000000000000"
    a, b = resolve(first).results_sub_path, resolve(second).results_sub_path
    assert a != b and b == "wh-0f1e2d3c"
    # The status record wins, so a run started by an older operator keeps its folder.
    second["status"] = {"resultsVolume": {"subPath": "wh", "mountPath": "/results"}}
    assert resolve(second).results_sub_path == "wh"
    # An explicit subPath is the author's choice.
    storage = {"data": {"claimName": "d"}, "results": {"claimName": "r", "subPath": "shared"}}
    assert resolve(training(storage=storage)).results_sub_path == "shared"


def test_resume_from_a_training_mounts_its_folder_and_sets_the_env() -> None:
    body = training("v2", resumeFrom={"training": "v1"})
    p = _plan(body, source=_finished())
    started = p.status["startedFrom"]
    assert started["mode"] == "resume" and started["source"] == "training/v1"
    assert started["checkpoint"] == "/from/train/rtdetr_model_latest.pth"
    pod, c = _train_container(p)
    assert {"name": "from", "mountPath": "/from", "readOnly": True, "subPath": "v1-1a2b3c4d"} in (
        c["volumeMounts"]
    )
    claim = next(v for v in pod["volumes"] if v["name"] == "from")["persistentVolumeClaim"]
    assert claim == {"claimName": "rtdetr-results", "readOnly": True}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RTDETR_RESUME_FROM"] == "/from/train/rtdetr_model_latest.pth"
    # The record is used from now on: the source may be deleted without effect.
    again = training("v2", resumeFrom={"training": "v1"}, status=p.status)
    assert _plan(again, source=None).status["startedFrom"] == started


def test_init_from_a_training_sets_pretrained_model_path_to_its_trained_checkpoint() -> None:
    p = _plan(training("v2", initFrom={"training": "v1"}), source=_finished())
    cm = next(o for o in p.create if o["kind"] == "ConfigMap")
    exp = yaml.safe_load(cm["data"]["experiment.yaml"])
    assert exp["train"]["pretrained_model_path"] == "/from/train/model_epoch_071.pth"
    _, c = _train_container(p)
    assert "RTDETR_RESUME_FROM" not in {e["name"] for e in c["env"]}


def test_a_missing_or_running_source_stalls_and_is_retried() -> None:
    for source, words in ((None, "does not exist"), (_finished(phase="Training"), "is Training")):
        p = _plan(training("v2", resumeFrom={"training": "v1"}), source=source)
        assert p.create == [] and p.requeue_after == 10.0
        assert p.status["phase"] == "Pending"
        stalled = next(c for c in p.status["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "SourceNotReady"
        assert words in stalled["message"] and "spec.resumeFrom.training" in stalled["message"]


def test_checkpoint_references() -> None:
    r = resolve(training(resumeFrom={"checkpoint": "pvc://old-results/wh-0f1e2d3c/train/a.pth"}))
    found = lineage.resolve_lineage(r, None, None)
    assert found is not None and found.checkpoint == "/from/wh-0f1e2d3c/train/a.pth"
    vols, mounts = lineage.pod_volume(found)
    assert vols == [
        {"name": "from", "persistentVolumeClaim": {"claimName": "old-results", "readOnly": True}}
    ]
    assert mounts == [{"name": "from", "mountPath": "/from", "readOnly": True}]
    local = resolve(training(initFrom={"checkpoint": "/data/pretrained/r50.pth"}))
    found = lineage.resolve_lineage(local, None, None)
    assert found is not None and found.volume is None
    job = manifests.training_job(lineage.with_lineage(local, found), 0)
    assert all(v["name"] != "from" for v in job["spec"]["template"]["spec"]["volumes"])


def test_bad_references_fail_naming_the_field() -> None:
    cases = [
        ({"resumeFrom": {"checkpoint": "/elsewhere/a.pth"}}, "spec.resumeFrom.checkpoint: "),
        ({"resumeFrom": {"checkpoint": "pvc://x/../../etc"}}, "leaves the claim"),
        ({"initFrom": {"training": "wh"}}, "spec.initFrom.training: a run cannot start from"),
        ({"initFrom": {"training": "a", "checkpoint": "/data/a"}}, "exactly one of training"),
        (
            {"resumeFrom": {"training": "a"}, "initFrom": {"training": "b"}},
            "at most one of spec.resumeFrom and spec.initFrom",
        ),
    ]
    for spec, words in cases:
        p = _plan(training("wh", **spec), source=_finished("a"))
        ready = next(c for c in p.status["conditions"] if c["type"] == "Ready")
        assert p.status["phase"] == "Failed" and ready["reason"] == "InvalidSpec", spec
        assert words in ready["message"], (spec, ready["message"])
    body = training("wh", initFrom={"checkpoint": "/data/a.pth"})
    body["spec"]["experiment"]["train"]["pretrained_model_path"] = "/data/b.pth"
    ready = next(c for c in _plan(body).status["conditions"] if c["type"] == "Ready")
    assert "spec.experiment.train.pretrained_model_path is set too" in ready["message"]
