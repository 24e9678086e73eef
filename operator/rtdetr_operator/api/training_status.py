"""``RTDETRTraining.status``: what the run is doing, what it produced, kstatus conditions.

GitOps tools read three things (see docs/operator.md): ``observedGeneration`` (has the operator
seen the latest spec?), and the metav1 conditions ``Ready`` / ``Reconciling`` / ``Stalled``, which
are set from the first reconcile on so a run never looks "done" before it started. Everything
else is for people: phase, progress, per-task records, metrics and artifact paths.

``status.kopf`` is kept free-form: kopf stores handler progress there when its annotations
storage is unavailable, and a structural schema would otherwise prune it (kopf issue #574).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from rtdetr_operator.api.meta import ApiModel, Conditions, PassThrough
from rtdetr_operator.api.progress import TrainingProgress

Phase = Literal[
    "Pending", "Training", "Evaluating", "Exporting", "Succeeded", "Failed", "Suspended"
]
PHASES: tuple[str, ...] = (
    "Pending",
    "Training",
    "Evaluating",
    "Exporting",
    "Succeeded",
    "Failed",
    "Suspended",
)
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})

TaskName = Literal["train", "evaluate", "export"]
TaskState = Literal["Pending", "Running", "Succeeded", "Failed"]


class TaskRecord(ApiModel):
    """One task (train, evaluate, export) of the run: its current Job and outcome."""

    state: TaskState = "Pending"
    """Pending, Running, Succeeded or Failed."""
    attempt: int = Field(default=0, ge=0)
    """Which Job generation runs the task (<name>-<task>-<attempt>); a restart adds one."""
    job: str | None = None
    """Name of the task's current Job."""
    start_time: datetime | None = None
    """When all of the task's pods were first running."""
    completion_time: datetime | None = None
    """When the task succeeded."""
    message: str | None = None
    """The task's own summary (its termination message), or why it failed."""
    epoch: int | None = None
    """Last epoch the task reported (training)."""
    num_epochs: int | None = None
    """Epochs the task was configured for (training)."""


class Tasks(ApiModel):
    train: TaskRecord | None = None
    evaluate: TaskRecord | None = None
    export: TaskRecord | None = None


class Metrics(ApiModel):
    """COCO metrics of the evaluated checkpoint (from the evaluate task's summary)."""

    m_ap: float | None = Field(default=None, alias="mAP")
    """AP@[0.50:0.95]."""
    m_ap50: float | None = Field(default=None, alias="mAP50")
    """AP@0.50, the product's KPI."""
    per_class_ap50: dict[str, float | None] = Field(default_factory=dict, alias="perClassAP50")
    """AP@0.50 per class name (null for a class absent from the test set)."""


class ResultsVolume(ApiModel):
    """Where the artifact paths live, for consumers that mount the same storage."""

    claim_name: str | None = None
    """The results PersistentVolumeClaim (unset when results use another volume source)."""
    sub_path: str = ""
    """Folder of the volume mounted at mountPath."""
    mount_path: str
    """Mount path the artifact paths start with."""


class StartedFrom(ApiModel):
    """The checkpoint this run started from (spec.resumeFrom or spec.initFrom), as resolved
    when it started; later reconciles use this record, not a new lookup."""

    mode: Literal["resume", "init"]
    """resume (spec.resumeFrom) or init (spec.initFrom)."""
    source: str
    """What was named: training/<name> or the checkpoint as written."""
    checkpoint: str
    """The path training pods read it from."""
    volume: PassThrough | None = None
    """The volume mounted read-only at /from for it (absent when it is on a mounted volume)."""


class ExperimentSource(ApiModel):
    """The experiment a run started with, when it came from spec.experimentRef."""

    config_map: str
    """The ConfigMap's name."""
    key: str
    """The key read."""
    sha256: str
    """SHA-256 of the key's text when the run started (overrides are in spec.overrides)."""
    current_sha256: str | None = None
    """SHA-256 of the key now (or `deleted`), when it differs from the one the run started
    with; the run keeps its experiment."""


class SourceRecord(ApiModel):
    """A source URI the training pods fetch: its step's progress, then its summary."""

    uri: str
    """The source, as the experiment names it."""
    state: Literal["Pending", "Fetching", "Fetched"] | None = None
    """Pending until its fetch step starts, Fetching while it downloads, then Fetched."""
    percent: int | None = Field(default=None, ge=0, le=100)
    """Share downloaded while Fetching (absent while the size is unknown)."""
    sha256: str | None = None
    """sha256 of the file (of a folder: of its sorted ``<path> <sha256>`` lines)."""
    size: int | None = None
    """Bytes (of a folder: of all its files)."""
    files: int | None = None
    """Files of a folder source (an S3 prefix)."""
    transferred: int | None = None
    """Bytes downloaded so far (0 when the cache held it)."""
    cached: bool | None = None
    """The cache already held it: nothing was downloaded."""


class RTDETRTrainingStatus(ApiModel):
    """Observed state of an RTDETRTraining."""

    phase: Phase = "Pending"
    """Pending, Training, Evaluating, Exporting, Succeeded, Failed or Suspended."""
    observed_generation: int | None = None
    """metadata.generation the status reflects."""
    conditions: Conditions
    """kstatus conditions: Ready, Reconciling, Stalled."""
    progress: str | None = None
    """Short progress, e.g. `1/3 train`."""
    nodes: int | None = None
    """Training nodes (pods)."""
    gpus: int | None = None
    """Training GPUs in total (nodes x GPUs per node)."""
    restarts: int = 0
    """Task groups recreated after a failure."""
    start_time: datetime | None = None
    """When the run (re)started; activeDeadlineSeconds counts from here."""
    completion_time: datetime | None = None
    """When the run succeeded or failed."""
    training_job: str | None = None
    """Current (or last) training Job."""
    evaluation_job: str | None = None
    """Current (or last) evaluation Job."""
    export_job: str | None = None
    """Current (or last) export Job."""
    tasks: Tasks = Field(default_factory=Tasks)
    """Per-task records."""
    training_progress: TrainingProgress | None = None
    """Live progress of the training task: epoch, percent, ETA, loss, last validation."""
    metrics: Metrics | None = None
    """Evaluation metrics."""
    artifacts: dict[str, str] = Field(default_factory=dict)
    """Paths inside the results volume: checkpoint (the last epoch), bestModel (the epoch with
    the highest validation mAP50), bestCheckpoint, prCurves, confusionMatrix, annotatedImages
    (evaluation pictures, PNG), onnx, onnxFp16, nvdsinferConfig, labels, manifest (and anything
    else a task reported)."""
    results_volume: ResultsVolume | None = None
    """The volume the artifact paths are on."""
    experiment_source: ExperimentSource | None = None
    """The ConfigMap key and content hash of the experiment (spec.experimentRef only)."""
    sources: list[SourceRecord] = Field(default_factory=list)
    """Source URIs of the experiment fetched for this run."""
    started_from: StartedFrom | None = None
    """The checkpoint spec.resumeFrom / spec.initFrom resolved to."""
    kopf: PassThrough | None = None
    """Reserved for kopf's own bookkeeping."""
