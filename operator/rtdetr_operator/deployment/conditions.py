"""kstatus conditions of an RTDETRDeployment, from the rollout's state: a pure function.

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
tools must show. The operator's condition helpers (``set_condition``) keep lastTransitionTime
stable while a condition's status does not flip.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtdetr_operator.training.conditions import Health, set_condition


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
    values = (
        ("Ready", ready and not stalled),
        ("Reconciling", not ready and not stalled),
        ("Stalled", stalled),
    )
    out = list(conditions)
    for type_, value in values:
        out = set_condition(
            out, type_, value, health.reason, health.message, now=now, generation=generation
        )
    return out
