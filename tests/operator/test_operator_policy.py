"""What a CR may not ask of the node: node-level volumes and confinement-loosening annotations."""

from __future__ import annotations

import pytest

from rtdetr_operator.conditions import condition
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.plan import Settings as DeploymentSettings
from rtdetr_operator.deployment.resolve import InvalidDeploymentError
from rtdetr_operator.deployment.resolve import resolve as resolve_deployment
from rtdetr_operator.policy import ALLOWED_VOLUME_SOURCES, volume_problems
from rtdetr_operator.training.plan import Settings
from rtdetr_operator.training.resolve import InvalidTrainingError, resolve
from tests.operator.deployment_sim import CATALOG, DeploymentSim, deployment, trained
from tests.operator.factories import training
from tests.operator.test_operator_plan import Sim

HOST_ROOT = {"hostPath": {"path": "/", "type": "Directory"}}


def _storage(data: dict, results: dict | None = None) -> dict:
    return {"data": data, "results": results or {"claimName": "rtdetr-results"}}


def _training_problems(body: dict, **kwargs) -> list[str]:
    with pytest.raises(InvalidTrainingError) as e:
        resolve(body, **kwargs)
    return e.value.problems


@pytest.mark.parametrize("which", ["data", "results"])
def test_a_host_path_volume_is_refused_naming_the_field(which: str) -> None:
    vol = {"volume": HOST_ROOT}
    storage = _storage(vol) if which == "data" else _storage({"claimName": "d"}, vol)
    problems = _training_problems(training(storage=storage))
    assert len(problems) == 1
    assert problems[0].startswith(f"spec.storage.{which}.volume.hostPath: node-level volume")
    assert "--allow-node-volumes" in problems[0]


@pytest.mark.parametrize(
    "source",
    [
        {"flexVolume": {"driver": "example/lvm"}},
        {"gitRepo": {"repository": "https://example.invalid/x.git"}},
        {"iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.x", "lun": 0}},
        {"rbd": {"monitors": ["10.0.0.1"], "image": "x"}},
    ],
    ids=lambda s: next(iter(s)),
)
def test_other_node_level_sources_are_refused(source: dict) -> None:
    problems = _training_problems(training(storage=_storage({"volume": source})))
    assert problems == [
        p for p in problems if p.startswith(f"spec.storage.data.volume.{next(iter(source))}:")
    ]
    assert problems


@pytest.mark.parametrize(
    "source",
    [
        {"nfs": {"server": "nfs.local", "path": "/exports/data"}},
        {"csi": {"driver": "csi.example.com", "readOnly": True}},
        {"persistentVolumeClaim": {"claimName": "x"}},
    ],
    ids=lambda s: next(iter(s)),
)
def test_network_and_claim_sources_are_accepted(source: dict) -> None:
    r = resolve(training(storage=_storage({"volume": source})))
    assert r.spec.storage.data.volume is not None
    assert r.spec.storage.data.volume.model_dump(by_alias=True, exclude_none=True) == source


def test_the_flag_lets_a_host_path_through_to_the_pods() -> None:
    body = training(storage=_storage({"volume": HOST_ROOT}))
    sim = Sim(body, settings=Settings(stuck_grace=30, allow_node_volumes=True))
    sim.step()
    job = next(iter(sim.jobs.values()))
    data = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data == [{"name": "data", **HOST_ROOT}]


def test_without_the_flag_the_run_stalls_with_invalid_spec_and_no_job() -> None:
    sim = Sim(training(storage=_storage({"volume": HOST_ROOT})))
    sim.step()
    assert not sim.jobs
    ready = condition(sim.status, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.storage.data.volume.hostPath" in ready["message"]
    assert condition(sim.status, "Stalled")["status"] == "True"


def test_every_allowed_source_is_a_claim_pod_scoped_or_network_source() -> None:
    assert "hostPath" not in ALLOWED_VOLUME_SOURCES
    assert volume_problems("v", {"emptyDir": {}}, allow_node_volumes=False) == []
    assert volume_problems("v", HOST_ROOT, allow_node_volumes=True) == []


@pytest.mark.parametrize(
    "annotation",
    [
        "container.apparmor.security.beta.kubernetes.io/rtdetr",
        "seccomp.security.alpha.kubernetes.io/pod",
    ],
)
def test_pod_annotations_cannot_switch_confinement_off(annotation: str) -> None:
    body = training(evaluation={"podMetadata": {"annotations": {annotation: "unconfined"}}})
    problems = _training_problems(body)
    assert problems == [
        f"spec.evaluation.podMetadata.annotations[{annotation!r}]: refused: pods keep the "
        "runtime's default seccomp and AppArmor profiles"
    ]
    resolve(training(evaluation={"podMetadata": {"annotations": {"team": "vision"}}}))


def test_a_deployment_onnx_source_on_the_host_is_refused() -> None:
    body = deployment(model={"onnx": {"volume": HOST_ROOT, "path": "m/model.onnx"}})
    with pytest.raises(InvalidDeploymentError) as e:
        resolve_deployment(body, CATALOG, OperatorDefaults())
    assert [p.split(":")[0] for p in e.value.problems] == ["spec.model.onnx.volume.hostPath"]
    r = resolve_deployment(body, CATALOG, OperatorDefaults(), allow_node_volumes=True)
    assert r.spec.model.onnx is not None


def test_a_deployment_of_a_training_whose_results_are_on_the_host_stalls() -> None:
    source = trained()
    source["spec"]["storage"]["results"] = {"volume": HOST_ROOT}
    source["status"]["resultsVolume"].pop("claimName")
    sim = DeploymentSim(deployment(), training=source)
    sim.step()
    assert not sim.jobs
    stalled = sim.cond("Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidSpec"
    assert (
        "RTDETRTraining warehouse-r50's spec.storage.results.volume.hostPath"
        in (stalled["message"])
    )
    allowed = DeploymentSim(
        deployment(),
        training=source,
        settings=DeploymentSettings(catalog=CATALOG, stuck_grace=30, allow_node_volumes=True),
    )
    allowed.step()
    assert allowed.jobs
