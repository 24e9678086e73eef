"""kstatus conditions: the table in conditions.py, and transition times that only move on flips."""

from __future__ import annotations

import pytest

from rtdetr_operator.training.conditions import Health, kstatus
from tests.operator.factories import T0, later


def _by_type(conds: list[dict]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in conds}


@pytest.mark.parametrize(
    ("phase", "stalled", "expected"),
    [
        ("Pending", False, {"Ready": "False", "Reconciling": "True", "Stalled": "False"}),
        ("Training", False, {"Ready": "False", "Reconciling": "True", "Stalled": "False"}),
        ("Pending", True, {"Ready": "False", "Reconciling": "False", "Stalled": "True"}),
        ("Suspended", False, {"Ready": "False", "Reconciling": "False", "Stalled": "False"}),
        ("Succeeded", False, {"Ready": "True", "Reconciling": "False", "Stalled": "False"}),
        ("Failed", True, {"Ready": "False", "Reconciling": "False", "Stalled": "True"}),
    ],
)
def test_kstatus_table(phase: str, stalled: bool, expected: dict[str, str]) -> None:
    conds = kstatus([], phase, Health("R", "m", stalled=stalled), now=T0, generation=4)
    assert _by_type(conds) == expected
    assert all(c["observedGeneration"] == 4 and c["reason"] == "R" for c in conds)


def test_transition_time_moves_only_when_status_flips() -> None:
    first = kstatus([], "Training", Health("Training", "1/2"), now=T0, generation=1)
    same = kstatus(first, "Training", Health("Training", "2/2"), now=later(60), generation=1)
    assert [c["lastTransitionTime"] for c in same] == [c["lastTransitionTime"] for c in first]
    assert same[0]["message"] == "2/2"
    done = kstatus(same, "Succeeded", Health("Succeeded", "ok"), now=later(90), generation=1)
    times = {c["type"]: c["lastTransitionTime"] for c in done}
    assert times["Ready"] == times["Reconciling"] == "2026-06-02T12:01:30Z"
    assert times["Stalled"] == "2026-06-02T12:00:00Z"  # was False, still False
