"""The I/O half of reconciliation, shared by both kinds: read, plan, apply the plan.

Each kind reads its world and plans in its own package (``training/``, ``deployment/``); what
happens to a :class:`~rtdetr_operator.planning.Plan` is the same for both, in a fixed order:

1. the status, written with the object's resourceVersion, so a reconcile that read a stale
   object loses (HTTP 409, and it runs again at once) instead of acting on it;
2. deletions;
3. creations, where ``AlreadyExists`` means an earlier pass already did it (names are
   deterministic), then replacements, where a 409 means the object moved on and the next pass
   sees it;
4. Events, best effort.

Every string of the status, every Event and every log line about the object passes through
:func:`rtdetr_spec.redact.redact_text` on its way out: a secret-like value that reached a message
(a pod's termination message, an API server's refusal) is not published to whoever can read the
object.

A child the API server refuses (400/403/422: a bad affinity or HPA behavior passed through, a
quota) becomes a Warning event and a Stalled condition carrying the server's message, and is
retried after :data:`REJECTED_RETRY` seconds. Which conditions and phase say "stalled" is the
kind's own :meth:`Reconciler.stalled_status`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rtdetr_operator.conditions import Health
from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_operator.planning import Plan
from rtdetr_spec.redact import redact_strings, redact_text

#: Seconds before retrying a child the API server refused.
REJECTED_RETRY = 30.0
#: Seconds before looking again at an object that changed while it was being reconciled.
CONFLICT_RETRY = 0.1
#: HTTP statuses of a request the API server refused for what it said (not for a conflict).
REFUSED = (400, 403, 422)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler(ABC):
    """One level-based pass over one object; subclasses say how to read, plan and stall.

    Subclasses are dataclasses holding ``api`` (a :class:`KubeApi` for their kind), their
    planner's settings and ``clock``.
    """

    api: KubeApi
    clock: Callable[[], datetime]
    #: Told each object's status after a pass, None once it is gone (metrics.py); per instance.
    on_status: Callable[[str, str, dict[str, Any] | None], None] | None = None

    @property
    def log(self) -> logging.Logger:
        """The subclass's module logger, so each line says which kind's reconciler wrote it."""
        return logging.getLogger(type(self).__module__)

    @abstractmethod
    def plan(self, namespace: str, name: str) -> tuple[dict[str, Any], Plan] | None:
        """The object as read and what to do about it (None: it is gone or being deleted)."""

    @abstractmethod
    def stalled_status(
        self, status: dict[str, Any], health: Health, generation: int | None
    ) -> dict[str, Any]:
        """``status`` saying the object is stalled for ``health`` (a refused child)."""

    def reconcile(self, namespace: str, name: str) -> float | None:
        """One pass; returns seconds until the next look (or None)."""
        found = self.plan(namespace, name)
        if found is None:
            if self.on_status is not None:
                self.on_status(namespace, name, None)
            return None
        obj, p = found
        status = redact_strings(p.status)
        if self.on_status is not None:
            self.on_status(namespace, name, status)
        if status != obj.get("status"):
            try:
                obj = self.api.replace_status(obj, status)
            except ApiError as e:
                if e.conflict:
                    self.log.debug("%s/%s changed while reconciling; again", namespace, name)
                    return CONFLICT_RETRY
                raise
        for child in p.delete:
            self.api.delete(child)
            self.log.info("deleted %s %s/%s", child["kind"], namespace, child["metadata"]["name"])
        rejected = self._apply(p)
        for ev in p.events:
            self._event(obj, ev.type, ev.reason, ev.message)
        if rejected:
            self._stall(namespace, name, rejected)
            return REJECTED_RETRY
        return p.requeue_after

    def _apply(self, p: Plan) -> list[str]:
        """Create, then replace; the refusals, one sentence each."""
        rejected: list[str] = []
        writes = [(o, self.api.create, "created") for o in p.create]
        writes += [(o, self.api.replace, "replaced") for o in p.replace]
        for obj, write, verb in writes:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            try:
                write(obj)
                self.log.info("%s %s %s/%s", verb, kind, obj["metadata"]["namespace"], obj_name)
            except ApiError as e:
                if e.conflict:
                    continue  # created by an earlier pass, or changed meanwhile: next pass
                if e.status in REFUSED:
                    rejected.append(f"{kind} {obj_name} was refused: {e}")
                    continue
                raise
        return rejected

    def _stall(self, namespace: str, name: str, rejected: list[str]) -> None:
        message = redact_text("; ".join(rejected))
        obj = self.api.get_reconciled(namespace, name)
        if obj is None:
            return
        self._event(obj, "Warning", "ChildRejected", message)
        status = self.stalled_status(
            dict(obj.get("status") or {}),
            Health("ChildRejected", message, stalled=True),
            obj["metadata"].get("generation"),
        )
        try:
            self.api.replace_status(obj, status)
        except ApiError as e:
            if not e.conflict:
                raise

    def _event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        message = redact_text(message)
        say = self.log.warning if type_ == "Warning" else self.log.info
        say("%s/%s %s: %s", meta["namespace"], meta["name"], reason, message)
        try:
            self.api.post_event(obj, type_, reason, message)
        except ApiError as e:
            self.log.warning("could not post event %s for %s: %s", reason, meta["name"], e)
