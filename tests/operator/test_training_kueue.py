"""spec.queueName: every Job of the run goes to Kueue's LocalQueue, suspended until admitted."""

from __future__ import annotations

import pytest

from rtdetr_operator.training import manifests
from rtdetr_operator.training.resolve import InvalidTrainingError, resolve
from tests.operator.factories import training


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
