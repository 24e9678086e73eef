"""The I/O half of reconciliation: read the world, :func:`plan`, apply the plan.

Order matters and is fixed: (1) the status, written with the object's resourceVersion so a
reconcile that read a stale object loses (HTTP 409) instead of acting on it; (2) deletions;
(3) creations, where ``AlreadyExists`` means an earlier reconcile already did it; (4) Events,
best effort. A child the API server refuses (a bad affinity passed through, a quota) becomes a
Warning event and a Stalled condition carrying the server's message, and is retried later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rtdetr_operator.conditions import Health
from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_operator.training.conditions import kstatus
from rtdetr_operator.training.names import LABEL_TRAINING, Names
from rtdetr_operator.training.plan import Plan, Settings, World, plan

logger = logging.getLogger(__name__)

#: Seconds before retrying a child the API server refused.
REJECTED_RETRY = 30.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    api: KubeApi
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], datetime] = _utcnow

    def observe(self, namespace: str, name: str) -> World | None:
        training = self.api.get_training(namespace, name)
        if training is None or training["metadata"].get("deletionTimestamp"):
            return None
        selector = f"{LABEL_TRAINING}={name}"
        names = Names(name, namespace)
        return World(
            training=training,
            jobs=self.api.list_jobs(namespace, selector),
            pods=self.api.list_pods(namespace, selector),
            configmap=self.api.get("ConfigMap", namespace, names.configmap),
            service=self.api.get("Service", namespace, names.service),
            now=self.clock(),
        )

    def reconcile(self, namespace: str, name: str) -> float | None:
        """One level-based pass for a training; returns seconds until the next look (or None)."""
        world = self.observe(namespace, name)
        if world is None:
            return None
        p = plan(world, self.settings)
        training = world.training
        if p.status != training.get("status"):
            try:
                training = self.api.replace_status(training, p.status)
            except ApiError as e:
                if e.conflict:
                    logger.debug("%s/%s changed while reconciling; again", namespace, name)
                    return 0.1
                raise
        for obj in p.delete:
            self.api.delete(obj)
        rejected = self._apply(p)
        for ev in p.events:
            self._event(training, ev.type, ev.reason, ev.message)
        if rejected:
            self._stall(namespace, name, rejected)
            return REJECTED_RETRY
        return p.requeue_after

    def _apply(self, p: Plan) -> list[str]:
        rejected: list[str] = []
        for obj in p.create:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            try:
                self.api.create(obj)
                logger.info("created %s %s/%s", kind, obj["metadata"]["namespace"], obj_name)
            except ApiError as e:
                if e.conflict:
                    continue  # created by an earlier pass: names are deterministic
                if e.status in (400, 403, 422):
                    rejected.append(f"{kind} {obj_name} was refused: {e}")
                    continue
                raise
        for obj in p.replace:
            try:
                self.api.replace(obj)
            except ApiError as e:
                if not e.conflict:
                    raise
        return rejected

    def _stall(self, namespace: str, name: str, rejected: list[str]) -> None:
        message = "; ".join(rejected)
        training = self.api.get_training(namespace, name)
        if training is None:
            return
        self._event(training, "Warning", "ChildRejected", message)
        status = dict(training.get("status") or {})
        status["conditions"] = kstatus(
            status.get("conditions") or [],
            status.get("phase", "Pending"),
            Health("ChildRejected", message, stalled=True),
            now=self.clock(),
            generation=training["metadata"].get("generation"),
        )
        try:
            self.api.replace_status(training, status)
        except ApiError as e:
            if not e.conflict:
                raise

    def _event(self, training: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = training["metadata"]
        log = logger.warning if type_ == "Warning" else logger.info
        log("%s/%s %s: %s", meta["namespace"], meta["name"], reason, message)
        try:
            self.api.post_event(training, type_, reason, message)
        except ApiError as e:
            logger.warning("could not post event %s for %s: %s", reason, meta["name"], e)
