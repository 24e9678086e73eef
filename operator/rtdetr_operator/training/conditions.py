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

from rtdetr_operator.conditions import Health, set_kstatus

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
