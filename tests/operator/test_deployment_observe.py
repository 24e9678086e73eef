"""Reading Triton Deployments and build Jobs: rolled out or not, what a Job reported, stuck pods."""

from __future__ import annotations

from typing import Any

import pytest

from rtdetr_operator.conditions import Health
from rtdetr_operator.deployment.conditions import deployment_conditions
from rtdetr_operator.deployment.observe import failure, reported, rollout_view, stuck_pod
from rtdetr_operator.jobs import job_view
from tests.builders import engine_summary, sha
from tests.builders import failed_serving_summary as failed_summary
from tests.builders import repository_summary as repo_summary
from tests.operator.factories import T0, finish_job, job_from, later


def _deployment(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "wh-l4", "generation": generation},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"rtdetr.dev/revision": "abc"}}},
        },
        "status": status,
    }


def _st(observed: int, replicas: int, updated: int, available: int) -> dict[str, int]:
    return {
        "observedGeneration": observed,
        "replicas": replicas,
        "updatedReplicas": updated,
        "availableReplicas": available,
    }


@pytest.mark.parametrize(
    ("status", "rolled_out"),
    [
        (_st(2, 2, 2, 2), True),
        (_st(1, 2, 2, 2), False),
        (_st(2, 3, 2, 3), False),
        (_st(2, 2, 2, 1), False),
        ({}, False),
    ],
    ids=["done", "old-generation", "old-pod-left", "not-available", "no-status"],
)
def test_rolled_out_means_every_pod_new_and_available(status: dict, rolled_out: bool) -> None:
    view = rollout_view(_deployment(**status))
    assert view.rolled_out is rolled_out and view.revision == "abc"


def test_progress_deadline_is_reported() -> None:
    cond = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "ReplicaSet has timed out progressing.",
    }
    assert rollout_view(_deployment(conditions=[cond])).stuck_message == cond["message"]


def _job(name: str) -> dict[str, Any]:
    manifest = {
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": {}},
        "spec": {"template": {"metadata": {"labels": {}}}},
    }
    return job_from(manifest)


def _pod(job: dict[str, Any], phase: str, message: str | None, exit_code: int) -> dict:
    term: dict[str, Any] = {"exitCode": exit_code, "reason": "Error" if exit_code else "Completed"}
    if message is not None:
        term["message"] = message
    return {
        "metadata": {
            "name": f"{job['metadata']['name']}-x",
            "ownerReferences": [{"uid": job["metadata"]["uid"]}],
        },
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "rtdetr", "state": {"terminated": term}}],
        },
    }


def test_reported_summaries_are_checked_for_task_and_status() -> None:
    job = finish_job(_job("wh-repo-1"), True)
    ok = job_view(job, [_pod(job, "Succeeded", repo_summary(sha("a"), ["L4"]), 0)])
    got = reported(ok, "repository")
    assert got.problem is None and got.summary is not None and got.summary.gpus == ["L4"]
    wrong_task = job_view(job, [_pod(job, "Succeeded", engine_summary(sha("a"), "L4"), 0)])
    assert "reported task 'gen_trt_engine'" in (reported(wrong_task, "repository").problem or "")
    empty = job_view(job, [_pod(job, "Succeeded", None, 0)])
    assert "wrote no summary" in (reported(empty, "repository").problem or "")
    garbage = job_view(job, [_pod(job, "Succeeded", "Traceback: boom", 0)])
    assert "malformed summary" in (reported(garbage, "repository").problem or "")


def test_failure_quotes_the_commands_own_message_or_the_log_tail() -> None:
    job = finish_job(_job("wh-engine-l4-1"), False)
    msg = failed_summary("gen_trt_engine", "TensorRT 10.8.0 is not 10.13.3")
    text = failure(job_view(job, [_pod(job, "Failed", msg, 1)]))
    assert (
        text
        == "Job wh-engine-l4-1 (pod wh-engine-l4-1-x, exit code 1): TensorRT 10.8.0 is not 10.13.3"
    )
    tail = failure(job_view(job, [_pod(job, "Failed", "ImportError: libnvinfer.so.10", 1)]))
    assert tail.endswith("ImportError: libnvinfer.so.10")


def test_stuck_pods_name_the_reason_and_container() -> None:
    pod = {
        "metadata": {"name": "wh-l4-abc", "creationTimestamp": "2026-06-02T12:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "name": "tritonserver",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                }
            ]
        },
    }
    stuck = stuck_pod(pod)
    assert stuck is not None and stuck.reason == "ErrImagePull" and stuck.since == T0
    assert "container tritonserver" in stuck.message
    pod["metadata"]["deletionTimestamp"] = "2026-06-02T12:01:00Z"
    assert stuck_pod(pod) is None


def test_conditions_follow_the_table_and_keep_transition_times() -> None:
    c = deployment_conditions(
        [], ready=False, health=Health("Preparing", "x"), now=T0, generation=1
    )
    assert [(x["type"], x["status"]) for x in c] == [
        ("Ready", "False"),
        ("Reconciling", "True"),
        ("Stalled", "False"),
    ]
    c2 = deployment_conditions(
        c,
        ready=False,
        health=Health("EngineBuildFailed", "y", stalled=True),
        now=later(5),
        generation=1,
    )
    by = {x["type"]: x for x in c2}
    assert by["Stalled"]["status"] == "True" and by["Reconciling"]["status"] == "False"
    assert by["Ready"]["lastTransitionTime"] == c[0]["lastTransitionTime"]
    c3 = deployment_conditions(
        c2, ready=True, health=Health("Ready", "z"), now=later(9), generation=2
    )
    by = {x["type"]: x for x in c3}
    assert (by["Ready"]["status"], by["Stalled"]["status"]) == ("True", "False")
    assert by["Ready"]["observedGeneration"] == 2
