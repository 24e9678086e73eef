"""Validation in the operator: messages name the field; resolution fills only what is unset."""

from __future__ import annotations

import json

import pytest
import yaml

from rtdetr_operator.training.resolve import InvalidTrainingError, resolve
from tests.operator.factories import training


def problems(body: dict) -> list[str]:
    with pytest.raises(InvalidTrainingError) as info:
        resolve(body)
    return info.value.problems


def test_valid_training_resolves() -> None:
    r = resolve(training())
    assert (r.nodes, r.gpus_per_node) == (2, 8)
    assert r.tasks == ("train", "evaluate", "export")
    assert r.results_dir == "/results" and r.results_sub_path == "wh-uidwh"


def test_efficientvit_l2_training_resolves() -> None:
    body = training()
    body["spec"]["experiment"]["model"]["backbone"] = "efficientvit_l2"
    r = resolve(body)
    assert r.experiment.model.backbone == "efficientvit_l2"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s["experiment"]["model"].update(backbone="resnet_500"),
            "spec.experiment.model.backbone: unknown backbone 'resnet_500'",
        ),
        (
            lambda s: s["experiment"]["train"].update(num_nodes=0),
            "spec.experiment.train.num_nodes: Input should be greater than or equal to 1",
        ),
        (
            lambda s: s.update(resources={"gpus": 4}),
            "spec.resources.gpus: 4 must equal spec.experiment.train.num_gpus (8), or 0 to run "
            "on CPU",
        ),
        (
            lambda s: s["experiment"]["dataset"]["train_data_sources"][0].update(image_dir="??"),
            "spec.experiment.dataset.train_data_sources.0.image_dir: required by `train`",
        ),
        (
            lambda s: s["experiment"]["train"].update(lr_backbone=1e-5),
            "spec.experiment.train.lr_backbone: unknown key",
        ),
        (
            lambda s: s["experiment"].update(results_dir="/scratch"),
            "spec.experiment.results_dir: '/scratch' is not under spec.storage.results.mountPath",
        ),
        (
            lambda s: s.update(env=[{"name": "WORLD_SIZE", "value": "16"}]),
            "spec.env: WORLD_SIZE are set by the operator",
        ),
        (
            lambda s: s.update(env=[{"name": "RTDETR_TRUST_CHECKPOINTS", "value": "1"}]),
            "spec.env: RTDETR_TRUST_CHECKPOINTS is refused: task pods never unpickle",
        ),
        (
            lambda s: s["storage"].update(results={"volume": {"emptyDir": {}}}),
            "spec.storage.results.volume: emptyDir does not survive pod restarts",
        ),
        (
            lambda s: s["storage"].update(data={"claimName": "a", "volume": {"nfs": {}}}),
            "spec.storage.data: set exactly one of claimName or volume",
        ),
        (
            lambda s: s.update(nodeSelector={"nvidia.com/gpu.product": "NVIDIA-L4"}),
            "contradicts spec.gpuProduct",
        ),
        (
            lambda s: s.update(evaluation={"enabled": False, "minMAP50": 0.5}),
            "spec.evaluation.minMAP50 needs spec.evaluation.enabled: true",
        ),
        (lambda s: s.pop("image"), "spec.image: Field required"),
        (lambda s: s.update(maxRestarts=-1), "spec.maxRestarts: Input should be greater"),
    ],
)
def test_problems_name_the_field(mutate, expected: str) -> None:
    body = training()
    mutate(body["spec"])
    found = problems(body)
    assert any(expected in p for p in found), found


def test_evaluation_needs_test_data_only_when_enabled() -> None:
    body = training()
    body["spec"]["experiment"]["dataset"]["test_data_sources"] = {"image_dir": "/data/test"}
    found = problems(body)
    assert any("dataset.test_data_sources.json_file: required by `evaluate`" in p for p in found)
    body["spec"]["evaluation"] = {"enabled": False}
    resolve(body)


def test_long_or_odd_names_are_refused() -> None:
    assert any("metadata.name" in p for p in problems(training("a" * 41)))
    assert any("metadata.name" in p for p in problems(training("9lives")))


def test_keys_pruned_by_the_api_server_are_still_caught() -> None:
    body = training()
    applied = json.loads(json.dumps(body))
    applied["spec"]["experiment"]["train"]["optim"]["lr_backbon"] = 1e-6
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied)
    }
    found = problems(body)
    assert any(
        "spec.experiment.train.optim.lr_backbon: unknown key; did you mean 'lr_backbone'" in p
        for p in found
    ), found


def test_explicit_values_win_and_markers_are_filled() -> None:
    body = training()
    exp = body["spec"]["experiment"]
    exp["results_dir"] = "/results/exp7"
    exp["train"]["gpu_ids"] = [0, 1, 2, 3, 4, 5, 6, 7]
    exp["export"]["onnx_file"] = "/results/exp7/model.onnx"
    r = resolve(body)
    resolved = yaml.safe_load(r.experiment_yaml)
    assert r.results_dir == "/results/exp7"
    assert resolved["export"]["onnx_file"] == "/results/exp7/model.onnx"
    assert resolved["export"]["gpu_id"] == 0  # was ??
    assert resolved["evaluate"]["checkpoint"] == "/results/exp7/train/rtdetr_model_latest.pth"
    assert {"results_dir", "train.gpu_ids", "export.onnx_file"} <= r.user_set
    assert "evaluate.checkpoint" not in r.user_set


def test_shared_results_volume_root() -> None:
    r = resolve(
        training(storage={"data": {"claimName": "d"}, "results": {"claimName": "r", "subPath": ""}})
    )
    assert r.results_sub_path == ""
