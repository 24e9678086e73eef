"""Source URIs in the experiment: rewritten to /sources, fetched by init containers first."""

from __future__ import annotations

import json

import yaml

from rtdetr_operator.api.training_status import RTDETRTrainingStatus
from rtdetr_operator.pod_logs import LogReader, running_fetch_step
from rtdetr_operator.training import manifests
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_operator.training.plan import Settings, World, plan
from rtdetr_operator.training.resolve import resolve
from rtdetr_operator.training.sources import describe_fetched, source_status
from rtdetr_spec.sources.report import FetchProgress, format_line
from tests.operator.factories import T0, pod, training
from tests.operator.test_operator_plan import Sim

SHA = "b" * 64
HTTPS = "https://models.example.com/r50.pth"


def _body(**sources):
    body = training(
        sources={
            "cache": {"claimName": "model-cache"},
            "secretName": "s3-creds",
            "s3Endpoint": "http://seaweedfs.storage:8333",
            **sources,
        }
    )
    train = body["spec"]["experiment"]["train"]
    train["pretrained_model_path"] = "s3://warehouse/pretrained/rtdetr_resnet50_warehouse.pth"
    body["spec"]["experiment"]["model"]["pretrained_backbone_path"] = HTTPS
    return body


def test_uris_are_rewritten_and_fetched_by_init_containers_of_training_pods_only() -> None:
    r = resolve(_body(checksums={HTTPS: SHA}))
    exp = yaml.safe_load(r.experiment_yaml)
    assert exp["train"]["pretrained_model_path"] == "/sources/0/rtdetr_resnet50_warehouse.pth"
    assert exp["model"]["pretrained_backbone_path"] == "/sources/1/r50.pth"
    pod = manifests.training_job(r, 0)["spec"]["template"]["spec"]
    inits = pod["initContainers"]
    assert [c["name"] for c in inits] == ["fetch-0", "fetch-1"]
    assert inits[1]["command"][-2:] == ["--sha256", SHA]
    assert inits[0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "AWS_ENDPOINT_URL_S3", "value": "http://seaweedfs.storage:8333"} in (
        inits[0]["env"]
    )
    assert inits[0]["securityContext"]["runAsNonRoot"] is True
    main = pod["containers"][0]
    assert "envFrom" not in main  # the credentials reach the fetch step only
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["source-cache"]["readOnly"] and mounts["source-links"]["readOnly"]
    cache = next(v for v in pod["volumes"] if v["name"] == "source-cache")
    assert cache["persistentVolumeClaim"] == {"claimName": "model-cache"}
    export = manifests.export_job(r, 0, None)["spec"]["template"]["spec"]
    assert "initContainers" not in export


def test_a_uri_without_its_checksum_or_malformed_fails_naming_the_key() -> None:
    world = World(training=_body(), jobs=[], pods=[], configmap=None, service=None, now=T0)
    p = plan(world, Settings())
    ready = next(c for c in p.status["conditions"] if c["type"] == "Ready")
    assert p.status["phase"] == "Failed" and ready["reason"] == "InvalidSpec"
    assert "spec.experiment.model.pretrained_backbone_path: " in ready["message"]
    assert "needs its sha256" in ready["message"]


def _fetch_pod(task: str, *states: dict) -> dict:
    """A training pod whose fetch steps are in ``states`` (and one other init container)."""
    steps = [{"name": f"fetch-{i}", "state": st} for i, st in enumerate(states)]
    return {
        "metadata": {"labels": {LABEL_TASK: task}},
        "status": {"initContainerStatuses": [*steps, {"name": "other", "state": {}}]},
    }


def _done(summary: dict) -> dict:
    return {"terminated": {"exitCode": 0, "message": json.dumps(summary)}}


def test_status_shows_each_fetch_pending_fetching_then_its_summary() -> None:
    fetches = list(resolve(_body(checksums={HTTPS: SHA})).fetches)
    s3 = "s3://warehouse/pretrained/rtdetr_resnet50_warehouse.pth"
    summary = {"uri": s3, "sha256": SHA, "size": 10, "transferred": 0, "cached": True}
    assert source_status([], fetches, []) == (
        [{"uri": s3, "state": "Pending"}, {"uri": HTTPS, "state": "Pending"}],
        [],
    )
    running = _fetch_pod("train", {"running": {}})
    status, fetched = source_status([running], fetches, [], FetchProgress(30, 120))
    assert status[0] == {
        "uri": s3,
        "state": "Fetching",
        "transferred": 30,
        "size": 120,
        "percent": 25,
    }
    assert status[1]["state"] == "Pending" and fetched == []
    unknown_size = source_status([running], fetches, [], FetchProgress(30, None))[0]
    assert unknown_size[0] == {"uri": s3, "state": "Fetching", "transferred": 30}
    # A reconcile that read no log (the reader's interval not yet over) keeps the last numbers.
    assert source_status([running], fetches, status)[0] == status
    pod = _fetch_pod("train", _done(summary), {"running": {}})
    status, fetched = source_status([pod, pod], fetches, status)
    assert status == [{**summary, "state": "Fetched"}, {"uri": HTTPS, "state": "Fetching"}]
    assert fetched == [{**summary, "state": "Fetched"}]
    assert describe_fetched(fetched[0]) == f"{s3}: 10 B, already in the cache"
    # Told once; kept when the pods are gone (a step cut short starts again: Pending);
    # another task's steps are not the run's.
    assert source_status([pod], fetches, status)[1] == []
    evaluation = _fetch_pod("evaluate", _done({**summary, "size": 99}))
    assert source_status([evaluation], fetches, status)[0] == [
        status[0],
        {"uri": HTTPS, "state": "Pending"},
    ]
    malformed = _fetch_pod("train", {"terminated": {"exitCode": 1, "message": "Error: disk"}})
    assert source_status([malformed], fetches, [])[0][0]["state"] == "Pending"
    silent = _fetch_pod("train", {"terminated": {"exitCode": 0}})  # as on a simulated node
    status, fetched = source_status([silent], fetches, [])
    assert status[0] == {"uri": s3, "state": "Fetched"}
    assert describe_fetched(fetched[0]) == f"{s3}: fetched; its step left no summary"
    assert source_status([], fetches, status)[0][0] == status[0]  # kept once the pod is gone


def test_a_download_shows_in_status_health_and_requeues_until_the_pods_start() -> None:
    sim = Sim(_body(checksums={HTTPS: SHA}))
    sim.step()
    job = sim.jobs["wh-train-0"]
    for i in range(2):
        p = pod(job, i, "Pending")
        p["status"]["initContainerStatuses"] = [{"name": "fetch-0", "state": {"running": {}}}]
        sim.pods[p["metadata"]["name"]] = p
    world = World(**{**sim.world().__dict__, "fetch_progress": FetchProgress(3 << 20, 4 << 20)})
    p = plan(world, sim.settings)
    entry = p.status["sources"][0]
    assert (entry["state"], entry["percent"], entry["transferred"]) == ("Fetching", 75, 3 << 20)
    reconciling = next(c for c in p.status["conditions"] if c["type"] == "Reconciling")
    assert (
        "fetching s3://warehouse/pretrained/rtdetr_resnet50_warehouse.pth (75 %)"
        in (reconciling["message"])
    )
    assert p.requeue_after == sim.settings.progress_interval
    RTDETRTrainingStatus.model_validate(p.status)


def test_the_running_fetch_step_of_the_first_pod_is_found() -> None:
    sim = Sim(_body(checksums={HTTPS: SHA}))
    sim.step()
    job = sim.jobs["wh-train-0"]
    pods = [pod(job, i, "Pending") for i in range(2)]
    assert running_fetch_step(pods, "wh-train-0") is None
    for p in pods:
        p["status"]["initContainerStatuses"] = [
            {"name": "fetch-0", "state": {"terminated": {"exitCode": 0}}},
            {"name": "fetch-1", "state": {"running": {}}},
        ]
    found = running_fetch_step(pods[::-1], "wh-train-0")
    assert found is not None and found[1] == "fetch-1"
    assert found[0]["metadata"]["name"] == "wh-train-0-0-abcde"
    assert running_fetch_step(pods, "wh-train-1") is None


class FetchLogs:
    """Pod log API stand-in for a fetch step's container."""

    def __init__(self, text: str) -> None:
        self.text, self.containers = text, []

    def pod_log(self, namespace: str, name: str, container: str, limit_bytes: int) -> str:
        self.containers.append(container)
        return self.text[-limit_bytes:]


def test_the_reader_reads_the_fetch_steps_newest_line_rate_limited() -> None:
    clock = [0.0]
    text = "\n".join(
        [format_line(FetchProgress(1, 8)), "RTDETR_FETCH {bad", format_line(FetchProgress(6, 8))]
    )
    api = FetchLogs(text)
    reader = LogReader(api, 30, clock=lambda: clock[0])  # type: ignore[arg-type]
    step = {"metadata": {"name": "wh-train-0-0-abcde"}}
    assert reader.read_fetch("ml", "wh", step, "fetch-1") == FetchProgress(6, 8)
    assert reader.read_fetch("ml", "wh", step, "fetch-1") is None  # rate limited
    assert api.containers == ["fetch-1"]


DATA = "s3://warehouse/datasets/v3/"


def _dataset_body(data_volume: bool = False) -> dict:
    body = training(sources={"cache": {"claimName": "model-cache"}, "secretName": "s3-creds"})
    if not data_volume:
        del body["spec"]["storage"]["data"]
    dataset = body["spec"]["experiment"]["dataset"]
    dataset["train_data_sources"] = [
        {"image_dir": DATA + "images/", "json_file": DATA + "annotations/train.json"}
    ]
    dataset["val_data_sources"] = {
        "image_dir": DATA + "images/",
        "json_file": DATA + "annotations/val.json",
    }
    dataset.pop("test_data_sources", None)
    return body


def test_a_dataset_from_s3_needs_no_data_volume_and_reaches_every_task_that_reads_it() -> None:
    r = resolve(_dataset_body())
    exp = yaml.safe_load(r.experiment_yaml)
    train, val = exp["dataset"]["train_data_sources"][0], exp["dataset"]["val_data_sources"]
    assert train["image_dir"] == val["image_dir"] == "/sources/0/images"  # one fetch, shared
    assert train["json_file"] == "/sources/1/train.json"
    assert exp["dataset"]["test_data_sources"] == val  # evaluated on the fetched val split
    assert [f.uri for f in r.fetches] == [
        DATA + "images/",
        DATA + "annotations/train.json",
        DATA + "annotations/val.json",
    ]
    for job in (manifests.training_job(r, 0), manifests.evaluation_job(r, 0, None)):
        pod = job["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["fetch-0", "fetch-1", "fetch-2"]
        assert "data" not in {v["name"] for v in pod["volumes"]}
        assert pod["initContainers"][0]["command"][5] == DATA + "images/"


def test_a_dataset_path_without_a_data_volume_is_named() -> None:
    body = _dataset_body()
    body["spec"]["experiment"]["dataset"]["val_data_sources"]["json_file"] = "/data/val.json"
    world = World(training=body, jobs=[], pods=[], configmap=None, service=None, now=T0)
    ready = next(c for c in plan(world, Settings()).status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert (
        "spec.storage.data: required, since spec.experiment.dataset.val_data_sources.json_file"
        " is a path ('/data/val.json')" in ready["message"]
    )


def test_an_image_folder_must_be_an_s3_folder_and_a_json_file_a_file() -> None:
    body = _dataset_body(data_volume=True)
    dataset = body["spec"]["experiment"]["dataset"]
    dataset["train_data_sources"][0]["image_dir"] = "s3://warehouse/images.tar"
    dataset["val_data_sources"]["json_file"] = DATA
    world = World(training=body, jobs=[], pods=[], configmap=None, service=None, now=T0)
    ready = next(c for c in plan(world, Settings()).status["conditions"] if c["type"] == "Ready")
    assert (
        "dataset.train_data_sources.0.image_dir: 's3://warehouse/images.tar': an image "
        in (ready["message"])
    )
    assert "dataset.val_data_sources.json_file: " in ready["message"]
    assert "names a folder; this key takes a file" in ready["message"]
