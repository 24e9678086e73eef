"""The I/O half of RTDETRDeployment reconciliation: read the world, plan, apply the plan.

Same order as the training's reconciler: (1) the status, guarded by the resourceVersion, so a
reconcile that read a stale object loses instead of acting on it; (2) deletions; (3) creations
(``AlreadyExists`` means an earlier pass did it) and replacements (a 409 means the object moved
on: the next pass sees it); (4) Events, best effort. A child the API server refuses (a bad
HPA behavior passed through, a quota) becomes a Warning event and a Stalled condition carrying
the server's message, and is retried later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtdetr_operator.deployment.conditions import deployment_conditions
from rtdetr_operator.deployment.kube import DeploymentKubeApi
from rtdetr_operator.deployment.names import LABEL_DEPLOYMENT
from rtdetr_operator.deployment.plan import Settings, World, plan
from rtdetr_operator.kube import ApiError
from rtdetr_operator.training.conditions import Health
from rtdetr_operator.training.plan import Plan

logger = logging.getLogger(__name__)

#: Seconds before retrying a child the API server refused.
REJECTED_RETRY = 30.0
CHILD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DeploymentReconciler:
    api: DeploymentKubeApi
    settings: Settings
    clock: Callable[[], datetime] = _utcnow

    def observe(self, namespace: str, name: str) -> World | None:
        obj = self.api.get_deployment(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        spec = obj.get("spec") or {}
        training_ref = ((spec.get("model") or {}).get("training") or {}).get("name")
        training = self.api.get_training(namespace, training_ref) if training_ref else None
        selector = f"{LABEL_DEPLOYMENT}={name}"
        children = {kind: self.api.list(kind, namespace, selector) for kind in CHILD_KINDS}
        return World(
            deployment=obj,
            training=training,
            jobs=self.api.list("Job", namespace, selector),
            pods=self.api.list("Pod", namespace, selector),
            apps=children["Deployment"],
            services=children["Service"],
            autoscalers=children["HorizontalPodAutoscaler"],
            budgets=children["PodDisruptionBudget"],
            now=self.clock(),
        )

    def reconcile(self, namespace: str, name: str) -> float | None:
        """One level-based pass; returns seconds until the next look (or None)."""
        world = self.observe(namespace, name)
        if world is None:
            return None
        p = plan(world, self.settings)
        obj = world.deployment
        if p.status != obj.get("status"):
            try:
                obj = self.api.replace_status(obj, p.status)
            except ApiError as e:
                if e.conflict:
                    logger.debug("%s/%s changed while reconciling; again", namespace, name)
                    return 0.1
                raise
        for child in p.delete:
            self.api.delete(child)
            logger.info("deleted %s %s/%s", child["kind"], namespace, child["metadata"]["name"])
        rejected = self._apply(p)
        for ev in p.events:
            self._event(obj, ev.type, ev.reason, ev.message)
        if rejected:
            self._stall(namespace, name, rejected)
            return REJECTED_RETRY
        return p.requeue_after

    def _apply(self, p: Plan) -> list[str]:
        rejected: list[str] = []
        for obj, write in [(o, self.api.create) for o in p.create] + [
            (o, self.api.replace) for o in p.replace
        ]:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            try:
                write(obj)
                verb = "created" if write == self.api.create else "replaced"
                logger.info("%s %s %s/%s", verb, kind, obj["metadata"]["namespace"], obj_name)
            except ApiError as e:
                if e.conflict:
                    continue  # created by an earlier pass, or changed meanwhile: next pass
                if e.status in (400, 403, 422):
                    rejected.append(f"{kind} {obj_name} was refused: {e}")
                    continue
                raise
        return rejected

    def _stall(self, namespace: str, name: str, rejected: list[str]) -> None:
        message = "; ".join(rejected)
        obj = self.api.get_deployment(namespace, name)
        if obj is None:
            return
        self._event(obj, "Warning", "ChildRejected", message)
        status: dict[str, Any] = dict(obj.get("status") or {})
        status["phase"] = "Stalled"
        status["conditions"] = deployment_conditions(
            status.get("conditions") or [],
            ready=False,
            health=Health("ChildRejected", message, stalled=True),
            now=self.clock(),
            generation=obj["metadata"].get("generation"),
        )
        try:
            self.api.replace_status(obj, status)
        except ApiError as e:
            if not e.conflict:
                raise

    def _event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        log = logger.warning if type_ == "Warning" else logger.info
        log("%s/%s %s: %s", meta["namespace"], meta["name"], reason, message)
        try:
            self.api.post_event(obj, type_, reason, message)
        except ApiError as e:
            logger.warning("could not post event %s for %s: %s", reason, meta["name"], e)
