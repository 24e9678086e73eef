"""Judge what a finished repository or engine Job reported against what it was asked to do.

Pure functions over a Job's termination message (:func:`~rtdetr_operator.deployment.observe.
reported`): a summary that is missing, malformed, or describes another model, GPU, TensorRT
version or compute capability than the planner asked for is a failed build, with one sentence
naming the Job and the difference. The state machine (:mod:`rtdetr_operator.deployment.plan`)
only records the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtdetr_operator.deployment.observe import reported
from rtdetr_operator.deployment.resolve import ResolvedPool
from rtdetr_operator.jobs import JobView
from rtdetr_serving.engine_spec import same_tensorrt
from rtdetr_serving.task_summary import EngineFacts, ServingTaskSummary


@dataclass(frozen=True)
class Verdict:
    """A finished Job's summary and, when it cannot be used, why (``reason`` names the Event)."""

    summary: ServingTaskSummary | None
    problem: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.problem is None and self.summary is not None


def repository_verdict(view: JobView, gpus: list[str]) -> Verdict:
    """A repository Job must report its revision, ONNX sha256, paths and exactly ``gpus``."""
    got = reported(view, "repository")
    s, problem = got.summary, got.problem
    if s is not None:
        missing = [k for k in ("repository", "onnx") if k not in s.artifacts]
        if not s.revision or not s.onnx_sha256 or missing:
            problem = f"Job {view.name}: summary lacks revision, sha256 or {missing}"
        elif sorted(s.gpus) != gpus:
            problem = f"Job {view.name} prepared GPUs {sorted(s.gpus)}, not {gpus}"
    return Verdict(
        s, problem or (None if s else f"Job {view.name} reported nothing"), "RepositoryFailed"
    )


def engine_verdict(view: JobView, pool: ResolvedPool, onnx_sha256: str) -> Verdict:
    """An engine Job must have built ``pool``'s GPU type from that ONNX, loadable by its Triton."""
    gpu = pool.gpu
    assert gpu is not None, "CPU pools build no engine"
    got = reported(view, "gen_trt_engine")
    s, problem, reason = got.summary, got.problem, "EngineBuildFailed"
    facts: EngineFacts | None = s.engine if s else None
    if s is not None and facts is None:
        problem = f"Job {view.name} reported no engine"
    elif s is not None and facts is not None:
        if s.onnx_sha256 != onnx_sha256:
            problem = f"Job {view.name} built from ONNX {s.onnx_sha256}, not {onnx_sha256}"
        elif facts.gpu != gpu.name:
            problem = f"Job {view.name} built for {facts.gpu}, not {gpu.name}"
        elif not same_tensorrt(facts.tensorrt_version, pool.tensorrt_version or ""):
            reason = "TensorRTVersionMismatch"
            problem = (
                f"Job {view.name} built with TensorRT {facts.tensorrt_version}, but "
                f"{pool.image} serves with {pool.tensorrt_version}: Triton could not load it"
            )
        elif facts.compute_capability != gpu.compute_capability:
            problem = (
                f"Job {view.name} built on compute capability {facts.compute_capability}, "
                f"{gpu.name} is {gpu.compute_capability}"
            )
    return Verdict(s, problem or (None if s else f"Job {view.name} reported nothing"), reason)
