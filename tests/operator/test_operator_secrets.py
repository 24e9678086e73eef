"""No secret-like value reaches a CR's status, its Events or the operator's log."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from rtdetr_operator.conditions import Health
from rtdetr_operator.planning import Event, Plan
from rtdetr_operator.reconciler import Reconciler
from tests.operator.factories import pod, summary, training
from tests.operator.test_operator_plan import Sim

SECRET = "hunter2-Zq9"


def test_invalid_encryption_key_is_named_in_the_condition_but_never_quoted() -> None:
    t = training()
    t["spec"]["experiment"]["encryption_key"] = SECRET
    sim = Sim(t)
    p = sim.step()
    ready = sim.cond("Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.experiment.encryption_key" in ready["message"]
    assert SECRET not in str(sim.status)
    assert p.events and all(SECRET not in e.message for e in p.events)


def test_a_task_message_with_a_secret_is_redacted_in_events() -> None:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.step()
    msg = summary("train", status="FAILURE", message=f"quantize: api_token={SECRET} refused")
    bad = pod(sim.jobs["wh-train-0"], 0, "Failed", exit_code=2, message=msg)
    sim.pods[bad["metadata"]["name"]] = bad
    p = sim.step()
    assert sim.cond("Ready")["reason"] == "BadInput"
    assert p.events and all(SECRET not in e.message for e in p.events)


@dataclass
class _Api:
    """The API server's side of a reconcile pass, recorded."""

    obj: dict[str, Any]
    statuses: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def replace_status(self, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(status)
        return {**obj, "status": status}

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append(message)


@dataclass
class _Fixed(Reconciler):
    api: Any
    clock: Any
    fixed: Plan

    def plan(self, namespace: str, name: str) -> tuple[dict[str, Any], Plan] | None:
        return self.api.obj, self.fixed

    def stalled_status(
        self, status: dict[str, Any], health: Health, generation: int | None
    ) -> dict[str, Any]:
        return status


def test_reconciler_redacts_status_events_and_log(caplog: pytest.LogCaptureFixture) -> None:
    leak = f"exit 2: train failed: password={SECRET}"
    fixed = Plan(
        status={"phase": "Failed", "conditions": [{"type": "Ready", "message": leak}]},
        events=[Event("Warning", "Failed", leak)],
    )
    api = _Api({"metadata": {"name": "wh", "namespace": "ml"}, "status": {}})
    clock: Any = lambda: datetime(2026, 1, 1)  # noqa: E731
    with caplog.at_level(logging.INFO):
        _Fixed(api, clock, fixed).reconcile("ml", "wh")
    assert api.statuses and SECRET not in str(api.statuses)
    assert api.events and SECRET not in str(api.events)
    assert "password=<redacted>" in api.events[0]
    assert SECRET not in caplog.text and "Failed" in caplog.text
