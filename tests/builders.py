"""Task summaries as our tools write them, for the tests of every tier that play a finished Job.

One place for the JSON a repository, engine or trainer Job leaves as its termination message:
the unit tests' simulated world (tests/operator) and the kwok-driven e2e tier (tests/e2e) feed
the operator the same real models (``ServingTaskSummary``, ``TaskSummary``), serialised by their
own ``to_message``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rtdetr_serving.catalog import load_catalog
from rtdetr_serving.task_summary import EngineFacts, ServingTaskSummary, revision_of
from rtdetr_spec.reporting import TaskSummary

CATALOG = load_catalog(use_env=False)
TENSORRT = "10.13.3"


def sha(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def repository_summary(
    onnx_sha: str, gpus: list[str] | tuple[str, ...], *, model: str = "rtdetr",
    onnx_name: str = "model.onnx",
) -> str:  # fmt: skip
    """What ``rtdetr-serve repository`` reports after preparing revision ``onnx_sha[:12]``."""
    rev = revision_of(onnx_sha)
    return ServingTaskSummary(
        task="repository",
        status="SUCCESS",
        message=f"prepared /models/{rev}/{model}",
        revision=rev,
        onnx_sha256=onnx_sha,
        gpus=sorted(gpus),
        artifacts={
            "repository": f"/models/{rev}",
            "model": f"/models/{rev}/{model}",
            "onnx": f"/models/{rev}/{model}/{onnx_name}",
            "index": f"/models/{rev}/{model}/repository.json",
        },
    ).to_message()


def engine_summary(
    onnx_sha: str, gpu: str, *, tensorrt: str = TENSORRT, cc: str | None = None,
    plan_bytes: int = 123_456, build_seconds: float = 42.0, sidecar: bool = False,
) -> str:  # fmt: skip
    """What ``rtdetr-serve build-engine`` reports after building ``gpu``'s plan."""
    rev = revision_of(onnx_sha)
    plan_file = f"model.{gpu}.plan"
    plan = f"/models/{rev}/rtdetr/1/{plan_file}"
    artifacts = {"plan": plan, **({"sidecar": f"{plan}.json"} if sidecar else {})}
    return ServingTaskSummary(
        task="gen_trt_engine",
        status="SUCCESS",
        message=f"built {plan}",
        revision=rev,
        onnx_sha256=onnx_sha,
        gpus=[gpu],
        artifacts=artifacts,
        engine=EngineFacts(
            gpu=gpu,
            tensorrt_version=tensorrt,
            compute_capability=cc or CATALOG.get(gpu).compute_capability,
            gpu_device_name=f"NVIDIA {gpu}",
            precision="fp16",
            onnx_sha256=onnx_sha,
            plan_file=plan_file,
            plan_sha256=sha(f"plan {gpu} {rev}"),
            plan_bytes=plan_bytes,
            build_seconds=build_seconds,
            builder="tensorrt-python",
        ),
    ).to_message()


def failed_serving_summary(task: str, message: str) -> str:
    return ServingTaskSummary(task=task, status="FAILURE", message=message).to_message()  # type: ignore[arg-type]


def task_summary(task: str, **fields: Any) -> str:
    """A trainer task's report (train, evaluate, export), as ``rtdetr`` writes it."""
    return TaskSummary.model_validate({"task": task, "status": "SUCCESS", **fields}).to_message()
