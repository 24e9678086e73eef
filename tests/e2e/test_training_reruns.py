"""Re-runs and experiments by reference on a real control plane (kwok runs the pods).

A training re-created under the same name gets a new results folder; spec.resumeFrom continues
another run explicitly; spec.experimentRef + spec.overrides define a run from a ConfigMap, which
is read again until it is right.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from tests.e2e.training_support import (
    apply_example,
    condition,
    example_training,
    jobs,
    training_status,
    wait_phase,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]


def _by_reference(name: str, overrides: list[str]) -> tuple[dict, dict]:
    cr = example_training(name)
    experiment = cr["spec"].pop("experiment")
    cr["spec"]["experimentRef"] = {"name": f"{name}-spec", "key": "spec.yaml"}
    cr["spec"]["overrides"] = overrides
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-spec"},
        "data": {"spec.yaml": yaml.safe_dump(experiment)},
    }
    return cr, configmap


def test_a_training_from_a_configmap_plus_overrides_succeeds(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    cr, configmap = _by_reference("by-ref", ["train.num_epochs=3", "train.optim.lr=0.00005"])
    apply_example(e2e_cluster, ns, cr)  # the ConfigMap does not exist yet

    def stalled() -> dict:
        st = training_status(e2e_cluster, ns, "by-ref")
        return st if st.get("conditions") and condition(st, "Stalled")["status"] == "True" else {}

    st = e2e_cluster.wait_for("Stalled", stalled, timeout=60)
    assert condition(st, "Stalled")["reason"] == "InvalidExperiment"
    assert (
        "spec.experimentRef (ConfigMap by-ref-spec key spec.yaml): not found"
        in (condition(st, "Stalled")["message"])
    )
    assert st["phase"] == "Pending" and not jobs(e2e_cluster, ns, "by-ref")
    e2e_cluster.apply([configmap], namespace=ns)  # re-read within 10 s: the run starts
    st = wait_phase(e2e_cluster, ns, "by-ref", "Succeeded", operator, timeout=120)
    assert st["experimentSource"]["configMap"] == "by-ref-spec"
    assert len(st["experimentSource"]["sha256"]) == 64
    own = e2e_cluster.get("configmap", "by-ref-experiment", "-n", ns)
    resolved = yaml.safe_load(own["data"]["experiment.yaml"])
    assert resolved["train"]["num_epochs"] == 3 and resolved["train"]["optim"]["lr"] == 0.00005


def test_a_wrong_override_stalls_naming_it(e2e_cluster, e2e_namespace, operator) -> None:
    ns = e2e_namespace
    cr, configmap = _by_reference("bad-override", ["train.optim.lrr=1"])
    e2e_cluster.apply([configmap], namespace=ns)
    apply_example(e2e_cluster, ns, cr)

    def stalled() -> dict:
        st = training_status(e2e_cluster, ns, "bad-override")
        return st if st.get("conditions") and condition(st, "Stalled")["status"] == "True" else {}

    st = e2e_cluster.wait_for("Stalled", stalled, timeout=60)
    assert condition(st, "Stalled")["message"].startswith("spec.overrides[0]: ")
    assert "lrr" in condition(st, "Stalled")["message"]


def test_both_experiment_forms_are_refused_at_apply(e2e_cluster, e2e_namespace, rtdetr_crd) -> None:
    cr = example_training("both")
    cr["spec"]["experimentRef"] = {"name": "x"}
    result = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(cr), check=False
    )
    assert result.returncode != 0
    assert "set exactly one of spec.experiment and spec.experimentRef" in result.stderr
    cr = example_training("two-sources", resumeFrom={"training": "a", "checkpoint": "/data/x"})
    result = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "-f", "-", input=json.dumps(cr), check=False
    )
    assert result.returncode != 0 and "set exactly one of training or checkpoint" in result.stderr


def test_a_recreated_training_starts_afresh_and_resume_from_is_explicit(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    cr = example_training("run")
    apply_example(e2e_cluster, ns, cr)
    first = wait_phase(e2e_cluster, ns, "run", "Succeeded", operator, timeout=120)
    first_folder = first["resultsVolume"]["subPath"]
    e2e_cluster.kubectl("delete", "rtdetrtraining", "run", "-n", ns, "--wait=true")
    apply_example(e2e_cluster, ns, copy.deepcopy(cr))
    again = wait_phase(e2e_cluster, ns, "run", "Succeeded", operator, timeout=120)
    assert again["resultsVolume"]["subPath"] != first_folder  # a new, empty folder
    assert again["resultsVolume"]["subPath"].startswith("run-")

    more = example_training("run-more", resumeFrom={"training": "run"})
    apply_example(e2e_cluster, ns, more)
    st = wait_phase(e2e_cluster, ns, "run-more", "Succeeded", operator, timeout=120)
    assert st["startedFrom"]["source"] == "training/run"
    assert st["startedFrom"]["volume"]["subPath"] == again["resultsVolume"]["subPath"]
    train = next(j for j in jobs(e2e_cluster, ns, "run-more") if "-train-" in j["metadata"]["name"])
    pod = train["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["RTDETR_RESUME_FROM"] == st["startedFrom"]["checkpoint"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "from")
    assert mount["readOnly"] is True and mount["mountPath"] == "/from"
