"""The I/O half of RTDETRDeployment reconciliation: read a deployment's world and plan it.

Applying the plan (status first, then deletions, creations and replacements, Events; a refused
child, such as a bad HPA behavior passed through or a quota, becomes a Warning event and a
Stalled condition) is shared with RTDETRTraining: :class:`rtdetr_operator.reconciler.
Reconciler`. What is the deployment's own: its world is its source RTDETRTraining plus every
child kind it owns, read by label, and a refused child turns the phase to Stalled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import Health
from rtdetr_operator.deployment.catalog_source import CatalogSource
from rtdetr_operator.deployment.conditions import deployment_conditions
from rtdetr_operator.deployment.kube import DeploymentKubeApi
from rtdetr_operator.deployment.names import LABEL_DEPLOYMENT
from rtdetr_operator.deployment.plan import Settings, World, plan
from rtdetr_operator.planning import Plan
from rtdetr_operator.pod_logs import LogReader, running_fetch_step
from rtdetr_operator.reconciler import Reconciler, utcnow
from rtdetr_spec.sources.report import FetchProgress

CHILD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")


@dataclass
class DeploymentReconciler(Reconciler):
    api: DeploymentKubeApi
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    #: Re-read GPU catalog (the chart's ConfigMap); None keeps ``settings.catalog``.
    catalog_source: CatalogSource | None = None
    reader: LogReader | None = None

    def __post_init__(self) -> None:
        if self.reader is None and self.settings.progress_interval > 0:
            self.reader = LogReader(self.api, self.settings.progress_interval)

    def observe(self, namespace: str, name: str) -> World | None:
        obj = self.api.get_reconciled(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        spec = obj.get("spec") or {}
        training_ref = ((spec.get("model") or {}).get("training") or {}).get("name")
        training = self.api.get_training(namespace, training_ref) if training_ref else None
        selector = f"{LABEL_DEPLOYMENT}={name}"
        children = {kind: self.api.list(kind, namespace, selector) for kind in CHILD_KINDS}
        pods = self.api.list("Pod", namespace, selector)
        return World(
            deployment=obj,
            training=training,
            jobs=self.api.list("Job", namespace, selector),
            pods=pods,
            apps=children["Deployment"],
            services=children["Service"],
            autoscalers=children["HorizontalPodAutoscaler"],
            budgets=children["PodDisruptionBudget"],
            routes=self._routes(spec, namespace, selector),
            now=self.clock(),
            fetch_progress=self._fetch_progress(namespace, name, obj, pods),
        )

    def _fetch_progress(
        self, namespace: str, name: str, obj: dict[str, Any], pods: list[dict[str, Any]]
    ) -> FetchProgress | None:
        """How far the repository Job's fetch step got downloading the model, when a read is
        due (a model named by URI; pod_logs.py)."""
        if self.reader is None:
            return None
        source = (obj.get("status") or {}).get("source") or {}
        job = source.get("job") if source.get("state") in ("Pending", "Running") else None
        step = running_fetch_step(pods, job) if job else None
        if step is None:
            self.reader.forget(namespace, name)
            return None
        return self.reader.read_fetch(namespace, name, *step)

    def _routes(self, spec: dict[str, Any], namespace: str, selector: str) -> list[dict[str, Any]]:
        """The endpoint's routes/Ingress: Gateway API kinds only when the spec asks for them
        (their CRDs are optional), so a cluster without Gateway API never sees a request."""
        endpoint = spec.get("endpoint") or {}
        kinds = ["Ingress"] + (["HTTPRoute", "GRPCRoute"] if endpoint.get("gateway") else [])
        return [o for kind in kinds for o in self.api.list(kind, namespace, selector)]

    def plan(self, namespace: str, name: str) -> tuple[dict[str, Any], Plan] | None:
        world = self.observe(namespace, name)
        if world is None:
            return None
        settings = self.settings
        if self.catalog_source is not None:
            settings = replace(settings, catalog=self.catalog_source.current())
        return world.deployment, plan(world, settings)

    def stalled_status(
        self, status: dict[str, Any], health: Health, generation: int | None
    ) -> dict[str, Any]:
        status["phase"] = "Stalled"
        status["conditions"] = deployment_conditions(
            status.get("conditions") or [],
            ready=False,
            health=health,
            now=self.clock(),
            generation=generation,
        )
        return status
