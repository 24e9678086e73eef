"""What the training planner reads: the world at one instant, and the operator's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_spec.progress import ProgressReport
from rtdetr_spec.sources.report import FetchProgress


@dataclass(frozen=True)
class World:
    """Everything the reconciler read, at one instant."""

    training: dict[str, Any]
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    configmap: dict[str, Any] | None
    service: dict[str, Any] | None
    now: datetime
    #: The RTDETRTraining named by spec.resumeFrom/initFrom.training (None: absent or unused).
    source: dict[str, Any] | None = None
    #: The ConfigMap spec.experimentRef names (None: absent or unused).
    experiment_configmap: dict[str, Any] | None = None
    #: Progress lines read from the running training's leader pod (training/live.py).
    progress: list[ProgressReport] = field(default_factory=list)
    #: The newest progress line of the fetch step running in the leader pod, if one was read.
    fetch_progress: FetchProgress | None = None


@dataclass(frozen=True)
class Settings:
    #: Seconds a pod may stay unschedulable (or unable to pull its image) before Stalled.
    stuck_grace: float = 60.0
    #: Let CRs use node-level volume sources such as hostPath (policy.py; off by default).
    allow_node_volumes: bool = False
    #: Seconds between reads of a running training's progress lines (0: never read).
    progress_interval: float = 30.0
