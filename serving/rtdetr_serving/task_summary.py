"""What ``rtdetr-serve repository`` and ``rtdetr-serve build-engine`` report to Kubernetes.

Run as Jobs by the operator (RTDETRDeployment), both commands end by writing a compact JSON
summary as the container's termination message, exactly as the trainer's tasks write their
``rtdetr_spec.artifacts.TaskSummary``: to ``$RTDETR_TERMINATION_LOG`` if set, else to
``/dev/termination-log`` inside a pod. The operator reads it from the pod status; no shared
volume is needed to learn the result. The shape is TaskSummary's (``task``, ``status``,
``message``, ``artifacts``) plus what serving knows: the model revision (the ONNX's sha256,
shortened) and, for an engine, the facts of its sidecar that decide whether Triton may load it
(TensorRT version, compute capability, plan sha256).

Both success and failure are reported; a failure's message names the file, GPU or version at
fault, so the operator can put it verbatim in the RTDETRDeployment's Stalled condition.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rtdetr_serving.engine_spec import EngineSidecar
from rtdetr_serving.engine_timing import EngineTiming
from rtdetr_spec.artifacts import atomic_write_text

TERMINATION_LOG_ENV = "RTDETR_TERMINATION_LOG"
K8S_TERMINATION_LOG = "/dev/termination-log"
#: Kubernetes keeps at most 4096 bytes of a termination message.
MESSAGE_LIMIT = 4096
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


class ServingTaskSummary(BaseModel):
    """The termination message of a repository or engine build Job."""

    model_config = ConfigDict(extra="ignore")

    task: Literal["repository", "gen_trt_engine"]
    status: Literal["SUCCESS", "FAILURE"]
    message: str | None = None
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
    #: The plan timed with TensorRT's runtime on the GPU that built it (engine_timing.py).
    timing: EngineTiming | None = None

    def to_message(self, limit: int = MESSAGE_LIMIT) -> str:
        """Compact JSON within ``limit`` bytes (a long message is cut first)."""
        text = self.model_dump_json(exclude_none=True)
        overflow = len(text.encode()) - limit
        if overflow > 0 and self.message:
            keep = max(0, len(self.message.encode()) - overflow - 3)
            short = self.message.encode()[:keep].decode(errors="ignore") + "..."
            text = self.model_copy(update={"message": short}).model_dump_json(exclude_none=True)
        return text.encode()[:limit].decode(errors="ignore")


def termination_log_path() -> Path | None:
    """Where the summary goes: ``$RTDETR_TERMINATION_LOG``, else the pod's termination log."""
    explicit = os.environ.get(TERMINATION_LOG_ENV)
    if explicit:
        return Path(explicit)
    default = Path(K8S_TERMINATION_LOG)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and os.access(default, os.W_OK):
        return default
    return None


def write_summary(summary: ServingTaskSummary) -> Path | None:
    """Write ``summary`` where Kubernetes reads it; returns the path (None outside a pod)."""
    path = termination_log_path()
    if path is None:
        return None
    text = summary.to_message()
    if path == Path(K8S_TERMINATION_LOG):
        # A device-like file the kubelet bind-mounts: write in place, never rename over it.
        path.write_text(text)
    else:
        atomic_write_text(path, text)
    return path
