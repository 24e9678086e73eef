"""What a planner returns, and the bookkeeping both kinds' planners share. Pure.

A planner reads one custom resource and everything labelled as its child (a ``World``, each
kind its own) and returns a :class:`Plan`: the status to write, the objects to create, replace
or delete, the Events to post and when to look again. :class:`rtdetr_operator.reconciler.
Reconciler` applies it. No I/O and no clock here: ``now`` comes with the world, so the same
world always gives the same plan, which is what makes reconciliation idempotent and testable
without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class Plan:
    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    replace: list[dict[str, Any]] = field(default_factory=list)
    delete: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
