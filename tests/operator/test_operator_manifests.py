"""Pure manifest builders: the TAO launch contract, GPUs, shm, placement, ownership, names."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX
from rtdetr_operator.training import manifests
from rtdetr_operator.training.resolve import resolve
from rtdetr_spec import ExportConfig
from tests.operator.factories import training


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _train_pod(**spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    job = manifests.training_job(resolve(training(**spec)), attempt=0)
    return job, job["spec"]["template"]


def test_training_job_is_an_indexed_gang_without_job_retries() -> None:
    job, _ = _train_pod()
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 2
    assert spec["backoffLimit"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_launch_contract_env() -> None:
    job, tpl = _train_pod()
    env = _env(tpl["spec"]["containers"][0])
    rank_ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_COMPLETION_INDEX}']"}}
    assert env["WORLD_SIZE"] == "2"  # TAO: number of NODES, not processes
    assert env["NODE_RANK"] == rank_ref
    assert env["PET_NODE_RANK"] == rank_ref
    assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "wh-train-0-0.wh-train"
    assert env["MASTER_PORT"] == env["PET_MASTER_PORT"] == "29500"
    assert env["NUM_GPU_PER_NODE"] == env["PET_NPROC_PER_NODE"] == "8"
    assert env["PET_NNODES"] == "2"
    assert env["RTDETR_TERMINATION_LOG"] == "/dev/termination-log"
    # pod 0's hostname is <job>-0 under the Service named by subdomain
    assert tpl["spec"]["subdomain"] == "wh-train"
    assert job["metadata"]["name"] == "wh-train-0"


def test_master_addr_and_names_follow_the_attempt() -> None:
    r = resolve(training())
    job = manifests.training_job(r, attempt=3)
    env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert job["metadata"]["name"] == "wh-train-3"
    assert env["MASTER_ADDR"] == "wh-train-3-0.wh-train"
    assert job["metadata"]["labels"]["rtdetr.dev/attempt"] == "3"


def test_user_env_and_master_port() -> None:
    _, tpl = _train_pod(
        env=[{"name": "NCCL_DEBUG", "value": "INFO"}], training={"masterPort": 23456}
    )
    c = tpl["spec"]["containers"][0]
    env = _env(c)
    assert env["NCCL_DEBUG"] == "INFO" and env["MASTER_PORT"] == "23456"
    assert c["ports"] == [{"name": "rendezvous", "containerPort": 23456}]


def test_gpu_requests_resources_and_shm() -> None:
    _, tpl = _train_pod(resources={"cpu": "32", "memory": "256Gi", "shmSize": "64Gi"})
    c = tpl["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    shm = next(v for v in tpl["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "dshm")
    assert mount["mountPath"] == "/dev/shm"


def test_gpu_product_becomes_node_selector_and_gpu_taint_is_tolerated() -> None:
    _, tpl = _train_pod(nodeSelector={"pool": "train"})
    spec = tpl["spec"]
    assert spec["nodeSelector"] == {
        "pool": "train",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]


def test_scheduling_passthrough() -> None:
    affinity = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    _, tpl = _train_pod(
        affinity=affinity,
        priorityClassName="training-high",
        schedulerName="volcano",
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        imagePullSecrets=[{"name": "ngc"}],
    )
    spec = tpl["spec"]
    assert spec["affinity"] == affinity
    assert spec["priorityClassName"] == "training-high"
    assert spec["schedulerName"] == "volcano"
    assert spec["tolerations"][0] == {"key": "dedicated", "operator": "Equal", "value": "ml"}
    assert spec["imagePullSecrets"] == [{"name": "ngc"}]


def test_pod_metadata_merges_and_istio_is_off() -> None:
    _, tpl = _train_pod(
        podMetadata={"labels": {"team": "a"}, "annotations": {"sidecar.istio.io/inject": "true"}},
        training={"podMetadata": {"annotations": {"kwok.rtdetr.dev/complete-after": "10s"}}},
    )
    meta = tpl["metadata"]
    assert meta["labels"]["team"] == "a"
    assert meta["labels"]["rtdetr.dev/training"] == "wh"
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"]["kwok.rtdetr.dev/complete-after"] == "10s"


def test_volumes_results_survive_restarts_with_per_run_subpath() -> None:
    _, tpl = _train_pod()
    c = tpl["spec"]["containers"][0]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["results"] == {
        "name": "results",
        "mountPath": "/results",
        "readOnly": False,
        "subPath": "wh-uidwh",
    }
    assert mounts["data"]["readOnly"] is True and mounts["data"]["mountPath"] == "/data"
    vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
    assert vols["results"]["persistentVolumeClaim"]["claimName"] == "rtdetr-results"
    assert vols["experiment"]["configMap"]["name"] == "wh-experiment"
    assert c["command"] == ["rtdetr", "train", "-e", "/etc/rtdetr/experiment.yaml"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_results_on_a_volume_source_and_root_subpath() -> None:
    storage = {
        "data": {"volume": {"nfs": {"server": "nas", "path": "/ds"}}},
        "results": {"claimName": "res", "subPath": ""},
    }
    _, tpl = _train_pod(storage=storage)
    vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
    assert vols["data"] == {"name": "data", "nfs": {"server": "nas", "path": "/ds"}}
    mounts = {m["name"]: m for m in tpl["spec"]["containers"][0]["volumeMounts"]}
    assert "subPath" not in mounts["results"]


def test_children_are_owned_and_labelled() -> None:
    r = resolve(training())
    for obj in (
        manifests.training_job(r, 0),
        manifests.experiment_configmap(r),
        manifests.headless_service(r),
        manifests.evaluation_job(r, 0, None),
        manifests.export_job(r, 0, None),
    ):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "rtdetr.dev/v1alpha1",
            "kind": "RTDETRTraining",
            "name": "wh",
            "uid": "uid-wh",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        labels = obj["metadata"]["labels"]
        assert labels["rtdetr.dev/training"] == "wh"
        assert labels["app.kubernetes.io/managed-by"] == "rtdetr-operator"
        assert obj["metadata"]["namespace"] == "ml"


def test_builders_are_deterministic() -> None:
    a = manifests.training_job(resolve(training()), 1)
    b = manifests.training_job(resolve(training()), 1)
    assert a == b
    a["spec"]["template"]["spec"]["containers"][0]["env"][1]["valueFrom"]["fieldRef"]["x"] = 1
    assert (
        "x" not in a["spec"]["template"]["spec"]["containers"][0]["env"][7]["valueFrom"]["fieldRef"]
    )


def test_headless_service_publishes_unready_pods() -> None:
    svc = manifests.headless_service(resolve(training()))
    assert svc["metadata"]["name"] == "wh-train"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {"rtdetr.dev/training": "wh", "rtdetr.dev/task": "train"}


def test_configmap_carries_the_resolved_experiment() -> None:
    cm = manifests.experiment_configmap(resolve(training()))
    exp = yaml.safe_load(cm["data"]["experiment.yaml"])
    assert exp["results_dir"] == "/results"
    assert exp["train"]["num_nodes"] == 2 and exp["train"]["gpu_ids"] == list(range(8))
    assert exp["evaluate"]["checkpoint"] == "/results/train/rtdetr_model_latest.pth"
    assert exp["export"]["onnx_file"] == "/results/export/wh.onnx"
    assert exp["export"]["gpu_id"] == 0
    assert exp["dataset"]["test_data_sources"] == exp["dataset"]["val_data_sources"]
    assert exp["train"]["pretrained_model_path"] == "??"  # optional: left to the trainer


def test_evaluation_and_export_commands() -> None:
    r = resolve(training())
    ev = manifests.evaluation_job(r, 0, "/results/train/model_epoch_029.pth")
    c = ev["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == [
        "rtdetr",
        "evaluate",
        "-e",
        "/etc/rtdetr/experiment.yaml",
        "evaluate.checkpoint=/results/train/model_epoch_029.pth",
    ]
    assert ev["spec"]["completions"] == 1
    # one GPU, one process: the default limit is one process's 4 CPUs and 16Gi
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert "WORLD_SIZE" not in _env(c)
    ex = manifests.export_job(r, 2, None)
    cmd = ex["spec"]["template"]["spec"]["containers"][0]["command"]
    assert ex["metadata"]["name"] == "wh-export-2"
    assert cmd[:4] == ["rtdetr", "export", "-e", "/etc/rtdetr/experiment.yaml"]
    assert "export.serialize_nvdsinfer=true" in cmd
    assert manifests.EXPORT_FP16_OVERRIDE in cmd


def test_export_options_off_and_cpu_export() -> None:
    t = training(export={"fp16": False, "deepstream": False})
    t["spec"]["experiment"]["export"]["on_cpu"] = True
    ex = manifests.export_job(resolve(t), 0, None)
    spec = ex["spec"]["template"]["spec"]
    cmd = spec["containers"][0]["command"]
    assert "export.serialize_nvdsinfer=false" in cmd
    assert manifests.EXPORT_FP16_OVERRIDE not in cmd
    # no GPU for a CPU export, CPU and memory bounded by the defaults
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "4", "memory": "16Gi"},
    }
    assert "nodeSelector" not in spec  # and no GPU product pinning


@pytest.mark.parametrize("task", ["train", "evaluate", "export"])
def test_task_job_dispatch(task: str) -> None:
    job = manifests.task_job(resolve(training()), task, 0, None)
    assert job["metadata"]["labels"]["rtdetr.dev/task"] == task
    with pytest.raises(ValueError, match="unknown task"):
        manifests.task_job(resolve(training()), "inference", 0, None)


def _override_keys(cmd: list[str]) -> list[str]:
    return [arg for arg in cmd[4:] if "=" in arg]


def test_task_overrides_name_real_spec_keys() -> None:
    """Every key=value the operator appends must be a key the trainer's spec accepts."""
    from rtdetr_spec import apply_override, parse_override

    r = resolve(training(export={"fp16": False}))
    for job in (
        manifests.evaluation_job(r, 0, "/results/train/x.pth"),
        manifests.export_job(r, 0, "/results/train/x.pth"),
    ):
        for item in _override_keys(job["spec"]["template"]["spec"]["containers"][0]["command"]):
            key, value = parse_override(item)
            apply_override({}, key, value)  # raises SpecError for an unknown key


def test_fp16_override_is_a_real_spec_key() -> None:
    from rtdetr_spec import apply_override, parse_override

    key, value = parse_override(manifests.EXPORT_FP16_OVERRIDE)
    assert key.split(".")[-1] in ExportConfig.model_fields
    apply_override({}, key, value)


def test_cpu_run_requests_no_gpu_and_keeps_the_process_count() -> None:
    """resources.gpus 0: num_gpus gloo processes per node, no GPU anywhere, CPU export."""
    r = resolve(training(resources={"gpus": 0, "cpu": "2", "memory": "4Gi"}))
    train = manifests.training_job(r, 0)["spec"]["template"]["spec"]
    c = train["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert _env(c)["NUM_GPU_PER_NODE"] == _env(c)["PET_NPROC_PER_NODE"] == "8"
    assert "nodeSelector" not in train  # no GPU product pinning
    assert not any(t.get("key") == "nvidia.com/gpu" for t in train.get("tolerations", []))
    for job in (manifests.evaluation_job(r, 0, None), manifests.export_job(r, 0, None)):
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
    export_cmd = manifests.export_job(r, 0, None)["spec"]["template"]["spec"]["containers"][0]
    assert "export.on_cpu=true" in export_cmd["command"]
    gpu_export = manifests.export_job(resolve(training()), 0, None)["spec"]["template"]["spec"]
    assert "export.on_cpu=true" not in gpu_export["containers"][0]["command"]


@pytest.mark.parametrize("task", ["train", "evaluate", "export"])
def test_task_pods_meet_pod_security_restricted(task: str) -> None:
    spec = manifests.task_job(resolve(training()), task, 0, None)["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
