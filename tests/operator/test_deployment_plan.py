"""The RTDETRDeployment state machine in memory: order of stages, failures, idempotence."""

from __future__ import annotations

from tests.builders import engine_summary, sha
from tests.builders import failed_serving_summary as failed_summary
from tests.builders import repository_summary as repo_summary
from tests.operator.deployment_sim import DeploymentSim, deployment, trained
from tests.operator.factories import later

V1, V2 = sha("onnx-v1"), sha("onnx-v2")
R1, R2 = V1[:12], V2[:12]


def test_first_rollout_runs_repository_then_engines_then_pools() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    assert sim.jobs_of("repository") and not sim.jobs_of("engine")
    assert not sim.kinds["Deployment"]
    assert sim.status["phase"] == "Preparing" and sim.cond("Reconciling")["status"] == "True"
    (repo,) = sim.jobs_of("repository")
    sim.finish(repo, repo_summary(V1, ["H100", "L4"]))
    sim.step()
    engines = sim.jobs_of("engine")
    assert engines == [f"wh-engine-h100-{R1[:8]}", f"wh-engine-l4-{R1[:8]}"]
    assert sim.status["target"]["revision"] == R1 and "model" not in sim.status
    assert not sim.kinds["Deployment"], "no Triton before every engine exists"
    assert sim.status["phase"] == "BuildingEngines"
    sim.finish(engines[0], engine_summary(V1, "H100"))
    sim.step()
    assert not sim.kinds["Deployment"], "one engine is not enough"
    sim.finish(engines[1], engine_summary(V1, "L4"))
    sim.step()
    assert set(sim.kinds["Deployment"]) == {"wh-h100", "wh-l4"}
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert set(sim.kinds[kind]) == {"wh-h100", "wh-l4"}
    assert sim.status["phase"] == "RollingOut" and sim.status["target"]["revision"] == R1
    sim.roll_out()
    sim.settle(2)
    st = sim.status
    assert st["phase"] == "Ready" and sim.cond("Ready")["status"] == "True"
    assert sim.cond("Stalled")["status"] == "False" and "target" not in st
    assert st["model"]["revision"] == R1 and st["model"]["onnxSha256"] == V1
    pools = {p["gpu"]: p for p in st["pools"]}
    # L4: 36 streams at 30 FPS with 9 streams per L4 (model card) -> 4 replicas.
    assert pools["L4"]["minReplicas"] == 4 and pools["L4"]["capacityStreams"] == 36
    assert pools["H100"]["capacityStreams"] == 76 and st["capacityStreams"] == 112
    assert pools["H100"]["endpoints"]["grpc"] == "wh-h100.ml.svc:8001"
    assert st["readyPools"] == "2/2" and st["replicas"] == "5/5"
    engines_st = {e["gpu"]: e for e in st["engines"]}
    assert engines_st["L4"]["tensorrtVersion"] == "10.13.3"
    assert engines_st["L4"]["computeCapability"] == "8.9" and engines_st["H100"]["planSha256"]
    assert st["observedGeneration"] == 1


def test_a_settled_deployment_plans_nothing() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    before = dict(sim.status)
    p = sim.step()
    assert not (p.create or p.replace or p.delete or p.events)
    assert sim.status == before


def test_new_model_builds_engines_first_and_keeps_the_old_model_until_rolled_out() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.training = trained(uid="train-uid-2")  # the training was run again
    sim.step()
    repo = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    assert len(repo) == 1
    sim.finish(repo[0], repo_summary(V2, ["H100", "L4"]))
    sim.step()
    assert sim.status["target"]["revision"] == R2 and sim.status["model"]["revision"] == R1
    new_engines = [n for n in sim.jobs_of("engine") if n.endswith(R2[:8])]
    assert len(new_engines) == 2
    assert sim.revision_of("wh-h100") == R1 and sim.revision_of("wh-l4") == R1
    sim.finish(new_engines[0], engine_summary(V2, "H100"))
    p = sim.step()
    assert not p.replace and sim.revision_of("wh-h100") == R1
    sim.finish(new_engines[1], engine_summary(V2, "L4"))
    p = sim.step()
    assert {o["metadata"]["name"] for o in p.replace if o["kind"] == "Deployment"} == {
        "wh-h100",
        "wh-l4",
    }
    assert sim.revision_of("wh-h100") == R2
    assert sim.status["model"]["revision"] == R1, "old model serves until the new one is ready"
    assert sim.status["phase"] == "RollingOut"
    sim.roll_out("wh-h100")
    sim.step()
    assert sim.status["model"]["revision"] == R1, "one pool rolled out is not all"
    sim.roll_out()
    old_jobs = {n for n in sim.jobs_of("engine") if n.endswith(R1[:8])}
    p = sim.step()
    assert sim.status["model"]["revision"] == R2 and sim.status["phase"] == "Ready"
    # the pass that promotes forgets the old engines and deletes their Jobs at once
    assert {e["revision"] for e in sim.status["engines"]} == {R2} and "target" not in sim.status
    assert len(old_jobs) == 2 and {o["metadata"]["name"] for o in p.delete} >= old_jobs
    sim.settle(2)
    assert sim.status["model"]["revision"] == R2 and sim.status["phase"] == "Ready"
    # the served revision's args point at its own repository folder
    args = sim.kinds["Deployment"]["wh-l4"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--model-repository=/models/{R2}" in args and "--model-config-name=l4" in args
    # superseded Jobs are cleaned up once nothing refers to them
    assert all(not n.endswith(R1[:8]) for n in sim.jobs_of("engine"))
    assert {e["revision"] for e in sim.status["engines"]} == {R2}


def test_failed_engine_build_leaves_the_old_model_serving_and_stalls() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.training = trained(uid="train-uid-2")
    sim.step()
    (repo,) = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    sim.finish(repo, repo_summary(V2, ["H100", "L4"]))
    sim.step()
    h100, l4 = (f"wh-engine-{g}-{R2[:8]}" for g in ("h100", "l4"))
    sim.finish(h100, engine_summary(V2, "H100"))
    sim.finish(
        l4, failed_summary("gen_trt_engine", "TensorRT's ONNX parser failed: node 12"), ok=False
    )
    p = sim.settle(2)
    st = sim.status
    assert st["phase"] == "Stalled" and sim.cond("Stalled")["status"] == "True"
    assert sim.cond("Ready")["status"] == "False"
    stalled = sim.cond("Stalled")
    assert stalled["reason"] == "EngineBuildFailed"
    assert (
        "ONNX parser failed: node 12" in stalled["message"]
        and f"still serving {R1}" in stalled["message"]
    )
    assert not p.replace and sim.revision_of("wh-l4") == R1 and sim.revision_of("wh-h100") == R1
    assert st["model"]["revision"] == R1
    # deleting the failed Job retries the build
    sim.jobs.pop(l4)
    sim.step()
    assert l4 in sim.jobs and sim.status["phase"] == "BuildingEngines"


def test_engine_from_another_tensorrt_is_refused() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    (repo,) = sim.jobs_of("repository")
    sim.finish(repo, repo_summary(V1, ["H100", "L4"]))
    sim.step()
    sim.finish(f"wh-engine-h100-{R1[:8]}", engine_summary(V1, "H100", tensorrt="10.8.0"))
    sim.finish(f"wh-engine-l4-{R1[:8]}", engine_summary(V1, "L4"))
    sim.settle(2)
    stalled = sim.cond("Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "TensorRTVersionMismatch"
    assert "10.8.0" in stalled["message"] and "10.13.3" in stalled["message"]
    assert not sim.kinds["Deployment"]


def test_engine_for_the_wrong_compute_capability_is_refused() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    sim.finish(sim.jobs_of("repository")[0], repo_summary(V1, ["H100", "L4"]))
    sim.step()
    sim.finish(f"wh-engine-h100-{R1[:8]}", engine_summary(V1, "H100"))
    sim.finish(f"wh-engine-l4-{R1[:8]}", engine_summary(V1, "L4", cc="8.0"))
    sim.settle(2)
    assert sim.cond("Stalled")["status"] == "True"
    assert "compute capability 8.0" in sim.cond("Stalled")["message"]


def test_same_onnx_again_rolls_nothing_out() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.training = trained(uid="train-uid-2")
    sim.step()
    (repo,) = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    sim.finish(repo, repo_summary(V1, ["H100", "L4"]))
    p = sim.settle(2)
    assert "target" not in sim.status and sim.status["phase"] == "Ready"
    assert not any(o["kind"] == "Job" for o in p.create)
    assert (
        any(e.reason == "ModelUnchanged" for e in sim.last.events)
        or sim.status["model"]["revision"] == R1
    )


def test_adding_a_pool_builds_only_its_engine_and_leaves_the_others_alone() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.obj["spec"]["pools"].append({"gpu": "A100", "minReplicas": 2})
    sim.obj["metadata"]["generation"] = 2
    sim.step()
    (repo,) = [n for n in sim.jobs_of("repository") if sim.jobs[n]["status"] == {}]
    cmd = sim.jobs[repo]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd.count("--gpu") == 3 and "A100" in cmd
    sim.finish(repo, repo_summary(V1, ["A100", "H100", "L4"]))
    p = sim.step()
    assert [o["metadata"]["name"] for o in p.create if o["kind"] == "Job"] == [
        f"wh-engine-a100-{R1[:8]}"
    ]
    sim.finish(f"wh-engine-a100-{R1[:8]}", engine_summary(V1, "A100"))
    p = sim.step()
    created = {o["metadata"]["name"] for o in p.create if o["kind"] == "Deployment"}
    assert created == {"wh-a100"} and not p.replace
    sim.roll_out()
    sim.settle(2)
    assert sim.status["phase"] == "Ready" and sim.status["readyPools"] == "3/3"


def test_removing_a_pool_deletes_its_objects() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.obj["spec"]["pools"] = [sim.obj["spec"]["pools"][0]]
    sim.step()
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert "wh-l4" not in sim.kinds[kind] and "wh-h100" in sim.kinds[kind]


def test_source_problems_name_the_field() -> None:
    sim = DeploymentSim(deployment(), training=None)
    p = sim.step()
    assert not p.create and sim.status["phase"] == "Stalled"
    assert sim.cond("Stalled")["reason"] == "SourceNotFound"
    assert sim.cond("Stalled")["message"].startswith("spec.model.training.name: RTDETRTraining")
    sim.training = trained(phase="Training")
    sim.step()
    assert sim.status["phase"] == "Pending" and sim.cond("Stalled")["status"] == "False"
    assert "waiting for RTDETRTraining warehouse-r50" in sim.cond("Reconciling")["message"]
    sim.training = trained(artifacts={"checkpoint": "/results/train/x.pth"})
    sim.step()
    assert sim.cond("Stalled")["reason"] == "NoExportedModel"
    assert "spec.model.training.artifact" in sim.cond("Stalled")["message"]


def test_invalid_spec_stalls_without_touching_anything() -> None:
    body = deployment(pools=[{"gpu": "L4", "streams": 200, "fps": 30, "maxReplicas": 10}])
    sim = DeploymentSim(body)
    p = sim.step()
    assert not p.create and sim.cond("Stalled")["reason"] == "InvalidSpec"
    msg = sim.cond("Stalled")["message"]
    assert msg.startswith("spec.pools[0].maxReplicas: 200 streams at 30 FPS need 23 L4 replicas")


def test_repository_failure_stalls_with_the_commands_message() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    (repo,) = sim.jobs_of("repository")
    msg = (
        "/results/export/warehouse-r50.onnx: sha256 1234 does not match its manifest's onnx_sha256"
    )
    sim.finish(repo, failed_summary("repository", msg), ok=False)
    sim.settle(2)
    assert sim.cond("Stalled")["reason"] == "RepositoryFailed"
    assert msg in sim.cond("Stalled")["message"]
    assert not sim.jobs_of("engine")


def test_source_change_waits_for_running_engine_builds() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    sim.finish(sim.jobs_of("repository")[0], repo_summary(V1, ["H100", "L4"]))
    sim.step()
    sim.training = trained(uid="train-uid-2")
    p = sim.step()
    assert not any(o["kind"] == "Job" for o in p.create)
    assert sim.status["phase"] == "BuildingEngines"
    assert "waiting for engine build(s)" in sim.cond("Reconciling")["message"]


def test_without_autoscaling_replicas_are_the_minimum_and_enforced() -> None:
    sim = DeploymentSim(deployment(autoscaling={"enabled": False}))
    sim.serve(V1)
    assert not sim.kinds["HorizontalPodAutoscaler"]
    assert sim.kinds["Deployment"]["wh-l4"]["spec"]["replicas"] == 4
    sim.kinds["Deployment"]["wh-l4"]["spec"]["replicas"] = 9  # someone scaled it by hand
    p = sim.step()
    assert [o["spec"]["replicas"] for o in p.replace] == [4]


def test_autoscaled_deployments_keep_the_autoscalers_replicas_on_update() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    sim.kinds["Deployment"]["wh-h100"]["spec"]["replicas"] = 3  # the HPA scaled up
    sim.obj["spec"]["triton"] = {"args": ["--log-verbose=1"]}
    p = sim.step()
    by_name = {o["metadata"]["name"]: o for o in p.replace if o["kind"] == "Deployment"}
    assert by_name["wh-h100"]["spec"]["replicas"] == 3


def test_unschedulable_engine_pod_stalls_after_the_grace_period() -> None:
    sim = DeploymentSim(deployment())
    sim.step()
    sim.finish(sim.jobs_of("repository")[0], repo_summary(V1, ["H100", "L4"]))
    sim.step()
    sim.finish(f"wh-engine-h100-{R1[:8]}", engine_summary(V1, "H100"))
    job = sim.jobs[f"wh-engine-l4-{R1[:8]}"]
    pod = {
        "metadata": {
            "name": "l4-pod",
            "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
            "ownerReferences": [{"kind": "Job", "uid": job["metadata"]["uid"]}],
            "creationTimestamp": "2026-06-02T12:00:00Z",
        },
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/6 nodes are available: 1 Insufficient nvidia.com/gpu.",
                    "lastTransitionTime": "2026-06-02T12:00:00Z",
                }
            ],
        },
    }
    sim.pods["l4-pod"] = pod
    p = sim.step()
    assert sim.cond("Stalled")["status"] == "False" and p.requeue_after
    sim.now = later(31)
    sim.step()
    assert sim.cond("Stalled")["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in sim.cond("Stalled")["message"]


def test_rollout_past_its_deadline_stalls() -> None:
    sim = DeploymentSim(deployment())
    sim.serve(V1)
    d = sim.kinds["Deployment"]["wh-l4"]
    d["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "wh-l4-abc" has timed out progressing.',
        }
    ]
    sim.step()
    assert sim.cond("Stalled")["reason"] == "RolloutStuck"
    assert "wh-l4" in sim.cond("Stalled")["message"]
