"""kstatus conditions, the status contract both kinds share with GitOps tools.

RTDETRTraining and RTDETRDeployment both report ``Ready`` / ``Reconciling`` / ``Stalled``
metav1 conditions (kubernetes-sigs/cli-utils kstatus, which Flux implements and the Argo CD
health checks in ``deploy/gitops/`` mirror), each stamped with the ``observedGeneration`` it was
computed from. Which of the three is True is each kind's own decision
(:mod:`rtdetr_operator.training.conditions`, :mod:`rtdetr_operator.deployment.conditions`);
how a condition is written is decided once, here.

``lastTransitionTime`` only moves when a condition's status flips, so recomputing conditions
for an unchanged world yields an identical status (and no write).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: The conditions every status carries, in the order they are written.
KSTATUS_TYPES: tuple[str, ...] = ("Ready", "Reconciling", "Stalled")


@dataclass(frozen=True)
class Health:
    """Why the object is where it is: a CamelCase reason and a sentence.

    ``stalled`` says the desired state cannot be reached without a change (a bad spec, a
    refused child, a pod that cannot start), which is what GitOps tools must show as failed.
    """

    reason: str
    message: str
    stalled: bool = False


def timestamp(now: datetime) -> str:
    """A metav1.Time as the API server writes it (seconds, ``Z``)."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """A metav1.Time read back (None for an unset field)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


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


def set_kstatus(
    conditions: list[dict[str, Any]],
    *,
    ready: bool,
    reconciling: bool,
    stalled: bool,
    health: Health,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled set to the given values, all with ``health``'s words."""
    values = dict(zip(KSTATUS_TYPES, (ready, reconciling, stalled), strict=True))
    out = list(conditions)
    for type_ in KSTATUS_TYPES:
        out = set_condition(
            out, type_, values[type_], health.reason, health.message, now=now, generation=generation
        )
    return out


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition ``type_`` of a status, if it has one."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)
