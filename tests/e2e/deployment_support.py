"""End-to-end support for RTDETRDeployment: the example CR with kwok behaviour, status reads.

kwok plays the kubelet (docs/local-cluster.md), so the repository and engine Jobs run nothing:
their containers "exit" with the termination message the real `rtdetr-serve repository` /
`rtdetr-serve build-engine` would write, given through the API's own pod-metadata fields
(``spec.build.podMetadata`` for every build pod, ``spec.pools[].engineBuild.podMetadata`` for
one GPU type's engine). The messages are real ``ServingTaskSummary`` JSON, built by
:mod:`tests.builders` as in the unit tests. A model "version" is
the sha256 of an ONNX: a test serving version ``v2`` puts ``sha("v2")`` in the summaries and
re-runs the source training (a new RTDETRTraining object), exactly the change the operator
watches for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

import yaml

from rtdetr_serving.catalog import load_catalog
from tests.builders import engine_summary, failed_serving_summary, repository_summary
from tests.e2e.training_support import KWOK, REPO, OperatorProcess, example_training

EXAMPLE = REPO / "examples" / "deployment.yaml"
NAME = "warehouse-r50"
GPUS = ("H100", "L4")
CATALOG = load_catalog(use_env=False)
TENSORRT = "10.13.3"


def onnx_sha(version: str) -> str:
    return hashlib.sha256(f"warehouse-r50.onnx {version}".encode()).hexdigest()


def repo_message(version: str, gpus: tuple[str, ...] = GPUS) -> str:
    return repository_summary(onnx_sha(version), gpus)


def engine_message(version: str, gpu: str, tensorrt: str = TENSORRT) -> str:
    return engine_summary(
        onnx_sha(version), gpu, tensorrt=tensorrt, plan_bytes=71_000_000, build_seconds=95.0,
        sidecar=True,
    )  # fmt: skip


def failed_engine_annotations(message: str, exit_code: int = 1) -> dict[str, str]:
    return {
        f"{KWOK}/fail": "true",
        f"{KWOK}/exit-code": str(exit_code),
        f"{KWOK}/termination-message": failed_serving_summary("gen_trt_engine", message),
    }


def source_training(**spec: Any) -> dict[str, Any]:
    """examples/training.yaml's RTDETRTraining, on the A100 node (1 x 8 GPUs).

    The local cluster has two 8-GPU H100 nodes: the example's 2 x 8 H100 run would not fit beside
    an H100 Triton pool (a re-run would wait for GPUs, as it would on a real cluster).
    """
    cr = example_training(train_after="2s", gpuProduct="NVIDIA-A100-SXM4-80GB", **spec)
    cr["spec"]["experiment"]["train"]["num_nodes"] = 1
    return cr


def example_deployment(
    version: str = "v1",
    *,
    failing: dict[str, str] | None = None,
    l4_streams: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """examples/deployment.yaml whose build pods report serving ``version``'s ONNX.

    ``failing`` maps a GPU type to the failure message its engine build reports instead;
    ``l4_streams`` shrinks the L4 pool's stream target (fewer GPUs busy per test).
    """
    (cr,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    cr = copy.deepcopy(cr)
    s = cr["spec"]
    s.update(spec)
    if l4_streams is not None:
        next(p for p in s["pools"] if p["gpu"] == "L4")["streams"] = l4_streams
    s.setdefault("build", {})["podMetadata"] = {
        "annotations": {
            f"{KWOK}/termination-message": repo_message(version),
            f"{KWOK}/complete-after": "1s",
        }
    }
    for pool in s["pools"]:
        gpu = pool["gpu"]
        if failing and gpu in failing:
            ann = failed_engine_annotations(failing[gpu])
        else:
            ann = {f"{KWOK}/termination-message": engine_message(version, gpu)}
        pool["engineBuild"] = {"podMetadata": {"annotations": ann}}
    return cr


def status(cluster: Any, namespace: str, name: str = NAME) -> dict[str, Any]:
    out = cluster.kubectl("get", "rtdetrdeployment", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def wait_for(
    cluster: Any,
    namespace: str,
    what: str,
    probe,
    op: OperatorProcess,
    timeout: float = 90,
    name: str = NAME,
) -> dict[str, Any]:
    """Poll the deployment's status until ``probe(status)``; on timeout show status and log."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = status(cluster, namespace, name)
        if probe(st):
            return st
        time.sleep(0.3)
    raise AssertionError(
        f"{name}: no {what} in {timeout}s; status:\n{json.dumps(st, indent=1)}\n"
        f"operator log:\n{op.log(120)}"
    )


def ready(st: dict[str, Any]) -> bool:
    return condition(st, "Ready").get("status") == "True"


def stalled(st: dict[str, Any]) -> bool:
    return condition(st, "Stalled").get("status") == "True"


def children(cluster: Any, namespace: str, kind: str, name: str = NAME) -> list[dict[str, Any]]:
    out = cluster.get(kind, "-n", namespace, "-l", f"rtdetr.dev/deployment={name}")
    return list(out["items"])


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["metadata"]["name"]: i for i in items}


def template_revision(deployment: dict[str, Any]) -> str | None:
    labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    return labels.get("rtdetr.dev/revision")
