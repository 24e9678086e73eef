"""Which kstatus condition of an RTDETRDeployment is True, from the rollout's state: pure.

=========================================  =====  ===========  =======
state                                      Ready  Reconciling  Stalled
=========================================  =====  ===========  =======
waiting for the source, preparing,         False  True         False
building engines, rolling out, scaling
every pool serves the current model        True   False        False
invalid spec, missing/failed source,       False  False        True
failed build, stuck rollout, refused child
=========================================  =====  ===========  =======

A failed build of a *new* model leaves the old one serving (``status.model`` says which) and
still reads Stalled: the desired state cannot be reached without a change, which is what GitOps
tools must show. How the conditions are written (lastTransitionTime stable while a condition's
status does not flip, observedGeneration) is shared with RTDETRTraining:
:mod:`rtdetr_operator.conditions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import Health, set_kstatus


def deployment_conditions(
    conditions: list[dict[str, Any]],
    *,
    ready: bool,
    health: Health,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for one reconcile (see the table above)."""
    stalled = health.stalled
    return set_kstatus(
        conditions,
        ready=ready and not stalled,
        reconciling=not ready and not stalled,
        stalled=stalled,
        health=health,
        now=now,
        generation=generation,
    )
