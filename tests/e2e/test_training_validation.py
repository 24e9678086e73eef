"""Bad input: refused at `kubectl apply` with the field named, or Stalled/Failed with a reason."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from tests.e2e.training_support import (
    apply_example,
    condition,
    events,
    example_training,
    training_status,
    wait_phase,
)

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd, operator (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]

Mutation = Callable[[dict], None]

REFUSED: list[tuple[str, Mutation, list[str]]] = [
    (
        "gpus-mismatch",
        lambda c: c["spec"]["resources"].update(gpus=4),
        ["spec.resources.gpus", "must equal spec.experiment.train.num_gpus"],
    ),
    (
        "unset-data-path",
        lambda c: c["spec"]["experiment"]["dataset"]["train_data_sources"][0].update(
            image_dir="??"
        ),
        ["spec.experiment.dataset.train_data_sources", "(not ??)"],
    ),
    (
        "unknown-backbone",
        lambda c: c["spec"]["experiment"]["model"].update(backbone="efficientvit_l3"),
        ["spec.experiment.model.backbone", 'Unsupported value: "efficientvit_l3"', "resnet_50"],
    ),
    (
        "zero-nodes",
        lambda c: c["spec"]["experiment"]["train"].update(num_nodes=0),
        ["spec.experiment.train.num_nodes", "greater than or equal to 1"],
    ),
    (
        "no-results-storage",
        lambda c: c["spec"]["storage"].pop("results"),
        ["spec.storage.results: Required value"],
    ),
    (
        "results-on-emptydir",
        lambda c: c["spec"]["storage"].update(results={"volume": {"emptyDir": {}}}),
        ["spec.storage.results.volume", "must survive pod restarts"],
    ),
    (
        "malformed-experiment",
        lambda c: c["spec"]["experiment"].update(train="eight gpus"),
        ["spec.experiment.train", "must be of type object"],
    ),
    (
        "misspelt-key",
        lambda c: c["spec"]["experiment"]["train"]["optim"].update(lr_backbon=1e-5),
        ['unknown field "spec.experiment.train.optim.lr_backbon"'],
    ),
    (
        "reserved-env",
        lambda c: c["spec"].update(env=[{"name": "NODE_RANK", "value": "0"}]),
        ["spec.env", "the operator sets the launch contract"],
    ),
    (
        "checkpoint-trust-env",
        lambda c: c["spec"].update(env=[{"name": "RTDETR_TRUST_CHECKPOINTS", "value": "1"}]),
        ["spec.env", "must not set RTDETR_TRUST_CHECKPOINTS"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_unrunnable_crs_are_refused_at_apply(
    e2e_cluster, e2e_namespace, rtdetr_crd, mutate: Mutation, expected: list[str]
) -> None:
    cr = copy.deepcopy(example_training())
    mutate(cr)
    result = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(cr), check=False
    )
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr


def test_spec_is_immutable_but_run_policy_is_not(e2e_cluster, e2e_namespace, rtdetr_crd) -> None:
    ns = e2e_namespace
    cr = example_training()
    apply_example(e2e_cluster, ns, cr)
    changed = copy.deepcopy(cr)
    changed["spec"]["experiment"]["train"]["num_epochs"] = 50
    result = e2e_cluster.kubectl(
        "apply", "-n", ns, "-f", "-", input=json.dumps(changed), check=False
    )
    assert result.returncode != 0
    assert "spec.experiment: Invalid value" in result.stderr and "is immutable" in result.stderr
    changed = copy.deepcopy(cr)
    changed["spec"]["maxRestarts"] = 7
    e2e_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(changed))


def test_an_absent_gpu_stalls_with_the_schedulers_reason(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(gpuProduct="NVIDIA-B200"))

    def stalled() -> dict:
        st = training_status(e2e_cluster, ns, "warehouse-r50")
        conds = {c["type"]: c for c in st.get("conditions", [])}
        return st if conds.get("Stalled", {}).get("status") == "True" else {}

    st = e2e_cluster.wait_for("Stalled", stalled, timeout=60)
    stall = condition(st, "Stalled")
    assert stall["reason"] == "Unschedulable"
    assert "nodes are available" in stall["message"]  # the scheduler's own words
    assert condition(st, "Ready")["status"] == "False"
    assert condition(st, "Reconciling")["status"] == "False"
    assert st["phase"] == "Pending"
    warnings = [
        e for e in events(e2e_cluster, ns, "warehouse-r50") if e["reason"] == "Unschedulable"
    ]
    assert warnings and warnings[0]["type"] == "Warning"


def test_what_only_the_operator_can_judge_fails_with_the_field_named(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    cr = example_training()
    cr["spec"]["experiment"]["model"]["nheads"] = 7  # 256 is not divisible by 7
    apply_example(e2e_cluster, ns, cr)
    st = wait_phase(e2e_cluster, ns, "warehouse-r50", "Failed", operator, timeout=60)
    ready = condition(st, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.experiment.model: hidden_dim 256 is not divisible by nheads 7" in ready["message"]
    assert condition(st, "Stalled")["status"] == "True"
    assert not e2e_cluster.get("jobs", "-n", ns)["items"]
    assert operator.proc.poll() is None


def test_a_key_pruned_without_validation_still_fails_loudly(
    e2e_cluster, e2e_namespace, operator
) -> None:
    """`kubectl apply --validate=false` lets the API server drop a misspelt key silently."""
    ns = e2e_namespace
    cr = example_training()
    cr["spec"]["experiment"]["train"]["optim"]["lr_backbon"] = 1e-6
    e2e_cluster.kubectl("apply", "--validate=false", "-n", ns, "-f", "-", input=json.dumps(cr))
    stored = e2e_cluster.get("rtdetrtraining", "warehouse-r50", "-n", ns)
    assert "lr_backbon" not in stored["spec"]["experiment"]["train"]["optim"]  # pruned
    st = wait_phase(e2e_cluster, ns, "warehouse-r50", "Failed", operator, timeout=60)
    message = condition(st, "Ready")["message"]
    assert "spec.experiment.train.optim.lr_backbon: unknown key" in message
    assert "did you mean 'lr_backbone'" in message


def test_a_host_path_volume_fails_with_the_field_named_and_no_pod(
    e2e_cluster, e2e_namespace, operator
) -> None:
    """Node-level volume sources are the operator's to refuse (the CRD cannot: a flag allows
    them), so the API server stores the CR and the operator marks it Stalled."""
    ns = e2e_namespace
    cr = example_training()
    cr["spec"]["storage"]["data"] = {"volume": {"hostPath": {"path": "/"}}, "mountPath": "/data"}
    apply_example(e2e_cluster, ns, cr)
    st = wait_phase(e2e_cluster, ns, "warehouse-r50", "Failed", operator, timeout=60)
    ready = condition(st, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert (
        "spec.storage.data.volume.hostPath: node-level volume sources are refused"
        in (ready["message"])
    )
    assert "--allow-node-volumes" in ready["message"]
    assert condition(st, "Stalled")["status"] == "True"
    assert not e2e_cluster.get("jobs", "-n", ns)["items"]
