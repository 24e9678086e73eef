"""CPU pools of an RTDETRDeployment: the CRD's rules, resolution and the pool's pod, field by
field (no GPU, no engine, no capacity figure; an image of its own; threads from the CPU limit)."""

from __future__ import annotations

from typing import Any

import pytest

from rtdetr_operator.deployment import manifests, pool_manifests
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.resolve import InvalidDeploymentError, ResolvedDeployment, resolve
from rtdetr_operator.deployment.source import Source, resolve_source
from tests.operator.cel_rules import deployment_rules, refusals
from tests.operator.deployment_sim import CATALOG, deployment, trained

CPU_IMAGE = "registry.local/rtdetr-triton:1.0-cpu"
L4 = {"gpu": "L4", "minReplicas": 1}


def _resolved(*pools: dict[str, Any], **spec: Any) -> tuple[ResolvedDeployment, Source]:
    r = resolve(
        deployment(pools=list(pools), **spec), CATALOG, OperatorDefaults("ngc:1", "10.13.3")
    )
    return r, resolve_source(r, trained())


def _problems(*pools: dict[str, Any], **spec: Any) -> list[str]:
    with pytest.raises(InvalidDeploymentError) as e:
        resolve(deployment(pools=list(pools), **spec), CATALOG, OperatorDefaults())
    return e.value.problems


# -- the CRD's CEL rules, and the operator's re-check of them ---------------------------------
@pytest.mark.parametrize(
    ("pool", "refused"),
    [
        ({"gpu": "CPU"}, []),
        ({"gpu": "CPU", "cpuBackend": "python", "image": CPU_IMAGE, "minReplicas": 2}, []),
        ({"gpu": "CPU", "streams": 10, "fps": 30}, [".streams"]),
        ({"gpu": "CPU", "fps": 30}, [".streams", ".streams"]),
        ({"gpu": "CPU", "tensorrtVersion": "10.13.3"}, [".tensorrtVersion"]),
        ({"gpu": "L4", "cpuBackend": "onnxruntime"}, [".cpuBackend"]),
        ({"gpu": "L4", "image": "mirror/triton:1"}, [".tensorrtVersion"]),
        ({"gpu": "L4", "image": "mirror/triton:1", "tensorrtVersion": "10.13.3"}, []),
        ({"gpu": "L4", "streams": 10, "fps": 30}, []),
    ],
)
def test_pool_rules(pool: dict[str, Any], refused: list[str]) -> None:
    got = refusals(deployment_rules("pool"), pool)
    assert [g.split(":")[0] for g in got] == refused
    if ".streams" in refused and "streams" in pool:
        assert "CPU pool has no capacity figure" in got[0]
    # The operator says the same about the same fields (an older CRD may have let it in).
    if refused:
        problems = _problems(pool)
        for field in refused:
            assert any(p.startswith(f"spec.pools[0]{field}:") for p in problems), problems
    else:
        _resolved(pool)


@pytest.mark.parametrize(
    ("triton", "pools", "refused"),
    [
        ({"image": CPU_IMAGE}, [{"gpu": "CPU"}], False),
        ({"image": "mirror/triton:1"}, [{"gpu": "CPU"}, L4], True),
        (
            {"image": CPU_IMAGE},
            [{"gpu": "CPU"}, {**L4, "image": "ngc:2", "tensorrtVersion": "10.13.3"}],
            False,
        ),
        ({"image": "mirror/triton:1", "tensorrtVersion": "10.13.3"}, [L4], False),
    ],
)
def test_a_custom_triton_image_needs_tensorrt_only_when_a_gpu_pool_uses_it(
    triton: dict, pools: list[dict], refused: bool
) -> None:
    spec = {"triton": triton, "pools": pools}
    got = refusals(deployment_rules("spec"), spec)
    assert bool(got) == refused
    if refused:
        assert got[0].startswith(".triton.tensorrtVersion: is required")
        (problem,) = _problems(*pools, triton=triton)
        assert problem.startswith("spec.triton.tensorrtVersion: is required")
    else:
        _resolved(*pools, triton=triton)


# -- resolution ------------------------------------------------------------------------------
def test_a_cpu_pool_has_no_capacity_figure_defaults_and_its_own_image() -> None:
    r, _ = _resolved({"gpu": "CPU", "maxReplicas": 3, "image": CPU_IMAGE}, L4)
    cpu, l4 = r.pools
    assert (cpu.name, cpu.is_cpu, cpu.gpu, cpu.backend) == ("CPU", True, None, "onnxruntime")
    assert (cpu.min_replicas, cpu.max_replicas) == (1, 3)
    assert (cpu.fps, cpu.streams_per_replica, cpu.capacity_source) == (None, None, None)
    assert (cpu.image, cpu.tensorrt_version, cpu.config_name) == (
        CPU_IMAGE,
        None,
        "cpu-onnxruntime",
    )
    assert (cpu.cpu, cpu.memory) == ("2", "4Gi"), "defaults when the CR sets no resources"
    assert (l4.image, l4.tensorrt_version, l4.cpu, l4.memory) == ("ngc:1", "10.13.3", None, None)
    assert l4.streams_per_replica == 9, "GPU pools keep their capacity figure"
    assert r.gpus == ["CPU", "L4"] and [p.name for p in r.gpu_pools] == ["L4"]


def test_cpu_pool_resources_come_from_the_pool_then_spec_triton() -> None:
    r, _ = _resolved(
        {"gpu": "CPU", "cpuBackend": "python", "resources": {"memory": "6Gi"}},
        triton={"resources": {"cpu": "3500m"}},
    )
    (cpu,) = r.pools
    assert (cpu.cpu, cpu.memory, cpu.config_name) == ("3500m", "6Gi", "cpu-python")


def test_a_gpu_pools_own_image_brings_its_own_tensorrt() -> None:
    r, src = _resolved({**L4, "image": "mirror/triton:2", "tensorrtVersion": "10.14.1"})
    (l4,) = r.pools
    assert (l4.image, l4.tensorrt_version) == ("mirror/triton:2", "10.14.1")
    job = manifests.engine_job(r, l4, src, revision="a" * 12, onnx="/m", model_dir="/d", image="t")
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[cmd.index("--tensorrt-version") + 1] == "10.14.1"


def test_lowercase_cpu_is_not_a_gpu_type_for_the_operator_either() -> None:
    (problem,) = _problems({"gpu": "cpu", "streams": 10, "fps": 30})
    assert problem.startswith("spec.pools[0].streams: a CPU pool has no capacity figure")


# -- the pool's objects ----------------------------------------------------------------------
def _pod(r: ResolvedDeployment, src: Source, name: str = "CPU") -> dict[str, Any]:
    pool = r.pool(name)
    assert pool is not None
    d = pool_manifests.triton_deployment(r, pool, src, "c" * 12, replicas=2)
    assert d["metadata"]["name"] == f"wh-{name.lower()}"
    return dict(d["spec"]["template"]["spec"])


def test_cpu_pool_pod_asks_for_no_gpu_and_keeps_its_node_selector() -> None:
    r, src = _resolved(
        {"gpu": "CPU", "nodeSelector": {"rtdetr.dev/real-node": "true"}, "image": CPU_IMAGE},
        L4,
        tolerations=[{"key": "dedicated", "operator": "Exists"}],
    )
    pod = _pod(r, src)
    (c,) = pod["containers"]
    assert c["image"] == CPU_IMAGE and c["command"] == ["tritonserver"]
    assert c["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert "affinity" not in pod
    assert pod["nodeSelector"] == {"rtdetr.dev/real-node": "true"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["args"][:2] == [
        f"--model-repository=/models/{'c' * 12}",
        "--model-config-name=cpu-onnxruntime",
    ]
    assert "--allow-gpu-metrics=false" in c["args"]
    # onnxruntime's global thread pool follows the 2-CPU limit, not the node's cores
    assert [a for a in c["args"] if a.startswith("--backend-config=onnxruntime")] == [
        "--backend-config=onnxruntime,enable-global-threadpool=1",
        "--backend-config=onnxruntime,intra_op_thread_count=2",
        "--backend-config=onnxruntime,inter_op_thread_count=1",
    ]
    assert pool_manifests.CPU_THREADS_ENV not in {e["name"] for e in c["env"]}
    # the GPU pool next to it is unchanged: GPU, affinity, toleration
    gpu_pod = _pod(r, src, "L4")
    limits = gpu_pod["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert gpu_pod["affinity"]["nodeAffinity"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu_pod[
        "tolerations"
    ]
    assert gpu_pod["containers"][0]["image"] == "ngc:1"


def test_python_backend_pool_tells_model_py_its_threads() -> None:
    r, src = _resolved(
        {"gpu": "CPU", "cpuBackend": "python", "resources": {"cpu": "1500m", "memory": "3Gi"}},
        triton={"args": ["--log-verbose=1"]},
    )
    pod = _pod(r, src)
    (c,) = pod["containers"]
    assert "--model-config-name=cpu-python" in c["args"] and c["args"][-1] == "--log-verbose=1"
    assert not [a for a in c["args"] if a.startswith("--backend-config")]
    assert c["env"][-1] == {"name": "RTDETR_CPU_THREADS", "value": "1"}
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in pod["volumes"]


def test_cpu_pool_service_hpa_and_pdb_are_named_like_the_others() -> None:
    r, _ = _resolved({"gpu": "CPU", "minReplicas": 2, "maxReplicas": 5})
    (cpu,) = r.pools
    assert pool_manifests.service(r, cpu)["spec"]["selector"]["rtdetr.dev/pool"] == "cpu"
    hpa = pool_manifests.autoscaler(r, cpu)
    assert hpa["metadata"]["name"] == "wh-cpu" and (
        hpa["spec"]["minReplicas"],
        hpa["spec"]["maxReplicas"],
    ) == (2, 5)
    assert pool_manifests.disruption_budget(r, cpu)["metadata"]["name"] == "wh-cpu"
    assert pool_manifests.endpoints(r, cpu)["grpc"] == "wh-cpu.ml.svc:8001"


def test_the_repository_job_prepares_the_cpu_configs() -> None:
    r, src = _resolved({"gpu": "CPU"}, L4)
    job = manifests.repository_job(r, src, "k" * 64, "trainer:1")
    cmd = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-4:] == ["--gpu", "CPU", "--gpu", "L4"]


@pytest.mark.parametrize(
    ("cpu", "threads"),
    [("2", 2), ("1500m", 1), ("250m", 1), ("4.5", 4), ("16000m", 16), (None, None), ("2k", None)],
)
def test_cpu_threads_are_whole_cores_of_the_limit(cpu: str | None, threads: int | None) -> None:
    assert pool_manifests.cpu_threads(cpu) == threads
