"""The rtdetr-operator Helm chart: lints, renders, least-privilege RBAC, CRDs without drift.

Rendered with Helm's own Go SDK (helm-python-sdk), offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from rtdetr_operator import handlers
from rtdetr_operator.codegen import gitops
from rtdetr_operator.deployment import autoscaling, defaults
from rtdetr_operator.deployment.kube import VERBS
from rtdetr_operator.kube import COLLECTIONS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rtdetr-operator"
KUBE_VERSION = "v1.36.3"


def render(values: dict[str, Any] | None = None, namespace: str = "rtdetr-system") -> list[dict]:
    chart = helm.Chart.load(CHART)
    out = chart.render(values or {}, name="rtdetr", namespace=namespace)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespaces": ["team-a", "team-b"]},
        {"crds": {"install": False}, "gitops": {"healthChecksConfigMap": False}},
        {"defaults": {"trainerImage": "registry.local/rtdetr-trainer:0.1.0"}},
        {"metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": True}}},
    ],
)
def test_lints_strictly(values: dict) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=KUBE_VERSION)
    assert report["errors"] == []
    assert not [m for m in report["messages"] if m["severity"] >= 2], report["messages"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"defaults": {"tritonTensorRTVersion": "latest"}}, "/defaults/tritonTensorRTVersion"),
        ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"metrics": {"port": 8080}}, "/metrics/port"),  # the health port
    ],
)
def test_bad_values_are_refused_naming_the_key(values: dict, complaint: str) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=KUBE_VERSION)
    assert any(complaint in e for e in report["errors"]), report["errors"]
    with pytest.raises(helm.HelmValuesError, match=complaint.split("/")[-1]):
        render(values)


def _serving_roles(docs: list[dict]) -> list[dict]:
    return [r for r in of_kind(docs, "Role") if not r["metadata"]["name"].endswith("-election")]


def test_two_replicas_elect_a_leader_on_a_lease_behind_a_disruption_budget() -> None:
    docs = render()
    (dep,) = of_kind(docs, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--leader-election-namespace=rtdetr-system" in args
    assert "--leader-election-lease=rtdetr-rtdetr-operator" in args
    assert {"--lease-duration=15", "--renew-deadline=10", "--retry-period=2"} <= set(args)
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert (
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"]
        == "kubernetes.io/hostname"
    )
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-election")]
    assert role["metadata"]["namespace"] == "rtdetr-system"
    assert _granted(role["rules"]) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }
    (binding,) = of_kind(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    single = render({"replicaCount": 1})
    (dep,) = of_kind(single, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not of_kind(single, "PodDisruptionBudget") and not of_kind(single, "Role")


def test_operator_deployment_is_hardened() -> None:
    (dep,) = of_kind(render(), "Deployment")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert f"--triton-image={defaults.TRITON_IMAGE}" in c["args"]
    assert f"--triton-tensorrt-version={defaults.TENSORRT_VERSION}" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--namespace")]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod["serviceAccountName"] == "rtdetr-rtdetr-operator"


def test_metrics_service_service_monitor_and_dashboard() -> None:
    from rtdetr_operator.cli import parse_args

    docs = render()
    (c,) = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert f"--metrics-port={parse_args([]).metrics_port}" in c["args"]
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in c["ports"]
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = of_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert not of_kind(docs, "ServiceMonitor")
    assert not [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]

    on = {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}
    on["dashboard"] = {"enabled": True}
    docs = render({"metrics": on})
    (sm,) = of_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    (dash,) = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "rtdetr-operator.json").read_text()
    assert json.loads(dash["data"]["rtdetr-operator.json"]) == json.loads(shipped)

    off = render({"metrics": {"port": 0, "serviceMonitor": {"enabled": True}}})
    (c,) = of_kind(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"]
    assert "--metrics-port=0" in c["args"] and all(p["name"] != "metrics" for p in c["ports"])
    assert not of_kind(off, "ServiceMonitor")
    assert not [s for s in of_kind(off, "Service") if s["metadata"]["name"].endswith("-metrics")]


def test_chart_defaults_are_the_operators() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["defaults"]["tritonImage"] == defaults.TRITON_IMAGE
    assert values["defaults"]["tritonTensorRTVersion"] == defaults.TENSORRT_VERSION
    assert values["prometheusAdapter"]["rules"] == autoscaling.adapter_rules()


def test_cluster_wide_rbac_by_default_and_roles_per_watched_namespace() -> None:
    docs = render()
    (role,) = of_kind(docs, "ClusterRole")
    (binding,) = of_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rtdetr-rtdetr-operator", "namespace": "rtdetr-system"}
    ]
    assert not _serving_roles(docs)
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in _serving_roles(docs)) == ["team-a", "team-b"]
    bindings = of_kind(docs, "RoleBinding")
    assert all(b["subjects"][0]["namespace"] == "rtdetr-system" for b in bindings)
    (dep,) = of_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert _serving_roles(docs)[0]["rules"] == role["rules"]


def _granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


#: What the training reconciler calls (training/reconcile.py through rtdetr_operator/kube.py).
TRAINING_CALLS = {
    ("rtdetr.dev", "rtdetrtrainings", "get"),
    ("rtdetr.dev", "rtdetrtrainings/status", "update"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "delete"),
    ("", "pods", "list"),
    ("", "pods/log", "get"),
    ("", "configmaps", "get"),
    ("", "configmaps", "create"),
    ("", "configmaps", "update"),
    ("", "services", "get"),
    ("", "services", "create"),
    ("", "events", "create"),
}


def _needed() -> set[tuple[str, str, str]]:
    """Every call the operator makes: both reconcilers' and kopf's watches (list + watch)."""
    out = set(TRAINING_CALLS) | {("rtdetr.dev", "rtdetrdeployments/status", "update")}
    for kind, verbs in VERBS.items():  # the deployment reconciler's own table
        _, group, resource = COLLECTIONS[kind]
        out |= {(group, resource, verb) for verb in verbs}
    watched: list[tuple[str, ...]] = [
        ("rtdetr.dev", "v1alpha1", "rtdetrtrainings"),
        ("rtdetr.dev", "v1alpha1", "rtdetrdeployments"),
        *handlers.CHILD_RESOURCES,
        *handlers.DEPLOYMENT_CHILD_RESOURCES,
    ]
    for res in watched:
        group = res[0] if len(res) == 3 else ""
        out |= {(group, res[-1], "list"), (group, res[-1], "watch")}
    return out


def test_rbac_grants_everything_the_operator_does_and_nothing_else() -> None:
    (role,) = of_kind(render(), "ClusterRole")
    granted = _granted(role["rules"])
    needed = _needed()
    missing = needed - granted
    assert not missing, f"the operator would be refused: {sorted(missing)}"
    # "get" on a collection the operator lists and watches is what kubectl and kopf expect.
    unused = {t for t in granted - needed if t[2] != "get"}
    assert not unused, f"granted but never used: {sorted(unused)}"
    assert not {(g, r) for g, r, _ in granted} & {
        ("", "secrets"),
        ("", "nodes"),
        ("", "namespaces"),
    }
    assert not any("*" in x for t in granted for x in t)
    verbs = {v for _, _, v in granted}
    assert not verbs & {"patch", "deletecollection", "escalate", "bind", "impersonate"}
    # write access only where the operator writes
    writable = {(g, r) for g, r, v in granted if v in ("create", "update", "delete")}
    assert ("", "pods") not in writable and ("rtdetr.dev", "rtdetrtrainings") not in writable
    assert ("autoscaling", "horizontalpodautoscalers", "watch") not in granted


def test_chart_crds_are_the_repositorys_crds() -> None:
    docs = of_kind(render(), "CustomResourceDefinition")
    assert len(docs) == 2
    for doc in docs:
        assert doc["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
        plural = doc["spec"]["names"]["plural"]
        source = yaml.safe_load((ROOT / "crds" / f"rtdetr.dev_{plural}.yaml").read_text())
        assert doc == source
    for name in ("rtdetr.dev_rtdetrtrainings.yaml", "rtdetr.dev_rtdetrdeployments.yaml"):
        assert (CHART / "files" / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes()
    assert not of_kind(render({"crds": {"install": False}}), "CustomResourceDefinition")
    no_keep = of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert all("annotations" not in d["metadata"] for d in no_keep)


def test_gitops_and_adapter_configmaps_carry_the_generated_files() -> None:
    docs = {d["metadata"]["name"]: d for d in of_kind(render(), "ConfigMap")}
    health = docs["rtdetr-rtdetr-operator-gitops-health"]["data"]
    assert health["argocd-resource-customizations.yaml"].strip() == gitops.argocd_patch().strip()
    assert yaml.safe_load(health["flux-health-check-exprs.yaml"]) == gitops.flux_exprs()
    rules = docs["rtdetr-rtdetr-operator-prometheus-adapter-rules"]["data"]["custom-rules.yaml"]
    assert yaml.safe_load(rules) == autoscaling.adapter_rules()
    assert gitops.main(["--check"]) == 0


def test_a_custom_gpu_catalog_reaches_the_operator() -> None:
    catalog = {"gpus": [{"name": "L4", "engine": {"opt_batch": 2, "max_batch": 4}}]}
    docs = render({"gpuCatalog": catalog})
    cm = next(
        d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("gpu-catalog")
    )
    assert yaml.safe_load(cm["data"]["gpu-catalog.yaml"]) == catalog
    (dep,) = of_kind(docs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "RTDETR_GPU_CATALOG", "value": "/etc/rtdetr/gpu-catalog.yaml"} in c["env"]


def test_plain_manifests_grant_what_the_chart_grants() -> None:
    """deploy/rbac (kubectl apply -k) and the chart are two ways to install the same rules."""
    (role,) = of_kind(render(), "ClusterRole")
    plain = yaml.safe_load((ROOT / "deploy" / "rbac" / "cluster-role.yaml").read_text())
    assert _granted(plain["rules"]) == _granted(role["rules"])


def test_cluster_wide_mode_denies_the_operator_any_write_in_the_control_plane() -> None:
    docs = render()
    (policy,) = of_kind(docs, "ValidatingAdmissionPolicy")
    (binding,) = of_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (cond,) = spec["matchConditions"]
    user = "system:serviceaccount:rtdetr-system:rtdetr-rtdetr-operator"
    assert cond["expression"] == f'request.userInfo.username == "{user}"'
    (selector,) = spec["matchConstraints"]["namespaceSelector"]["matchExpressions"]
    denied = ["kube-system", "kube-public", "kube-node-lease"]
    assert selector["values"] == denied
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"] and "*/*" in rule["resources"]
    (dep,) = of_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--deny-namespaces={','.join(denied)}" in args
    assert "--allow-node-volumes" not in args


def test_namespace_scoped_mode_needs_no_policy_and_may_not_watch_a_denied_namespace() -> None:
    docs = render({"watchNamespaces": ["team-a"]})
    assert not of_kind(docs, "ValidatingAdmissionPolicy")
    assert not of_kind(
        render({"rbac": {"denyNamespacesPolicy": False}}), "ValidatingAdmissionPolicy"
    )
    with pytest.raises(
        Exception, match=r"watchNamespaces: kube-system is in operator\.denyNamespaces"
    ):
        render({"watchNamespaces": ["team-a", "kube-system"]})


def test_node_volumes_are_allowed_only_when_asked_for() -> None:
    (dep,) = of_kind(render({"operator": {"allowNodeVolumes": True}}), "Deployment")
    assert "--allow-node-volumes" in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def test_plain_manifests_deny_the_control_plane_as_the_chart_does() -> None:
    (chart,) = of_kind(render(), "ValidatingAdmissionPolicy")
    path = ROOT / "deploy" / "rbac" / "deny-namespaces-policy.yaml"
    plain = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (policy,) = of_kind(plain, "ValidatingAdmissionPolicy")
    ours = "system:serviceaccount:rtdetr-system:rtdetr-operator"
    theirs = "system:serviceaccount:rtdetr-system:rtdetr-rtdetr-operator"
    expected = json.dumps(chart["spec"], sort_keys=True).replace(theirs, ours)
    expected = expected.replace(
        "(rtdetr-operator: operator.denyNamespaces)", "(rtdetr-operator: --deny-namespaces)"
    )
    assert json.dumps(policy["spec"], sort_keys=True) == expected
    kustomization = yaml.safe_load((ROOT / "deploy" / "rbac" / "kustomization.yaml").read_text())
    assert path.name in kustomization["resources"]
