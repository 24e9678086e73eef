"""A new model rolls out engines first, then pods, while the old one serves; a failed engine
build leaves the old model serving and the deployment Stalled."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rtdetr_serving.task_summary import revision_of
from tests.e2e.deployment_support import (
    NAME,
    by_name,
    children,
    condition,
    example_deployment,
    onnx_sha,
    ready,
    source_training,
    stalled,
    template_revision,
    wait_for,
)
from tests.e2e.training_support import apply_example

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

V1, V2 = revision_of(onnx_sha("v1")), revision_of(onnx_sha("v2"))
POOLS = {f"{NAME}-h100": 1, f"{NAME}-l4": 2}  # 18 streams at 30 FPS: 2 L4


def _serve_v1(cluster: Any, ns: str, op: Any) -> None:
    apply_example(cluster, ns, source_training())
    cluster.apply(example_deployment("v1", l4_streams=18), namespace=ns)
    wait_for(cluster, ns, "Ready on v1", ready, op, timeout=150)


def _rerun_training(cluster: Any, ns: str) -> None:
    """A new run of the training: a new RTDETRTraining object of the same name."""
    cluster.kubectl("delete", "rtdetrtraining", NAME, "-n", ns, "--wait=true")
    apply_example(cluster, ns, source_training())


def _ready_pods(cluster: Any, ns: str) -> dict[str, dict[str, int]]:
    """Ready Triton pods per pool and revision."""
    out: dict[str, dict[str, int]] = {}
    for pod in children(cluster, ns, "pods"):
        labels = pod["metadata"]["labels"]
        if labels.get("rtdetr.dev/component") != "triton" or pod["metadata"].get(
            "deletionTimestamp"
        ):
            continue
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True":
            pool = f"{NAME}-{labels['rtdetr.dev/pool']}"
            rev = labels["rtdetr.dev/revision"]
            out.setdefault(pool, {}).setdefault(rev, 0)
            out[pool][rev] += 1
    return out


def _v1_jobs_after(cluster: Any, ns: str, timeout: float) -> list[str]:
    """Names of v1 Jobs not yet deleted, once none are left or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            j["metadata"]["name"]
            for j in children(cluster, ns, "jobs")
            if j["metadata"]["name"].endswith(V1[:8]) and not j["metadata"].get("deletionTimestamp")
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.3)


def test_new_model_builds_engines_first_and_the_old_serves_until_ready(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    _serve_v1(e2e_cluster, ns, operator)
    e2e_cluster.apply(example_deployment("v2", l4_streams=18), namespace=ns)  # next build: v2
    _rerun_training(e2e_cluster, ns)

    engines_done: float | None = None
    first_v2_template: float | None = None
    samples = 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        now = time.monotonic()
        # Deployments are read before Jobs: a v2 template seen here was written after both
        # engines succeeded, so the Jobs read next show them built in this same sample. (Read the
        # other way round, an engine finishing between the two reads looks like a violation.)
        deployments = by_name(children(e2e_cluster, ns, "deployments"))
        if first_v2_template is None and any(
            template_revision(d) == V2 for d in deployments.values()
        ):
            first_v2_template = now
        jobs = children(e2e_cluster, ns, "jobs")
        v2_engines = [j for j in jobs if j["metadata"]["name"].endswith(V2[:8])]
        built = [j for j in v2_engines if j.get("status", {}).get("succeeded")]
        if engines_done is None and len(built) == 2:
            engines_done = now
        # the served capacity never drops: every pool keeps its ready pods, old or new
        ready_pods = _ready_pods(e2e_cluster, ns)
        for pool, want in POOLS.items():
            assert sum(ready_pods.get(pool, {}).values()) >= want, (pool, ready_pods)
        samples += 1
        st = e2e_cluster.get("rtdetrdeployment", NAME, "-n", ns).get("status", {})
        if st.get("model", {}).get("revision") != V2:
            # until every pool is rolled out the old model is the served one
            assert st.get("model", {}).get("revision") == V1
        elif ready(st):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"v2 never became Ready; operator log:\n{operator.log(120)}")

    assert engines_done is not None and first_v2_template is not None
    assert engines_done <= first_v2_template, "a Deployment moved to v2 before its engines existed"
    assert samples > 5
    final = _ready_pods(e2e_cluster, ns)
    assert all(set(final[pool]) == {V2} for pool in POOLS), final
    # the v1 build Jobs are cleaned up; the v2 engines are recorded. The reconciler writes the
    # status before it deletes, so Ready can be seen a moment before the deletions land.
    assert not _v1_jobs_after(e2e_cluster, ns, timeout=30)
    st = e2e_cluster.get("rtdetrdeployment", NAME, "-n", ns)["status"]
    assert {e["revision"] for e in st["engines"]} == {V2} and "target" not in st


def test_failed_engine_build_leaves_the_old_model_serving(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    _serve_v1(e2e_cluster, ns, operator)
    why = "TensorRT's ONNX parser failed: node /decoder/Gather_12 has an unsupported input"
    e2e_cluster.apply(example_deployment("v2", failing={"L4": why}, l4_streams=18), namespace=ns)
    _rerun_training(e2e_cluster, ns)

    def settled(s: dict) -> bool:
        states = {e["gpu"]: e["state"] for e in s.get("engines", []) if e["revision"] == V2}
        failed = condition(s, "Stalled").get("reason") == "EngineBuildFailed"
        return stalled(s) and failed and states == {"H100": "Succeeded", "L4": "Failed"}

    st = wait_for(e2e_cluster, ns, "a failed L4 and a built H100 engine", settled, operator, 150)
    stalled_cond = condition(st, "Stalled")
    assert stalled_cond["reason"] == "EngineBuildFailed"
    assert why in stalled_cond["message"] and f"still serving {V1}" in stalled_cond["message"]
    assert condition(st, "Ready")["status"] == "False" and st["phase"] == "Stalled"
    assert st["model"]["revision"] == V1 and st["target"]["revision"] == V2
    failed = {e["gpu"]: e for e in st["engines"] if e["revision"] == V2}
    assert failed["L4"]["state"] == "Failed" and failed["H100"]["state"] == "Succeeded"
    # nothing moved: every pool still serves v1 with all its pods ready
    deployments = by_name(children(e2e_cluster, ns, "deployments"))
    assert {template_revision(d) for d in deployments.values()} == {V1}
    time.sleep(2)
    assert _ready_pods(e2e_cluster, ns) == {pool: {V1: n} for pool, n in POOLS.items()}
    table = e2e_cluster.kubectl("get", "rtd", NAME, "-n", ns).stdout.split("\n")[1].split()
    assert table[1:3] == ["False", "Stalled"]
