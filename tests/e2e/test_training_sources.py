"""Source URIs on a real control plane: the training pods with their fetch steps are admitted
under Pod Security "restricted" (kwok runs them; no download happens here)."""

from __future__ import annotations

import pytest

from tests.e2e.training_support import apply_example, example_training, jobs, wait_phase

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]


def test_a_training_with_an_s3_checkpoint_runs_with_a_fetch_step(
    e2e_cluster, e2e_namespace, operator
) -> None:
    ns = e2e_namespace
    cr = example_training(
        "from-s3",
        sources={"secretName": "s3-credentials", "s3Endpoint": "http://127.0.0.1:8333"},
        overrides=["train.pretrained_model_path=s3://warehouse/pretrained/r50.pth"],
    )
    apply_example(e2e_cluster, ns, cr)
    st = wait_phase(e2e_cluster, ns, "from-s3", "Succeeded", operator, timeout=120)
    assert st["phase"] == "Succeeded"
    # kwok ran the step without a command: done, with no summary to show.
    assert st["sources"] == [{"uri": "s3://warehouse/pretrained/r50.pth", "state": "Fetched"}]
    train = next(j for j in jobs(e2e_cluster, ns, "from-s3") if "-train-" in j["metadata"]["name"])
    pod = train["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "fetch-0" and "s3://warehouse/pretrained/r50.pth" in init["command"]
    assert init["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    own = e2e_cluster.get("configmap", "from-s3-experiment", "-n", ns)
    assert "pretrained_model_path: /sources/0/r50.pth" in own["data"]["experiment.yaml"]
    pods = e2e_cluster.get("pods", "-n", ns, "-l", "rtdetr.dev/training=from-s3")["items"]
    assert pods  # admitted under the namespace's enforced "restricted" profile
