"""Reading pods: termination summaries (good, malformed, wrong task), failure lines, stuck pods."""

from __future__ import annotations

from rtdetr_operator.jobs import job_view, pod_view
from rtdetr_operator.training.manifests import training_job
from rtdetr_operator.training.resolve import resolve
from rtdetr_operator.training.results import failure_text, parse_summary
from tests.operator.factories import T0, job_from, pod, summary, training


def test_parse_summary() -> None:
    ok = parse_summary(summary("evaluate", metrics={"mAP50": 0.8}), "evaluate")
    assert ok.problem is None and ok.summary is not None
    assert ok.summary.metrics["mAP50"] == 0.8
    assert "empty termination message" in (parse_summary("", "train").problem or "")
    bad = parse_summary('{"task": "train", "status": "MAYBE"}', "train").problem or ""
    assert bad.startswith("malformed task summary (status:")
    junk = parse_summary("Killed", "train").problem or ""
    assert "malformed" in junk and "'Killed'" in junk
    other = parse_summary(summary("export"), "train").problem or ""
    assert "is for 'export', expected 'train'" in other


def _job():
    return job_from(training_job(resolve(training()), 0))


def test_failure_text_prefers_the_tasks_own_message() -> None:
    j = _job()
    msg = '{"task": "train", "status": "FAILURE", "message": "CUDA out of memory"}'
    p = pod_view(pod(j, 1, "Failed", exit_code=1, message=msg))
    assert failure_text(p) == "pod wh-train-0-1-abcde (node 1): exit code 1: CUDA out of memory"
    tail = pod_view(pod(j, 0, "Failed", exit_code=137, message="line1\nRuntimeError: x"))
    assert failure_text(tail).endswith("exit code 137: line1 RuntimeError: x")


def test_the_cause_not_the_sigtermed_peer_is_reported() -> None:
    j = _job()
    pods = [
        pod(j, 0, "Failed", exit_code=143, deleting=True),
        pod(j, 1, "Failed", exit_code=1, message="boom"),
    ]
    view = job_view(j, pods)
    assert view.failed and not view.active
    first = view.first_failure()
    assert first is not None and first.index == 1


def test_pods_of_other_jobs_are_ignored() -> None:
    j = _job()
    other = job_from(training_job(resolve(training()), 1))
    view = job_view(j, [pod(other, 0, "Failed")])
    assert view.pods == [] and not view.failed


def test_stuck_pods() -> None:
    j = _job()
    unsched = pod_view(pod(j, 0, "Pending", unschedulable_since=T0))
    assert unsched.stuck is not None and unsched.stuck.reason == "Unschedulable"
    assert unsched.stuck.since == T0
    pull = pod_view(pod(j, 0, "Pending", waiting="ErrImagePull"))
    assert pull.stuck is not None and pull.stuck.reason == "ErrImagePull"
    assert pod_view(pod(j, 0, "Pending")).stuck is None  # ContainerCreating is progress
