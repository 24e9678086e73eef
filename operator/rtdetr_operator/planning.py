"""What a planner returns, and the bookkeeping both kinds' planners share. Pure.

A planner first validates its CR (each kind's ``resolve``); a CR that cannot be acted on raises
an :class:`InvalidSpecError` whose problems are one line per field, starting with the field's
path as ``kubectl`` shows it, and the CR goes Stalled with exactly that text.

A planner reads one custom resource and everything labelled as its child (a ``World``, each
kind its own) and returns a :class:`Plan`: the status to write, the objects to create, replace
or delete, the Events to post and when to look again. :class:`rtdetr_operator.reconciler.
Reconciler` applies it. No I/O and no clock here: ``now`` comes with the world, so the same
world always gives the same plan, which is what makes reconciliation idempotent and testable
without a cluster.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from rtdetr_operator.jobs import job_view
from rtdetr_spec.redact import redact_text


class InvalidSpecError(ValueError):
    """A CR the operator cannot act on; ``problems`` are one line each, starting with the field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def field_problems(err: ValidationError, prefix: str = "spec.") -> list[str]:
    """pydantic's errors as ``<prefix><path>: <message>`` lines (validator wrappers left out)."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        lines.append(f"{prefix}{where}: {e['msg'].removeprefix('Value error, ')}")
    return lines


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


class PlannerBase:
    """Where both kinds' planners start from, and the bookkeeping they share.

    ``status`` is a deep copy of the object's status that the planner edits into the status to
    write (``changes.status`` is the same dict); ``old`` stays as read, so a planner can tell what
    changed (a phase transition is an Event, an unchanged Stalled reason is not posted again).
    """

    def __init__(
        self, obj: dict[str, Any], pods: list[dict[str, Any]], now: datetime, stuck_grace: float
    ) -> None:
        meta = obj["metadata"]
        self.now = now
        self.name: str = meta["name"]
        self.uid: str = meta.get("uid", "")
        self.generation: int | None = meta.get("generation")
        self.old: dict[str, Any] = obj.get("status") or {}
        self.status: dict[str, Any] = copy.deepcopy(self.old)
        self.changes = Plan(status=self.status)
        self.pods = pods
        #: Seconds a pod may be stuck (unschedulable, image not pullable) before Stalled.
        self.stuck_grace = stuck_grace

    def active(self, job: dict[str, Any]) -> bool:
        """Whether ``job`` still runs (or waits to) and is not on its way out."""
        view = job_view(job, self.pods)
        return view.active and not view.deleting

    def past_grace(self, since: datetime | None) -> bool:
        """Whether something stuck since ``since`` has been for the whole grace period.

        If not, the planner looks again when the grace period ends: a pod that starts meanwhile
        was never worth a Stalled condition.
        """
        waited = (self.now - since).total_seconds() if since else 0.0
        if waited < self.stuck_grace:
            self.requeue(self.stuck_grace - waited)
            return False
        return True

    def requeue(self, seconds: float) -> None:
        """Look again after ``seconds`` (at least 0.5; the earliest request wins)."""
        seconds = max(seconds, 0.5)
        current = self.changes.requeue_after
        self.changes.requeue_after = seconds if current is None else min(current, seconds)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.changes.events.append(Event(type_, reason, redact_text(message)))
