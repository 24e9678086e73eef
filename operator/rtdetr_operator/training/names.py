"""Deterministic names and labels of everything an RTDETRTraining owns.

Names are a pure function of the CR's name, the task and the task's attempt number recorded in
status, so a restarted operator finds exactly the objects it created before (and an
``AlreadyExists`` on create means "already done", never "make another one"). Attempts give a
recreated group a new Job name, so it never waits for the old Job's deletion to finish.

DNS limits: a Job's pods get the hostname ``<job>-<index>`` (63 characters at most) under the
headless Service, which is why CR names are capped at 40 characters (a CEL rule on the CRD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.children import app_labels, controller_name

LABEL_TRAINING = "rtdetr.dev/training"
LABEL_TASK = "rtdetr.dev/task"
LABEL_ATTEMPT = "rtdetr.dev/attempt"
#: Where the experiment ConfigMap is mounted in every task container.
EXPERIMENT_DIR = "/etc/rtdetr"
EXPERIMENT_FILE = "experiment.yaml"
EXPERIMENT_PATH = f"{EXPERIMENT_DIR}/{EXPERIMENT_FILE}"

TASK_COMPONENT = {"train": "training", "evaluate": "evaluation", "export": "export"}


@dataclass(frozen=True)
class Names:
    """Names of one RTDETRTraining's children."""

    training: str
    namespace: str

    def job(self, task: str, attempt: int) -> str:
        return f"{self.training}-{task}-{attempt}"

    @property
    def configmap(self) -> str:
        return f"{self.training}-experiment"

    @property
    def service(self) -> str:
        """The headless Service giving training pods stable DNS names (pod subdomain)."""
        return f"{self.training}-train"

    def master_addr(self, job: str) -> str:
        """Pod 0's stable hostname: ``<job>-0.<service>`` (resolved via the pod's search path)."""
        return f"{job}-0.{self.service}"


def labels(training: str, task: str | None = None, attempt: int | None = None) -> dict[str, str]:
    """Labels of a child: selectable by run, task and attempt, plus the app.kubernetes.io set."""
    component = TASK_COMPONENT.get(task, task) if task is not None else None
    out = {LABEL_TRAINING: training, **app_labels(training, component)}
    if task is not None:
        out[LABEL_TASK] = task
    if attempt is not None:
        out[LABEL_ATTEMPT] = str(attempt)
    return out


def parent_of(obj: dict[str, Any]) -> str | None:
    """Name of the RTDETRTraining controlling ``obj`` (by owner reference, else by label)."""
    return controller_name(obj, TRAINING.kind, LABEL_TRAINING)
