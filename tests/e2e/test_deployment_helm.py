"""The Helm chart installed into the local control plane (Helm's Go SDK via helm-python-sdk).

kwok simulates the operator's pod; what is checked is what Kubernetes accepted: the objects, the
CRDs (adopted by the release, kept on uninstall), and what the ServiceAccount may and may not do
(``kubectl auth can-i`` answered by the API server's RBAC authorizer).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.e2e.training_support import REPO

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

CHART = REPO / "charts" / "rtdetr-operator"
CRDS = ("rtdetrtrainings.rtdetr.dev", "rtdetrdeployments.rtdetr.dev")

#: (verb, resource, allowed) for the operator's ServiceAccount where it works.
EXPECTED = [
    ("create", "jobs.batch", True),
    ("delete", "jobs.batch", True),
    ("update", "jobs.batch", False),
    ("watch", "pods", True),
    ("delete", "pods", False),
    ("create", "pods", False),
    ("update", "rtdetrdeployments.rtdetr.dev --subresource=status", True),
    ("update", "rtdetrtrainings.rtdetr.dev --subresource=status", True),
    ("create", "rtdetrdeployments.rtdetr.dev", False),
    ("patch", "rtdetrdeployments.rtdetr.dev", False),
    ("update", "deployments.apps", True),
    ("create", "horizontalpodautoscalers.autoscaling", True),
    ("watch", "horizontalpodautoscalers.autoscaling", False),
    ("delete", "poddisruptionbudgets.policy", True),
    ("delete", "configmaps", False),
    ("get", "secrets", False),
    ("create", "roles.rbac.authorization.k8s.io", False),
]


def can(cluster: Any, sa: str, verb: str, resource: str, namespace: str) -> bool:
    args = ["auth", "can-i", verb, *resource.split(), f"--as={sa}", "-n", namespace]
    out = cluster.kubectl(*args, check=False)
    assert out.stdout.strip() in ("yes", "no"), out.stderr
    return out.stdout.strip() == "yes"


@pytest.fixture
def watched(e2e_cluster: Any) -> Iterator[str]:
    name = f"e2e-w-{uuid.uuid4().hex[:8]}"
    e2e_cluster.kubectl("create", "namespace", name)
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _config(cluster: Any, namespace: str) -> helm.Config:
    return helm.Config(kubeconfig_path=Path(cluster.kubeconfig), namespace=namespace)


def _adopt_crds(cluster: Any, release: str, namespace: str) -> None:
    """Let the release take over the CRDs the session already installed (Helm's adoption)."""
    for crd in CRDS:
        cluster.kubectl("label", "--overwrite", "crd", crd, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate",
            "--overwrite",
            "crd",
            crd,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={namespace}",
        )


def _wait_available(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        d = cluster.get("deployment", name, "-n", namespace)
        want = d["spec"].get("replicas", 1)
        return d if (d.get("status") or {}).get("availableReplicas") == want else None

    return cluster.wait_for(f"Deployment {name} available", probe, timeout=60)


def test_namespaced_install_upgrade_and_uninstall_keeping_the_crds(
    e2e_cluster, e2e_namespace, rtdetr_crd, watched
) -> None:
    ns, release = e2e_namespace, "rtdetr"
    full = "rtdetr-rtdetr-operator"
    _adopt_crds(e2e_cluster, release, ns)
    config = _config(e2e_cluster, ns)
    values = {
        "watchNamespaces": [watched],
        "defaults": {"trainerImage": "rtdetr-trainer:0.1.0"},
    }
    installed = config.install(CHART, release, values, namespace=ns, timeout=120)
    removed: dict[str, Any] = {}
    try:
        assert installed["status"] == "deployed"
        dep = _wait_available(e2e_cluster, ns, full)
        spec = dep["spec"]
        assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
        c = spec["template"]["spec"]["containers"][0]
        assert f"--namespace={watched}" in c["args"] and "--leader-elect" in c["args"]
        e2e_cluster.get("pdb", full, "-n", ns)
        sa, lease = f"system:serviceaccount:{ns}:{full}", "leases.coordination.k8s.io"
        for verb in ("get", "create", "update"):  # the Lease lives in the release namespace
            assert can(e2e_cluster, sa, verb, lease, ns)
        assert not can(e2e_cluster, sa, "delete", lease, ns)
        assert not can(e2e_cluster, sa, "get", lease, watched)
        assert "--build-image=rtdetr-trainer:0.1.0" in c["args"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        e2e_cluster.get("serviceaccount", full, "-n", ns)
        e2e_cluster.get("role", full, "-n", watched)
        e2e_cluster.get("rolebinding", full, "-n", watched)
        assert e2e_cluster.kubectl("get", "clusterrole", full, check=False).returncode != 0
        for cm in ("gitops-health", "prometheus-adapter-rules"):
            e2e_cluster.get("configmap", f"{full}-{cm}", "-n", ns)
        for crd in CRDS:
            obj = e2e_cluster.get("crd", crd)
            assert obj["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        sa = f"system:serviceaccount:{ns}:{full}"
        for verb, resource, allowed in EXPECTED:
            assert can(e2e_cluster, sa, verb, resource, watched) is allowed, (verb, resource)
        # outside its watched namespaces it may do nothing
        assert not can(e2e_cluster, sa, "create", "jobs.batch", ns)
        assert not can(e2e_cluster, sa, "list", "rtdetrdeployments.rtdetr.dev", "default")
        assert not can(e2e_cluster, sa, "list", "nodes", "default")

        upgraded = config.upgrade(CHART, release, {**values, "operator": {"workers": 2}})
        assert (upgraded["revision"], upgraded["status"]) == (2, "deployed")
        dep = e2e_cluster.get("deployment", full, "-n", ns)
        assert "--workers=2" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    finally:
        removed = config.uninstall(release)
    assert "kept due to the resource policy" in removed["info"]
    assert "rtdetrdeployments.rtdetr.dev" in removed["info"]
    assert e2e_cluster.kubectl("get", "deployment", full, "-n", ns, check=False).returncode != 0
    assert e2e_cluster.kubectl("get", "role", full, "-n", watched, check=False).returncode != 0
    for crd in CRDS:  # kept: uninstalling the operator must not delete every custom resource
        e2e_cluster.wait_established(crd, timeout=10)


def test_cluster_wide_install_binds_a_cluster_role(
    e2e_cluster, e2e_namespace, rtdetr_crd, watched
) -> None:
    ns, release = e2e_namespace, "rtdetr-cw"
    full = "rtdetr-cw-rtdetr-operator"
    config = _config(e2e_cluster, ns)
    config.install(CHART, release, {"crds": {"install": False}}, namespace=ns, timeout=120)
    try:
        _wait_available(e2e_cluster, ns, full)
        binding = e2e_cluster.get("clusterrolebinding", full)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": ns}]
        sa = f"system:serviceaccount:{ns}:{full}"
        for namespace in (ns, watched, "default"):
            assert can(e2e_cluster, sa, "create", "deployments.apps", namespace)
            assert not can(e2e_cluster, sa, "get", "secrets", namespace)
        assert not can(e2e_cluster, sa, "list", "customresourcedefinitions", "default")
        args = e2e_cluster.get("deployment", full, "-n", ns)["spec"]["template"]["spec"]
        assert not [a for a in args["containers"][0]["args"] if a.startswith("--namespace")]
    finally:
        config.uninstall(release)
    assert e2e_cluster.kubectl("get", "clusterrole", full, check=False).returncode != 0


def _job(name: str) -> dict[str, Any]:
    """A Job Pod Security "restricted" admits (only admission is under test)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox:1.36",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                }
            }
        },
    }


def test_cluster_wide_install_may_not_write_in_kube_system(
    e2e_cluster, e2e_namespace, rtdetr_crd
) -> None:
    """RBAC would let the cluster-wide operator create Jobs in kube-system; the chart's
    ValidatingAdmissionPolicy refuses it (kubectl auth can-i does not ask admission, so the
    request is made for real, as the operator's ServiceAccount)."""
    ns, release = e2e_namespace, "rtdetr-cw"
    full = "rtdetr-cw-rtdetr-operator"
    sa = f"system:serviceaccount:{ns}:{full}"
    config = _config(e2e_cluster, ns)
    values = {"crds": {"install": False}, "gitops": {"healthChecksConfigMap": False}}
    name = f"e2e-denied-{ns[-8:]}"
    try:
        installed = config.install(CHART, release, values, namespace=ns, timeout=120)
        assert installed["status"] == "deployed"
        e2e_cluster.get("validatingadmissionpolicy", f"{full}-deny-namespaces")
        assert can(e2e_cluster, sa, "create", "jobs.batch", "kube-system")  # RBAC says yes

        def create(namespace: str, dry_run: bool) -> Any:
            args = ["create", "-f", "-", f"--as={sa}", "-n", namespace]
            body = json.dumps(_job(name))
            return e2e_cluster.kubectl(
                *args, *(["--dry-run=server"] if dry_run else []), input=body, check=False
            )

        # A new policy takes a moment to reach the API server's admission chain.
        e2e_cluster.wait_for(
            "the policy to refuse the operator in kube-system",
            lambda: create("kube-system", dry_run=True).returncode != 0,
            timeout=30,
        )
        out = create("kube-system", dry_run=False)
        assert out.returncode != 0, "the operator created a Job in kube-system"
        assert "ValidatingAdmissionPolicy" in out.stderr and "denied request" in out.stderr
        assert f"{sa} may not write in kube-system" in out.stderr
        # elsewhere the same request passes: the policy takes only the denied namespaces away
        assert create(ns, dry_run=True).returncode == 0
        # and the cluster admin is not the operator: kube-system stays theirs
        admin = e2e_cluster.kubectl(
            "create", "-f", "-", "-n", "kube-system", "--dry-run=server",
            input=json.dumps(_job(name)), check=False,
        )  # fmt: skip
        assert admin.returncode == 0, admin.stderr
    finally:
        config.uninstall(release)
        e2e_cluster.kubectl("delete", "job", name, "-n", "kube-system", check=False)
    assert (
        e2e_cluster.kubectl(
            "get", "validatingadmissionpolicy", f"{full}-deny-namespaces", check=False
        ).returncode
        != 0
    )
