"""The planner as a state machine, driven over an in-memory world (apply each plan, re-plan)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import condition
from rtdetr_operator.planning import Plan
from rtdetr_operator.training.plan import Settings, World, plan
from tests.operator.factories import T0, finish_job, job_from, later, pod, summary, training


@dataclass
class Sim:
    """An API server stand-in applying plans as reconcile.py does (status, deletes, creates)."""

    training: dict[str, Any]
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    now: datetime = T0
    settings: Settings = field(default_factory=lambda: Settings(stuck_grace=30))
    writes: int = 0

    def world(self) -> World:
        return World(
            training=copy.deepcopy(self.training),
            jobs=[copy.deepcopy(j) for j in self.jobs.values()],
            pods=[copy.deepcopy(p) for p in self.pods.values()],
            configmap=self.objects.get("ConfigMap"),
            service=self.objects.get("Service"),
            now=self.now,
        )

    def step(self) -> Plan:
        p = plan(self.world(), self.settings)
        if p.status != self.training.get("status"):
            self.training["status"] = copy.deepcopy(p.status)
            self.writes += 1
        for obj in p.delete:
            name = obj["metadata"]["name"]
            self.jobs.pop(name, None)
            for pod_name in [n for n in self.pods if n.startswith(f"{name}-")]:
                self.pods.pop(pod_name)
        for obj in p.create:
            if obj["kind"] == "Job":
                self.jobs.setdefault(obj["metadata"]["name"], job_from(obj))
            else:
                self.objects.setdefault(obj["kind"], copy.deepcopy(obj))
        return p

    @property
    def status(self) -> dict[str, Any]:
        return self.training["status"]

    def cond(self, type_: str) -> dict[str, Any]:
        c = condition(self.status, type_)
        assert c is not None
        return c

    def run_pods(self, job: str, phase: str = "Running", **kw: Any) -> None:
        j = self.jobs[job]
        for i in range(j["spec"]["completions"]):
            p = pod(j, i, phase, **kw)
            self.pods[p["metadata"]["name"]] = p

    def finish(self, job: str, message: str | None = None) -> None:
        j = self.jobs[job]
        for i in range(j["spec"]["completions"]):
            p = pod(j, i, "Succeeded", message=message if i == 0 else None)
            self.pods[p["metadata"]["name"]] = p
        self.jobs[job] = finish_job(j, ok=True)


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def test_first_reconcile_creates_children_and_kstatus_conditions() -> None:
    sim = Sim(training())
    p = sim.step()
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in p.create)
    assert kinds == [("ConfigMap", "wh-experiment"), ("Job", "wh-train-0"), ("Service", "wh-train")]
    st = sim.status
    assert st["phase"] == "Pending" and st["observedGeneration"] == 1
    assert st["progress"] == "1/3 train" and st["nodes"] == 2 and st["gpus"] == 16
    assert sim.cond("Ready")["status"] == "False"
    assert sim.cond("Reconciling")["status"] == "True"
    assert sim.cond("Stalled")["status"] == "False"
    assert all(c["observedGeneration"] == 1 for c in st["conditions"])
    assert "JobCreated" in reasons(p)


def test_reconcile_is_idempotent() -> None:
    sim = Sim(training())
    sim.step()
    sim.step()  # the Job now exists: the message says so
    writes = sim.writes
    p = sim.step()
    assert p.create == [] and p.delete == [] and p.events == []
    assert sim.writes == writes  # nothing changed, nothing written


def test_full_lifecycle_train_evaluate_export() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.now = later(5)
    p = sim.step()
    assert sim.status["phase"] == "Training" and "Training" in reasons(p)
    assert sim.status["tasks"]["train"]["state"] == "Running"

    ckpt = "/results/train/model_epoch_029.pth"
    done = summary("train", epoch=30, num_epochs=30, artifacts={"checkpoint": ckpt})
    sim.finish("wh-train-0", done)
    sim.now = later(100)
    p = sim.step()
    assert sim.status["phase"] == "Evaluating"
    train = sim.status["tasks"]["train"]
    assert (train["state"], train["epoch"], train["numEpochs"]) == ("Succeeded", 30, 30)
    assert sim.status["artifacts"]["checkpoint"] == ckpt
    (ev,) = [o for o in p.create if o["kind"] == "Job"]
    assert ev["metadata"]["name"] == "wh-evaluate-0"
    command = ev["spec"]["template"]["spec"]["containers"][0]["command"]
    assert f"evaluate.checkpoint={ckpt}" in command
    assert sim.status["progress"] == "2/3 evaluate"

    metrics = {"mAP": 0.61, "mAP50": 0.836, "per_class_AP50": {"person": 0.94, "pallet": None}}
    sim.finish("wh-evaluate-0", summary("evaluate", metrics=metrics))
    p = sim.step()
    assert sim.status["metrics"] == {
        "mAP": 0.61,
        "mAP50": 0.836,
        "perClassAP50": {"person": 0.94, "pallet": None},
    }
    assert sim.status["phase"] == "Exporting" and sim.status["exportJob"] == "wh-export-0"

    artifacts = {
        "onnx": "/results/export/wh.onnx",
        "onnx_fp16": "/results/export/wh.fp16.onnx",
        "nvdsinfer_config": "/results/export/nvdsinfer_config.yaml",
        "manifest": "/results/export/wh.manifest.json",
    }
    sim.finish("wh-export-0", summary("export", artifacts=artifacts))
    sim.now = later(200)
    p = sim.step()
    st = sim.status
    assert st["phase"] == "Succeeded" and st["progress"] == "3/3 done"
    assert st["artifacts"]["onnxFp16"] == "/results/export/wh.fp16.onnx"
    assert st["artifacts"]["nvdsinferConfig"].endswith("nvdsinfer_config.yaml")
    assert st["completionTime"] == "2026-06-02T12:03:20Z"
    assert sim.cond("Ready")["status"] == "True"
    assert sim.cond("Reconciling")["status"] == "False"
    assert "mAP50 0.836" in sim.cond("Ready")["message"]
    assert "Succeeded" in reasons(p)
    assert sim.step().events == []  # terminal and quiet


def test_a_failed_pod_restarts_the_whole_group() -> None:
    sim = Sim(training(maxRestarts=2))
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    failed = pod(sim.jobs["wh-train-0"], 1, "Failed", exit_code=1, message="NCCL timeout")
    sim.pods[failed["metadata"]["name"]] = failed
    p = sim.step()
    st = sim.status
    assert st["restarts"] == 1
    assert st["tasks"]["train"]["attempt"] == 1 and st["trainingJob"] == "wh-train-1"
    assert [o["metadata"]["name"] for o in p.create] == ["wh-train-1"]
    assert p.delete == []  # the failed group's Job stays for its logs
    (warning,) = [e for e in p.events if e.reason == "Restarting"]
    assert warning.type == "Warning"
    assert "wh-train-0-1-abcde (node 1): exit code 1: NCCL timeout" in warning.message
    assert st["phase"] == "Training"  # a restarted group is still training


def test_restarts_are_bounded_then_failed_and_stalled() -> None:
    sim = Sim(training(maxRestarts=0))
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    sim.run_pods("wh-train-0", "Failed", exit_code=1, message="boom")
    p = sim.step()
    assert sim.status["phase"] == "Failed"
    assert sim.cond("Stalled")["status"] == "True"
    assert sim.cond("Ready")["reason"] == "BackoffLimitExceeded"
    assert "boom" in sim.cond("Ready")["message"]
    assert [e.type for e in p.events if e.reason == "Failed"] == ["Warning"]
    # raising maxRestarts lets the same run go on
    sim.training["spec"]["maxRestarts"] = 1
    sim.training["metadata"]["generation"] = 2
    p = sim.step()
    assert sim.status["phase"] == "Training" and sim.status["restarts"] == 1
    assert [o["metadata"]["name"] for o in p.create] == ["wh-train-1"]
    assert sim.status["observedGeneration"] == 2


def test_unschedulable_pods_stall_after_the_grace_period() -> None:
    sim = Sim(training())
    sim.step()
    job = sim.jobs["wh-train-0"]
    for i in range(2):
        p = pod(job, i, "Pending", unschedulable_since=T0)
        sim.pods[p["metadata"]["name"]] = p
    sim.now = later(10)
    p = sim.step()
    assert sim.cond("Stalled")["status"] == "False"
    assert p.requeue_after == 20
    sim.now = later(31)
    p = sim.step()
    assert sim.status["phase"] == "Pending"
    stalled = sim.cond("Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in stalled["message"]
    assert sim.cond("Reconciling")["status"] == "False"
    assert [e.type for e in p.events if e.reason == "Unschedulable"] == ["Warning"]
    assert sim.step().events == []  # reported once


def test_image_pull_errors_stall_too() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0", "Pending", waiting="ImagePullBackOff")
    sim.now = later(60)
    sim.step()
    assert sim.cond("Stalled")["reason"] == "ImagePullBackOff"


def test_unwritable_results_stall_without_restarting_until_suspend_is_toggled() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    why = "cannot write /results/train/model_epoch_004.pth: No space left on device (ENOSPC)"
    msg = summary("train", status="FAILURE", message=f"exit 3: {why}")
    full = pod(sim.jobs["wh-train-0"], 0, "Failed", exit_code=3, message=msg)
    sim.pods[full["metadata"]["name"]] = full
    p = sim.step()
    assert p.create == [] and p.delete == []
    assert sim.status["phase"] == "Training" and sim.status["restarts"] == 0
    stalled = sim.cond("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "OutputUnwritable")
    assert why in stalled["message"] and "spec.suspend" in stalled["message"]
    assert sim.cond("Reconciling")["status"] == "False"
    assert reasons(p).count("OutputUnwritable") == 1
    sim.now = later(600)
    p = sim.step()  # nothing changes by itself: no retry, no second event
    assert p.create == [] and "OutputUnwritable" not in reasons(p)
    assert sim.status["restarts"] == 0
    sim.training["spec"]["suspend"] = True  # the volume was fixed
    sim.step()
    assert sim.status["phase"] == "Suspended"
    sim.training["spec"]["suspend"] = False
    p = sim.step()
    assert [o["metadata"]["name"] for o in p.create] == ["wh-train-1"]
    assert sim.status["restarts"] == 0 and sim.status["phase"] == "Training"


def test_suspend_deletes_the_group_and_resume_starts_a_new_one() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    sim.training["spec"]["suspend"] = True
    p = sim.step()
    assert [o["metadata"]["name"] for o in p.delete] == ["wh-train-0"]
    assert sim.status["phase"] == "Suspended"
    assert sim.cond("Ready")["reason"] == "Suspended"
    assert sim.cond("Reconciling")["status"] == "False"
    assert sim.step().delete == []
    sim.training["spec"]["suspend"] = False
    sim.now = later(50)
    p = sim.step()
    assert [o["metadata"]["name"] for o in p.create] == ["wh-train-1"]
    assert "Resumed" in reasons(p)
    assert sim.status["restarts"] == 0  # a resume is not a failure
    assert sim.status["startTime"] == "2026-06-02T12:00:50Z"


def test_active_deadline() -> None:
    sim = Sim(training(activeDeadlineSeconds=100))
    p = sim.step()
    assert p.requeue_after == 100
    sim.run_pods("wh-train-0")
    sim.now = later(101)
    p = sim.step()
    assert sim.status["phase"] == "Failed"
    assert sim.cond("Ready")["reason"] == "DeadlineExceeded"
    assert [o["metadata"]["name"] for o in p.delete] == ["wh-train-0"]


def test_a_deleted_child_job_is_recreated() -> None:
    sim = Sim(training())
    sim.step()
    sim.jobs.clear()
    p = sim.step()
    assert [o["metadata"]["name"] for o in p.create] == ["wh-train-0"]


def test_a_same_named_job_of_a_previous_incarnation_is_waited_for() -> None:
    sim = Sim(training())
    sim.step()
    old = sim.jobs["wh-train-0"]
    old["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-wh"
    p = sim.step()
    assert p.create == [] and p.requeue_after == 2.0
    assert "being deleted" in sim.cond("Reconciling")["message"]


def test_invalid_spec_fails_with_the_field_named() -> None:
    t = training()
    t["spec"]["experiment"]["model"]["nheads"] = 7
    sim = Sim(t)
    p = sim.step()
    assert p.create == []
    assert sim.status["phase"] == "Failed"
    ready = sim.cond("Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.experiment.model: hidden_dim 256 is not divisible by nheads 7" in ready["message"]
    assert sim.cond("Stalled")["status"] == "True"


def test_malformed_summary_warns_and_the_run_goes_on() -> None:
    sim = Sim(training(export={"enabled": False}))
    sim.step()
    sim.finish("wh-train-0", "Traceback (most recent call last): ...")
    p = sim.step()
    (w,) = [e for e in p.events if e.reason == "MalformedTaskSummary"]
    assert w.type == "Warning" and "Traceback" in w.message
    assert sim.status["phase"] == "Evaluating"
    ev = sim.jobs["wh-evaluate-0"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert not any(a.startswith("evaluate.checkpoint=") for a in ev)  # experiment's default
    sim.finish("wh-evaluate-0", None)
    p = sim.step()
    assert "NoTaskSummary" in reasons(p) and sim.status["phase"] == "Succeeded"


def test_accuracy_gate_stops_before_export() -> None:
    sim = Sim(training(evaluation={"minMAP50": 0.9}))
    sim.step()
    sim.finish("wh-train-0", summary("train"))
    sim.step()
    sim.finish("wh-evaluate-0", summary("evaluate", metrics={"mAP50": 0.8}))
    p = sim.step()
    assert sim.status["phase"] == "Failed"
    assert sim.cond("Ready")["reason"] == "AccuracyBelowThreshold"
    assert not any(o["metadata"]["name"].startswith("wh-export") for o in p.create)


def test_a_task_reporting_failure_is_a_failure() -> None:
    sim = Sim(training())
    sim.step()
    sim.finish("wh-train-0", '{"task": "train", "status": "FAILURE", "message": "loss is NaN"}')
    p = sim.step()
    assert sim.status["restarts"] == 1
    assert "loss is NaN" in next(e.message for e in p.events if e.reason == "Restarting")


def test_explicit_checkpoints_are_respected() -> None:
    t = training()
    t["spec"]["experiment"]["evaluate"]["checkpoint"] = "/results/train/model_epoch_010.pth"
    sim = Sim(t)
    sim.step()
    sim.finish("wh-train-0", summary("train", artifacts={"checkpoint": "/results/x.pth"}))
    sim.step()
    cmd = sim.jobs["wh-evaluate-0"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert not any(a.startswith("evaluate.checkpoint=") for a in cmd)


def test_configmap_drift_is_repaired() -> None:
    sim = Sim(training())
    sim.step()
    sim.objects["ConfigMap"]["data"]["experiment.yaml"] = "tampered"
    sim.objects["ConfigMap"]["metadata"]["resourceVersion"] = "7"
    p = sim.step()
    (cm,) = p.replace
    assert cm["metadata"]["resourceVersion"] == "7"
    assert "results_dir: /results" in cm["data"]["experiment.yaml"]


def test_a_job_without_pods_stalls() -> None:
    sim = Sim(training())
    sim.step()
    sim.now = later(45)
    sim.step()
    stalled = sim.cond("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "NoPods")
    assert "kubectl describe job wh-train-0" in stalled["message"]


def test_bad_input_exit_code_fails_without_restarting() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    msg = summary("train", status="FAILURE", message="val_data_sources.json_file: no such file")
    bad = pod(sim.jobs["wh-train-0"], 0, "Failed", exit_code=2, message=msg)
    sim.pods[bad["metadata"]["name"]] = bad
    p = sim.step()
    assert sim.status["phase"] == "Failed" and sim.status["restarts"] == 0
    ready = sim.cond("Ready")
    assert ready["reason"] == "BadInput"
    assert "val_data_sources.json_file: no such file" in ready["message"]
    assert p.create == []


def test_evaluation_and_export_use_the_best_checkpoint_when_asked() -> None:
    artifacts = {"checkpoint": "/results/train/last.pth", "best_model": "/results/best.pth"}
    for choice, evaluated in (("last", "last.pth"), ("best", "best.pth")):
        sim = Sim(training(evaluation={"checkpoint": choice}, export={"checkpoint": choice}))
        sim.step()
        sim.finish("wh-train-0", summary("train", artifacts=artifacts))
        sim.step()
        cmd = sim.jobs["wh-evaluate-0"]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert [a for a in cmd if a.startswith("evaluate.checkpoint=")] == [
            f"evaluate.checkpoint=/results/{'train/' if choice == 'last' else ''}{evaluated}"
        ]
        sim.finish("wh-evaluate-0", summary("evaluate"))
        sim.step()
        cmd = sim.jobs["wh-export-0"]["spec"]["template"]["spec"]["containers"][0]["command"]
        assert any(a.endswith(evaluated) for a in cmd if a.startswith("export.checkpoint=")), cmd
    sim = Sim(training(evaluation={"checkpoint": "best"}))  # no best was written: the last one
    sim.step()
    sim.finish("wh-train-0", summary("train", artifacts={"checkpoint": "/results/last.pth"}))
    sim.step()
    cmd = sim.jobs["wh-evaluate-0"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "evaluate.checkpoint=/results/last.pth" in cmd
