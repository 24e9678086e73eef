"""Measured capacity: an engine's timing sizes its pool and shows beside the catalog's figure."""

from __future__ import annotations

from rtdetr_serving.engine_timing import BatchTiming, EngineTiming
from tests.builders import engine_summary, sha
from tests.builders import repository_summary as repo_summary
from tests.operator.deployment_sim import DeploymentSim, deployment

V1 = sha("onnx-v1")


def _timed(batch: int, mean_ms: float) -> EngineTiming:
    ips = round(batch * 1000 / mean_ms, 2)
    return EngineTiming(
        iterations=100,
        batches=[
            BatchTiming(
                batch=batch,
                p50_ms=mean_ms,
                p90_ms=mean_ms,
                p99_ms=mean_ms * 1.2,
                mean_ms=mean_ms,
                throughput_ips=ips,
            )
        ],
    )


def _serve(timings: dict[str, EngineTiming | None]) -> DeploymentSim:
    sim = DeploymentSim(deployment())
    sim.step()
    (repo,) = sim.jobs_of("repository")
    sim.finish(repo, repo_summary(V1, ["H100", "L4"]))
    sim.step()
    for job in sim.jobs_of("engine"):
        gpu = "H100" if "-h100-" in job else "L4"
        sim.finish(job, engine_summary(V1, gpu, timing=timings.get(gpu)))
    sim.step()
    sim.roll_out()
    sim.settle(3)
    return sim


def test_a_measured_engine_sizes_its_pool_and_reports_beside_the_catalog() -> None:
    # L4 measured at 8 images in 20 ms = 400 images/s: 13 streams at 30 FPS (catalog: 9).
    sim = _serve({"L4": _timed(8, 20.0)})
    pools = {p["gpu"]: p for p in sim.status["pools"]}
    l4 = pools["L4"]
    assert (l4["catalogStreams30"], l4["catalogStreams15"]) == (9, 18)
    assert (l4["measuredStreams30"], l4["measuredStreams15"]) == (13, 26)
    assert l4["capacitySource"] == "measured" and l4["streamsPerReplica"] == 13
    # 36 streams at 13 per L4 need 3 replicas, not the catalog's 4.
    assert l4["minReplicas"] == 3
    h100 = pools["H100"]
    assert "measuredStreams30" not in h100 and h100["capacitySource"] == "table"
    (l4_engine,) = [e for e in sim.status["engines"] if e["gpu"] == "L4"]
    assert l4_engine["measuredBatch"] == 8 and l4_engine["measuredThroughputIps"] == 400.0
    assert l4_engine["measuredP99Ms"] == 24.0
    gaps = [m for kind, m in sim.events if kind == "CapacityGap"]
    assert gaps and "measured 400 images/s on L4" in gaps[0] and "+48%" in gaps[0]


def test_a_measurement_close_to_the_catalog_raises_no_event() -> None:
    sim = _serve({"L4": _timed(8, 28.0)})  # 285.7 images/s vs the table's 270
    assert not [m for kind, m in sim.events if kind == "CapacityGap"]
    l4 = next(p for p in sim.status["pools"] if p["gpu"] == "L4")
    assert l4["measuredStreams30"] == 9 and l4["minReplicas"] == 4
