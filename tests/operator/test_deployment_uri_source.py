"""spec.model.uri: the repository Job fetches the ONNX from a source URI first, then prepares it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rtdetr_operator.api.deployment_status import RTDETRDeploymentStatus
from rtdetr_operator.deployment import manifests
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.plan import plan
from rtdetr_operator.deployment.resolve import InvalidDeploymentError, resolve
from rtdetr_operator.deployment.source import resolve_source
from rtdetr_operator.pod_logs import running_fetch_step
from rtdetr_spec.sources.report import FetchProgress
from tests.operator.deployment_sim import CATALOG, DeploymentSim, deployment

URI = "s3://models/warehouse/v7/rtdetr_warehouse.onnx"
SOURCES = {
    "cache": {"claimName": "model-cache"},
    "secretName": "s3-creds",
    "s3Endpoint": "http://seaweedfs.storage:8333",
}


def _spec(**model: Any) -> dict[str, Any]:
    return {
        "model": {"uri": {"uri": URI, "classNames": ["person", "pallet"], **model}},
        "sources": SOURCES,
        "repository": {"claimName": "triton-repo"},
    }


def test_the_repository_job_fetches_the_uri_then_reads_the_linked_file() -> None:
    r = resolve(deployment(**_spec()), CATALOG, OperatorDefaults())
    src = resolve_source(r, None)
    assert src.onnx_path == "/sources/0/rtdetr_warehouse.onnx" and src.fetch is not None
    job = manifests.repository_job(r, src, "k" * 64, "serving:1")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:6] == ["python", "-m", "rtdetr_spec.sources", "fetch", "--uri", URI]
    assert init["image"] == "serving:1" and init["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert init["securityContext"]["runAsNonRoot"] is True
    main = pod["containers"][0]
    assert main["command"][:4] == ["rtdetr-serve", "repository", "--onnx", src.onnx_path]
    assert main["command"][-4:] == ["--class-name", "person", "--class-name", "pallet"]
    assert "envFrom" not in main  # the credentials reach the fetch step only
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["repository"]["persistentVolumeClaim"]["claimName"] == "triton-repo"
    assert volumes["source-cache"]["persistentVolumeClaim"] == {"claimName": "model-cache"}
    assert "source" not in volumes  # no model volume at all


def test_a_new_revision_fetches_again() -> None:
    a = resolve_source(resolve(deployment(**_spec()), CATALOG, OperatorDefaults()), None)
    b = resolve_source(
        resolve(deployment(**_spec(revision="v8")), CATALOG, OperatorDefaults()), None
    )
    assert a.fingerprint != b.fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uri": "https://example.com/m.onnx"}, "spec.model.uri.uri: "),
        ({"uri": "s3://models/warehouse/v7/"}, "name one .onnx file"),
        ({"repository": None}, "spec.repository.claimName: required with spec.model.uri"),
        ({"both": True}, "spec.model: set exactly one model source"),
    ],
)
def test_unusable_uri_sources_are_named(change: dict[str, Any], message: str) -> None:
    spec = _spec()
    if "uri" in change:
        spec["model"]["uri"]["uri"] = change["uri"]
    if "repository" in change:
        del spec["repository"]
    if "both" in change:
        spec["model"]["onnx"] = {"claimName": "exports", "path": "v7/model.onnx"}
    with pytest.raises(InvalidDeploymentError) as e:
        resolve(deployment(**spec), CATALOG, OperatorDefaults())
    assert any(message in p for p in e.value.problems), e.value.problems


def _downloading(sim: DeploymentSim) -> str:
    """The repository Job's pod, its fetch step running; the Job's name."""
    (name,) = sim.jobs_of("repository")
    job = sim.jobs[name]
    sim.pods[f"{name}-abcde"] = {
        "metadata": {
            "name": f"{name}-abcde",
            "namespace": "ml",
            "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
            "ownerReferences": [{"kind": "Job", "name": name, "uid": job["metadata"]["uid"]}],
        },
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "fetch-0", "state": {"running": {}}}],
        },
    }
    return name


def test_the_model_download_shows_in_status_source_and_is_followed() -> None:
    sim = DeploymentSim(deployment(**_spec()), training=None)
    sim.step()
    name = _downloading(sim)
    assert running_fetch_step(list(sim.pods.values()), name) is not None
    world = replace(sim.world(), fetch_progress=FetchProgress(40 << 20, 160 << 20))
    p = plan(world, sim.settings)
    source = p.status["source"]
    assert (source["fetching"], source["percent"], source["size"]) == (True, 25, 160 << 20)
    reconciling = next(c for c in p.status["conditions"] if c["type"] == "Reconciling")
    assert f"(Job {name}): downloading the model, 25 %" in reconciling["message"]
    assert p.requeue_after == sim.settings.progress_interval
    RTDETRDeploymentStatus.model_validate(p.status)
    sim.obj["status"] = p.status
    again = plan(sim.world(), sim.settings).status["source"]  # no read this time
    assert (again["percent"], again["transferred"]) == (25, 40 << 20)
    sim.finish(name, None, ok=False)  # the fields are gone once the download is over
    assert not {"fetching", "percent", "size", "transferred"} & set(sim.step().status["source"])
