"""Validation and resolution of RTDETRDeployments: replica limits, capacity, images, sources."""

from __future__ import annotations

import pytest

from rtdetr_operator.deployment.defaults import TENSORRT_VERSION, TRITON_IMAGE, OperatorDefaults
from rtdetr_operator.deployment.resolve import InvalidDeploymentError, resolve
from rtdetr_operator.deployment.source import (
    SourceNotReadyError,
    repository_key,
    resolve_source,
)
from tests.operator.deployment_sim import CATALOG, deployment, trained


def _problems(**spec) -> list[str]:
    with pytest.raises(InvalidDeploymentError) as e:
        resolve(deployment(**spec), CATALOG, OperatorDefaults())
    return e.value.problems


def test_pools_from_limits_and_from_stream_targets() -> None:
    r = resolve(
        deployment(
            pools=[
                {"gpu": "H100"},
                {"gpu": "L4", "streams": 200, "fps": 30, "maxReplicas": 30},
                {"gpu": "A100", "streams": 100, "fps": 25, "minReplicas": 5},
                {"gpu": "NVIDIA-L40S", "minReplicas": 2, "maxReplicas": 6},
            ]
        ),
        CATALOG,
        OperatorDefaults(),
    )
    h100, l4, a100, l40s = r.pools
    assert (h100.min_replicas, h100.max_replicas, h100.fps) == (1, 1, 30.0)
    assert (h100.streams_per_replica, h100.capacity_source) == (76, "table")
    # model card: 9 L4 streams at 30 FPS -> ceil(200 / 9) = 23 replicas
    assert (l4.min_replicas, l4.max_replicas, l4.target_streams) == (23, 30, 200)
    # A100 at 25 FPS: derived from the table (T >= max(36*30, 72*15) = 1080 -> 43 streams)
    assert (a100.streams_per_replica, a100.capacity_source) == (43, "derived")
    assert (a100.min_replicas, a100.max_replicas) == (5, 5)
    assert l40s.gpu.name == "L40S", "a gpu.product label resolves to its catalog type"
    assert r.gpus == ["A100", "H100", "L4", "L40S"]
    assert (r.triton_image, r.tensorrt_version) == (TRITON_IMAGE, TENSORRT_VERSION)


def test_custom_triton_image_brings_its_tensorrt_version() -> None:
    r = resolve(
        deployment(triton={"image": "mirror/tritonserver:25.10-py3", "tensorrtVersion": "10.13.3"}),
        CATALOG,
        OperatorDefaults(triton_image="ignored:1", tensorrt_version="1.0.0"),
    )
    assert (r.triton_image, r.tensorrt_version) == ("mirror/tritonserver:25.10-py3", "10.13.3")
    r = resolve(deployment(), CATALOG, OperatorDefaults("site/triton:1", "10.14.1"))
    assert (r.triton_image, r.tensorrt_version) == ("site/triton:1", "10.14.1")


def test_a_stream_target_no_replica_limit_can_meet() -> None:
    (msg,) = _problems(pools=[{"gpu": "L4", "streams": 200, "fps": 30, "maxReplicas": 10}])
    assert msg.startswith("spec.pools[0].maxReplicas: 200 streams at 30 FPS need 23 L4")
    (msg,) = _problems(pools=[{"gpu": "L4", "streams": 2, "fps": 500}])
    assert msg.startswith("spec.pools[0].fps: L4 cannot sustain one stream at 500 FPS")


def test_unknown_and_unpinnable_gpu_types() -> None:
    (msg,) = _problems(pools=[{"gpu": "H300"}])
    assert msg.startswith("spec.pools[0].gpu: unknown GPU 'H300'") and "did you mean" in msg
    (msg,) = _problems(pools=[{"gpu": "IGX-THOR-T7000-RTX-PRO-6000"}])
    assert "no nvidia.com/gpu.product values" in msg


def test_cel_rules_are_rechecked_with_the_same_fields() -> None:
    problems = _problems(
        model={"training": {"name": "a"}, "onnx": {"claimName": "c", "path": "x/../m.onnx"}},
        pools=[{"gpu": "L4", "minReplicas": 3, "maxReplicas": 2}, {"gpu": "H100", "streams": 4}],
        triton={"image": "mine:1"},
        rollout={"maxSurge": 0, "maxUnavailable": "0%"},
    )
    text = "\n".join(problems)
    for field in (
        "spec.model:",
        "spec.model.onnx.path:",
        "spec.pools[0].minReplicas:",
        "spec.pools[1].streams:",
        "spec.triton.tensorrtVersion:",
        "spec.rollout.maxSurge:",
    ):
        assert field in text, field


def test_pydantic_errors_name_the_field() -> None:
    (msg,) = _problems(rollout={"maxSurge": "lots"})
    assert msg.startswith("spec.rollout.maxSurge")


def test_training_source_mounts_the_results_volume_where_the_artifacts_are() -> None:
    r = resolve(deployment(), CATALOG, OperatorDefaults())
    src = resolve_source(r, trained())
    assert src.volume == {"persistentVolumeClaim": {"claimName": "rtdetr-results"}}
    assert (src.mount_path, src.sub_path) == ("/results", "warehouse-r50")
    assert src.onnx_path == "/results/export/warehouse-r50.onnx"
    assert src.image == "registry.local/rtdetr-trainer:1.0"
    assert src.shared_volume and src.repository_sub_path == "triton/wh"
    fp16 = resolve(
        deployment(model={"training": {"name": "warehouse-r50", "artifact": "onnxFp16"}}),
        CATALOG,
        OperatorDefaults(),
    )
    with pytest.raises(SourceNotReadyError) as e:
        resolve_source(fp16, trained())
    assert e.value.stalled and "reports no 'onnxFp16' artifact" in e.value.message


def test_a_rerun_training_is_a_new_fingerprint_and_a_new_gpu_set_a_new_repository() -> None:
    r = resolve(deployment(), CATALOG, OperatorDefaults())
    first = resolve_source(r, trained(uid="one"))
    again = resolve_source(r, trained(uid="one"))
    rerun = resolve_source(r, trained(uid="two"))
    assert first.fingerprint == again.fingerprint != rerun.fingerprint
    wider = resolve(
        deployment(pools=[{"gpu": "H100"}, {"gpu": "L4"}, {"gpu": "A100"}]),
        CATALOG,
        OperatorDefaults(),
    )
    assert repository_key(first, r) != repository_key(first, wider)


@pytest.mark.parametrize(
    ("training", "reason", "stalled"),
    [
        (None, "SourceNotFound", True),
        (trained(phase="Training"), "WaitingForTraining", False),
        (trained(phase="Failed"), "SourceFailed", True),
        (trained(artifacts={"onnx": "/elsewhere/m.onnx"}), "ArtifactNotOnResultsVolume", True),
    ],
)
def test_training_source_problems(training, reason: str, stalled: bool) -> None:
    r = resolve(deployment(), CATALOG, OperatorDefaults())
    with pytest.raises(SourceNotReadyError) as e:
        resolve_source(r, training)
    assert (e.value.reason, e.value.stalled) == (reason, stalled)


def test_onnx_source_revision_label_forces_a_new_read() -> None:
    def src(revision: str | None):
        onnx = {"claimName": "exports", "path": "m/model.onnx"}
        if revision:
            onnx["revision"] = revision
        r = resolve(deployment(model={"onnx": onnx}), CATALOG, OperatorDefaults())
        return resolve_source(r, None)

    assert src(None).fingerprint == src(None).fingerprint != src("v2").fingerprint
    assert src("v2").description == "m/model.onnx on claim exports (revision v2)"
