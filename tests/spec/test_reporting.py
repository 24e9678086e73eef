"""The termination-message contract every task Job shares (rtdetr_spec.reporting)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rtdetr_serving.task_summary import ServingTaskSummary
from rtdetr_spec.reporting import (
    MESSAGE_LIMIT,
    TERMINATION_LOG_ENV,
    TaskSummary,
    termination_log_path,
    write_termination_message,
)


def test_a_trainer_summary_drops_per_class_metrics_first() -> None:
    per_class = {f"class_{i:04d}": 0.5 for i in range(400)}
    summary = TaskSummary(
        task="evaluate", status="SUCCESS", message="ok",
        metrics={"mAP50": 0.81, "per_class_AP50": per_class},
    )  # fmt: skip
    assert len(summary.model_dump_json()) > MESSAGE_LIMIT
    back = json.loads(summary.to_message())
    assert back["metrics"] == {"mAP50": 0.81} and back["message"] == "ok"


def test_a_serving_summary_cuts_its_message_and_stays_valid_json() -> None:
    summary = ServingTaskSummary(task="repository", status="FAILURE", message="x" * 10_000)
    text = summary.to_message()
    assert len(text.encode()) <= MESSAGE_LIMIT
    back = json.loads(text)
    assert back["message"].endswith("...") and back["task"] == "repository"


def test_the_variable_names_the_file_and_it_is_replaced_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "termination-log"
    target.write_text("an earlier attempt's message")
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(target))
    summary = TaskSummary(task="train", status="SUCCESS", epoch=3, num_epochs=3)
    assert write_termination_message(summary) == target
    assert TaskSummary.model_validate_json(target.read_text()) == summary
    assert [p.name for p in tmp_path.iterdir()] == ["termination-log"]  # no temp file left


def test_outside_a_pod_it_goes_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TERMINATION_LOG_ENV, raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert termination_log_path() is None
    assert write_termination_message(TaskSummary(task="train", status="SUCCESS")) is None


def test_a_failed_write_is_a_warning_not_the_tasks_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    taken = tmp_path / "log"
    (taken / "a-folder-in-the-way").mkdir(parents=True)  # renaming a file over it fails
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(taken))
    with caplog.at_level(logging.WARNING):
        result = write_termination_message(ServingTaskSummary(task="repository", status="SUCCESS"))
    assert result is None
    assert "could not write the termination message" in caplog.text
