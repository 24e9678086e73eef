"""The I/O half of RTDETRTraining reconciliation: read a training's world and plan it.

Applying the plan (status first, then deletions, creations, Events; a refused child becomes a
Warning event and a Stalled condition) is shared with RTDETRDeployment:
:class:`rtdetr_operator.reconciler.Reconciler`. What is the training's own: which children
are read (its Jobs and their pods by label, the experiment ConfigMap and the headless Service by
name), and that a refused child leaves the phase as it is and marks the run Stalled through the
phase table of :mod:`rtdetr_operator.training.conditions`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import Health
from rtdetr_operator.kube import KubeApi
from rtdetr_operator.planning import Plan
from rtdetr_operator.pod_logs import LogReader, running_fetch_step
from rtdetr_operator.reconciler import Reconciler, utcnow
from rtdetr_operator.training.conditions import kstatus
from rtdetr_operator.training.live import leader_pod
from rtdetr_operator.training.names import LABEL_TRAINING, Names
from rtdetr_operator.training.plan import Settings, World, plan


@dataclass
class TrainingReconciler(Reconciler):
    api: KubeApi
    settings: Settings = field(default_factory=Settings)
    clock: Callable[[], datetime] = utcnow
    reader: LogReader | None = None

    def __post_init__(self) -> None:
        if self.reader is None and self.settings.progress_interval > 0:
            self.reader = LogReader(self.api, self.settings.progress_interval)

    def observe(self, namespace: str, name: str) -> World | None:
        training = self.api.get_reconciled(namespace, name)
        if training is None or training["metadata"].get("deletionTimestamp"):
            return None
        selector = f"{LABEL_TRAINING}={name}"
        names = Names(name, namespace)
        pods = self.api.list("Pod", namespace, selector)
        progress, fetch_progress = self._progress(namespace, name, training, pods)
        spec, status = training.get("spec") or {}, training.get("status") or {}
        ref = spec.get("resumeFrom") or spec.get("initFrom") or {}
        source = None
        if ref.get("training") and not status.get("startedFrom"):
            source = self.api.get_training(namespace, str(ref["training"]))
        experiment_ref = spec.get("experimentRef") or {}
        experiment_cm = None
        if experiment_ref.get("name"):
            experiment_cm = self.api.get("ConfigMap", namespace, str(experiment_ref["name"]))
        return World(
            training=training,
            jobs=self.api.list("Job", namespace, selector),
            pods=pods,
            configmap=self.api.get("ConfigMap", namespace, names.configmap),
            service=self.api.get("Service", namespace, names.service),
            now=self.clock(),
            progress=progress,
            fetch_progress=fetch_progress,
            source=source,
            experiment_configmap=experiment_cm,
        )

    def _progress(
        self, namespace: str, name: str, training: dict[str, Any], pods: list[dict[str, Any]]
    ) -> tuple[list[Any], Any]:
        """Progress lines of the running training's leader pod, or the progress of the fetch
        step it runs before training starts, when a read is due."""
        if self.reader is None:
            return [], None
        train = ((training.get("status") or {}).get("tasks") or {}).get("train") or {}
        job = train.get("job") if train.get("state") != "Succeeded" else None
        pod = leader_pod(pods, job) if job else None
        if pod is not None:
            final = pod["status"]["phase"] == "Succeeded"
            return self.reader.read(namespace, name, pod, final=final), None
        step = running_fetch_step(pods, job) if job else None
        if step is not None:
            return [], self.reader.read_fetch(namespace, name, *step)
        self.reader.forget(namespace, name)
        return [], None

    def plan(self, namespace: str, name: str) -> tuple[dict[str, Any], Plan] | None:
        world = self.observe(namespace, name)
        if world is None:
            return None
        return world.training, plan(world, self.settings)

    def stalled_status(
        self, status: dict[str, Any], health: Health, generation: int | None
    ) -> dict[str, Any]:
        status["conditions"] = kstatus(
            status.get("conditions") or [],
            status.get("phase", "Pending"),
            health,
            now=self.clock(),
            generation=generation,
        )
        return status
