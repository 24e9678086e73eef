"""spec.queueName: every Job of the run goes to Kueue's LocalQueue, suspended until admitted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rtdetr_operator.training import manifests
from rtdetr_operator.training.plan import Settings, World, plan
from rtdetr_operator.training.resolve import InvalidTrainingError, resolve
from tests.operator.factories import T0, job_from, training


def test_without_a_queue_jobs_start_at_once() -> None:
    job = manifests.training_job(resolve(training()), attempt=0)
    assert "suspend" not in job["spec"]
    assert manifests.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]


def test_a_queued_multi_node_run_is_one_suspended_job_for_all_ranks() -> None:
    r = resolve(training(queueName="team-a-gpus"))
    job = manifests.training_job(r, attempt=0)
    assert job["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "team-a-gpus"
    assert job["spec"]["suspend"] is True
    # One Workload with one pod set of every rank: admitted whole or not at all.
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == r.nodes == 2
    for task in ("evaluate", "export"):
        other = manifests.task_job(r, task, 0, None)
        assert other["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "team-a-gpus"
        assert other["spec"]["suspend"] is True


def test_a_queue_name_must_be_a_name() -> None:
    with pytest.raises(InvalidTrainingError, match=r"spec\.queueName"):
        resolve(training(queueName="Team A"))


def test_a_suspended_queued_job_is_reported_queued_never_stalled() -> None:
    body = training(queueName="team-a-gpus")
    r = resolve(body)
    job = job_from(manifests.training_job(r, attempt=0))
    later = T0 + timedelta(hours=2)  # far past any grace period for unscheduled pods
    world = World(training=body, jobs=[job], pods=[], configmap=None, service=None, now=later)
    p = plan(world, Settings())
    conditions = {c["type"]: c for c in p.status["conditions"]}
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Reconciling"]["reason"] == "Queued"
    assert (
        "waits for Kueue to admit all its pods (LocalQueue team-a-gpus)"
        in (conditions["Reconciling"]["message"])
    )
    assert not [o for o in p.create + p.replace + p.delete if o["kind"] == "Job"]  # left as is
