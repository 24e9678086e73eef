"""What one pass of the RTDETRDeployment planner works on: the world it read and the status
and changes it has decided so far.

The stages (:mod:`~rtdetr_operator.deployment.plan`: source, repository, engines;
:mod:`~rtdetr_operator.deployment.plan_pools`: pools, promotion, cleanup, status;
:mod:`~rtdetr_operator.deployment.plan_endpoint`: the endpoint) are plain functions of a
:class:`Rollout`; what several stages ask or record (an engine's record, whether a revision can
be served by a pool, a stuck Job, converging a child) lives here, once. Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.children import owned_by, split_owned
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.names import ANNOTATION_SPEC_HASH
from rtdetr_operator.deployment.observe import failure
from rtdetr_operator.deployment.resolve import ResolvedDeployment, ResolvedPool
from rtdetr_operator.jobs import JobView
from rtdetr_operator.planning import PlannerBase
from rtdetr_serving.catalog import GpuCatalog
from rtdetr_spec.sources.report import FetchProgress


@dataclass(frozen=True)
class World:
    """Everything the reconciler read about one RTDETRDeployment, at one instant."""

    deployment: dict[str, Any]
    training: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    services: list[dict[str, Any]]
    autoscalers: list[dict[str, Any]]
    budgets: list[dict[str, Any]]
    now: datetime
    #: HTTPRoutes, GRPCRoutes and Ingresses of the deployment's endpoint (each with its kind).
    routes: list[dict[str, Any]] = field(default_factory=list)
    #: The newest progress line of the repository Job's running fetch step, if one was read.
    fetch_progress: FetchProgress | None = None


@dataclass(frozen=True)
class Settings:
    catalog: GpuCatalog
    defaults: OperatorDefaults = field(default_factory=OperatorDefaults)
    #: Seconds a build or Triton pod may be unschedulable (or not pull its image) before Stalled.
    stuck_grace: float = 60.0
    #: Let CRs use node-level volume sources such as hostPath (policy.py; off by default).
    allow_node_volumes: bool = False
    #: Seconds between reads of a model download's progress lines (0: never read).
    progress_interval: float = 30.0


def spec_hash(obj: dict[str, Any] | None) -> str | None:
    """The builder's hash a child carries (``rtdetr.dev/spec-hash``), None for no object."""
    if obj is None:
        return None
    return (obj["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH)


class Rollout(PlannerBase):
    """One deployment's planning pass: typed state every stage reads and writes.

    ``resolved`` is None until the spec resolved (an invalid spec stops at :func:`finish`);
    ``problems`` (Stalled) and ``progress`` (Reconciling) collect (reason, message) pairs the
    status is written from.
    """

    def __init__(self, world: World, settings: Settings) -> None:
        super().__init__(world.deployment, world.pods, world.now, settings.stuck_grace)
        self.world, self.settings = world, settings
        self.jobs, self.foreign_jobs = split_owned(world.jobs, self.uid)
        self.apps, self.foreign_apps = split_owned(world.apps, self.uid)
        self.services, _ = split_owned(world.services, self.uid)
        self.hpas, _ = split_owned(world.autoscalers, self.uid)
        self.pdbs, _ = split_owned(world.budgets, self.uid)
        self.routes = {
            (o["kind"], o["metadata"]["name"]): o for o in world.routes if owned_by(o, self.uid)
        }
        self.problems: list[tuple[str, str]] = []
        self.progress: list[tuple[str, str]] = []
        self.resolved: ResolvedDeployment | None = None

    def engine_record(self, revision: str, gpu: str) -> dict[str, Any]:
        engines = self.status.setdefault("engines", [])
        for e in engines:
            if e.get("revision") == revision and e.get("gpu") == gpu:
                return e  # type: ignore[no-any-return]
        rec = {"revision": revision, "gpu": gpu, "state": "Pending"}
        engines.append(rec)
        return rec

    def engine_state(self, revision: str, gpu: str) -> str | None:
        for e in self.status.get("engines") or []:
            if e.get("revision") == revision and e.get("gpu") == gpu:
                return e.get("state")  # type: ignore[no-any-return]
        return None

    def has(self, revision: dict[str, Any], pool: ResolvedPool) -> bool:
        """Whether ``revision`` (a status model record) can be served by ``pool``."""
        if pool.is_cpu:
            return pool.name in (revision.get("gpus") or [])
        return self.engine_state(revision["revision"], pool.name) == "Succeeded"

    def target_ready(self) -> bool:
        target = self.status.get("target")
        if not target or self.resolved is None:
            return False
        return all(self.has(target, p) for p in self.resolved.pools)

    def converge(self, want: dict[str, Any], live: dict[str, Any] | None) -> None:
        if live is None:
            self.changes.create.append(want)
            return
        if spec_hash(live) == spec_hash(want):
            return
        want = copy.deepcopy(want)
        want["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        if want["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if key in (live.get("spec") or {}):
                    want["spec"][key] = live["spec"][key]
        self.changes.replace.append(want)

    def job_failed(self, rec: dict[str, Any], view: JobView, reason: str, what: str) -> None:
        first = rec.get("state") != "Failed"
        rec.update(state="Failed", message=rec.get("message") if not first else failure(view))
        if "gpu" in rec:
            rec["reason"] = reason
        if first:
            self.event("Warning", reason, f"{what}: {rec['message']}")

    def check_stuck_job(self, view: JobView) -> None:
        stuck = view.stuck()
        if stuck is not None:
            self.stuck(stuck.reason, stuck.message, stuck.since)

    def stuck(self, reason: str, message: str, since: datetime | None) -> None:
        """A stuck pod or Job stalls the rollout once it has been stuck for the grace period."""
        if self.past_grace(since):
            self.problems.append((reason, message))

    def wait(self, phase: str, message: str) -> None:
        """Something else must finish first (an earlier object's Job): look again soon."""
        self.progress.append((phase, message))
        self.requeue(2.0)
