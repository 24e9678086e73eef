"""The RTDETRDeployment state machine with CPU pools: no engine Job, one model for all pools.

A CPU pool needs only the repository (its configs and the ONNX where onnxruntime loads it); in a
mixed deployment it still switches revision together with the GPU pools, once their engines
exist. Its status has no capacity figure, and ``capacityStreams`` counts only GPU pools.
"""

from __future__ import annotations

from tests.builders import engine_summary, sha
from tests.builders import repository_summary as repo_summary
from tests.operator.deployment_sim import DeploymentSim, deployment, trained

V1, V2 = sha("onnx-v1"), sha("onnx-v2")
R1, R2 = V1[:12], V2[:12]
CPU_POOL = {"gpu": "CPU", "minReplicas": 2, "maxReplicas": 4}
L4_POOL = {"gpu": "L4", "minReplicas": 1}


def _created(sim: DeploymentSim, kind: str) -> set[str]:
    assert sim.last is not None
    return {o["metadata"]["name"] for o in sim.last.create if o["kind"] == kind}


def test_cpu_only_deployment_goes_from_repository_straight_to_rollout() -> None:
    sim = DeploymentSim(deployment(pools=[CPU_POOL]))
    sim.step()
    (repo,) = sim.jobs_of("repository")
    cmd = sim.jobs[repo]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-2:] == ["--gpu", "CPU"]
    assert sim.status["triton"].get("tensorrtVersion") is None, "no engine, no TensorRT to show"
    sim.finish(repo, repo_summary(V1, ["CPU"]))
    sim.step()
    assert not sim.jobs_of("engine"), "a CPU pool builds no engine"
    assert set(sim.kinds["Deployment"]) == {"wh-cpu"}
    assert sim.revision_of("wh-cpu") == R1
    assert sim.status["phase"] == "RollingOut"
    assert any("rolling it out (CPU only)" in m for r, m in sim.events if r == "NewModel")
    sim.roll_out()
    sim.settle(2)
    st = sim.status
    assert st["phase"] == "Ready" and st["model"]["revision"] == R1 and not st.get("engines")
    assert st["model"]["gpus"] == ["CPU"] and st["readyPools"] == "1/1" and st["replicas"] == "2/2"
    (pool,) = st["pools"]
    assert (pool["gpu"], pool["backend"], pool["deployment"]) == ("CPU", "onnxruntime", "wh-cpu")
    for absent in ("fps", "streamsPerReplica", "capacityStreams", "capacitySource"):
        assert absent not in pool, f"{absent}: a CPU pool has no capacity figure (null, not 0)"
    assert "capacityStreams" not in st, "no pool has a figure: unknown, not 0"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert "CPU (no capacity figure)" in ready["message"]


def test_mixed_pools_switch_together_once_the_gpu_engine_exists() -> None:
    sim = DeploymentSim(deployment(pools=[CPU_POOL, L4_POOL]))
    sim.step()
    (repo,) = sim.jobs_of("repository")
    sim.finish(repo, repo_summary(V1, ["CPU", "L4"]))
    sim.step()
    assert sim.jobs_of("engine") == [f"wh-engine-l4-{R1[:8]}"], "only the GPU type's engine"
    assert not sim.kinds["Deployment"], "the CPU pool waits for the L4 engine: one model for all"
    assert sim.status["phase"] == "BuildingEngines"
    assert [e["gpu"] for e in sim.status["engines"]] == ["L4"]
    sim.finish(f"wh-engine-l4-{R1[:8]}", engine_summary(V1, "L4"))
    sim.step()
    assert set(sim.kinds["Deployment"]) == {"wh-cpu", "wh-l4"}
    sim.roll_out()
    sim.settle(2)
    st = sim.status
    assert st["phase"] == "Ready" and st["readyPools"] == "2/2" and st["replicas"] == "3/3"
    pools = {p["gpu"]: p for p in st["pools"]}
    assert pools["L4"]["capacityStreams"] == 9 and "capacityStreams" not in pools["CPU"]
    assert st["capacityStreams"] == 9, "the sum counts only pools with a figure"
    cpu_pod = sim.kinds["Deployment"]["wh-cpu"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert sim.step().create == [], "settled"


def test_new_model_keeps_the_cpu_pool_on_the_old_one_until_gpu_engines_exist() -> None:
    sim = DeploymentSim(deployment(pools=[CPU_POOL, L4_POOL]))
    sim.serve(V1, ("CPU", "L4"))
    assert sim.status["phase"] == "Ready"
    sim.training = trained(uid="train-uid-2")
    sim.step()
    (repo,) = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    sim.finish(repo, repo_summary(V2, ["CPU", "L4"]))
    sim.step()
    assert sim.status["target"]["revision"] == R2
    assert sim.revision_of("wh-cpu") == R1, "the CPU pool needs no engine, but waits for L4's"
    sim.finish(f"wh-engine-l4-{R2[:8]}", engine_summary(V2, "L4"))
    sim.step()
    assert sim.revision_of("wh-cpu") == R2 and sim.revision_of("wh-l4") == R2
    sim.roll_out()
    sim.settle(2)
    assert sim.status["model"]["revision"] == R2 and "target" not in sim.status


def test_adding_a_cpu_pool_reprepares_the_repository_and_builds_nothing() -> None:
    sim = DeploymentSim(deployment(pools=[L4_POOL]))
    sim.serve(V1, ("L4",))
    l4_before = sim.kinds["Deployment"]["wh-l4"]["metadata"]["resourceVersion"]
    sim.obj["spec"]["pools"].append({"gpu": "CPU", "cpuBackend": "python"})
    sim.obj["metadata"]["generation"] = 2
    sim.step()
    assert not _created(sim, "Deployment"), "the served repository has no CPU configs yet"
    (repo,) = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    cmd = sim.jobs[repo]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-4:] == ["--gpu", "CPU", "--gpu", "L4"]
    sim.finish(repo, repo_summary(V1, ["CPU", "L4"]))
    sim.step()
    assert not _created(sim, "Job"), "no engine for CPU, and L4's exists"
    assert _created(sim, "Deployment") == {"wh-cpu"} and sim.revision_of("wh-cpu") == R1
    args = sim.kinds["Deployment"]["wh-cpu"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model-config-name=cpu-python" in args
    assert sim.kinds["Deployment"]["wh-l4"]["metadata"]["resourceVersion"] == l4_before
    sim.roll_out()
    sim.settle(2)
    assert sim.status["phase"] == "Ready" and sim.status["readyPools"] == "2/2"


def test_switching_the_cpu_backend_rolls_the_pool_without_a_new_repository() -> None:
    sim = DeploymentSim(deployment(pools=[CPU_POOL]))
    sim.serve(V1, ("CPU",))
    sim.obj["spec"]["pools"][0]["cpuBackend"] = "python"
    sim.obj["metadata"]["generation"] = 2
    p = sim.step()
    assert not [o for o in p.create if o["kind"] == "Job"], "both CPU configs are written"
    (replaced,) = [o for o in p.replace if o["kind"] == "Deployment"]
    assert (
        "--model-config-name=cpu-python"
        in (replaced["spec"]["template"]["spec"]["containers"][0]["args"])
    )


def test_streams_on_a_cpu_pool_stall_naming_the_field() -> None:
    sim = DeploymentSim(deployment(pools=[{"gpu": "CPU", "streams": 10, "fps": 30}]))
    p = sim.step()
    assert not p.create and sim.status["phase"] == "Stalled"
    stalled = next(c for c in sim.status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "InvalidSpec"
    assert stalled["message"].startswith("spec.pools[0].streams: a CPU pool has no capacity")
