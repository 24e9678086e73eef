"""Pure builders of RTDETRDeployment children, field by field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rtdetr_operator.deployment import manifests, pool_manifests
from rtdetr_operator.deployment.autoscaling import DEFAULT_BEHAVIOR, METRICS
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.names import ANNOTATION_SPEC_HASH, dns_name
from rtdetr_operator.deployment.resolve import ResolvedDeployment, resolve
from rtdetr_operator.deployment.source import Source, resolve_source
from tests.operator.deployment_sim import CATALOG, deployment, trained


def _resolved(**spec: Any) -> tuple[ResolvedDeployment, Source]:
    r = resolve(deployment(**spec), CATALOG, OperatorDefaults(build_image="trainer:1"))
    return r, resolve_source(r, trained())


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


def test_repository_job_reads_the_training_export_and_writes_per_revision() -> None:
    r, src = _resolved()
    job = manifests.repository_job(r, src, "k" * 64, "trainer:1")
    assert job["metadata"]["name"] == "wh-repo-kkkkkkkkkk"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-wh"
    c = _container(job)
    assert c["command"] == [
        "rtdetr-serve",
        "repository",
        "--onnx",
        "/results/export/warehouse-r50.onnx",
        "--output",
        "/models",
        "--by-revision",
        "--force",
        "--model-name",
        "rtdetr",
        "--gpu",
        "H100",
        "--gpu",
        "L4",
    ]
    # no GPU; the defaults bound CPU and memory (a small request, a bounded limit)
    assert c["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    pod = job["spec"]["template"]["spec"]
    # one volume (the training's results claim), mounted twice: the export read-only; and
    # the scratch emptyDir, as the root filesystem is read-only
    assert pod["volumes"] == [
        {"name": "repository", "persistentVolumeClaim": {"claimName": "rtdetr-results"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["workingDir"] == "/tmp" and {"name": "HOME", "value": "/tmp"} in c["env"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"] == {
        "name": "repository",
        "mountPath": "/models",
        "readOnly": False,
        "subPath": "triton/wh",
    }
    assert mounts["/results"]["readOnly"] and mounts["/results"]["subPath"] == "warehouse-r50"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "RTDETR_TERMINATION_LOG", "value": "/dev/termination-log"} in c["env"]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert "affinity" not in pod


def test_an_onnx_without_manifest_hands_its_class_names_to_the_repository_job() -> None:
    onnx = {"claimName": "exports", "path": "tao/model.onnx", "classNames": ["bg", "pallet"]}
    r = resolve(deployment(model={"onnx": onnx}), CATALOG, OperatorDefaults())
    src = resolve_source(r, None)
    command = _container(manifests.repository_job(r, src, "k" * 64, "trainer:1"))["command"]
    assert command[-4:] == ["--class-name", "bg", "--class-name", "pallet"]
    plain = resolve(
        deployment(model={"onnx": {**onnx, "classNames": []}}), CATALOG, OperatorDefaults()
    )
    src2 = resolve_source(plain, None)
    assert (
        "--class-name"
        not in _container(manifests.repository_job(plain, src2, "k" * 64, "t"))["command"]
    )
    assert src.fingerprint != src2.fingerprint  # other names: the repository is written again


def test_onnx_source_on_its_own_claim_with_a_separate_repository_claim() -> None:
    spec = {
        "model": {"onnx": {"claimName": "exports", "path": "v7/model.onnx", "subPath": "rt"}},
        "repository": {"claimName": "triton-repo"},
    }
    r = resolve(deployment(**spec), CATALOG, OperatorDefaults())
    src = resolve_source(r, None)
    job = manifests.repository_job(r, src, "k" * 64, "trainer:1")
    pod = job["spec"]["template"]["spec"]
    claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in claims} == {
        "repository": "triton-repo",
        "source": "exports",
    }
    assert "/source/v7/model.onnx" in _container(job)["command"]
    source_mount = next(m for m in _container(job)["volumeMounts"] if m["name"] == "source")
    assert source_mount == {
        "name": "source",
        "mountPath": "/source",
        "readOnly": True,
        "subPath": "rt",
    }


def test_engine_job_is_pinned_to_every_product_of_its_gpu_type_with_one_gpu() -> None:
    r, src = _resolved(build={"method": "trtexec", "image": "trainer:2"})
    h100 = r.pool("H100")
    assert h100 is not None
    job = manifests.engine_job(
        r,
        h100,
        src,
        revision="a" * 12,
        onnx="/models/aaa/rtdetr/m.onnx",
        model_dir="/models/aaa/rtdetr",
        image="trainer:2",
    )
    pod = job["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {
            "key": "nvidia.com/gpu.product",
            "operator": "In",
            "values": CATALOG.get("H100").gpu_product_labels,
        }
    ]
    assert len(term["matchExpressions"][0]["values"]) == 3
    c = _container(job)
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    assert c["command"] == [
        "rtdetr-serve", "build-engine", "--onnx", "/models/aaa/rtdetr/m.onnx", "--gpu", "H100",
        "--output", "/models/aaa/rtdetr/1", "--tensorrt-version", "10.13.3", "--reuse", "--trtexec",
    ]  # fmt: skip
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["rtdetr.dev/pool"] == "h100" and labels["rtdetr.dev/revision"] == "a" * 12
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"


def test_pod_metadata_layers_and_the_pools_own_build_annotations() -> None:
    spec = {
        "build": {"image": "t:1", "podMetadata": {"annotations": {"a": "build", "b": "build"}}},
        "pools": [{"gpu": "L4", "engineBuild": {"podMetadata": {"annotations": {"b": "l4"}}}}],
    }
    r, src = _resolved(**spec)
    pool = r.pool("L4")
    assert pool is not None
    job = manifests.engine_job(
        r, pool, src, revision="b" * 12, onnx="/m.onnx", model_dir="/m", image="t:1"
    )
    ann = job["spec"]["template"]["metadata"]["annotations"]
    assert ann["a"] == "build" and ann["b"] == "l4" and ann["sidecar.istio.io/inject"] == "false"


def test_triton_deployment_serves_one_revision_with_the_gpus_config() -> None:
    r, src = _resolved()
    l4 = r.pool("L4")
    assert l4 is not None
    d = pool_manifests.triton_deployment(r, l4, src, "c" * 12, replicas=4)
    assert d["metadata"]["name"] == "wh-l4" and d["spec"]["replicas"] == 4
    assert d["spec"]["selector"]["matchLabels"] == {
        "rtdetr.dev/deployment": "wh",
        "rtdetr.dev/component": "triton",
        "rtdetr.dev/pool": "l4",
    }
    tmpl = d["spec"]["template"]
    assert tmpl["metadata"]["labels"]["rtdetr.dev/revision"] == "c" * 12
    c = tmpl["spec"]["containers"][0]
    assert c["image"] == "nvcr.io/nvidia/tritonserver:25.10-py3"
    assert c["args"][:2] == [f"--model-repository=/models/{'c' * 12}", "--model-config-name=l4"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
    }
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 600
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    repo = next(m for m in c["volumeMounts"] if m["name"] == "repository")
    assert repo["readOnly"] and repo["mountPath"] == "/models"
    vol = next(v for v in tmpl["spec"]["volumes"] if v["name"] == "repository")
    assert vol["persistentVolumeClaim"]["readOnly"] is True
    strategy = d["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    terms = tmpl["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["NVIDIA-L4"]


def test_deployment_hash_ignores_replicas_but_not_the_revision() -> None:
    r, src = _resolved()
    l4 = r.pool("L4")
    assert l4 is not None
    a = pool_manifests.triton_deployment(r, l4, src, "c" * 12, replicas=4)
    b = pool_manifests.triton_deployment(r, l4, src, "c" * 12, replicas=9)
    c = pool_manifests.triton_deployment(r, l4, src, "d" * 12, replicas=4)
    h = [x["metadata"]["annotations"][ANNOTATION_SPEC_HASH] for x in (a, b, c)]
    assert h[0] == h[1] != h[2]
    assert a["spec"]["selector"] == c["spec"]["selector"], "a revision never changes the selector"


def test_service_exposes_http_grpc_and_metrics_of_the_pool() -> None:
    r, _ = _resolved()
    h100 = r.pool("H100")
    assert h100 is not None
    svc = pool_manifests.service(r, h100)
    assert svc["spec"]["selector"]["rtdetr.dev/pool"] == "h100"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("grpc", 8001, "grpc"),
        ("metrics", 8002, "metrics"),
    ]
    assert pool_manifests.endpoints(r, h100)["http"] == "wh-h100.ml.svc:8000"


@pytest.mark.parametrize(
    ("autoscaling", "name", "target"),
    [
        ({}, "rtdetr_triton_queue_time_us", "10000"),
        ({"metric": "pendingRequests"}, "nv_inference_pending_request_count", "8"),
        ({"metric": "queueTime", "target": "25000"}, "rtdetr_triton_queue_time_us", "25000"),
    ],
)
def test_autoscaler_on_a_triton_metric(autoscaling: dict, name: str, target: str) -> None:
    r, _ = _resolved(autoscaling=autoscaling)
    l4 = r.pool("L4")
    assert l4 is not None
    hpa = pool_manifests.autoscaler(r, l4)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "wh-l4",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (4, 4)
    (metric,) = spec["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == name
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": target}
    assert spec["behavior"] == DEFAULT_BEHAVIOR
    assert name in {m.hpa_name for m in METRICS.values()}


def test_custom_behavior_is_passed_through() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    r, _ = _resolved(autoscaling={"behavior": behavior})
    h100 = r.pool("H100")
    assert h100 is not None
    assert pool_manifests.autoscaler(r, h100)["spec"]["behavior"] == behavior


@pytest.mark.parametrize(
    ("budget", "expected"),
    [({}, {"maxUnavailable": 1}), ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
     ({"maxUnavailable": 2}, {"maxUnavailable": 2})],
)  # fmt: skip
def test_disruption_budget(budget: dict, expected: dict) -> None:
    r, _ = _resolved(rollout={"disruptionBudget": budget})
    h100 = r.pool("H100")
    assert h100 is not None
    pdb = pool_manifests.disruption_budget(r, h100)
    selector = {"matchLabels": {"rtdetr.dev/deployment": "wh", "rtdetr.dev/component": "triton",
                                "rtdetr.dev/pool": "h100"}}  # fmt: skip
    assert pdb["spec"] == {"selector": selector, **expected}


def test_builders_are_pure() -> None:
    r, src = _resolved()
    h100 = r.pool("H100")
    assert h100 is not None
    before = copy.deepcopy(src)
    one = pool_manifests.triton_deployment(r, h100, src, "e" * 12, replicas=1)
    two = pool_manifests.triton_deployment(r, h100, src, "e" * 12, replicas=1)
    assert one == two and src == before


def test_long_names_stay_dns_labels() -> None:
    name = dns_name("a" * 40, "engine", "igx-thor-t7000-rtx-pro-6000", "abcdef12")
    assert len(name) <= 63 and name.startswith("a" * 40) and not name.endswith("-")
    assert name != dns_name("a" * 40, "engine", "igx-thor-t7000-rtx-pro-6000", "abcdef13")


def test_build_node_selector_applies_to_repository_and_engine_jobs() -> None:
    r, src = _resolved(build={"nodeSelector": {"storage": "shared"}})
    repo = manifests.repository_job(r, src, "k" * 64, "trainer:1")
    assert repo["spec"]["template"]["spec"]["nodeSelector"] == {"storage": "shared"}
    h100 = r.pool("H100")
    assert h100 is not None
    engine = manifests.engine_job(
        r, h100, src, revision="a" * 12, onnx="/m/x.onnx", model_dir="/m", image="trainer:1"
    )
    pod = engine["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"storage": "shared"} and "affinity" in pod
    unset, src2 = _resolved()
    plain = manifests.repository_job(unset, src2, "k" * 64, "trainer:1")
    assert "nodeSelector" not in plain["spec"]["template"]["spec"]


def test_triton_keeps_serving_until_its_endpoint_is_gone() -> None:
    r, src = _resolved()
    l4 = r.pool("L4")
    assert l4 is not None
    pod = pool_manifests.triton_deployment(r, l4, src, "c" * 12, replicas=1)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < sleep < pod["spec"]["terminationGracePeriodSeconds"]
