"""Failures and interruptions: group restart, operator crash, deleted children, suspend."""

from __future__ import annotations

import collections

import pytest

from tests.e2e.training_support import (
    KWOK,
    apply_example,
    condition,
    events,
    example_training,
    jobs,
    training_status,
    wait_phase,
)

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd, operator (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]
NAME = "warehouse-r50"


def _train_pods(cluster, ns: str, job: str) -> list[dict]:
    return cluster.get("pods", "-n", ns, "-l", f"job-name={job}")["items"]


def test_a_failed_training_pod_restarts_the_group(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="12s"))
    wait_phase(e2e_cluster, ns, NAME, "Training", operator)
    victim = _train_pods(e2e_cluster, ns, f"{NAME}-train-0")[1]["metadata"]["name"]
    e2e_cluster.kubectl(
        "annotate",
        "--overwrite",
        "pod",
        victim,
        "-n",
        ns,
        f"{KWOK}/fail=true",
        f"{KWOK}/termination-message=NCCL watchdog timeout on rank 9",
    )

    def restarted() -> dict:
        st = training_status(e2e_cluster, ns, NAME)
        return st if st.get("restarts") == 1 else {}

    st = e2e_cluster.wait_for("restarts=1", restarted, timeout=60)
    assert st["trainingJob"] == f"{NAME}-train-1"
    warning = [e for e in events(e2e_cluster, ns, NAME) if e["reason"] == "Restarting"]
    assert warning and warning[0]["type"] == "Warning"
    assert victim in warning[0]["message"] and "NCCL watchdog timeout" in warning[0]["message"]
    st = wait_phase(e2e_cluster, ns, NAME, "Succeeded", operator, timeout=120)
    assert st["restarts"] == 1
    names = sorted(j["metadata"]["name"] for j in jobs(e2e_cluster, ns, NAME))
    assert names == [f"{NAME}-evaluate-0", f"{NAME}-export-0", f"{NAME}-train-0", f"{NAME}-train-1"]


def test_operator_restarted_mid_run_converges_without_duplicates(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="10s"))
    wait_phase(e2e_cluster, ns, NAME, "Training", operator)
    operator.kill()
    operator.start()
    wait_phase(e2e_cluster, ns, NAME, "Succeeded", operator, timeout=120)
    names = collections.Counter(j["metadata"]["name"] for j in jobs(e2e_cluster, ns, NAME))
    assert names == {f"{NAME}-train-0": 1, f"{NAME}-evaluate-0": 1, f"{NAME}-export-0": 1}
    st = training_status(e2e_cluster, ns, NAME)
    assert st["restarts"] == 0


def test_a_deleted_child_job_is_recreated(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="30s"))
    wait_phase(e2e_cluster, ns, NAME, "Training", operator)
    old = e2e_cluster.get("job", f"{NAME}-train-0", "-n", ns)["metadata"]["uid"]
    e2e_cluster.kubectl("delete", "job", f"{NAME}-train-0", "-n", ns, "--wait=false")

    def recreated() -> bool:
        got = e2e_cluster.kubectl(
            "get", "job", f"{NAME}-train-0", "-n", ns, "-o", "jsonpath={.metadata.uid}", check=False
        )
        return got.returncode == 0 and got.stdout not in ("", old)

    e2e_cluster.wait_for("train Job recreated", recreated, timeout=60)
    assert training_status(e2e_cluster, ns, NAME)["restarts"] == 0


def test_suspend_and_resume(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="8s"))
    wait_phase(e2e_cluster, ns, NAME, "Training", operator)
    e2e_cluster.kubectl(
        "patch", "rtt", NAME, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    st = wait_phase(e2e_cluster, ns, NAME, "Suspended", operator)
    assert condition(st, "Ready")["reason"] == "Suspended"
    e2e_cluster.wait_for(
        "training pods gone",
        lambda: not _train_pods(e2e_cluster, ns, f"{NAME}-train-0"),
        timeout=60,
    )
    e2e_cluster.kubectl(
        "patch", "rtt", NAME, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    st = wait_phase(e2e_cluster, ns, NAME, "Succeeded", operator, timeout=120)
    assert st["tasks"]["train"]["job"] == f"{NAME}-train-1" and st["restarts"] == 0
    assert st["observedGeneration"] == 3


def test_bad_input_fails_at_once(e2e_cluster, e2e_namespace, operator) -> None:
    """Exit code 2 is the trainer's "fix your input": no restart could help."""
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="30s"))
    wait_phase(e2e_cluster, ns, NAME, "Training", operator)
    victim = _train_pods(e2e_cluster, ns, f"{NAME}-train-0")[0]["metadata"]["name"]
    message = (
        '{"task": "train", "status": "FAILURE", "message": '
        '"dataset.val_data_sources.json_file: /data/warehouse/annotations/val.json does not exist"}'
    )
    e2e_cluster.kubectl(
        "annotate",
        "--overwrite",
        "pod",
        victim,
        "-n",
        ns,
        f"{KWOK}/fail=true",
        f"{KWOK}/exit-code=2",
        f"{KWOK}/termination-message={message}",
    )
    st = wait_phase(e2e_cluster, ns, NAME, "Failed", operator, timeout=60)
    ready = condition(st, "Ready")
    assert ready["reason"] == "BadInput" and st["restarts"] == 0
    assert "val.json does not exist" in ready["message"]
    assert [j["metadata"]["name"] for j in jobs(e2e_cluster, ns, NAME)] == [f"{NAME}-train-0"]


def test_active_deadline_fails_the_run_and_stops_its_pods(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    apply_example(e2e_cluster, ns, example_training(train_after="300s", activeDeadlineSeconds=8))
    st = wait_phase(e2e_cluster, ns, NAME, "Failed", operator, timeout=60)
    assert condition(st, "Ready")["reason"] == "DeadlineExceeded"
    e2e_cluster.wait_for(
        "training pods gone",
        lambda: not _train_pods(e2e_cluster, ns, f"{NAME}-train-0"),
        timeout=60,
    )
