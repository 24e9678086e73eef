"""Which kstatus condition of an RTDETRTraining is True, from its phase: a pure function.

=================  =====  ===========  =======
state              Ready  Reconciling  Stalled
=================  =====  ===========  =======
Pending..Exporting False  True         False
stuck (no node..)  False  False        True
Suspended          False  False        False
Succeeded          True   False        False
Failed             False  False        True
=================  =====  ===========  =======

How the conditions are written (transition times, observedGeneration) is shared with
RTDETRDeployment: :mod:`rtdetr_operator.conditions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import Health, condition, set_kstatus

ACTIVE_PHASES = frozenset({"Pending", "Training", "Evaluating", "Exporting"})


def kstatus(
    conditions: list[dict[str, Any]],
    phase: str,
    health: Health,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for ``phase`` (see the table in the module docstring)."""
    return set_kstatus(
        conditions,
        ready=phase == "Succeeded",
        reconciling=phase in ACTIVE_PHASES and not health.stalled,
        stalled=phase == "Failed" or (phase in ACTIVE_PHASES and health.stalled),
        health=health,
        now=now,
        generation=generation,
    )


def carried_health(status: dict[str, Any], phase: str) -> Health:
    """Terminal runs keep the reason they ended with."""
    ready = condition(status, "Ready") or {}
    return Health(ready.get("reason") or phase, ready.get("message") or phase.lower())


def tasks_progress(status: dict[str, Any], planned: list[str] | tuple[str, ...] | None) -> str:
    """The Tasks column: ``2/3 evaluate``, ``3/3 done`` (``planned``: the run's tasks, if known)."""
    tasks = list(planned) if planned is not None else list((status.get("tasks") or {}).keys())
    if not tasks:
        return "0/0"
    records = status.get("tasks") or {}
    done = sum(1 for t in tasks if (records.get(t) or {}).get("state") == "Succeeded")
    if done == len(tasks):
        return f"{done}/{len(tasks)} done"
    current = next(t for t in tasks if (records.get(t) or {}).get("state") != "Succeeded")
    return f"{done + 1}/{len(tasks)} {current}"
