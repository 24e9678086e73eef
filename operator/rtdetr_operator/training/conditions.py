"""kstatus conditions (Ready / Reconciling / Stalled) computed from the phase: a pure function.

Contract (kubernetes-sigs/cli-utils kstatus, which Flux implements and Argo CD's health checks
mirror):

=================  =====  ===========  =======
state              Ready  Reconciling  Stalled
=================  =====  ===========  =======
Pending..Exporting False  True         False
stuck (no node..)  False  False        True
Suspended          False  False        False
Succeeded          True   False        False
Failed             False  False        True
=================  =====  ===========  =======

``lastTransitionTime`` only moves when a condition's status flips, so recomputing conditions
for an unchanged world yields an identical status (and no write).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

ACTIVE_PHASES = frozenset({"Pending", "Training", "Evaluating", "Exporting"})


@dataclass(frozen=True)
class Health:
    """Why the run is where it is: a CamelCase reason and a sentence."""

    reason: str
    message: str
    stalled: bool = False


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set (others kept, order stable)."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != value
    cond: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": timestamp(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    if old is None:
        return [*conditions, cond]
    return [cond if c is old else c for c in conditions]


def kstatus(
    conditions: list[dict[str, Any]],
    phase: str,
    health: Health,
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for ``phase`` (see the table in the module docstring)."""
    ready = phase == "Succeeded"
    stalled = phase == "Failed" or (phase in ACTIVE_PHASES and health.stalled)
    reconciling = phase in ACTIVE_PHASES and not health.stalled
    out = list(conditions)
    for type_, value in (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled)):
        out = set_condition(
            out, type_, value, health.reason, health.message, now=now, generation=generation
        )
    return out


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)
