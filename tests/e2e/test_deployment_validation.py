"""Bad RTDETRDeployments: refused by the API server where it can judge, else Stalled naming the
field; deleting a deployment removes everything it created."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
import yaml

from tests.e2e.deployment_support import (
    EXAMPLE,
    NAME,
    children,
    condition,
    example_deployment,
    ready,
    source_training,
    stalled,
    wait_for,
)
from tests.e2e.training_support import apply_example

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]


def _example() -> dict[str, Any]:
    (cr,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    return cr


def _with(path: str, value: Any) -> dict[str, Any]:
    cr = copy.deepcopy(_example())
    node = cr["spec"]
    *head, last = path.split(".")
    for key in head:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return cr


@pytest.mark.parametrize(
    ("cr", "field", "words"),
    [
        (_with("pools.0.minReplicas", 5), "spec.pools[0].minReplicas", "must not exceed"),
        (
            _with("model.onnx", {"claimName": "exports", "path": "m/model.onnx"}),
            "spec.model",
            "exactly one model source",
        ),
        (_with("pools.1.fps", None), "spec.pools[1].streams", "streams and fps go together"),
        (_with("pools.1.gpu", "H100"), "spec.pools[1]", "Duplicate value"),
        (
            _with("triton", {"image": "mirror/tritonserver:25.10-py3"}),
            "spec.triton.tensorrtVersion",
            "is required with a custom image",
        ),
        (
            _with("rollout", {"maxSurge": 0, "maxUnavailable": 0}),
            "spec.rollout.maxSurge",
            "cannot both be 0",
        ),
    ],
    ids=["min-over-max", "two-sources", "streams-without-fps", "same-gpu-twice",
         "image-without-tensorrt", "no-rollout-room"],
)  # fmt: skip
def test_the_api_server_refuses_naming_the_field(
    e2e_cluster, e2e_namespace, rtdetr_crd, cr: dict, field: str, words: str
) -> None:
    out = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(cr), check=False
    )
    assert out.returncode != 0
    assert field in out.stderr and words in out.stderr, out.stderr
    listed = e2e_cluster.get("rtdetrdeployments", "-n", e2e_namespace)
    assert listed["items"] == []


def test_the_verbatim_example_applies_and_names_its_missing_training(
    e2e_cluster, e2e_namespace, operator
) -> None:
    """examples/deployment.yaml as a user applies it, before its training exists."""
    e2e_cluster.kubectl("apply", "-n", e2e_namespace, "-f", str(EXAMPLE))
    st = wait_for(e2e_cluster, e2e_namespace, "Stalled", stalled, operator, timeout=60)
    c = condition(st, "Stalled")
    assert c["reason"] == "SourceNotFound"
    assert c["message"].startswith("spec.model.training.name: RTDETRTraining 'warehouse-r50'")
    assert children(e2e_cluster, e2e_namespace, "jobs") == []


@pytest.mark.parametrize(
    ("pools", "field", "words"),
    [
        (
            [{"gpu": "L4", "streams": 200, "fps": 30, "maxReplicas": 10}],
            "spec.pools[0].maxReplicas",
            "200 streams at 30 FPS need 23 L4 replicas",
        ),
        (
            [{"gpu": "H100", "minReplicas": 1}, {"gpu": "L4", "streams": 4, "fps": 500}],
            "spec.pools[1].fps",
            "L4 cannot sustain one stream at 500 FPS",
        ),
    ],
    ids=["target-over-max-replicas", "fps-too-high"],
)
def test_a_stream_target_no_pool_can_meet_stalls_naming_the_field(
    e2e_cluster, e2e_namespace, operator, pools: list, field: str, words: str
) -> None:
    cr = _example()
    cr["spec"]["pools"] = pools
    e2e_cluster.apply(cr, namespace=e2e_namespace)
    st = wait_for(e2e_cluster, e2e_namespace, "Stalled", stalled, operator, timeout=60)
    c = condition(st, "Stalled")
    assert c["reason"] == "InvalidSpec" and c["message"].startswith(field) and words in c["message"]
    assert st["observedGeneration"] == 1


def test_deleting_the_deployment_removes_everything_it_created(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, source_training())
    e2e_cluster.apply(example_deployment("v1", l4_streams=9), namespace=ns)
    wait_for(e2e_cluster, ns, "Ready", ready, operator, timeout=150)
    kinds = ("jobs", "deployments", "services", "hpa", "pdb", "pods")
    before = {k: len(children(e2e_cluster, ns, k)) for k in kinds}
    assert all(before[k] for k in ("jobs", "deployments", "services", "hpa", "pdb", "pods"))
    e2e_cluster.kubectl("delete", "rtdetrdeployment", NAME, "-n", ns, "--wait=true")
    deadline = time.monotonic() + 60
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        left = {k: len(children(e2e_cluster, ns, k)) for k in kinds}
        if not any(left.values()):
            break
        time.sleep(0.5)
    assert not any(left.values()), f"left behind: {left}"
    # the training it served is not its child: it stays
    assert e2e_cluster.get("rtdetrtraining", NAME, "-n", ns)["metadata"]["name"] == NAME
