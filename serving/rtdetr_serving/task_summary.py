"""What ``rtdetr-serve repository`` and ``rtdetr-serve build-engine`` report to Kubernetes.

Run as Jobs by the operator (RTDETRDeployment), both commands end by writing a compact JSON
summary as the container's termination message, exactly as the trainer's tasks write their
``rtdetr_spec.reporting.TaskSummary``: to ``$RTDETR_TERMINATION_LOG`` if set, else to
``/dev/termination-log`` inside a pod. The operator reads it from the pod status; no shared
volume is needed to learn the result. The shape is TaskSummary's (``task``, ``status``,
``message``, ``artifacts``; :class:`rtdetr_spec.reporting.TaskReport` is the base of both) plus
what serving knows: the model revision (the ONNX's sha256,
shortened) and, for an engine, the facts of its sidecar that decide whether Triton may load it
(TensorRT version, compute capability, plan sha256).

Both success and failure are reported; a failure's message names the file, GPU or version at
fault, so the operator can put it verbatim in the RTDETRDeployment's Stalled condition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.engine_spec import EngineSidecar
from rtdetr_spec.reporting import TaskReport, write_termination_message

#: Hex digits of the ONNX sha256 that name a model revision (a repository folder).
REVISION_LENGTH = 12


def revision_of(onnx_sha256: str) -> str:
    """A model revision's name: the first 12 hex digits of its ONNX's sha256."""
    return onnx_sha256[:REVISION_LENGTH]


class EngineFacts(BaseModel):
    """The parts of a plan's sidecar that decide where it may be served."""

    model_config = ConfigDict(extra="ignore")

    gpu: str
    tensorrt_version: str
    compute_capability: str
    gpu_device_name: str
    precision: str
    onnx_sha256: str
    plan_file: str
    plan_sha256: str
    plan_bytes: int
    build_seconds: float
    builder: str

    @classmethod
    def from_sidecar(cls, sidecar: EngineSidecar) -> EngineFacts:
        return cls.model_validate(sidecar.model_dump())


class ServingTaskSummary(TaskReport):
    """The termination message of a repository or engine build Job (cut to fit: its message)."""

    task: Literal["repository", "gen_trt_engine"]
    #: Model revision (repository: the one written; engine: the one built for).
    revision: str | None = None
    onnx_sha256: str | None = None
    #: GPU types the repository has configs for, or the engine's GPU type.
    gpus: list[str] = Field(default_factory=list)
    #: Paths: repository -> repository, model, onnx, index; engine -> plan, sidecar.
    artifacts: dict[str, str] = Field(default_factory=dict)
    engine: EngineFacts | None = None
    #: The engine was already there (same ONNX, GPU, TensorRT, profile): not rebuilt.
    reused: bool = False


def write_summary(summary: ServingTaskSummary) -> Path | None:
    """Write ``summary`` where Kubernetes reads it (:mod:`rtdetr_spec.reporting`)."""
    return write_termination_message(summary)
