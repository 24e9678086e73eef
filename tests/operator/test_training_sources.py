"""Source URIs in the experiment: rewritten to /sources, fetched by init containers first."""

from __future__ import annotations

import json

import yaml

from rtdetr_operator.training import manifests
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
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-0",
                    "state": {"terminated": {"message": json.dumps({**summary, "cached": True})}},
                },
                {"name": "other", "state": {"terminated": {"message": "{}"}}},
            ]
        }
    }
    assert source_status([pod, pod]) == [{**summary, "cached": True}]
