"""deploy/rbac is enough, and no more: the operator runs a whole training as its ServiceAccount."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.training_support import (
    REPO,
    OperatorProcess,
    apply_example,
    example_training,
    wait_phase,
)

pytestmark = pytest.mark.e2e
# Fixtures: rtdetr_crd (plus e2e_cluster/e2e_namespace from conftest).
pytest_plugins = ["tests.e2e.training_fixtures"]

SA = "system:serviceaccount:rtdetr-system:rtdetr-operator"


def _service_account_kubeconfig(cluster, path: Path) -> Path:
    cluster.kubectl("apply", "-k", str(REPO / "deploy" / "rbac"))
    token = cluster.kubectl(
        "create", "token", "rtdetr-operator", "-n", "rtdetr-system", "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cl = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cl],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cl["name"], "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("create", "jobs.batch", True),
        ("delete", "jobs.batch", True),
        ("update", "rtdetrtrainings.rtdetr.dev --subresource=status", True),
        ("watch", "pods", True),
        ("delete", "pods", False),
        ("create", "pods", False),
        ("get", "secrets", False),
        ("create", "rtdetrtrainings.rtdetr.dev", False),
        ("patch", "rtdetrtrainings.rtdetr.dev", False),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", False),
    ],
)
def test_cluster_role_grants_only_what_is_used(
    e2e_cluster, e2e_namespace, rtdetr_crd, verb: str, resource: str, allowed: bool
) -> None:
    # rtdetr_crd: kubectl resolves rtdetrtrainings through discovery, so the CRD must be served.
    e2e_cluster.kubectl("apply", "-k", str(REPO / "deploy" / "rbac"))
    answer = e2e_cluster.kubectl(
        "auth", "can-i", verb, *resource.split(), "-n", e2e_namespace, f"--as={SA}", check=False
    ).stdout.strip()
    assert answer == ("yes" if allowed else "no")


def test_operator_as_its_service_account(
    e2e_cluster, e2e_namespace, rtdetr_crd, tmp_path: Path
) -> None:
    ns = e2e_namespace
    kubeconfig = _service_account_kubeconfig(e2e_cluster, tmp_path / "sa.kubeconfig")
    env = dict(e2e_cluster.env, KUBECONFIG=str(kubeconfig))
    op = OperatorProcess(env, [ns], tmp_path / "operator.log")
    op.start()
    try:
        apply_example(e2e_cluster, ns, example_training(train_after="8s"))
        wait_phase(e2e_cluster, ns, "warehouse-r50", "Training", op)
        patch = '{"spec":{"suspend":%s}}'
        e2e_cluster.kubectl(
            "patch", "rtt", "warehouse-r50", "-n", ns, "--type=merge", "-p", patch % "true"
        )
        wait_phase(e2e_cluster, ns, "warehouse-r50", "Suspended", op)
        e2e_cluster.kubectl(
            "patch", "rtt", "warehouse-r50", "-n", ns, "--type=merge", "-p", patch % "false"
        )
        wait_phase(e2e_cluster, ns, "warehouse-r50", "Succeeded", op, timeout=120)
    finally:
        op.stop()
    log = op.log(lines=100000)
    assert "Forbidden" not in log and "HTTP 403" not in log, log
