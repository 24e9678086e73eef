"""Every pod the operator creates, of every child kind: Pod Security "restricted", requests and
limits on every container, a size limit on every memory-backed volume, no API token mounted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rtdetr_operator.codegen.manifest_samples import samples, write

SAMPLES = samples()
WORKLOADS = {k: v for k, v in SAMPLES.items() if v["kind"] in ("Job", "Deployment")}
POD_KINDS = {
    "training-train-job",
    "training-evaluate-job",
    "training-export-job",
    "deployment-repository-job",
    "deployment-engine-job-h100",
    "deployment-engine-job-l4",
    "deployment-triton-h100",
    "deployment-triton-l4",
    "deployment-triton-cpu",
}


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def test_the_samples_cover_every_workload_the_operator_creates() -> None:
    assert set(WORKLOADS) == POD_KINDS


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_pod_meets_pod_security_restricted(name: str) -> None:
    pod = _pod(WORKLOADS[name])
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for c in pod["containers"] + pod.get("initContainers", []):
        csc = c["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False
        assert csc["capabilities"] == {"drop": ["ALL"]}
        assert not csc.get("privileged")
    allowed = {"persistentVolumeClaim", "configMap", "emptyDir", "secret", "projected", "csi"}
    for vol in pod["volumes"]:
        assert set(vol) - {"name"} <= allowed, vol


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_container_has_cpu_and_memory_requests_and_limits(name: str) -> None:
    for c in _pod(WORKLOADS[name])["containers"]:
        res = c["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res[part]), (name, part, res)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_memory_backed_volume_has_a_size_limit(name: str) -> None:
    for vol in _pod(WORKLOADS[name])["volumes"]:
        if "emptyDir" in vol:
            assert vol["emptyDir"].get("sizeLimit"), (name, vol)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_no_task_pod_gets_an_api_token_it_does_not_need(name: str) -> None:
    assert _pod(WORKLOADS[name])["automountServiceAccountToken"] is False


def test_a_cr_amount_is_request_and_limit_both() -> None:
    train = _pod(SAMPLES["training-train-job"])["containers"][0]["resources"]
    # examples/training.yaml asks for 64 CPUs and 512Gi per node, 8 GPUs
    assert train["requests"] == train["limits"]
    assert train["limits"] == {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "8"}
    shm = [v for v in _pod(SAMPLES["training-train-job"])["volumes"] if v["name"] == "dshm"]
    assert shm[0]["emptyDir"]["sizeLimit"] == "64Gi"


def test_the_generator_writes_one_file_per_child(tmp_path: Path) -> None:
    paths = write(tmp_path)
    assert {p.stem for p in paths} == set(SAMPLES)
    assert yaml.safe_load(paths[0].read_text())["metadata"]["namespace"] == "ml"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_container_has_a_read_only_root_and_a_bounded_scratch(name: str) -> None:
    pod = _pod(WORKLOADS[name])
    (scratch,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert scratch["emptyDir"]["sizeLimit"]
    for c in pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        # every place the images' tools write outside their volumes points into the scratch
        for var in ("HOME", "TMPDIR", "XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR"):
            assert env[var].startswith("/tmp"), (name, var)
        assert c["workingDir"] == "/tmp"


def test_a_users_env_comes_last_so_it_may_point_a_cache_elsewhere() -> None:
    from rtdetr_operator.training import manifests
    from rtdetr_operator.training.resolve import resolve
    from tests.operator.factories import training

    r = resolve(training(env=[{"name": "HOME", "value": "/results/home"}]))
    env = manifests.training_job(r, 0)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "HOME"][-1] == "/results/home"
