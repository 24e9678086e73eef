"""Source URIs in the experiment: rewritten to /sources, fetched by init containers first."""

from __future__ import annotations

import json

import yaml

from rtdetr_operator.training import manifests
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_operator.training.plan import Settings, World, plan
from rtdetr_operator.training.resolve import resolve
from rtdetr_operator.training.sources import source_status
from tests.operator.factories import T0, training

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


def test_status_shows_each_fetch_summary() -> None:
    summary = {"uri": "s3://w/r50.pth", "sha256": SHA, "size": 10, "transferred": 0}
    pod = {
        "metadata": {"labels": {LABEL_TASK: "train"}},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-0",
                    "state": {"terminated": {"message": json.dumps({**summary, "cached": True})}},
                },
                {"name": "other", "state": {"terminated": {"message": "{}"}}},
            ]
        },
    }
    evaluation = {**pod, "metadata": {"labels": {LABEL_TASK: "evaluate"}}}
    assert source_status([pod, pod]) == [{**summary, "cached": True}]
    assert source_status([evaluation]) == []  # what the run downloaded is the training's


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
